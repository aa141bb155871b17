//! The side-by-side benchmark runner (`cargo run --release -p jepsen-tests
//! --bin bench -- --out DIR`): starts Coffer clusters, an etcd cluster, a TLS
//! hello-world server, runs every row with Coffer and its peer interleaved,
//! and writes a Markdown table, JSON and an SVG plot.

pub mod crypto;
pub mod etcd;
pub mod hello;
pub mod hsm;
pub mod procs;
pub mod report;
mod rows;
pub mod scale;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

pub use report::{Measure, Row};

/// Runner settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The `coffer` binary.
    pub coffer: PathBuf,
    /// Where `bench.md`, `bench.json` and `throughput.svg` go.
    pub out: PathBuf,
    /// Short runs, fewer concurrency levels and rounds, 2k instead of 100k secrets.
    pub quick: bool,
    /// Only sections whose name contains one of these (all when empty):
    /// `write`, `read`, `single-read`, `crypto`, `hsm`, `failover`, `restart`;
    /// `scale` runs only when named (it takes ~15 minutes at 1M secrets).
    pub only: Vec<String>,
    /// Override of the measured seconds per run.
    pub duration: Option<f64>,
    /// TOML appended to every Coffer node's config (whole sections), so one
    /// build can be measured under different settings, e.g.
    /// `[audit]\nsync = "write"`. `None` for the defaults; an older binary
    /// may refuse sections it does not know.
    pub node_config: Option<String>,
    /// Secret counts of the scaling run (default 10k, 100k, 1M).
    pub scale_sizes: Vec<u64>,
}

impl BenchOptions {
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == section)
    }

    fn secs(&self) -> f64 {
        self.duration.unwrap_or(if self.quick { 2.0 } else { 8.0 })
    }

    fn warmup(&self) -> f64 {
        (self.secs() / 4.0).min(1.0)
    }

    fn rounds(&self) -> usize {
        if self.quick {
            1
        } else {
            2
        }
    }
}

/// What a run produced.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BenchResult {
    /// Machine description (CPU model, cores, kernel).
    pub machine: String,
    /// The rows in table order.
    pub rows: Vec<Row>,
    /// The scaling run's points, smallest first (empty unless `--only scale`).
    #[serde(default)]
    pub scale: Vec<scale::ScalePoint>,
}

/// Runs the selected rows and writes the outputs into `opts.out`.
pub async fn run(opts: &BenchOptions) -> anyhow::Result<BenchResult> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let mut rows = Vec::new();
    rows::run_all(opts, &mut rows).await?;
    let scale = if opts.only.iter().any(|o| o == "scale") {
        scale::run(opts).await?
    } else {
        Vec::new()
    };
    let result = BenchResult {
        machine: machine(),
        rows,
        scale,
    };
    write_outputs(&opts.out, &result)?;
    Ok(result)
}

fn write_outputs(out: &Path, result: &BenchResult) -> anyhow::Result<()> {
    let mut md = format!("Machine: {}\n\n", result.machine);
    if !result.rows.is_empty() {
        md.push_str(&report::markdown(&result.rows));
    }
    if !result.scale.is_empty() {
        md.push_str(&report::scale_markdown(&result.scale));
    }
    std::fs::write(out.join("bench.md"), &md)?;
    std::fs::write(out.join("bench.json"), serde_json::to_vec_pretty(result)?)?;
    write_charts(out, result)?;
    Ok(())
}

/// Draws the charts of `result` into `out` and returns their file names:
/// `throughput.svg` (one panel per row family measured at several client
/// counts) and `scale.svg` (the scaling run), each only when there is
/// something to draw. `bench --replot DIR` calls it on a kept `bench.json`.
pub fn write_charts(out: &Path, result: &BenchResult) -> anyhow::Result<Vec<&'static str>> {
    let mut written = Vec::new();
    if let Some(svg) = crate::plot::throughput_vs_clients(&result.rows)? {
        std::fs::write(out.join("throughput.svg"), svg)?;
        written.push("throughput.svg");
    }
    if !result.scale.is_empty() {
        std::fs::write(out.join("scale.svg"), crate::plot::scale(&result.scale)?)?;
        written.push("scale.svg");
    }
    Ok(written)
}

/// CPU model, core count and kernel, for the report header.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, Linux {}", kernel.trim())
}

/// Default per-attempt timeout the load clients use.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
