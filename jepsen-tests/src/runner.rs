//! One run: start a cluster, drive a workload with concurrent clients while
//! the nemesis injects and heals faults, heal everything, do the final
//! reads, check the history and write the report.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use coffer_client::Client;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::checker::{self, stats, CheckResult, Verdict};
use crate::cluster::{ClusterOptions, LocalCluster, Placement};
use crate::history::{FaultWindow, Op, Recorder};
use crate::nemesis::{Nemesis, NemesisKind};
use crate::workload::{self, Worker, WorkloadKind};

/// Parameters of one run.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    /// Workload.
    pub workload: WorkloadKind,
    /// Nemesis.
    pub nemesis: NemesisKind,
    /// Cluster size.
    pub nodes: usize,
    /// Length of the load phase.
    #[serde(serialize_with = "secs")]
    pub time: Duration,
    /// Concurrent clients (half failover, half pinned to one node each).
    pub concurrency: usize,
    /// Upper bound on operations per client.
    pub max_ops_per_client: u64,
    /// Random seed of clients and nemesis.
    pub seed: u64,
    /// TEST ONLY: start nodes with reads that skip ReadIndex.
    pub stale_reads: bool,
    /// Keys of the register / version workloads.
    pub keys: usize,
    /// How long each fault lasts.
    #[serde(serialize_with = "secs")]
    pub fault_duration: Duration,
    /// Quiet time between faults.
    #[serde(serialize_with = "secs")]
    pub fault_interval: Duration,
    /// Budget of the linearizability search.
    #[serde(serialize_with = "secs")]
    pub check_budget: Duration,
    /// Use loopback instead of network namespaces (no partitions).
    pub loopback: bool,
    /// The `coffer` binary.
    pub binary: PathBuf,
    /// Report directory.
    pub out: PathBuf,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// What a run found.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The parameters.
    pub config: RunConfig,
    /// Op counts, latency, availability.
    pub stats: stats::Stats,
    /// Each checker's verdict.
    pub checks: Vec<CheckResult>,
    /// Faults and when they were active.
    pub faults: Vec<FaultWindow>,
    /// Length of the load phase, µs.
    pub load_end_us: u64,
    /// Cluster files (kept when the run failed).
    pub cluster_dir: PathBuf,
    /// Every operation.
    #[serde(skip)]
    pub history: Vec<Op>,
}

impl RunReport {
    /// Whether every checker passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.verdict.is_pass())
    }
}

/// Runs one workload × nemesis combination and writes its report to `out`.
pub async fn run(config: RunConfig) -> anyhow::Result<RunReport> {
    let placement = if config.loopback {
        Placement::Loopback
    } else {
        Placement::Netns
    };
    anyhow::ensure!(
        !(config.loopback && config.nemesis.needs_netns()),
        "nemesis {:?} needs network namespaces (drop --loopback)",
        config.nemesis
    );
    let options = ClusterOptions {
        placement,
        nodes: config.nodes,
        unsafe_stale_reads: config.stale_reads,
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&config.binary, options)?;
    cluster.init(0, 3, 2).await?;
    cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let recorder = Recorder::new();
    let load = start_clients(&cluster, &config, &recorder)?;
    let cluster = Arc::new(Mutex::new(cluster));
    let faults = run_nemesis(&cluster, &config, &recorder).await;
    for handle in load {
        let _ = handle.await;
    }
    let load_end_us = recorder.now_us();
    let mut cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("cluster still shared"))?
        .into_inner();
    let faults = faults?;
    let history = recorder.snapshot();
    let mut checks = final_checks(&mut cluster, &config, &history).await;
    checks.push(CheckResult {
        name: "convergence".into(),
        verdict: convergence(&cluster).await,
    });
    let report = RunReport {
        stats: stats::stats(&history, &faults, load_end_us),
        checks,
        faults,
        load_end_us,
        cluster_dir: cluster.dir().to_path_buf(),
        history,
        config,
    };
    if !report.passed() {
        cluster.keep_files();
    }
    crate::report::write(&report, &report.config.out)?;
    Ok(report)
}

fn client(cluster: &LocalCluster) -> anyhow::Result<Client> {
    let urls = cluster.nodes.iter().map(|n| n.url()).collect();
    let mut cfg = cluster.client_config(urls)?;
    // Short attempts: a request stuck behind a partition fails over soon.
    cfg.timeout = Duration::from_secs(2);
    Ok(Client::new(cfg)?)
}

fn start_clients(
    cluster: &LocalCluster,
    config: &RunConfig,
    recorder: &Recorder,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let deadline = Instant::now() + config.time;
    let mut handles = Vec::new();
    for process in 0..config.concurrency {
        let pinned = (process % 2 == 1).then_some((process / 2) % config.nodes);
        let mut worker = Worker {
            process,
            pinned,
            client: client(cluster)?,
            recorder: recorder.clone(),
            rng: StdRng::seed_from_u64(config.seed.wrapping_add(process as u64 + 1)),
            seq: 0,
            op_timeout: Duration::from_secs(6),
        };
        let (kind, keys, max_ops) = (config.workload, config.keys, config.max_ops_per_client);
        handles.push(tokio::spawn(async move {
            while Instant::now() < deadline && worker.seq < max_ops {
                match kind {
                    WorkloadKind::Register => workload::register::step(&mut worker, keys).await,
                    WorkloadKind::Set => workload::set::step(&mut worker).await,
                    WorkloadKind::Version => workload::version::step(&mut worker, keys).await,
                }
            }
        }));
    }
    Ok(handles)
}

