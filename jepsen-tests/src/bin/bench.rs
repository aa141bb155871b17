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
    /// Output directory for bench.md, bench.json and writes.svg.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Short runs (2 s, fewer levels, 2k secrets for the restart row).
    #[arg(long)]
    quick: bool,
    /// Sections to run (repeatable): write, read, single-read, crypto, hsm, failover, restart.
    #[arg(long)]
    only: Vec<String>,
    /// Measured seconds per run (overrides the default).
    #[arg(long)]
    duration: Option<f64>,
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
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let opts = BenchOptions {
        coffer: coffer_binary()?,
        out: args.out,
        quick: args.quick,
        only: args.only,
        duration: args.duration,
    };
    let result = bench::run(&opts).await?;
    println!("Machine: {}\n", result.machine);
    print!("{}", bench::report::markdown(&result.rows));
    println!(
        "\nwritten: {0}/bench.md {0}/bench.json {0}/writes.svg",
        opts.out.display()
    );
    Ok(())
}
