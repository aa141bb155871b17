#!/usr/bin/env bash
# The long fuzz campaign: every target, one process at a time at nice NICE (19),
# in rounds of ROUND wall seconds, until each has had CPU_GOAL seconds of
# CPU time (user + sys, measured by /usr/bin/time -v). Resumable: the
# corpora and the per-round numbers live in CAMPAIGN_DIR and a restart
# continues where it stopped.
#
#   fuzz/tools/campaign.sh [target…]      # run (in the background: nohup … &)
#   fuzz/tools/campaign.sh --summary      # totals per target
#
# Per target, CAMPAIGN_DIR holds corpus/<t>/ (seeded from fuzz/corpus/<t>),
# artifacts/<t>/ (crashes, timeouts, OOMs), <t>.log (libFuzzer output),
# <t>.stopped when a round failed at once (fix, remove it, restart).
# The per-round numbers are kept in the checkout, fuzz/campaign/<t>.tsv, one
# line per round, and committed: machines are replaced between sessions,
# and the campaign's CPU time must add up across them.
#   end_time  wall_s  cpu_s  execs  corpus_files  artifacts  exit_code
set -uo pipefail
cd "$(dirname "$0")/../.."

dir="${CAMPAIGN_DIR:-/var/tmp/coffer-fuzz-campaign}"
goal="${CPU_GOAL:-3600}"
rounds_dir="${ROUNDS_DIR:-fuzz/campaign}"
round="${ROUND:-900}"
# 19 lets it take only idle CPU; a lower value when the campaign must progress
# beside builds (it never runs more than one process, so it takes at most one core).
niceness="${NICE:-19}"
target_dir="${FUZZ_TARGET_DIR:-/var/tmp/coffer-fuzz-target}"
bin="$target_dir/x86_64-unknown-linux-gnu/release"
export RUSTC_BOOTSTRAP=1

cpu_of() { awk -F'\t' '{s += $3} END {printf "%d", s}' "$rounds_dir/$1.tsv" 2>/dev/null || echo 0; }

summary() {
    printf '%-18s %7s %9s %12s %7s %9s\n' target rounds cpu_s execs corpus artifacts
    for f in "$rounds_dir"/*.tsv; do
        [[ -e "$f" ]] || continue
        t="$(basename "$f" .tsv)"
        awk -F'\t' -v t="$t" '{r++; c += $3; e += $4; corp = $5; a = $6}
            END {printf "%-18s %7d %9d %12d %7d %9d\n", t, r, c, e, corp, a}' "$f"
    done
}

if [[ "${1:-}" == "--summary" ]]; then
    summary
    exit 0
fi

targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
mkdir -p "$dir" "$rounds_dir"
echo $$ >"$dir/campaign.pid"
cargo fuzz build --fuzz-dir fuzz --target-dir "$target_dir" >"$dir/build.log" 2>&1 || {
    echo "fuzz build failed, see $dir/build.log" >&2
    exit 1
}

for t in "${targets[@]}"; do
    mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t"
    if [[ -z "$(ls -A "$dir/corpus/$t")" ]]; then
        cp fuzz/corpus/"$t"/* "$dir/corpus/$t/"
    fi
done

while :; do
    pending=0
    for t in "${targets[@]}"; do
        (($(cpu_of "$t") < goal)) || continue
        # A target that fails at once (a crash in its corpus) waits for a fix.
        [[ -e "$dir/$t.stopped" ]] && continue
        pending=1
        dict=()
        [[ -f "fuzz/dict/$t.dict" ]] && dict=("-dict=fuzz/dict/$t.dict")
        echo "=== round $(date -u +%FT%TZ)" >>"$dir/$t.log"
        /usr/bin/time -v -o "$dir/$t.time" nice -n "$niceness" "$bin/$t" "$dir/corpus/$t" \
            -max_total_time="$round" -timeout=60 -print_final_stats=1 \
            -artifact_prefix="$dir/artifacts/$t/" "${dict[@]}" >>"$dir/$t.log" 2>&1
        code=$?
        cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%d", s}' "$dir/$t.time")
        wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0;
            for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%d", s}' "$dir/$t.time")
        execs=$(grep -a 'stat::number_of_executed_units' "$dir/$t.log" | tail -1 | awk '{print $2}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "${wall:-0}" "${cpu:-0}" \
            "${execs:-0}" "$(ls "$dir/corpus/$t" | wc -l)" "$(ls "$dir/artifacts/$t" | wc -l)" \
            "$code" >>"$rounds_dir/$t.tsv"
        if ((code != 0 && ${wall:-0} < 60)); then
            echo "$t failed within a minute; skipped until $dir/$t.stopped is removed" >>"$dir/$t.log"
            touch "$dir/$t.stopped"
        fi
    done
    ((pending)) || break
done
summary
