//! Run reports: `results.md`, `results.json`, `history.json`,
//! `health.json` (every health sample) and `timeline.svg` in the output
//! directory.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::Context;

use crate::checker::Verdict;
use crate::runner::RunReport;

/// Writes every report file of `report` into `dir`.
pub fn write(report: &RunReport, dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(dir.join("results.md"), markdown(report))?;
    fs::write(dir.join("results.json"), serde_json::to_vec_pretty(report)?)?;
    fs::write(
        dir.join("history.json"),
        serde_json::to_vec(&report.history)?,
    )?;
    fs::write(
        dir.join("health.json"),
        serde_json::to_vec(&report.samples)?,
    )?;
    fs::write(dir.join("timeline.svg"), crate::plot::svg(report)?)?;
    Ok(())
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0} ms")
    } else {
        "never".into()
    }
}

/// The one-row summary table header, shared with suite reports.
pub const TABLE_HEADER: &str = "| workload | nemesis | nodes | ok | fail | info | checks | written | snapshot installs | cut-off 5xx | longest unavailable | recovery after heal | p50 | p99 | seed |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

/// One table row for `report`.
pub fn table_row(r: &RunReport) -> String {
    let c = &r.config;
    let checks: Vec<String> = r
        .checks
        .iter()
        .map(|k| format!("{} {}", k.name, k.verdict.label()))
        .collect();
    format!(
        "| {:?} | {:?} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} ms | {:.1} ms | {} |\n",
        c.workload,
        c.nemesis,
        c.nodes,
        r.stats.ok,
        r.stats.fail,
        r.stats.info,
        checks.join(", "),
        mb(r.stats.written_bytes),
        installs(r),
        cut_off(r),
        ms(r.stats.longest_unavailable_ms),
        r.stats.recovery_ms.map_or("-".into(), ms),
        r.stats.p50_ms,
        r.stats.p99_ms,
        c.seed
    )
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// `n2×3 n3×1`: snapshot installs per node that had any.
fn installs(r: &RunReport) -> String {
    let per: Vec<String> = r
        .snapshots
        .iter()
        .filter(|s| !s.installs.is_empty())
        .map(|s| format!("n{}×{}", s.node_id, s.installs.len()))
        .collect();
    if per.is_empty() {
        "none".into()
    } else {
        per.join(" ")
    }
}

/// `9/9`: answers of cut-off nodes that said 5xx, of all their answers.
fn cut_off(r: &RunReport) -> String {
    let h = &r.health;
    format!("{}/{}", h.cut_off_unhealthy, h.cut_off_answers)
}

/// The Markdown report, with counterexamples of failed checks.
pub fn markdown(r: &RunReport) -> String {
    let mut out = String::new();
    let verdict = if r.passed() { "PASS" } else { "FAIL" };
    let _ = writeln!(out, "# Run {verdict}\n");
    out.push_str(TABLE_HEADER);
    out.push_str(&table_row(r));
    let _ = writeln!(out, "\n## Faults\n");
    for f in &r.faults {
        let _ = writeln!(
            out,
            "- {:.2}s – {:.2}s: {}",
            f.start_us as f64 / 1e6,
            f.end_us as f64 / 1e6,
            f.name
        );
    }
    let s = &r.stats;
    let _ = writeln!(
        out,
        "\n## Values\n\n{} written in acknowledged writes, {} read back; value sizes \
         median {} B, largest {} B (drawn log-uniformly from 100 B to 25 KiB).",
        mb(s.written_bytes),
        mb(s.read_bytes),
        s.value_p50_bytes,
        s.value_max_bytes
    );
    let _ = writeln!(
        out,
        "\n## Snapshots\n\n`raft_snapshot_logs = {}`.\n\n| node | snapshot index at end | applied index at end | built | installed from a leader (at index) |\n|---|---|---|---|---|",
        r.config.snapshot_logs
    );
    for n in &r.snapshots {
        let at: Vec<String> = n.installs.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "| n{} | {} | {} | {} | {} {} |",
            n.node_id,
            n.snapshot_index,
            n.applied_index,
            n.builds,
            n.installs.len(),
            if at.is_empty() {
                String::new()
            } else {
                format!("({})", at.join(", "))
            }
        );
    }
    let h = &r.health;
    let statuses: Vec<String> = h
        .by_status
        .iter()
        .map(|(code, n)| format!("{code}×{n}"))
        .collect();
    let _ = writeln!(
        out,
        "\n## Health\n\n{} samples of `/v1/sys/health` (every {} ms per node), {} answered \
         ({}). Answers from nodes that could reach no majority for the whole silence limit \
         ({} ms) plus {:.1} s before: {}, of which {} said 5xx with a problem and {} were 429 \
         from a minority follower still reaching its old leader. 5xx while no fault was in \
         effect: {}. Violations: {}.",
        h.samples,
        crate::observe::SAMPLE_EVERY.as_millis(),
        h.answered,
        statuses.join(", "),
        r.config.max_leader_silence_ms,
        r.config.health_slack.as_secs_f64(),
        h.cut_off_answers,
        h.cut_off_unhealthy,
        h.minority_followers_429,
        h.unhealthy_without_fault,
        h.violations
    );
    let _ = writeln!(out, "\n## Warnings and errors in node logs\n");
    let mut any = false;
    for (id, groups) in &r.warnings {
        for (line, n) in groups {
            any = true;
            let _ = writeln!(out, "- n{id}: {n}× `{line}`");
        }
    }
    if !any {
        let _ = writeln!(out, "none");
    }
    if !r.lags.is_empty() {
        let _ = writeln!(out, "\n## Leader kills while a follower lags\n");
        for l in &r.lags {
            let _ = writeln!(
                out,
                "- n{} {} at applied {} for {:.1} s until the leader's snapshot reached {} \
                 (purged past it: {}); back in contact after {}; leader n{} (term {}) killed at {:.2} s with n{} at \
                 applied {} of the leader's {} (still catching up: {}); new leader {} after {} \
                 (term {})",
                l.lagging + 1,
                l.how,
                l.lagging_applied_before,
                l.held_ms / 1e3,
                l.leader_snapshot_at_resume,
                l.purged_past,
                l.recontact_ms.map_or("no contact in 3 s".to_string(), ms),
                l.killed + 1,
                l.terms.0,
                l.kill_us as f64 / 1e6,
                l.lagging + 1,
                l.lagging_applied_after_kill
                    .map_or("?".to_string(), |a| a.to_string()),
                l.leader_applied_at_resume,
                l.still_catching_up(),
                l.new_leader
                    .map_or("none".to_string(), |n| format!("n{}", n + 1)),
                l.elected_after_ms.map_or("-".to_string(), ms),
                l.terms.1.map_or("?".to_string(), |t| t.to_string()),
            );
        }
    }
    for c in &r.checks {
        if let Verdict::Fail(m) | Verdict::Unknown(m) = &c.verdict {
            let _ = writeln!(
                out,
                "\n## {} {}\n\n```\n{m}\n```",
                c.name,
                c.verdict.label()
            );
        }
    }
    if !r.passed() {
        let _ = writeln!(out, "\nNode logs kept in `{}`.", r.cluster_dir.display());
    }
    let _ = writeln!(out, "\n![latency and throughput over time](timeline.svg)");
    out
}
