//! Run reports: `results.md`, `results.json`, `history.json` and
//! `latency.svg` in the output directory.

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
    fs::write(dir.join("latency.svg"), crate::plot::svg(report))?;
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
pub const TABLE_HEADER: &str = "| workload | nemesis | nodes | ok | fail | info | checks | longest unavailable | recovery after heal | p50 | p99 | seed |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n";

/// One table row for `report`.
pub fn table_row(r: &RunReport) -> String {
    let c = &r.config;
    let checks: Vec<String> = r
        .checks
        .iter()
        .map(|k| format!("{} {}", k.name, k.verdict.label()))
        .collect();
    format!(
        "| {:?} | {:?} | {} | {} | {} | {} | {} | {} | {} | {:.1} ms | {:.1} ms | {} |\n",
        c.workload,
        c.nemesis,
        c.nodes,
        r.stats.ok,
        r.stats.fail,
        r.stats.info,
        checks.join(", "),
        ms(r.stats.longest_unavailable_ms),
        r.stats.recovery_ms.map_or("-".into(), ms),
        r.stats.p50_ms,
        r.stats.p99_ms,
        c.seed
    )
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
    let _ = writeln!(out, "\n![latency](latency.svg)");
    out
}
