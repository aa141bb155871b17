#!/usr/bin/env bash
# The systemd unit and the .deb (run by scripts/test.sh):
#   1. `cargo deb` packages the binary built for the tests (no release build),
#   2. `systemd-analyze verify` checks the unit as packaged (no warning allowed),
#   3. in a container from the local base image: `dpkg -i`, then the node is
#      started the way the unit starts it (its ExecStart, as its User, with
#      its AmbientCapabilities), initialised, unsealed, written and read, and
#      its memory is locked.
#
#   COFFER_BIN=path/to/coffer deploy/deb-test.sh   # default: $CARGO_TARGET_DIR/debug/coffer
# Skipped (one line) when Docker or systemd-analyze is missing.
set -euo pipefail
[[ -n ${DEBUG:-} ]] && set -x
cd "$(dirname "$0")/.."
say() { printf 'deb-test: %s\n' "$*"; }
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
  say "SKIPPED: Docker is not available here (no docker client or engine)"
  exit 0
fi
command -v systemd-analyze >/dev/null || { say "SKIPPED: systemd-analyze is missing"; exit 0; }
target=${CARGO_TARGET_DIR:-target}
bin=${COFFER_BIN:-$target/debug/coffer}
[[ -x $bin ]] || { say "no coffer binary at $bin (cargo build -p coffer first)"; exit 1; }

if ! cargo deb --version >/dev/null 2>&1; then
  say "installing cargo-deb (once per machine; a few minutes on 2 cores)"
  cargo install --locked --quiet cargo-deb
fi

work=$(mktemp -d)
name=coffer-deb-test-$$
cleanup() {
  local status=$?
  if ((status)); then
    say "FAILED after $(elapsed)"
    docker exec "$name" sh -c 'cat /tmp/coffer.log' 2>/dev/null | tail -20 | sed 's/^/  /' || true
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The package, from the binary the tests use: cargo-deb reads the
# metadata in node/Cargo.toml; `--profile dev` maps target/release/coffer
# onto target/debug/coffer.
mkdir -p "$work/target/debug"
cp "$bin" "$work/target/debug/coffer"
CARGO_TARGET_DIR=$work/target cargo deb -p coffer --no-build --profile dev --fast \
  --output "$work/coffer.deb" >"$work/deb.log" 2>&1 || { cat "$work/deb.log"; exit 1; }
say "built $(dpkg-deb -f "$work/coffer.deb" Package)_$(dpkg-deb -f "$work/coffer.deb" Version).deb," \
  "$(( $(stat -c %s "$work/coffer.deb") / 1000000 )) MB ($(elapsed))"
contents=$(dpkg-deb -c "$work/coffer.deb")
for f in ./usr/bin/coffer ./etc/coffer/coffer.toml; do
  grep -q " $f\$" <<<"$contents" || { say "the package lacks $f"; exit 1; }
done

# 2. The unit as packaged, in a root with the package's files and the
# host's systemd units (which verify needs to resolve its dependencies).
root=$work/root
dpkg-deb -x "$work/coffer.deb" "$root"
unit=$work/coffer.service
for d in usr/lib lib; do
  [[ -f $root/$d/systemd/system/coffer.service ]] && cp "$root/$d/systemd/system/coffer.service" "$unit"
done
[[ -f $unit ]] || { say "no coffer.service in the package"; exit 1; }
cmp -s "$unit" deploy/systemd/coffer.service || { say "the packaged unit differs from deploy/systemd/coffer.service"; exit 1; }
mkdir -p "$root/usr/lib/systemd"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
verify=$(systemd-analyze verify --root="$root" coffer.service 2>&1) || { echo "$verify"; exit 1; }
[[ -z $verify ]] || { say "systemd-analyze verify warned:"; echo "$verify"; exit 1; }
say "systemd-analyze verify: coffer.service passes without a warning"

# 3. Install and start it in a container. IPC_LOCK is added to the
# container's bounding set, as the unit's CapabilityBoundingSet does.
base=$(deploy/base-image.sh)
docker run -d --name "$name" --cap-add IPC_LOCK -v "$work/coffer.deb:/tmp/coffer.deb:ro" \
  "$base" sleep 600 >/dev/null
inside() { docker exec "$name" "$@"; }
inside dpkg -i /tmp/coffer.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; exit 1; }
inside sh -c 'test "$(stat -c "%a %U" /var/lib/coffer)" = "700 coffer"' \
  || { say "/var/lib/coffer is not 0700 coffer"; exit 1; }
inside sh -c 'test "$(stat -c "%a %U %G" /etc/coffer/coffer.toml)" = "640 root coffer"' \
  || { say "/etc/coffer/coffer.toml is not 0640 root:coffer"; exit 1; }
inside id coffer >/dev/null
say "dpkg -i: installed; user coffer, /var/lib/coffer 0700, /etc/coffer/coffer.toml 0640 root:coffer"

# What systemd would do: ExecStart, as User, with AmbientCapabilities.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
user=$(sed -n 's/^User=//p' "$unit")
grep -q '^AmbientCapabilities=CAP_IPC_LOCK$' "$unit" || { say "the unit does not grant CAP_IPC_LOCK"; exit 1; }
inside coffer operator tls --out /etc/coffer/tls --node node=127.0.0.1,localhost >/dev/null
inside chown -R "$user:$user" /etc/coffer/tls
inside sh -c "ulimit -c 0; exec setpriv --reuid=$user --regid=$user --init-groups \
  --inh-caps=-all,+ipc_lock --ambient-caps=-all,+ipc_lock $exec_start >/tmp/coffer.log 2>&1" &
export_env='COFFER_ADDR=https://127.0.0.1:8443 COFFER_CACERT=/etc/coffer/tls/ca.pem'
for _ in $(seq 1 100); do
  code=$(inside sh -c "curl -s -o /dev/null -w '%{http_code}' --cacert /etc/coffer/tls/ca.pem https://127.0.0.1:8443/v1/sys/health" || true)
  [[ $code == 501 ]] && break
  sleep 0.3
done
[[ $code == 501 ]] || { say "the node did not answer (health $code)"; exit 1; }
inside sh -c "$export_env coffer operator init --key-shares 1 --key-threshold 1 -o json" >"$work/init.json"
key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["keys"][0])' "$work/init.json")
root_token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["root_token"])' "$work/init.json")
inside sh -c "$export_env coffer operator unseal $key" >/dev/null
inside sh -c "$export_env COFFER_TOKEN=$root_token coffer secret set deb-test --value installed" >/dev/null
got=$(inside sh -c "$export_env COFFER_TOKEN=$root_token coffer secret get deb-test -o json" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])')
[[ $got == installed ]] || { say "read back '$got'"; exit 1; }
pid=$(inside sh -c 'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = coffer ] && echo ${p#/proc/} && break; done')
locked=$(inside sh -c "awk '/^VmLck:/ {print \$2}' /proc/$pid/status")
owner=$(inside sh -c "stat -c %U /proc/$pid/environ")
[[ $owner == root ]] || { say "the node is dumpable (/proc/$pid/environ owned by $owner)"; exit 1; }
core=$(inside sh -c "awk '/^Max core file size/ {print \$5}' /proc/$pid/limits")
[[ $core == 0 ]] || { say "core size limit is $core"; exit 1; }
((locked > 0)) || { say "the node's memory is not locked (VmLck ${locked} kB)"; exit 1; }
say "started as the unit starts it: initialised, unsealed, secret written and read;" \
  "runs as $user, mappings locked (VmLck ${locked} kB), not dumpable (/proc/PID/environ owned by $owner), core limit 0"
say "passed in $(elapsed)"
