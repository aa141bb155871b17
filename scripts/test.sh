#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need
# (Python venv with the official Azure SDK from PyPI), builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# A build cache outside the checkout, reused across runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/coffer-target}"
export COFFER_VENV="${COFFER_VENV:-/var/tmp/coffer-venv}"

log() { printf '\n== %s\n' "$*"; }

install_system_packages() {
    local missing=()
    command -v python3 >/dev/null || missing+=(python3)
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    # SoftHSM2: the PKCS#11 device of the HSM-tier tests.
    [[ -e /usr/lib/softhsm/libsofthsm2.so ]] && command -v softhsm2-util >/dev/null || missing+=(softhsm2)
    # The deployment tests build their base image from Debian's packages.
    if command -v docker >/dev/null; then
        command -v debootstrap >/dev/null || missing+=(debootstrap)
    fi
    # Headless browser of the device-code sign-in test.
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    # gpg: the custodians' OpenPGP client in the custody ceremony test.
    command -v gpg >/dev/null || missing+=(gnupg)
    # promtool: the audit tests check the /metrics exposition with it.
    command -v promtool >/dev/null || missing+=(prometheus)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}"
    fi
}

install_python_sdk() {
    local req=node/tests/conformance/requirements.txt
    local stamp="$COFFER_VENV/.requirements"
    if [[ -x "$COFFER_VENV/bin/python" ]] && cmp -s "$req" "$stamp"; then
        return
    fi
    log "creating $COFFER_VENV with the Azure SDK"
    python3 -m venv "$COFFER_VENV"
    "$COFFER_VENV/bin/pip" install -q --upgrade pip
    "$COFFER_VENV/bin/pip" install -q -r "$req"
    cp "$req" "$stamp"
}

install_nextest() {
    command -v cargo-nextest >/dev/null && return
    log "installing cargo-nextest"
    cargo install --locked cargo-nextest
}

install_system_packages
install_python_sdk
install_nextest
export COFFER_PYTHON="$COFFER_VENV/bin/python"

log "building"
cargo build --workspace --all-targets

# Fuzz smoke run (fuzz/README.md): every fuzz target for 30 s over its
# committed corpus. It runs before the tests so that nextest's summary stays
# the closing line; a failure still fails the suite, after the tests ran.
# FUZZ_SMOKE=0 skips it.
fuzz_status=0
if [[ "${FUZZ_SMOKE:-1}" != 0 ]]; then
    log "fuzz smoke run"
    ./scripts/fuzz-smoke.sh || fuzz_status=$?
fi

# Deployment tests (deploy/*-test.sh, README "Deploy"): the Helm chart
# renders and validates; the systemd unit verifies and the .deb installs and
# starts in a container; the compose cluster passes its faults with an SDK
# writer. Each says SKIPPED when Docker is missing. Like the fuzz smoke run
# they come before nextest; a failure fails the suite after the tests.
# DEPLOY_TESTS=0 skips them.
deploy_status=0
if [[ "${DEPLOY_TESTS:-1}" != 0 ]]; then
    export COFFER_BIN="$CARGO_TARGET_DIR/debug/coffer"
    for t in helm-test deb-test compose-test; do
        log "deploy/$t.sh"
        "./deploy/$t.sh" || deploy_status=$?
    done
fi

log "testing"
test_status=0
cargo nextest run --workspace --no-fail-fast "$@" || test_status=$?
# nextest does not run doc tests: the client's examples are its documentation.
log "doc tests of the client"
cargo test --doc -p coffer-client || test_status=$?
if ((deploy_status)); then
    echo "a deployment test failed (see above)" >&2
    exit "$deploy_status"
fi
if ((fuzz_status)); then
    echo "the fuzz smoke run failed (see above)" >&2
    exit "$fuzz_status"
fi
exit "$test_status"