/// Injects faults until the load phase is nearly over, then heals.
async fn run_nemesis(
    cluster: &Arc<Mutex<LocalCluster>>,
    config: &RunConfig,
    recorder: &Recorder,
) -> anyhow::Result<Vec<FaultWindow>> {
    let mut windows = Vec::new();
    let end = recorder.start() + config.time;
    if config.nemesis == NemesisKind::None {
        tokio::time::sleep_until(end.into()).await;
        return Ok(windows);
    }
    let mut nemesis = Nemesis::new(config.nemesis, StdRng::seed_from_u64(config.seed));
    // Leave time after the last heal so recovery shows in the history.
    while Instant::now() + config.fault_interval + config.fault_duration + Duration::from_secs(2)
        < end
    {
        tokio::time::sleep(config.fault_interval).await;
        let mut c = cluster.lock().await;
        let start_us = recorder.now_us();
        let (fault, name) = nemesis.inject(&mut c).await?;
        drop(c);
        tracing::info!(%name, "fault");
        eprintln!("[{:>7.2}s] nemesis: {name}", start_us as f64 / 1e6);
        tokio::time::sleep(config.fault_duration).await;
        let mut c = cluster.lock().await;
        nemesis.heal(&mut c, fault).await?;
        let end_us = recorder.now_us();
        eprintln!("[{:>7.2}s] nemesis: healed", end_us as f64 / 1e6);
        windows.push(FaultWindow {
            name,
            start_us,
            end_us,
        });
    }
    tokio::time::sleep_until(end.into()).await;
    Ok(windows)
}

async fn final_checks(
    cluster: &mut LocalCluster,
    config: &RunConfig,
    history: &[Op],
) -> Vec<CheckResult> {
    let mut checks = Vec::new();
    let result = |name: &str, verdict| CheckResult {
        name: name.into(),
        verdict,
    };
    // Everything is healed by the nemesis; make sure a leader serves again.
    if let Err(e) = cluster.wait_for_leader(Duration::from_secs(30)).await {
        checks.push(result("healthy-after-heal", Verdict::Fail(e.to_string())));
        return checks;
    }
    let client = match client(cluster) {
        Ok(c) => c,
        Err(e) => return vec![result("final-read", Verdict::Unknown(e.to_string()))],
    };
    match config.workload {
        WorkloadKind::Register => {
            let budget = config.check_budget;
            let h = history.to_vec();
            let verdict =
                tokio::task::spawn_blocking(move || checker::linear::check_register(&h, budget))
                    .await
                    .unwrap_or_else(|e| Verdict::Unknown(e.to_string()));
            checks.push(result("linearizable", verdict));
        }
        WorkloadKind::Set => {
            let verdict = match retry(|| workload::set::final_read(&client)).await {
                Ok(read) => checker::sets::check_set(history, &read),
                Err(e) => Verdict::Unknown(format!("final read failed: {e}")),
            };
            checks.push(result("no-lost-writes", verdict));
        }
        WorkloadKind::Version => {
            let keys = config.keys;
            let verdict = match retry(|| workload::version::final_read(&client, keys)).await {
                Ok(read) => checker::versions::check_versions(history, &read),
                Err(e) => Verdict::Unknown(format!("final read failed: {e}")),
            };
            checks.push(result("no-double-apply", verdict));
        }
    }
    checks
}

async fn retry<T, F, Fut>(mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut last = None;
    for _ in 0..10 {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt")))
}

#[derive(serde::Deserialize)]
struct DigestBody {
    digest: String,
    applied_index: u64,
    stable: bool,
}

/// Every node's digest once all report the same applied index (≤ 30 s).
async fn convergence(cluster: &LocalCluster) -> Verdict {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last.clear();
        let mut indexes = BTreeSet::new();
        for (i, node) in cluster.nodes.iter().enumerate() {
            let body = digest(cluster, i).await.ok();
            let stable = body.as_ref().is_some_and(|b| b.stable);
            indexes.insert(body.as_ref().map(|b| b.applied_index).filter(|_| stable));
            last.push((node.id, body.map(|b| b.digest)));
        }
        if indexes.len() == 1 && !indexes.contains(&None) {
            return checker::check_convergence(&last);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    match checker::check_convergence(&last) {
        Verdict::Pass => Verdict::Pass,
        Verdict::Fail(m) | Verdict::Unknown(m) => {
            Verdict::Unknown(format!("nodes never reached the same applied index; {m}"))
        }
    }
}

async fn digest(cluster: &LocalCluster, i: usize) -> anyhow::Result<DigestBody> {
    let mut cfg = cluster.client_config(vec![cluster.nodes[i].url()])?;
    cfg.timeout = Duration::from_secs(2);
    let client = Client::new(cfg)?;
    let resp = client
        .send_to(0, coffer_client::Request::get("/v1/sys/raft/digest"))
        .await?
        .error_for_status()?;
    Ok(resp.json()?)
}

/// Finds the `coffer` binary next to this executable (`target/<profile>/`),
/// or at `$COFFER_BIN`.
pub fn coffer_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("COFFER_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let mut dir: Option<&Path> = exe.parent();
    while let Some(d) = dir {
        let candidate = d.join("coffer");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    None.context("coffer binary not found; run `cargo build -p coffer` or set COFFER_BIN")
}
