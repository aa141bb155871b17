//! `cargo run --release -p jepsen-tests --bin bench -- [--quick] --out DIR`
//!
//! Builds `coffer` (same profile) unless `COFFER_BIN` points at one, then
//! runs the side-by-side benchmark and prints the Markdown table.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use clap::Parser;
use jepsen_tests::bench::{self, BenchOptions};

/// Coffer vs etcd / TLS hello-world / raw crypto, interleaved in one run.
#[derive(Parser)]
struct Args {
    /// Output directory for bench.md, bench.json and throughput.svg.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Short runs (2 s, fewer levels, 2k secrets for the restart row).
    #[arg(long)]
    quick: bool,
    /// Sections to run (repeatable): write, read, single-read, crypto, hsm, failover, restart,
    /// scale (only when named).
    #[arg(long)]
    only: Vec<String>,
    /// Measured seconds per run (overrides the default).
    #[arg(long)]
    duration: Option<f64>,
    /// TOML appended to every Coffer node's config, e.g.
    /// `--node-config $'[audit]\nsync = "write"'` (compare settings of one build).
    #[arg(long)]
    node_config: Option<String>,
    /// Secret counts of `--only scale` (comma-separated; default 10000,100000,1000000).
    #[arg(long, value_delimiter = ',')]
    scale_sizes: Vec<u64>,
    /// Measure nothing: redraw DIR/throughput.svg from a kept DIR/bench.json.
    #[arg(long, value_name = "DIR")]
    replot: Option<PathBuf>,
}

fn coffer_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("COFFER_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("runner has no directory")?;
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "coffer", "--bin", "coffer"]);
    if release {
        cmd.arg("--release");
    }
    if !cmd.status().context("building coffer")?.success() {
        bail!("building coffer failed");
    }
    Ok(dir.join("coffer"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.replot {
        let path = dir.join("bench.json");
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let result: bench::BenchResult =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        let written = bench::write_charts(dir, &result)?;
        if written.is_empty() {
            bail!("nothing in {} to chart", path.display());
        }
        for f in written {
            println!("written: {}/{f}", dir.display());
        }
        return Ok(());
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let opts = BenchOptions {
        coffer: coffer_binary()?,
        out: args.out,
        quick: args.quick,
        only: args.only,
        duration: args.duration,
        node_config: args.node_config,
        scale_sizes: args.scale_sizes,
    };
    let result = bench::run(&opts).await?;
    println!("Machine: {}\n", result.machine);
    if !result.rows.is_empty() {
        print!("{}", bench::report::markdown(&result.rows));
    }
    if !result.scale.is_empty() {
        print!("{}", bench::report::scale_markdown(&result.scale));
    }
    println!(
        "\nwritten: {0}/bench.md {0}/bench.json (and {0}/throughput.svg when a row has several client counts)",
        opts.out.display()
    );
    Ok(())
}
