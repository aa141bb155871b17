//! A hand-written SVG: latency of every operation (dots, log scale, coloured
//! by outcome) and acknowledged throughput per second (line), with fault
//! windows shaded.

use std::fmt::Write as _;

use crate::checker::stats::buckets;
use crate::history::Outcome;
use crate::runner::RunReport;

const W: f64 = 900.0;
const H: f64 = 420.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 60.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

/// Renders the plot of `r`.
pub fn svg(r: &RunReport) -> String {
    let end_s = (r.load_end_us as f64 / 1e6).max(1.0);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |t_s: f64| LEFT + pw * (t_s / end_s).clamp(0.0, 1.0);
    // Latency on a log scale from 1 ms to 10 s.
    let y_lat = |ms: f64| TOP + ph * (1.0 - (ms.max(1.0).log10() / 4.0).clamp(0.0, 1.0));
    let tput = buckets(&r.history, 1_000_000, r.load_end_us);
    let max_t = tput.iter().map(|b| b.ok_per_s).fold(1.0, f64::max);
    let y_tp = |v: f64| TOP + ph * (1.0 - v / max_t);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
    );
    s.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    for f in &r.faults {
        let (a, b) = (x(f.start_us as f64 / 1e6), x(f.end_us as f64 / 1e6));
        let _ = write!(
            s,
            r##"<rect x="{a:.1}" y="{TOP}" width="{:.1}" height="{ph}" fill="#f4b183" fill-opacity="0.35"><title>{}</title></rect>"##,
            (b - a).max(1.0),
            escape(&f.name)
        );
    }
    for ms in [1.0, 10.0, 100.0, 1000.0, 10000.0] {
        let yy = y_lat(ms);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{ms} ms</text>"##,
            LEFT + pw,
            LEFT - 4.0,
            yy + 4.0
        );
    }
    for op in &r.history {
        let color = match op.outcome {
            Outcome::Ok => "#2e75b6",
            Outcome::Fail => "#c00000",
            Outcome::Info => "#ffa500",
        };
        let lat = (op.complete_us - op.invoke_us) as f64 / 1000.0;
        let _ = write!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.3" fill="{color}" fill-opacity="0.6"/>"#,
            x(op.complete_us as f64 / 1e6),
            y_lat(lat)
        );
    }
    let points: Vec<String> = tput
        .iter()
        .map(|b| format!("{:.1},{:.1}", x(b.t_s + 0.5), y_tp(b.ok_per_s)))
        .collect();
    let _ = write!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#548235" stroke-width="1.5"/>"##,
        points.join(" ")
    );
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}">{max_t:.0} ok/s</text><text x="{:.1}" y="{:.1}" text-anchor="middle">time (s), 0 – {end_s:.0}</text>"##,
        LEFT + pw + 4.0,
        TOP + 10.0,
        LEFT + pw / 2.0,
        H - 10.0
    );
    let _ = write!(
        s,
        r##"<text x="{LEFT}" y="18">latency per op (blue ok, orange info, red fail), green: ok/s, shaded: faults — {:?} × {:?}</text></svg>"##,
        r.config.workload, r.config.nemesis
    );
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
