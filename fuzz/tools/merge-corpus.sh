#!/usr/bin/env bash
# Replaces the committed corpus of each target with a small set covering
# every coverage edge of the committed corpus plus the campaign's
# (CAMPAIGN_DIR/corpus/<t>): libFuzzer -set_cover_merge=1 (the greedy
# set-cover variant of `cargo fuzz cmin`'s -merge=1) with -use_counters=0,
# so hit-count buckets do not multiply the files (a few hundred at most,
# as the repository should hold; the full corpus stays in CAMPAIGN_DIR).
# Needs the targets built (scripts/fuzz-smoke.sh or fuzz/tools/campaign.sh).
#
#   fuzz/tools/merge-corpus.sh [target…]
set -euo pipefail
cd "$(dirname "$0")/../.."

campaign="${CAMPAIGN_DIR:-/var/tmp/coffer-fuzz-campaign}"
bin="${FUZZ_TARGET_DIR:-/var/tmp/coffer-fuzz-target}/x86_64-unknown-linux-gnu/release"
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(ls fuzz/corpus)

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    sources=("fuzz/corpus/$t")
    if [[ -d "$campaign/corpus/$t" ]]; then
        # A snapshot: a running campaign deletes files it has reduced.
        cp -r "$campaign/corpus/$t" "$scratch/$t.campaign"
        sources+=("$scratch/$t.campaign")
    fi
    nice -n 10 "$bin/$t" -set_cover_merge=1 -use_counters=0 -timeout=60 "$scratch/$t" "${sources[@]}" \
        >"$scratch/$t.log" 2>&1 || { tail -n 30 "$scratch/$t.log"; exit 1; }
    rm -rf "fuzz/corpus/$t"
    mv "$scratch/$t" "fuzz/corpus/$t"
    printf '%-18s %5d files %8s\n' "$t" "$(ls "fuzz/corpus/$t" | wc -l)" \
        "$(du -sh "fuzz/corpus/$t" | cut -f1)"
done
