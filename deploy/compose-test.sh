#!/usr/bin/env bash
# The compose cluster under faults, the Docker way (run by scripts/test.sh).
#
# Builds the image from this checkout's binary (base image cached under a
# stable tag), brings up deploy/compose.yaml (nodes 2 and 3 join by
# themselves), inits and unseals, and writes secrets from the host through
# the Azure SDK (deploy/compose_writer.py) throughout:
#   kill-leader   docker kill the leader; writes resume; it restarts and rejoins
#   disconnect    docker network disconnect the leader; the majority serves;
#                 it catches up after reconnect
#   rolling       rolling restart onto a freshly built image tag
# then prints, per fault, writes acknowledged / lost and the longest
# unavailability, and fails if any acknowledged write was lost.
#
#   COFFER_BIN=path/to/coffer deploy/compose-test.sh   # default: $CARGO_TARGET_DIR/debug/coffer
# Skipped (exit 0, one line saying so) when Docker is not usable.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { printf 'compose-test: %s\n' "$*"; }
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  say "SKIPPED: Docker is not available here (no docker client or engine)"
  exit 0
fi
if command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  say "SKIPPED: Docker Compose is not installed"
  exit 0
fi

t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }
bin=${COFFER_BIN:-${CARGO_TARGET_DIR:-target}/debug/coffer}
[[ -x $bin ]] || { say "no coffer binary at $bin (cargo build -p coffer first)"; exit 1; }
bin=$(realpath "$bin")
python=${COFFER_PYTHON:-${COFFER_VENV:-/var/tmp/coffer-venv}/bin/python}
"$python" -c 'import azure.keyvault.secrets' 2>/dev/null \
  || { say "the Python SDK is missing: $python -m pip install azure-keyvault-secrets"; exit 1; }

work=$(mktemp -d /tmp/coffer-compose.XXXXXX)
project=cofferct$$
# Stable tags: the next run replaces them, and the image layers below the
# binary (user, directories) stay cached, so a run rebuilds only the binary's.
tag_a=coffer:compose-test-a
tag_b=coffer:compose-test-b
writer_pid=
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export COFFER_PORT_1=$(free_port) COFFER_PORT_2=$(free_port) COFFER_PORT_3=$(free_port)
export COFFER_TLS_DIR=$work/tls COFFER_IMAGE=$tag_a
port_of() { local v=COFFER_PORT_$1; echo "${!v}"; }
compose() { "${compose_cmd[@]}" -p "$project" -f deploy/compose.yaml "$@"; }
container() { compose ps -q "coffer-$1"; }

cleanup() {
  local status=$?
  [[ -n $writer_pid ]] && kill "$writer_pid" 2>/dev/null
  if ((status)); then
    say "FAILED after $(elapsed); node logs (last 30 lines each):"
    for i in 1 2 3; do compose logs --no-color --tail 30 "coffer-$i" 2>&1 | sed "s/^/  /" || true; done
  fi
  compose down -v --remove-orphans >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- images -----------------------------------------------------------------
COFFER_BIN=$bin COFFER_STRIP=1 deploy/image.sh "$tag_a" >/dev/null
say "image $tag_a ready ($(elapsed)); size $(( $(docker image inspect -f '{{.Size}}' "$tag_a") / 1000000 )) MB"

# --- certificates, join token -------------------------------------------------
"$bin" operator tls --out "$work/tls" \
  --node coffer-1=coffer-1,localhost,127.0.0.1 \
  --node coffer-2=coffer-2,localhost,127.0.0.1 \
  --node coffer-3=coffer-3,localhost,127.0.0.1 >/dev/null
"$python" -c 'import secrets; print(secrets.token_hex(32))' >"$work/tls/join-token"
chmod 600 "$work/tls/join-token"
# The image's coffer user (uid 10001) must own its key files (0600).
chown -R 10001:10001 "$work/tls"
export COFFER_CACERT=$work/tls/ca.pem

api() { echo "https://127.0.0.1:$(port_of "$1")"; }
cli() { local n=$1; shift; COFFER_ADDR=$(api "$n") "$bin" "$@"; }
health() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 --cacert "$COFFER_CACERT" "$(api "$1")/v1/sys/health" || true; }
wait_for() { # wait_for SECONDS WHAT COMMAND...
  local limit=$1 what=$2; shift 2
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || { say "timed out after ${limit}s waiting for: $what"; return 1; }
    sleep 0.3
  done
}
serving() { local c; c=$(health "$1"); [[ $c == 200 || $c == 429 ]]; }
answering() { local c; c=$(health "$1"); [[ $c != 000 && -n $c ]]; }
voters() { # the number of voters node $1 sees
  COFFER_TOKEN=$(cat "$work/root-token") cli "$1" operator raft list-peers -o json 2>/dev/null \
    | "$python" -c 'import json,sys; print(sum(1 for p in json.load(sys.stdin)["peers"] if p["voter"]))'
}
has_voters() { [[ $(voters "$1") == "$2" ]]; }
leader() { # node id of the leader, asked of any serving node
  local i
  for i in 1 2 3; do
    COFFER_TOKEN=$(cat "$work/root-token") cli "$i" operator raft list-peers -o json 2>/dev/null \
      | "$python" -c 'import json,sys; l=json.load(sys.stdin)["leader_id"]; print(l) if l else sys.exit(1)' \
      && return 0
  done
  return 1
}
unseal() { local k; for k in "${keys[@]:0:2}"; do cli "$1" operator unseal "$k" >/dev/null; done; }

