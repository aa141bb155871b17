//! What the harness observes of the nodes themselves, besides the client
//! history: `/v1/sys/health` of every node sampled from a side task during
//! the run, and the snapshots each node built and installed, read from its
//! log.

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_client::Client;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::checker::health::Sample;
use crate::cluster::LocalCluster;
use crate::history::Recorder;

/// How often each node's health is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// Deadline of one health request (a paused node must not stall sampling).
const SAMPLE_TIMEOUT: Duration = Duration::from_millis(800);

/// The `COFFER_LOG` filter of suite nodes: the node's own info lines, and
/// from openraft only its state-machine worker, which logs one line per
/// snapshot build and per snapshot install (and nothing per entry).
pub const NODE_LOG_FILTER: &str = "info,openraft=off,openraft::core::sm::worker=info";

/// [`NODE_LOG_FILTER`] plus the directives in `$JEPSEN_NODE_LOG`, if set
/// (e.g. `coffer::cluster::election=debug` to see every pre-vote round).
pub fn node_log_filter() -> String {
    match std::env::var("JEPSEN_NODE_LOG") {
        Ok(extra) if !extra.is_empty() => format!("{NODE_LOG_FILTER},{extra}"),
        _ => NODE_LOG_FILTER.to_string(),
    }
}

/// What openraft's state-machine worker logs once a snapshot received from
/// the leader is installed (`Done install complete snapshot, meta: …`).
const INSTALL_LINE: &str = "Done install complete snapshot";
/// … and when it starts building a snapshot of its own (`…worker_loop:
/// build snapshot`).
const BUILD_LINE: &str = ": build snapshot";

/// Samples every node's health from one task per node (a paused node only
/// delays its own samples) until [`HealthSampler::finish`].
pub struct HealthSampler {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<Vec<Sample>>>,
}

impl HealthSampler {
    /// Starts one sampling task per node of `cluster`.
    pub fn start(cluster: &LocalCluster, recorder: &Recorder) -> anyhow::Result<Self> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for i in 0..cluster.nodes.len() {
            let mut cfg = cluster.client_config(vec![cluster.nodes[i].url()])?;
            cfg.timeout = SAMPLE_TIMEOUT;
            cfg.max_attempts = 1;
            let client = Client::new(cfg)?;
            let recorder = recorder.clone();
            let mut stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut tick = tokio::time::interval(SAMPLE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.changed() => return samples,
                    }
                    samples.push(sample(&client, i, &recorder).await);
                }
            }));
        }
        Ok(Self { stop, tasks })
    }

    /// Stops sampling; every node's samples in time order.
    pub async fn finish(self) -> Vec<Sample> {
        let _ = self.stop.send(true);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all.sort_by_key(|s| (s.invoke_us, s.node));
        all
    }
}

/// One health request to node `i`.
pub async fn sample(client: &Client, i: usize, recorder: &Recorder) -> Sample {
    let invoke_us = recorder.now_us();
    let answer = tokio::time::timeout(SAMPLE_TIMEOUT, client.sys().health()).await;
    let complete_us = recorder.now_us();
    let mut s = Sample {
        node: i,
        invoke_us,
        complete_us,
        ..Sample::default()
    };
    match answer {
        Ok(Ok(h)) => {
            s.status = Some(h.status);
            s.sealed = h.body.sealed;
            s.leader = h.body.leader_id.map(|id| id.saturating_sub(1) as usize);
            s.term = h.body.term.unwrap_or(0);
            s.applied_index = h.body.applied_index.unwrap_or(0);
            s.snapshot_index = h.body.snapshot_index.unwrap_or(0);
            s.problems = h.body.problems;
        }
        Ok(Err(e)) => {
            s.status = e.status();
            s.error = Some(e.to_string());
        }
        Err(_) => s.error = Some("timeout".into()),
    }
    s
}

/// Snapshots of one node over a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NodeSnapshots {
    /// Node id (1-based).
    pub node_id: u64,
    /// Snapshot index in its health at the end (0: none).
    pub snapshot_index: u64,
    /// Applied index in its health at the end.
    pub applied_index: u64,
    /// Snapshots it built itself (log lines).
    pub builds: usize,
    /// Log indexes of the snapshots it installed from a leader, in order.
    pub installs: Vec<u64>,
}

/// Warnings and errors in a node's log, grouped by what they say: the
/// target and message with ANSI colours, the timestamp and every number
/// stripped, cut at 100 characters.
pub fn warnings(log: &str) -> BTreeMap<String, usize> {
    let mut groups = BTreeMap::new();
    for line in log.lines() {
        let plain = strip_ansi(line);
        let Some(at) = plain.find(" WARN ").or_else(|| plain.find(" ERROR ")) else {
            continue;
        };
        let mut key = String::new();
        let mut in_number = false;
        for c in plain[at + 1..].chars() {
            if c.is_ascii_digit() {
                if !in_number {
                    key.push('N');
                }
                in_number = true;
            } else {
                in_number = false;
                key.push(c);
            }
        }
        let key: String = key.chars().take(100).collect();
        *groups.entry(key).or_default() += 1;
    }
    groups
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Counts snapshot builds and installs in a node's log text.
pub fn scan_snapshots(log: &str) -> (usize, Vec<u64>) {
    let builds = log.lines().filter(|l| l.contains(BUILD_LINE)).count();
    let installs = log
        .lines()
        .filter(|l| l.contains(INSTALL_LINE))
        .map(|l| install_index(l).unwrap_or(0))
        .collect();
    (builds, installs)
}

/// The index in `… meta: {snapshot_id:…, last_log:T1-N1-1234, …}`, i.e. the
/// number after the last `-` of the `last_log` id.
fn install_index(line: &str) -> Option<u64> {
    let rest = &line[line.find("last_log:")? + "last_log:".len()..];
    let id = rest.split([',', '}', ' ']).next()?;
    id.rsplit('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_grouped_without_colours_times_or_numbers() {
        let log = "\
\u{1b}[2m2026-11-29T19:59:34.976610Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m coffer::cluster::network: peer unreachable peer=1
\u{1b}[2m2026-11-29T19:59:35.056927Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m coffer::cluster::network: peer unreachable peer=12
2026-11-29T19:59:35Z ERROR coffer::server: storage failed
2026-11-29T19:59:35Z  INFO coffer::server: fine
";
        let w = warnings(log);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(
            w["WARN coffer::cluster::network: peer unreachable peer=N"],
            2
        );
        assert_eq!(w["ERROR coffer::server: storage failed"], 1);
    }

    #[test]
    fn builds_and_installs_are_counted_with_their_index() {
        let log = "\
2026-11-29T19:40:01Z  INFO openraft::core::sm::worker: openraft::core::sm::worker::Worker<C, SM>::worker_loop: build snapshot
2026-11-29T19:40:02Z  INFO openraft::core::sm::worker: install_complete_snapshot: install complete snapshot
2026-11-29T19:40:03Z  INFO openraft::core::sm::worker: Done install complete snapshot, meta: {snapshot_id:1-2-400-1764445203, last_log:T1-N2-400, last_membership:...}
2026-11-29T19:40:04Z  INFO coffer: something else
";
        let (builds, installs) = scan_snapshots(log);
        assert_eq!(builds, 1);
        assert_eq!(installs, vec![400]);
    }
}
