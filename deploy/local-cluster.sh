#!/usr/bin/env bash
# Starts a 3-node Coffer cluster on loopback, initialises it (5 shares,
# threshold 3) and unseals every node.
#
#   deploy/local-cluster.sh [DIR]      # default DIR: ./coffer-cluster
#   deploy/local-cluster.sh stop [DIR]
#
# Node i listens on https://127.0.0.1:84i3 (API) and 127.0.0.1:84i4 (cluster).
set -euo pipefail
COFFER="${COFFER:-cargo run --release --quiet --}"

if [[ "${1:-}" == stop ]]; then
    dir="${2:-coffer-cluster}"
    for pid in "$dir"/node*.pid; do
        [[ -f "$pid" ]] && kill "$(cat "$pid")" 2>/dev/null || true
        rm -f "$pid"
    done
    exit 0
fi

dir="$(realpath -m "${1:-coffer-cluster}")"
mkdir -p "$dir"
$COFFER operator tls --out "$dir/tls" \
    --node node1=127.0.0.1,localhost --node node2=127.0.0.1,localhost --node node3=127.0.0.1,localhost

for i in 1 2 3; do
    {
        echo "node_id = $i"
        echo "data_dir = \"$dir/node$i\""
        echo "api_addr = \"127.0.0.1:84${i}3\""
        echo "cluster_addr = \"127.0.0.1:84${i}4\""
        [[ $i == 1 ]] && echo "bootstrap = true"
        # A loopback playground run by a user without a memlock allowance.
        echo "lock_memory = false"
        echo "[tls]"
        echo "ca = \"$dir/tls/ca.pem\""
        echo "cert = \"$dir/tls/node$i.pem\""
        echo "key = \"$dir/tls/node$i-key.pem\""
        for j in 1 2 3; do
            [[ $j == "$i" ]] && continue
            echo "[[peers]]"
            echo "node_id = $j"
            echo "api_addr = \"127.0.0.1:84${j}3\""
            echo "cluster_addr = \"127.0.0.1:84${j}4\""
        done
    } > "$dir/node$i.toml"
    $COFFER server --config "$dir/node$i.toml" >"$dir/node$i.log" 2>&1 &
    echo $! > "$dir/node$i.pid"
done

export COFFER_ADDR="https://127.0.0.1:8413,https://127.0.0.1:8423,https://127.0.0.1:8433"
export COFFER_CACERT="$dir/tls/ca.pem"
for _ in $(seq 1 100); do
    $COFFER operator status >/dev/null 2>&1 && break || sleep 0.2
done
$COFFER operator init --key-shares 5 --key-threshold 3 -o json > "$dir/init.json"
chmod 600 "$dir/init.json"
mapfile -t keys < <(python3 -c 'import json,sys; [print(k) for k in json.load(open(sys.argv[1]))["keys"]]' "$dir/init.json")
for i in 1 2 3; do
    for k in "${keys[@]:0:3}"; do
        COFFER_ADDR="https://127.0.0.1:84${i}3" $COFFER operator unseal "$k" >/dev/null
    done
done
cat <<MSG
3-node cluster running in $dir (logs: node*.log). Shares and root token: $dir/init.json

  export COFFER_ADDR=$COFFER_ADDR
  export COFFER_CACERT=$COFFER_CACERT
  export COFFER_TOKEN=\$(python3 -c 'import json; print(json.load(open("$dir/init.json"))["root_token"])')
  coffer operator raft list-peers

Stop it with: deploy/local-cluster.sh stop $dir
MSG
