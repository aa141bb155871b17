//! The charts of the Jepsen reports and of the benchmark, drawn with
//! `plotters` into SVG strings (its SVG backend writes text as `<text>`, so
//! no system fonts are needed).
//!
//! A run's chart has two panels on one time axis: latency per operation
//! (log scale, coloured by outcome) above, and acknowledged and failed
//! operations per second below, with every fault window shaded in both — a
//! reader sees at once when a fault began and what it did to each. The
//! benchmark's chart has one panel per row family measured at several client
//! counts: Coffer's and the peer's throughput against clients.

use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use crate::bench::scale::ScalePoint;
use crate::bench::Row;
use crate::checker::stats::buckets;
use crate::history::{FaultWindow, Op, Outcome};
use crate::runner::RunReport;

const OK: RGBColor = RGBColor(0x2e, 0x75, 0xb6);
const INFO: RGBColor = RGBColor(0xff, 0xa5, 0x00);
const FAIL: RGBColor = RGBColor(0xc0, 0x00, 0x00);
const FAULT: RGBColor = RGBColor(0xf4, 0xb1, 0x83);
const COFFER: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const PEER: RGBColor = RGBColor(0x24, 0x71, 0xa3);

/// Latency axis bounds, ms (1 ms to 10 s; slower ops are drawn at the top).
const LAT_MIN_MS: f64 = 0.1;
const LAT_MAX_MS: f64 = 10_000.0;

/// Renders the two-panel timeline of run `r` (latency above, throughput
/// below, faults shaded).
pub fn svg(r: &RunReport) -> anyhow::Result<String> {
    timeline(
        &format!("{:?} × {:?}", r.config.workload, r.config.nemesis),
        &Run {
            history: &r.history,
            faults: &r.faults,
            load_end_us: r.load_end_us,
        },
    )
}

/// What a timeline is drawn from.
struct Run<'a> {
    history: &'a [Op],
    faults: &'a [FaultWindow],
    load_end_us: u64,
}

fn timeline(title: &str, r: &Run<'_>) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, 620)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 16)).map_err(err)?;
        let (top, bottom) = root.split_vertically(360);
        let end_s = (r.load_end_us as f64 / 1e6).max(1.0);
        latency_panel(&top, r, end_s)?;
        throughput_panel(&bottom, r, end_s)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// Fault windows in seconds, with their names.
fn windows<'a>(r: &Run<'a>) -> Vec<(f64, f64, &'a str)> {
    r.faults
        .iter()
        .map(|f| {
            let a = f.start_us as f64 / 1e6;
            (a, (f.end_us as f64 / 1e6).max(a + 0.05), f.name.as_str())
        })
        .collect()
}

