//! The result table: Markdown, JSON and an SVG plot.

use std::fmt::Write as _;

use coffer_client::load::LoadReport;
use serde::Serialize;

/// One side of a row: a measured load run and the CPU it cost the servers.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    /// The load measurements (averaged over the interleaved rounds).
    #[serde(flatten)]
    pub report: LoadReport,
    /// Server CPU seconds per operation (user + system, from `/proc`).
    pub cpu_s_per_op: f64,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
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

/// SVG line plot of throughput vs concurrency for rows named `series_row`
/// (Coffer and its peer as two lines, log2 x axis).
pub fn svg(rows: &[Row], series_row: &str, title: &str) -> String {
    let pts: Vec<&Row> = rows.iter().filter(|r| r.name == series_row).collect();
    let series = |peer: bool| -> Vec<(f64, f64)> {
        pts.iter()
            .filter_map(|r| {
                let m = if peer {
                    r.peer.as_ref()
                } else {
                    r.coffer.as_ref()
                }?;
                Some(((r.concurrency.max(1) as f64).log2(), m.report.throughput))
            })
            .collect()
    };
    let (coffer, peer) = (series(false), series(true));
    let xmax = coffer.iter().chain(&peer).map(|p| p.0).fold(1.0, f64::max);
    let ymax = coffer.iter().chain(&peer).map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let (w, h, l, b) = (640.0, 400.0, 70.0, 50.0);
    let px = |x: f64| l + x / xmax * (w - l - 20.0);
    let py = |y: f64| h - b - y / ymax * (h - b - 30.0);
    let line = |s: &[(f64, f64)], color: &str| {
        let d: Vec<String> = s
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let dots: String = s
            .iter()
            .map(|(x, y)| {
                format!(
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    px(*x),
                    py(*y)
                )
            })
            .collect();
        format!(
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>{dots}"#,
            d.join(" ")
        )
    };
    let mut ticks = String::new();
    for p in &pts {
        let x = (p.concurrency.max(1) as f64).log2();
        let _ = write!(
            ticks,
            r#"<text x="{:.1}" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
            px(x),
            h - b + 18.0,
            p.concurrency
        );
    }
    for i in 0..=4 {
        let y = ymax * f64::from(i) / 4.0;
        let _ = write!(
            ticks,
            r##"<text x="{}" y="{:.1}" font-size="12" text-anchor="end">{:.0}</text><line x1="{l}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            l - 6.0,
            py(y) + 4.0,
            y,
            w - 20.0,
            py(y),
            py(y)
        );
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{tx}" y="20" font-size="15" text-anchor="middle">{title}</text>
{ticks}
<text x="{tx}" y="{xl}" font-size="12" text-anchor="middle">concurrent clients</text>
<text x="15" y="{yl}" font-size="12" transform="rotate(-90 15 {yl})" text-anchor="middle">ops/s</text>
{c}{p}
<rect x="{lx}" y="34" width="12" height="12" fill="#c0392b"/><text x="{lt}" y="45" font-size="12">Coffer (3 nodes)</text>
<rect x="{lx}" y="52" width="12" height="12" fill="#2471a3"/><text x="{lt}" y="63" font-size="12">etcd (3 members)</text>
</svg>
"##,
        tx = w / 2.0,
        xl = h - 12.0,
        yl = h / 2.0,
        c = line(&coffer, "#c0392b"),
        p = line(&peer, "#2471a3"),
        lx = l + 10.0,
        lt = l + 28.0,
    )
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
        assert!(svg(&rows, "write", "t").contains("<polyline"));
    }
}
