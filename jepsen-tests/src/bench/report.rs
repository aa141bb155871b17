//! The result table: Markdown and JSON (the chart is drawn by `crate::plot`).

use std::fmt::Write as _;

use coffer_client::load::LoadReport;
use serde::{Deserialize, Serialize};

/// One side of a row: a measured load run and the CPU it cost the servers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measure {
    /// The load measurements (averaged over the interleaved rounds).
    #[serde(flatten)]
    pub report: LoadReport,
    /// Server CPU seconds per operation (user + system, from `/proc`).
    pub cpu_s_per_op: f64,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Workload, e.g. `write 256 B`.
    pub name: String,
    /// Concurrent clients / threads.
    pub concurrency: usize,
    /// Coffer's measurement; `None` when pending or failed (see `note`).
    pub coffer: Option<Measure>,
    /// The peer it is compared with, e.g. `etcd put`.
    pub peer_name: String,
    /// The peer's measurement.
    pub peer: Option<Measure>,
    /// Target ratio Coffer/peer throughput from the issue, if any.
    pub target: Option<f64>,
    /// Free text: pending reasons, failover and restart figures.
    pub note: String,
}

impl Row {
    /// Coffer/peer throughput ratio when both sides ran.
    pub fn ratio(&self) -> Option<f64> {
        let (c, p) = (self.coffer.as_ref()?, self.peer.as_ref()?);
        (p.report.throughput > 0.0).then(|| c.report.throughput / p.report.throughput)
    }
}

/// Averages rounds of the same measurement (ABAB interleaving).
pub fn average(rounds: &[Measure]) -> Option<Measure> {
    let n = rounds.len() as f64;
    let first = rounds.first()?;
    let avg = |f: &dyn Fn(&Measure) -> f64| rounds.iter().map(f).sum::<f64>() / n;
    let avg_u = |f: &dyn Fn(&Measure) -> u64| (rounds.iter().map(f).sum::<u64>() as f64 / n) as u64;
    Some(Measure {
        report: LoadReport {
            concurrency: first.report.concurrency,
            ops: rounds.iter().map(|m| m.report.ops).sum(),
            errors: rounds.iter().map(|m| m.report.errors).sum(),
            issued: rounds.iter().map(|m| m.report.issued).sum(),
            elapsed_s: rounds.iter().map(|m| m.report.elapsed_s).sum(),
            throughput: avg(&|m| m.report.throughput),
            p50_us: avg_u(&|m| m.report.p50_us),
            p99_us: avg_u(&|m| m.report.p99_us),
            p999_us: avg_u(&|m| m.report.p999_us),
            max_us: rounds.iter().map(|m| m.report.max_us).max().unwrap_or(0),
            first_error: rounds.iter().find_map(|m| m.report.first_error.clone()),
        },
        cpu_s_per_op: avg(&|m| m.cpu_s_per_op),
    })
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1e3)
}

fn cells(m: Option<&Measure>) -> [String; 3] {
    match m {
        Some(m) => [
            format!("{:.0}", m.report.throughput),
            format!(
                "{}/{}/{}",
                ms(m.report.p50_us),
                ms(m.report.p99_us),
                ms(m.report.p999_us)
            ),
            format!("{:.1}", m.cpu_s_per_op * 1e6),
        ],
        None => ["–".into(), "–".into(), "–".into()],
    }
}

/// The Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | c | Coffer ops/s | Coffer p50/p99/p999 ms | Coffer CPU µs/op | peer | peer ops/s | peer p50/p99/p999 ms | peer CPU µs/op | Coffer/peer | target | note |\n\
         |---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---|\n",
    );
    for r in rows {
        let [ct, cl, cc] = cells(r.coffer.as_ref());
        let [pt, pl, pc] = cells(r.peer.as_ref());
        let ratio = r.ratio().map_or("–".into(), |x| format!("{x:.2}×"));
        let target = match (r.target, r.ratio()) {
            (Some(t), Some(x)) if x >= t => format!("≥ {t}× met"),
            (Some(t), Some(_)) => format!("≥ {t}× **missed**"),
            (Some(t), None) => format!("≥ {t}×"),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {ct} | {cl} | {cc} | {} | {pt} | {pl} | {pc} | {ratio} | {target} | {} |",
            r.name,
            r.concurrency,
            r.peer_name,
            r.note.replace('|', "/")
        );
    }
    out
}

/// The scaling run's table: one line per size.
pub fn scale_markdown(points: &[super::scale::ScalePoint]) -> String {
    let mut out = String::from(
        "\n| secrets (3 nodes, 256 B) | fill ops/s | fill p99 ms | read ops/s (64 clients) | read p99 ms | restart → serving s | unseal → first read s | RSS MiB | data dir MiB | bytes per live value byte |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in points {
        let mib = |b: u64| b as f64 / 1_048_576.0;
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {:.0} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
            p.secrets,
            p.fill.report.throughput,
            ms(p.fill.report.p99_us),
            p.read.report.throughput,
            ms(p.read.report.p99_us),
            p.serving_s,
            p.first_read_s,
            mib(p.rss_bytes),
            mib(p.disk_bytes),
            p.disk_per_value_byte()
        );
    }
    for p in points.iter().filter(|p| p.fill.report.errors > 0) {
        let _ = write!(
            out,
            "\n{} secrets: {} of the fill's writes failed, first: {}.",
            p.secrets,
            p.fill.report.errors,
            p.fill.report.first_error.as_deref().unwrap_or("?")
        );
    }
    for p in points.iter().filter(|p| !p.disk_parts.is_empty()) {
        let parts: Vec<String> = p
            .disk_parts
            .iter()
            .take(6)
            .map(|(name, bytes)| format!("`{name}` {:.1}", *bytes as f64 / 1_048_576.0))
            .collect();
        let _ = write!(
            out,
            "\n{} secrets, data dir MiB: {}.",
            p.secrets,
            parts.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(tp: f64) -> Measure {
        Measure {
            report: LoadReport {
                throughput: tp,
                p50_us: 1500,
                ..LoadReport::default()
            },
            cpu_s_per_op: 0.0002,
        }
    }

    #[test]
    fn table_shows_ratio_and_target() {
        let rows = vec![Row {
            name: "write".into(),
            concurrency: 64,
            coffer: Some(m(300.0)),
            peer_name: "etcd put".into(),
            peer: Some(m(100.0)),
            target: Some(1.5),
            note: String::new(),
        }];
        let md = markdown(&rows);
        assert!(md.contains("| write | 64 | 300 | 1.50/"), "{md}");
        assert!(md.contains("3.00×"));
        assert!(md.contains("met"));
    }
}
