//! The scaling run (`--only scale`): how cost grows with the number of
//! secrets. For each size a fresh 3-node cluster is filled with that many
//! 256-byte secrets by 64 clients, then read by 64 clients across all of
//! them, then one node is restarted; the point records the fill and read
//! throughput and p99, restart → serving and unseal → first read, and the
//! restarted node's RSS and data dir.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::report::Measure;
use super::rows::{coffer_cluster, coffer_target, drive, VALUE_SIZE};
use super::{procs, BenchOptions};
use crate::cluster::LocalCluster;

/// Concurrent clients of the fill and of the reads.
const CLIENTS: usize = 64;
/// Name prefix of the secrets (`s-0` … `s-{n-1}`).
const PREFIX: &str = "s";

/// One size of the scaling run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalePoint {
    /// Live secrets (one version each).
    pub secrets: u64,
    /// The fill: `secrets` sets by 64 clients.
    pub fill: Measure,
    /// Linearizable reads spread over every secret, 64 clients.
    pub read: Measure,
    /// Process start → the restarted node answers (sealed).
    pub serving_s: f64,
    /// Unseal → its first read of a secret.
    pub first_read_s: f64,
    /// RSS of the restarted node after its first read.
    pub rss_bytes: u64,
    /// Its data dir (Raft log, state machine, snapshots, audit).
    pub disk_bytes: u64,
    /// The data dir by part, largest first (see [`procs::dir_parts`]).
    #[serde(default)]
    pub disk_parts: Vec<(String, u64)>,
}

impl ScalePoint {
    /// Data dir bytes per byte of live secret value.
    pub fn disk_per_value_byte(&self) -> f64 {
        self.disk_bytes as f64 / (self.secrets * VALUE_SIZE as u64).max(1) as f64
    }
}

/// The sizes measured: `--scale-sizes`, else 10k, 100k and 1M (2k and 10k
/// with `--quick`).
fn sizes(opts: &BenchOptions) -> Vec<u64> {
    if !opts.scale_sizes.is_empty() {
        opts.scale_sizes.clone()
    } else if opts.quick {
        vec![2_000, 10_000]
    } else {
        vec![10_000, 100_000, 1_000_000]
    }
}

/// Runs every size in turn. Failed writes are counted in the point (the
/// table shows them); a size that cannot be measured at all stops the run
/// there, keeping the points before it (a larger size would fail the same
/// way).
pub async fn run(opts: &BenchOptions) -> anyhow::Result<Vec<ScalePoint>> {
    let mut points = Vec::new();
    for n in sizes(opts) {
        let mut cluster = coffer_cluster(opts, 3).await?;
        match measure(opts, &mut cluster, n).await {
            Ok(point) => {
                eprintln!(
                    "scale {n}: fill {:.0}/s ({} errors), read {:.0}/s",
                    point.fill.report.throughput,
                    point.fill.report.errors,
                    point.read.report.throughput
                );
                points.push(point);
            }
            Err(e) => {
                eprintln!("scaling run with {n} secrets failed: {e:#}");
                break;
            }
        }
    }
    Ok(points)
}

async fn measure(
    opts: &BenchOptions,
    cluster: &mut LocalCluster,
    n: u64,
) -> anyhow::Result<ScalePoint> {
    let (keys, reqs) = (format!("--keys={n}"), n.to_string());
    let (fill, read) = {
        let ct = coffer_target(cluster);
        let fill = drive(
            opts,
            &ct,
            "set",
            CLIENTS,
            &["--requests", &reqs, &keys, "--prefix", PREFIX, "--warmup=0"],
        )
        .await?;
        let read = drive(
            opts,
            &ct,
            "get",
            CLIENTS,
            &[&keys, "--prefix", PREFIX, "--skip-prefill"],
        )
        .await?;
        (fill, read)
    };
    let (serving, first_read) = restart_timing(cluster, 0, &format!("{PREFIX}-0")).await?;
    let pid = cluster.nodes[0].pid().context("node not running")?;
    Ok(ScalePoint {
        secrets: n,
        fill,
        read,
        serving_s: serving.as_secs_f64(),
        first_read_s: first_read.as_secs_f64(),
        rss_bytes: procs::rss_bytes(pid),
        disk_bytes: procs::dir_bytes(&cluster.nodes[0].data_dir),
        disk_parts: procs::dir_parts(&cluster.nodes[0].data_dir),
    })
}

/// Restarts node `i` and times process start → serving (its seal status
/// answers) and unseal → its first read of secret `probe`.
pub async fn restart_timing(
    cluster: &mut LocalCluster,
    i: usize,
    probe: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    cluster.restart(i)?;
    let client = cluster.node_client(i)?;
    let serving = loop {
        if client.sys().seal_status().await.is_ok() {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("node did not serve within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let unseal_at = Instant::now();
    cluster.unseal(i).await?;
    let reading = loop {
        if client.secrets().get(probe, None).await.is_ok() {
            break unseal_at.elapsed();
        }
        if unseal_at.elapsed() > Duration::from_secs(60) {
            bail!("no read within 60 s of unsealing");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    Ok((serving, reading))
}
