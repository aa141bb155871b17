//! One run: start a cluster, drive a workload with concurrent clients while
//! the nemesis injects and heals faults, heal everything, do the final
//! reads, check the history and write the report.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use coffer_client::Client;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::checker::{self, health, stats, CheckResult, Verdict};
use crate::cluster::{ClusterOptions, LocalCluster, Placement};
use crate::history::{FaultWindow, NetState, Op, Recorder, Timeline};
use crate::nemesis::{LagReport, Nemesis, NemesisKind};
use crate::observe::{self, HealthSampler, NodeSnapshots};
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
    /// The nodes' `raft_snapshot_logs`: a snapshot (and a log purge) every
    /// this many entries, so that nodes behind get snapshots.
    pub snapshot_logs: u64,
    /// Fail the run unless some node installed a snapshot from a leader.
    pub expect_snapshot_installs: bool,
    /// The nodes' `max_leader_silence_ms` (the health checker's limit).
    pub max_leader_silence_ms: u64,
    /// Margin of the health checker on top of the silence limit.
    #[serde(serialize_with = "secs")]
    pub health_slack: Duration,
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
    /// Per node: snapshot index at the end, snapshots built and installed.
    pub snapshots: Vec<NodeSnapshots>,
    /// How much the health rules were exercised.
    pub health: health::Summary,
    /// What each `kill-leader-lagging` fault saw.
    pub lags: Vec<LagReport>,
    /// Per node id: its warnings and errors, grouped, with counts.
    pub warnings: BTreeMap<u64, BTreeMap<String, usize>>,
    /// Who could reach whom, when.
    pub timeline: Vec<NetState>,
    /// Cluster files (kept when the run failed).
    pub cluster_dir: PathBuf,
    /// Every operation.
    #[serde(skip)]
    pub history: Vec<Op>,
    /// Every health sample.
    #[serde(skip)]
    pub samples: Vec<health::Sample>,
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
        raft_snapshot_logs: Some(config.snapshot_logs),
        max_leader_silence_ms: Some(config.max_leader_silence_ms),
        env: vec![("COFFER_LOG".into(), observe::node_log_filter())],
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&config.binary, options)?;
    cluster.init(0, 3, 2).await?;
    cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let recorder = Recorder::new();
    let timeline = Timeline::new(&recorder);
    let sampler = HealthSampler::start(&cluster, &recorder)?;
    let stop = Arc::new(AtomicBool::new(false));
    let load = start_clients(&cluster, &config, &recorder, &stop)?;
    let cluster = Arc::new(Mutex::new(cluster));
    let nemesis = run_nemesis(&cluster, &config, &recorder, &timeline).await;
    stop.store(true, Ordering::Release);
    for handle in load {
        let _ = handle.await;
    }
    let load_end_us = recorder.now_us();
    let samples = sampler.finish().await;
    let mut cluster = Arc::try_unwrap(cluster)
        .map_err(|_| anyhow::anyhow!("cluster still shared"))?
        .into_inner();
    let (faults, lags) = match nemesis {
        Ok(done) => done,
        Err(e) => {
            cluster.keep_files();
            return Err(e.context(format!(
                "nemesis failed; cluster files kept in {}",
                cluster.dir().display()
            )));
        }
    };
    let history = recorder.snapshot();
    let timeline = timeline.states();
    let mut checks = final_checks(&mut cluster, &config, &history).await;
    checks.push(CheckResult {
        name: "convergence".into(),
        verdict: convergence(&cluster).await,
    });
    let rules = health::Rules {
        nodes: config.nodes,
        limit_us: config.max_leader_silence_ms * 1000,
        slack_us: config.health_slack.as_micros() as u64,
    };
    let (health_verdict, health_summary) = health::check(&samples, &timeline, rules);
    checks.push(CheckResult {
        name: "health".into(),
        verdict: health_verdict,
    });
    let (steady, final_health) = steady_health(&cluster, &recorder).await;
    checks.push(CheckResult {
        name: "health-after-heal".into(),
        verdict: steady,
    });
    let snapshots = snapshots(&cluster, &final_health);
    let warnings: BTreeMap<u64, BTreeMap<String, usize>> = (0..cluster.nodes.len())
        .map(|i| (cluster.nodes[i].id, observe::warnings(&cluster.log(i))))
        .collect();
    checks.push(CheckResult {
        name: "log-noise".into(),
        verdict: checker::cluster::check_log_noise(&warnings),
    });
    if config.expect_snapshot_installs {
        checks.push(CheckResult {
            name: "snapshot-installs".into(),
            verdict: checker::cluster::check_installs(&snapshots),
        });
    }
    if !lags.is_empty() {
        checks.push(CheckResult {
            name: "lagging-not-elected".into(),
            verdict: checker::cluster::check_lags(&lags, &faults, &history),
        });
    }
    let report = RunReport {
        stats: stats::stats(&history, &faults, load_end_us),
        checks,
        faults,
        load_end_us,
        snapshots,
        health: health_summary,
        lags,
        warnings,
        timeline,
        cluster_dir: cluster.dir().to_path_buf(),
        history,
        samples,
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

/// Starts the clients; they stop once `stop` is set.
fn start_clients(
    cluster: &LocalCluster,
    config: &RunConfig,
    recorder: &Recorder,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
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
        let stop = stop.clone();
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) && worker.seq < max_ops {
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

/// Load after the last heal, at least (so recovery shows in the history,
/// however long the heal itself took).
const LOAD_AFTER_HEAL: Duration = Duration::from_secs(2);

/// Injects faults until the load phase is nearly over, then heals; returns
/// at the end of the load phase, or [`LOAD_AFTER_HEAL`] after the last heal
/// if that is later.
async fn run_nemesis(
    cluster: &Arc<Mutex<LocalCluster>>,
    config: &RunConfig,
    recorder: &Recorder,
    timeline: &Timeline,
) -> anyhow::Result<(Vec<FaultWindow>, Vec<LagReport>)> {
    let mut windows = Vec::new();
    let end = recorder.start() + config.time;
    if config.nemesis == NemesisKind::None {
        tokio::time::sleep_until(end.into()).await;
        return Ok((windows, Vec::new()));
    }
    let mut nemesis = Nemesis::new(
        config.nemesis,
        StdRng::seed_from_u64(config.seed),
        timeline.clone(),
        config.snapshot_logs,
    );
    // Leave time after the last heal so recovery shows in the history.
    let tail = config.fault_duration + Duration::from_secs(2);
    while Instant::now() + config.fault_interval + nemesis.extra_time() + tail < end {
        tokio::time::sleep(config.fault_interval).await;
        let mut c = cluster.lock().await;
        let start_us = recorder.now_us();
        // A held-back follower is let back early enough for the rest of
        // the fault (an election, the fault duration) to run under load.
        let hold_until = end
            .checked_sub(tail + Duration::from_secs(2))
            .unwrap_or(end);
        let (fault, name) = nemesis.inject(&mut c, hold_until).await?;
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
    let after_heal = windows
        .last()
        .map(|w| recorder.start() + Duration::from_micros(w.end_us) + LOAD_AFTER_HEAL);
    tokio::time::sleep_until(after_heal.map_or(end, |h| h.max(end)).into()).await;
    Ok((windows, nemesis.lag_reports().to_vec()))
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
    let mut malformed_final = Vec::new();
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
                Ok(read) => {
                    malformed_final = read.malformed;
                    checker::sets::check_set(history, &read.values)
                }
                Err(e) => Verdict::Unknown(format!("final read failed: {e}")),
            };
            checks.push(result("no-lost-writes", verdict));
        }
        WorkloadKind::Version => {
            let keys = config.keys;
            let verdict = match retry(|| workload::version::final_read(&client, keys)).await {
                Ok(read) => {
                    malformed_final = read.malformed;
                    checker::versions::check_versions(history, &read.values)
                }
                Err(e) => Verdict::Unknown(format!("final read failed: {e}")),
            };
            checks.push(result("no-double-apply", verdict));
        }
    }
    checks.push(result(
        "values-intact",
        checker::check_intact(history, &malformed_final),
    ));
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
    /// The additive digest at the `?index=` asked for (`None`: that index
    /// is not among the node's recent ones).
    #[serde(default)]
    state_digest: Option<serde_json::Value>,
}

