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

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

pub use report::{Measure, Row};

/// Runner settings.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The `coffer` binary.
    pub coffer: PathBuf,
    /// Where `bench.md`, `bench.json` and `writes.svg` go.
    pub out: PathBuf,
    /// Short runs, fewer concurrency levels and rounds, 2k instead of 100k secrets.
    pub quick: bool,
    /// Only sections whose name contains one of these (all when empty):
    /// `write`, `read`, `single-read`, `crypto`, `hsm`, `failover`, `restart`.
    pub only: Vec<String>,
    /// Override of the measured seconds per run.
    pub duration: Option<f64>,
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
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    /// Machine description (CPU model, cores, kernel).
    pub machine: String,
    /// The rows in table order.
    pub rows: Vec<Row>,
}

/// Runs the selected rows and writes the outputs into `opts.out`.
pub async fn run(opts: &BenchOptions) -> anyhow::Result<BenchResult> {
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let mut rows = Vec::new();
    rows::run_all(opts, &mut rows).await?;
    let result = BenchResult {
        machine: machine(),
        rows,
    };
    write_outputs(&opts.out, &result)?;
    Ok(result)
}

fn write_outputs(out: &Path, result: &BenchResult) -> anyhow::Result<()> {
    let md = format!(
        "Machine: {}\n\n{}",
        result.machine,
        report::markdown(&result.rows)
    );
    std::fs::write(out.join("bench.md"), &md)?;
    std::fs::write(out.join("bench.json"), serde_json::to_vec_pretty(result)?)?;
    std::fs::write(
        out.join("writes.svg"),
        report::svg(
            &result.rows,
            rows::WRITE_ROW,
            "Replicated writes (256 B): throughput vs clients",
        ),
    )?;
    Ok(())
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