fn latency_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    r: &Run<'_>,
    end_s: f64,
) -> anyhow::Result<()> {
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(25)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end_s, (LAT_MIN_MS..LAT_MAX_MS).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .y_desc("latency per op (ms, log)")
        .y_label_formatter(&|ms| {
            if *ms < 1.0 {
                format!("{ms:.1}")
            } else {
                format!("{ms:.0}")
            }
        })
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(windows(r).into_iter().map(|(a, b, _)| {
            Rectangle::new([(a, LAT_MIN_MS), (b, LAT_MAX_MS)], FAULT.mix(0.35).filled())
        }))
        .map_err(err)?
        .label("fault active")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], FAULT.filled()));
    for (outcome, color, label) in [
        (Outcome::Ok, OK, "ok"),
        (Outcome::Info, INFO, "info (outcome unknown)"),
        (Outcome::Fail, FAIL, "failed"),
    ] {
        let points = r
            .history
            .iter()
            .filter(|op| op.outcome == outcome)
            .map(|op| {
                let lat_ms = (op.complete_us.saturating_sub(op.invoke_us)) as f64 / 1000.0;
                Circle::new(
                    (
                        op.complete_us as f64 / 1e6,
                        lat_ms.clamp(LAT_MIN_MS, LAT_MAX_MS),
                    ),
                    1,
                    color.mix(0.6).filled(),
                )
            });
        chart
            .draw_series(points)
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 6, y), 3, color.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn throughput_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    r: &Run<'_>,
    end_s: f64,
) -> anyhow::Result<()> {
    let tput = buckets(r.history, 1_000_000, r.load_end_us);
    let max = tput
        .iter()
        .map(|b| b.ok_per_s.max(b.err_per_s))
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end_s, 0.0..max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time since the load started (s)")
        .y_desc("ops per second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    let faults = windows(r);
    chart
        .draw_series(
            faults
                .iter()
                .map(|&(a, b, _)| Rectangle::new([(a, 0.0), (b, max)], FAULT.mix(0.35).filled())),
        )
        .map_err(err)?;
    chart
        .draw_series(
            faults
                .iter()
                .map(|&(a, _, name)| Text::new(name.to_string(), (a, max), ("sans-serif", 10))),
        )
        .map_err(err)?;
    for (color, label, ok) in [
        (OK, "acknowledged/s", true),
        (FAIL, "failed or unknown/s", false),
    ] {
        let line = tput.iter().map(|b| {
            let v = if ok { b.ok_per_s } else { b.err_per_s };
            (b.t_s + 0.5, v)
        });
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// Renders throughput against concurrent clients, one panel per row family
/// (rows sharing a name) measured at two or more client counts: Coffer's
/// line and the peer's, log2 x axis. `None` when no family has two points.
pub fn throughput_vs_clients(rows: &[Row]) -> anyhow::Result<Option<String>> {
    let mut families: Vec<&str> = Vec::new();
    for r in rows {
        if !families.contains(&r.name.as_str())
            && rows.iter().filter(|o| o.name == r.name).count() >= 2
        {
            families.push(&r.name);
        }
    }
    if families.is_empty() {
        return Ok(None);
    }
    let mut out = String::new();
    {
        let height = 340 * families.len() as u32;
        let root = SVGBackend::with_string(&mut out, (760, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        for (area, family) in root.split_evenly((families.len(), 1)).iter().zip(&families) {
            family_panel(area, rows, family)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Some(out))
}

fn family_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    rows: &[Row],
    family: &str,
) -> anyhow::Result<()> {
    let members: Vec<&Row> = rows.iter().filter(|r| r.name == family).collect();
    let series = |peer: bool| -> Vec<(f64, f64)> {
        members
            .iter()
            .filter_map(|r| {
                let m = if peer {
                    r.peer.as_ref()
                } else {
                    r.coffer.as_ref()
                }?;
                Some((r.concurrency.max(1) as f64, m.report.throughput))
            })
            .collect()
    };
    let peer_name = members.first().map_or("peer", |r| r.peer_name.as_str());
    lines_panel(
        area,
        family,
        ("concurrent clients", "ops per second"),
        &[
            ("Coffer", COFFER, series(false)),
            (peer_name, PEER, series(true)),
        ],
    )
}

/// Renders the scaling run: throughput (fill and reads) against the number
/// of secrets above, the restarted node's RSS and data dir below; both on a
/// log x axis so each tenfold step is one step right.
pub fn scale(points: &[ScalePoint]) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (760, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (top, bottom) = root.split_vertically(320);
        let series = |f: &dyn Fn(&ScalePoint) -> f64| -> Vec<(f64, f64)> {
            points.iter().map(|p| (p.secrets as f64, f(p))).collect()
        };
        let mib = |b: u64| b as f64 / 1_048_576.0;
        lines_panel(
            &top,
            "Throughput as the vault grows (3 nodes, 256 B values)",
            ("secrets", "ops per second"),
            &[
                (
                    "fill (sets), ops/s",
                    COFFER,
                    series(&|p| p.fill.report.throughput),
                ),
                (
                    "linearizable reads, ops/s",
                    PEER,
                    series(&|p| p.read.report.throughput),
                ),
            ],
        )?;
        lines_panel(
            &bottom,
            "Memory and disk as the vault grows",
            ("secrets", "MiB"),
            &[
                (
                    "RSS of a restarted node, MiB",
                    COFFER,
                    series(&|p| mib(p.rss_bytes)),
                ),
                ("its data dir, MiB", PEER, series(&|p| mib(p.disk_bytes))),
            ],
        )?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// A labelled line of a benchmark panel: legend text, colour, (x, y) points.
type Series<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);

/// One benchmark panel: lines with dots against a log x axis (each doubling
/// or tenfold step the same width), y from 0, a legend at the upper left.
fn lines_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[Series<'_>],
) -> anyhow::Result<()> {
    let xs = || series.iter().flat_map(|(_, _, s)| s.iter().map(|p| p.0));
    let xmin = xs().fold(f64::INFINITY, f64::min).clamp(1.0, f64::MAX) / 1.5;
    let xmax = xs().fold(2.0, f64::max) * 1.5;
    let ymax = series
        .iter()
        .flat_map(|(_, _, s)| s.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(65)
        .build_cartesian_2d((xmin..xmax).log_scale(), 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    for (label, color, points) in series {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Draws the series labels of `chart` in a half-transparent box at `at`.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    at: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

/// plotters' drawing errors borrow nothing but are generic over the
/// backend's error; one conversion keeps the call sites short.
fn err<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}

#[cfg(test)]
mod tests {
    use coffer_client::load::LoadReport;

    use super::*;
    use crate::bench::Measure;
    use crate::history::OpKind;

    /// Whether the chart has a text element saying exactly `text` (plotters
    /// puts the text on its own line inside `<text>`).
    fn has_text(svg: &str, text: &str) -> bool {
        svg.lines().any(|l| l.trim() == text)
    }

    fn row(name: &str, c: usize, coffer: f64, peer: f64) -> Row {
        let m = |tp| Measure {
            report: LoadReport {
                throughput: tp,
                ..LoadReport::default()
            },
            cpu_s_per_op: 0.0,
        };
        Row {
            name: name.into(),
            concurrency: c,
            coffer: Some(m(coffer)),
            peer_name: format!("{name} peer"),
            peer: Some(m(peer)),
            target: None,
            note: String::new(),
        }
    }

    #[test]
    fn one_panel_per_family_with_several_client_counts() {
        let rows = vec![
            row("write", 1, 400.0, 900.0),
            row("write", 64, 1900.0, 6000.0),
            row("read", 1, 3000.0, 1600.0),
            row("read", 64, 11000.0, 7800.0),
            row("sign", 2, 4000.0, 4300.0),
        ];
        let svg = throughput_vs_clients(&rows).unwrap().unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in [
            "write",
            "write peer",
            "read",
            "read peer",
            "Coffer",
            "concurrent clients",
        ] {
            assert!(has_text(&svg, text), "no {text:?} in the chart");
        }
        // A row measured at one client count has nothing to draw against.
        assert!(!has_text(&svg, "sign"));
        assert!(throughput_vs_clients(&rows[4..]).unwrap().is_none());
    }

    #[test]
    fn scale_chart_has_both_panels() {
        let m = |tp| Measure {
            report: LoadReport {
                throughput: tp,
                ..LoadReport::default()
            },
            cpu_s_per_op: 0.0,
        };
        let points: Vec<ScalePoint> = [10_000u64, 100_000]
            .iter()
            .map(|&n| ScalePoint {
                secrets: n,
                fill: m(1500.0),
                read: m(9000.0),
                serving_s: 0.5,
                first_read_s: 0.1,
                rss_bytes: n * 3000,
                disk_bytes: n * 6000,
                disk_parts: vec![("raft/state.redb".into(), n * 6000)],
            })
            .collect();
        let svg = scale(&points).unwrap();
        for text in [
            "fill (sets), ops/s",
            "linearizable reads, ops/s",
            "RSS of a restarted node, MiB",
            "its data dir, MiB",
            "secrets",
        ] {
            assert!(has_text(&svg, text), "no {text:?} in the chart");
        }
        let md = crate::bench::report::scale_markdown(&points);
        assert!(md.contains("| 100000 | 1500 |"), "{md}");
        assert!(md.contains("| 23.4 |"), "{md}");
    }

    #[test]
    fn timeline_has_both_panels_and_names_each_fault() {
        let op = |t_ms: u64, lat_ms: u64, outcome| Op {
            process: 0,
            node: None,
            kind: OpKind::Read {
                key: "k".into(),
                value: None,
            },
            invoke_us: t_ms * 1000,
            complete_us: (t_ms + lat_ms) * 1000,
            outcome,
            error: None,
            bytes: 0,
            malformed: None,
        };
        let history: Vec<Op> = (0..200)
            .map(|i| op(i * 50, 2 + i % 7, Outcome::Ok))
            .chain([
                op(4_000, 1_500, Outcome::Info),
                op(4_100, 900, Outcome::Fail),
            ])
            .collect();
        let faults = [FaultWindow {
            name: "kill leader".into(),
            start_us: 3_900_000,
            end_us: 6_000_000,
        }];
        let svg = timeline(
            "register × kill",
            &Run {
                history: &history,
                faults: &faults,
                load_end_us: 10_000_000,
            },
        )
        .unwrap();
        for text in [
            "register × kill",
            "latency per op (ms, log)",
            "ops per second",
            "kill leader",
            "fault active",
            "acknowledged/s",
            "failed or unknown/s",
        ] {
            assert!(has_text(&svg, text), "no {text:?} in the chart");
        }
        // Both panels shade the fault window.
        assert!(svg.matches("fill=\"#F4B183\"").count() >= 2, "{svg}");
    }
}
