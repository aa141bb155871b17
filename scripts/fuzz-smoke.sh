#!/usr/bin/env bash
# Smoke run of the fuzz targets (fuzz/, see fuzz/README.md): builds them and
# runs each one for FUZZ_SECONDS (default 30, at most 60) over its committed
# corpus. New corpus entries go to a temporary directory, so the checkout is
# left as it was; a crash fails the script and its input stays in
# fuzz/artifacts/<target>/ (with the command to reproduce it above it).
#
#   scripts/fuzz-smoke.sh                 # every target
#   scripts/fuzz-smoke.sh jwk_import      # some targets
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
((seconds <= 60)) || { echo "FUZZ_SECONDS must be at most 60" >&2; exit 2; }
# Fuzz builds are large (sanitizer + debug assertions): keep them out of the
# checkout and apart from the normal build cache.
target_dir="${FUZZ_TARGET_DIR:-/var/tmp/coffer-fuzz-target}"
# cargo-fuzz needs nightly flags (-Zsanitizer); the stable toolchain
# accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1

log() { printf '\n== %s\n' "$*"; }

install_cargo_fuzz() {
    command -v cargo-fuzz >/dev/null && return
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
}

install_cargo_fuzz
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)

log "building fuzz targets (${targets[*]})"
for t in "${targets[@]}"; do
    cargo fuzz build --fuzz-dir fuzz --target-dir "$target_dir" "$t"
done

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
    log "fuzzing $t for ${seconds}s"
    mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
    dict=()
    [[ -f "fuzz/dict/$t.dict" ]] && dict=("-dict=fuzz/dict/$t.dict")
    if ! cargo fuzz run --fuzz-dir fuzz --target-dir "$target_dir" "$t" \
        "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=60 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" "${dict[@]}" 2>"$scratch/$t.log"; then
        tail -n 60 "$scratch/$t.log"
        failed+=("$t")
    else
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done)' "$scratch/$t.log" || true
    fi
done

if ((${#failed[@]})); then
    echo "fuzz smoke: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets ran ${seconds}s each without a crash"
