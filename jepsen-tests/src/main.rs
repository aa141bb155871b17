//! `jepsen-tests` CLI: `run` one workload × nemesis, or a `suite`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use jepsen_tests::nemesis::NemesisKind;
use jepsen_tests::runner::{self, RunConfig, RunReport};
use jepsen_tests::workload::WorkloadKind;
use jepsen_tests::{netns, report, suite};

#[derive(Parser)]
#[command(about = "Fault-injection runs against real coffer clusters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One workload under one nemesis.
    Run(RunArgs),
    /// Every nemesis at least once.
    Suite {
        /// The CI-sized suite (a few minutes).
        #[arg(long)]
        short: bool,
        /// Report directory.
        #[arg(long, default_value = "jepsen-results")]
        out: PathBuf,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Run only the entry with this index (0-based), with the seed it
        /// gets in the whole suite (to reproduce one run).
        #[arg(long)]
        only: Option<usize>,
    },
}

#[derive(Args)]
struct RunArgs {
    #[arg(long, value_enum, default_value = "register")]
    workload: WorkloadKind,
    #[arg(long, value_enum, default_value = "partition-random")]
    nemesis: NemesisKind,
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Load duration, e.g. `30s`, `2m`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    time: Duration,
    #[arg(long, default_value_t = 6)]
    concurrency: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// TEST ONLY: nodes serve reads without ReadIndex (must be caught).
    #[arg(long)]
    stale_reads: bool,
    /// Registers / versioned keys.
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// Nodes on 127.0.0.1 instead of network namespaces (no partitions).
    #[arg(long)]
    loopback: bool,
    /// The nodes' `raft_snapshot_logs` (snapshot + log purge interval).
    #[arg(long, default_value_t = suite::SNAPSHOT_LOGS)]
    snapshot_logs: u64,
    /// Fail the run unless some node installs a snapshot from a leader.
    #[arg(long)]
    expect_snapshot_installs: bool,
    /// The nodes' `max_leader_silence_ms` (the health checker's limit).
    #[arg(long, default_value_t = suite::LEADER_SILENCE_MS)]
    max_leader_silence_ms: u64,
    #[arg(long, default_value = "jepsen-results")]
    out: PathBuf,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "ms" => Ok(Duration::from_millis(n)),
        _ => Err(format!("invalid duration unit in {s:?} (s, m, ms)")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let work = async {
        match cli.command {
            Command::Run(a) => {
                let config = RunConfig {
                    workload: a.workload,
                    nemesis: a.nemesis,
                    nodes: a.nodes,
                    time: a.time,
                    concurrency: a.concurrency,
                    max_ops_per_client: 100_000,
                    seed: a.seed,
                    stale_reads: a.stale_reads,
                    keys: a.keys,
                    fault_duration: Duration::from_secs(5),
                    fault_interval: Duration::from_secs(3),
                    check_budget: Duration::from_secs(60),
                    loopback: a.loopback,
                    snapshot_logs: a.snapshot_logs,
                    expect_snapshot_installs: a.expect_snapshot_installs,
                    max_leader_silence_ms: a.max_leader_silence_ms,
                    health_slack: suite::HEALTH_SLACK,
                    binary: runner::coffer_binary()?,
                    out: a.out,
                };
                let r = runner::run(config).await?;
                finish(&[r])
            }
            Command::Suite {
                short,
                out,
                seed,
                only,
            } => {
                let binary = runner::coffer_binary()?;
                let reports = suite::run(&out, short, seed, only, binary).await?;
                finish(&reports)
            }
        }
    };
    tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => {
            // Dropping `work` killed the nodes; make sure no namespace is left.
            netns::teardown_all();
            bail!("interrupted")
        }
    }
}

fn finish(reports: &[RunReport]) -> anyhow::Result<()> {
    print!("{}", report::TABLE_HEADER);
    for r in reports {
        print!("{}", report::table_row(r));
    }
    let failed: Vec<&RunReport> = reports.iter().filter(|r| !r.passed()).collect();
    for r in &failed {
        eprintln!("{}", report::markdown(r));
    }
    if !failed.is_empty() {
        bail!("{} of {} runs failed", failed.len(), reports.len());
    }
    Ok(())
}