/// Every node's state compared at one applied index (≤ 30 s): either all
/// report the same index, or every node's digest right after the lowest
/// index any of them applied. A cluster is never idle (each node ships its
/// audit records through Raft, health probes included), so waiting for
/// equal indexes alone may never end.
async fn convergence(cluster: &LocalCluster) -> Verdict {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last.clear();
        let mut indexes = BTreeSet::new();
        // Applied indexes of every node that answered, stable or not.
        let mut applied = Vec::new();
        for (i, node) in cluster.nodes.iter().enumerate() {
            let body = digest(cluster, i, None).await.ok();
            let stable = body.as_ref().is_some_and(|b| b.stable);
            indexes.insert(body.as_ref().map(|b| b.applied_index).filter(|_| stable));
            applied.extend(body.as_ref().map(|b| b.applied_index));
            last.push((node.id, body.map(|b| b.digest)));
        }
        if indexes.len() == 1 && !indexes.contains(&None) {
            return checker::check_convergence(&last);
        }
        if applied.len() == cluster.nodes.len() {
            let lowest = applied.iter().copied().min().unwrap_or(0);
            if let Some(verdict) = convergence_at(cluster, lowest).await {
                return verdict;
            }
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

/// Every node's additive digest right after `index`, compared; `None` when
/// a node cannot say (not applied yet, or no longer among its recent ones).
async fn convergence_at(cluster: &LocalCluster, index: u64) -> Option<Verdict> {
    let mut at = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let body = digest(cluster, i, Some(index)).await.ok()?;
        let state = body.state_digest.filter(|v| !v.is_null())?;
        at.push((node.id, Some(state.to_string())));
    }
    Some(checker::check_convergence(&at))
}

async fn digest(
    cluster: &LocalCluster,
    i: usize,
    index: Option<u64>,
) -> anyhow::Result<DigestBody> {
    let mut cfg = cluster.client_config(vec![cluster.nodes[i].url()])?;
    cfg.timeout = Duration::from_secs(2);
    let client = Client::new(cfg)?;
    let path = match index {
        Some(i) => format!("/v1/sys/raft/digest?index={i}"),
        None => "/v1/sys/raft/digest".to_string(),
    };
    let resp = client
        .send_to(0, coffer_client::Request::get(&path))
        .await?
        .error_for_status()?;
    Ok(resp.json()?)
}

/// Once everything is healed and converged: within 20 s, a round of health
/// answers in which one node leads (200) and every other is a healthy
/// standby (429) naming it, none reporting a problem. Returns the verdict
/// and the last round.
async fn steady_health(
    cluster: &LocalCluster,
    recorder: &Recorder,
) -> (Verdict, Vec<health::Sample>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let clients: Vec<Client> = match (0..cluster.nodes.len())
        .map(|i| probe_client(cluster, i))
        .collect::<anyhow::Result<_>>()
    {
        Ok(c) => c,
        Err(e) => return (Verdict::Unknown(e.to_string()), Vec::new()),
    };
    loop {
        let mut round = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            round.push(observe::sample(c, i, recorder).await);
        }
        let leaders: Vec<&health::Sample> =
            round.iter().filter(|s| s.status == Some(200)).collect();
        let steady = leaders.len() == 1
            && round.iter().all(|s| {
                s.problems.is_empty()
                    && s.leader == Some(leaders[0].node)
                    && (s.status == Some(429) || s.node == leaders[0].node)
            });
        if steady {
            return (Verdict::Pass, round);
        }
        if Instant::now() > deadline {
            let lines: Vec<String> = round.iter().map(health::describe).collect();
            let msg = format!(
                "no round of 200 from one leader and 429 from every standby within 20 s \
                 of the final heal; last round:\n{}",
                lines.join("\n")
            );
            return (Verdict::Fail(msg), round);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn probe_client(cluster: &LocalCluster, i: usize) -> anyhow::Result<Client> {
    let mut cfg = cluster.client_config(vec![cluster.nodes[i].url()])?;
    cfg.timeout = Duration::from_secs(2);
    cfg.max_attempts = 1;
    Ok(Client::new(cfg)?)
}

/// Per node: the snapshot index it reported last, and the snapshots its log
/// says it built and installed.
fn snapshots(cluster: &LocalCluster, last: &[health::Sample]) -> Vec<NodeSnapshots> {
    (0..cluster.nodes.len())
        .map(|i| {
            let (builds, installs) = observe::scan_snapshots(&cluster.log(i));
            let at_end = last.iter().find(|s| s.node == i);
            NodeSnapshots {
                node_id: cluster.nodes[i].id,
                snapshot_index: at_end.map_or(0, |s| s.snapshot_index),
                applied_index: at_end.map_or(0, |s| s.applied_index),
                builds,
                installs,
            }
        })
        .collect()
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
