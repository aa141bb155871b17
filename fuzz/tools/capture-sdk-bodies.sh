#!/usr/bin/env bash
# Captures the request bodies the official Azure SDK sends in the
# conformance tests (node/tests/conformance), against `coffer server --dev`,
# and turns them into json_bodies seeds under fuzz/corpus/json_bodies/.
# Needs the venv of scripts/test.sh (COFFER_VENV) and a built coffer binary
# (COFFER_BIN, default $CARGO_TARGET_DIR/debug/coffer).
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${COFFER_VENV:-/var/tmp/coffer-venv}"
bin="${COFFER_BIN:-${CARGO_TARGET_DIR:-target}/debug/coffer}"
work="$(mktemp -d)"
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api="127.0.0.1:$(port)"
"$bin" server --dev --api-addr "$api" --cluster-addr "127.0.0.1:$(port)" \
    --data-dir "$work/data" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [[ -s "$work/data/root-token" ]] && break; sleep 0.1; done

capture="$work/capture.jsonl"
(cd node/tests/conformance &&
    PYTHONPATH="$PWD/../../../fuzz/tools/capture" COFFER_CAPTURE="$capture" \
    COFFER_VAULT_URL="https://$api" COFFER_TOKEN="$(cat "$work/data/root-token")" \
    COFFER_CACERT="$work/data/ca.pem" COFFER_HSM=0 \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider test_secrets.py test_keys.py) || true

"$venv/bin/python" fuzz/tools/capture/to_seeds.py "$capture" fuzz/corpus/json_bodies