# --- up, auto-join, init, unseal ---------------------------------------------
compose up -d >"$work/up.log" 2>&1 || { cat "$work/up.log"; exit 1; }
wait_for 60 "node 1 answering" answering 1
cli 1 operator init --key-shares 3 --key-threshold 2 -o json >"$work/init.json"
mapfile -t keys < <("$python" -c 'import json,sys; [print(k) for k in json.load(open(sys.argv[1]))["keys"]]' "$work/init.json")
"$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["root_token"])' "$work/init.json" >"$work/root-token"
unseal 1
wait_for 60 "nodes 2 and 3 to join by themselves (retry_join) as voters" has_voters 1 3
for i in 2 3; do wait_for 30 "node $i answering" answering "$i"; unseal "$i"; done
for i in 1 2 3; do wait_for 30 "node $i serving" serving "$i"; done
healthy() { [[ $(docker inspect -f '{{.State.Health.Status}}' "$(container "$1")") == healthy ]]; }
for i in 1 2 3; do wait_for 30 "coffer-$i healthy (the image's HEALTHCHECK)" healthy "$i"; done
say "3 voters (2 auto-joined), initialised and unsealed, Docker reports them healthy ($(elapsed))"

# --- the writer ------------------------------------------------------------
phase() { echo "$1" >"$work/phase.tmp" && mv "$work/phase.tmp" "$work/phase"; say "phase $1 ($(elapsed))"; }
acked() { cut -d' ' -f1 "$work/progress" 2>/dev/null || echo 0; }
writes_resume() { # true once a write is acknowledged after the count $1
  local want=$(( $1 + 1 ))
  wait_for 60 "writes to resume" test_acked_at_least "$want"
}
test_acked_at_least() { (( $(acked) >= $1 )); }
phase baseline
"$python" deploy/compose_writer.py \
  --endpoints "$(api 1),$(api 2),$(api 3)" --token-file "$work/root-token" \
  --cacert "$COFFER_CACERT" --phase-file "$work/phase" --stop-file "$work/stop" \
  --progress-file "$work/progress" --result-file "$work/result.json" &
writer_pid=$!
wait_for 30 "first acknowledged write" test_acked_at_least 1
sleep 3

# --- fault 1: docker kill the leader -------------------------------------------
l=$(leader)
phase kill-leader
before=$(acked)
docker kill "$(container "$l")" >/dev/null
say "killed coffer-$l (leader)"
writes_resume "$before"
sleep 2
# A killed container restarts by its policy or by hand; either way sealed.
[[ $(docker inspect -f '{{.State.Running}}' "$(container "$l")") == true ]] || docker start "$(container "$l")" >/dev/null
wait_for 60 "coffer-$l answering after restart" answering "$l"
unseal "$l"
wait_for 60 "coffer-$l caught up and serving" serving "$l"
say "coffer-$l rejoined"

# --- fault 2: disconnect the leader from the network ---------------------------------
l=$(leader)
phase disconnect
before=$(acked)
net=${project}_coffer
docker network disconnect "$net" "$(container "$l")"
say "disconnected coffer-$l (leader) from $net"
writes_resume "$before"
sleep 3
docker network connect --alias "coffer-$l" "$net" "$(container "$l")"
say "reconnected coffer-$l"
wait_for 60 "coffer-$l caught up and serving" serving "$l"

# --- fault 3: rolling restart onto a new image ---------------------------------
phase rolling
COFFER_BIN=$bin COFFER_STRIP=1 COFFER_BUILD="rolling-$$" deploy/image.sh "$tag_b" >/dev/null
say "image $tag_b built ($(elapsed)); rolling followers first, the leader last"
l=$(leader)
order=()
for i in 1 2 3; do [[ $i == "$l" ]] || order+=("$i"); done
order+=("$l")
for i in "${order[@]}"; do
  COFFER_IMAGE=$tag_b compose up -d --no-deps "coffer-$i" >/dev/null 2>&1
  wait_for 60 "coffer-$i answering on $tag_b" answering "$i"
  unseal "$i"
  wait_for 60 "coffer-$i serving on $tag_b" serving "$i"
  image=$(docker inspect -f '{{.Config.Image}}' "$(container "$i")")
  [[ $image == "$tag_b" ]] || { say "coffer-$i runs $image, not $tag_b"; exit 1; }
  say "coffer-$i now runs $tag_b"
done
sleep 2

# --- results -----------------------------------------------------------------
phase done
touch "$work/stop"
status=0
wait "$writer_pid" || status=$?
writer_pid=
((status == 0)) || { say "acknowledged writes were lost"; exit 1; }
"$python" - "$work/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
phases = {p["phase"]: p for p in r["phases"]}
for want in ("kill-leader", "disconnect", "rolling"):
    p = phases.get(want)
    if not p or p["acknowledged"] == 0:
        sys.exit(f"compose-test: no write acknowledged during {want}")
PY
say "passed in $(elapsed)"
