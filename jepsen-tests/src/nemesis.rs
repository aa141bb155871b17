//! Fault injection against a [`LocalCluster`]: partitions (iptables inside
//! the node namespaces), `kill -9` + restart on the same data dir, SIGSTOP /
//! SIGCONT pauses longer than the election timeout, removing + re-adding a
//! member under load, and killing the leader while a follower that fell
//! behind the purged log catches up. Every fault is healed before the next
//! one starts; the runner heals before the final reads. Each fault and heal
//! is written to the run's [`Timeline`] (who can reach whom, when).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use coffer_client::Client;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use serde::Serialize;

use crate::cluster::LocalCluster;
use crate::history::Timeline;

/// Which faults a run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisKind {
    /// No faults.
    None,
    /// Random halves (for 5 nodes also majorities-ring and bridge).
    PartitionRandom,
    /// The leader alone on one side.
    PartitionLeader,
    /// 5 nodes: each node sees its two ring neighbours only.
    PartitionRing,
    /// 5 nodes: two pairs joined only through one bridge node.
    PartitionBridge,
    /// `kill -9` of the leader or a random node, restart on its data dir.
    Kill,
    /// SIGSTOP of the leader or a random node, SIGCONT later.
    Pause,
    /// Remove a member, wipe it, re-add it as a fresh learner → voter.
    Membership,
    /// Cut a follower off (SIGSTOP without namespaces) until the leader
    /// purged the log past it, let it back, and `kill -9` the leader while
    /// it catches up; the up-to-date follower must take over.
    KillLeaderLagging,
    /// A random one of the above per cycle.
    Mixed,
}

impl NemesisKind {
    /// Whether the nemesis needs nodes in network namespaces.
    pub fn needs_netns(self) -> bool {
        matches!(
            self,
            Self::PartitionRandom
                | Self::PartitionLeader
                | Self::PartitionRing
                | Self::PartitionBridge
                | Self::Mixed
        )
    }
}

/// A fault in effect, to be healed.
#[derive(Debug)]
pub enum Fault {
    /// iptables rules in the namespaces.
    Partition,
    /// Node index killed.
    Killed(usize),
    /// Node index stopped.
    Paused(usize),
    /// Node index removed from the membership (and wiped).
    Removed(usize),
}

/// Chooses and applies faults.
pub struct Nemesis {
    kind: NemesisKind,
    rng: StdRng,
    timeline: Timeline,
    snapshot_logs: u64,
    lags: Vec<LagReport>,
}

/// Log entries a node keeps after a snapshot: `raft_snapshot_logs / 5`
/// (`LOGS_KEPT_PER_SNAPSHOT_INTERVAL` in `node/src/cluster/mod.rs`). The
/// leader purges up to its snapshot index minus these.
const KEPT_PER_SNAPSHOT_INTERVAL: u64 = 5;
/// Entries beyond the purge point before the lagging follower is let back
/// (its log may hold appended, not yet applied entries past its applied
/// index).
const PURGE_MARGIN: u64 = 50;
/// Longest the follower is kept behind waiting for the purge.
const LAG_MAX: Duration = Duration::from_secs(20);
/// Time a follower should at least be held back for (writes to outgrow a
/// snapshot interval); `mixed` picks `kill-leader-lagging` only with this
/// much time left.
const MIN_HOLD: Duration = Duration::from_secs(6);
/// Longest wait for the follower to hear from the leader again.
const RECONTACT_MAX: Duration = Duration::from_secs(3);
/// Longest wait for a new leader after the kill.
const ELECTION_MAX: Duration = Duration::from_secs(15);

/// How `kill-leader-lagging` holds a follower back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldBack {
    /// Cut off from every peer with iptables (network namespaces).
    Cut,
    /// SIGSTOP (loopback clusters).
    Paused,
}

impl std::fmt::Display for HoldBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cut => "cut off",
            Self::Paused => "pause",
        })
    }
}

/// What one `kill-leader-lagging` fault did and saw.
#[derive(Clone, Debug, Serialize)]
pub struct LagReport {
    /// The follower held back (index).
    pub lagging: usize,
    /// The leader killed (index).
    pub killed: usize,
    /// How the follower was held back.
    pub how: HoldBack,
    /// The follower's applied index when it was held back.
    pub lagging_applied_before: u64,
    /// The leader's snapshot index when the follower was let back.
    pub leader_snapshot_at_resume: u64,
    /// The leader's applied index when the follower was let back.
    pub leader_applied_at_resume: u64,
    /// Whether the leader's snapshot passed the follower by the kept log
    /// plus a margin, i.e. it purged past it and only a snapshot can help.
    pub purged_past: bool,
    /// How long the follower was held back, ms.
    pub held_ms: f64,
    /// How long after it was let back the follower answered 200/429 (heard
    /// from the leader again), ms; `None`: not within 3 s (killed anyway).
    pub recontact_ms: Option<f64>,
    /// The follower's applied index right after the kill (`None`: no answer).
    pub lagging_applied_after_kill: Option<u64>,
    /// The kill, µs since the run began.
    pub kill_us: u64,
    /// Who became leader (index), if anyone within the limit.
    pub new_leader: Option<usize>,
    /// How long after the kill the new leader answered as leader, ms.
    pub elected_after_ms: Option<f64>,
    /// The killed leader's term and the new leader's.
    pub terms: (u64, Option<u64>),
}

impl LagReport {
    /// Whether the kill provably hit while the follower was catching up:
    /// right after the kill it had applied less than the leader had before.
    pub fn still_catching_up(&self) -> bool {
        self.lagging_applied_after_kill
            .is_some_and(|a| a < self.leader_applied_at_resume)
    }
}

/// Short-timeout client for control-plane probes (a paused node must not
/// stall the nemesis).
fn probe_client(cluster: &LocalCluster, i: usize) -> anyhow::Result<Client> {
    let mut cfg = cluster.client_config(vec![cluster.nodes[i].url()])?;
    cfg.timeout = Duration::from_secs(1);
    cfg.max_attempts = 1;
    Ok(Client::new(cfg)?)
}

/// Index of the node that currently says it is leader, if any answers.
pub async fn find_leader(cluster: &LocalCluster, skip: &BTreeSet<usize>) -> Option<usize> {
    for i in 0..cluster.nodes.len() {
        if skip.contains(&i) || !cluster.nodes[i].is_running() {
            continue;
        }
        let Ok(client) = probe_client(cluster, i) else {
            continue;
        };
        if let Ok(h) = client.sys().health().await {
            if h.body.leader_id == Some(cluster.nodes[i].id) {
                return Some(i);
            }
        }
    }
    None
}

impl Nemesis {
    /// A nemesis of `kind` drawing from `rng`, writing what it does to
    /// `timeline`, against nodes that snapshot every `snapshot_logs` entries.
    pub fn new(kind: NemesisKind, rng: StdRng, timeline: Timeline, snapshot_logs: u64) -> Self {
        Self {
            kind,
            rng,
            timeline,
            snapshot_logs,
            lags: Vec::new(),
        }
    }

    /// What each `kill-leader-lagging` fault saw.
    pub fn lag_reports(&self) -> &[LagReport] {
        &self.lags
    }

    /// Time a fault cycle of this nemesis needs beyond the fault duration:
    /// holding a follower back until the leader purged past it.
    pub fn extra_time(&self) -> Duration {
        match self.kind {
            NemesisKind::KillLeaderLagging => MIN_HOLD,
            _ => Duration::ZERO,
        }
    }

    /// Injects one fault; returns it with a description. A follower held
    /// back by `kill-leader-lagging` is let back by `hold_until` at the
    /// latest (so the rest of the fault still runs under load).
    pub async fn inject(
        &mut self,
        cluster: &mut LocalCluster,
        hold_until: Instant,
    ) -> anyhow::Result<(Fault, String)> {
        let n = cluster.nodes.len();
        let kind = match self.kind {
            NemesisKind::Mixed => {
                let mut pool = vec![
                    NemesisKind::PartitionRandom,
                    NemesisKind::PartitionLeader,
                    NemesisKind::Kill,
                    NemesisKind::Pause,
                    NemesisKind::Membership,
                ];
                if hold_until > Instant::now() + MIN_HOLD {
                    pool.push(NemesisKind::KillLeaderLagging);
                }
                if n == 5 {
                    pool.extend([NemesisKind::PartitionRing, NemesisKind::PartitionBridge]);
                }
                pool[self.rng.random_range(0..pool.len())]
            }
            NemesisKind::PartitionRandom if n == 5 => [
                NemesisKind::PartitionRandom,
                NemesisKind::PartitionRing,
                NemesisKind::PartitionBridge,
            ][self.rng.random_range(0..3)],
            k => k,
        };
        let leader = find_leader(cluster, &BTreeSet::new()).await;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut self.rng);
        // Leader half the time, a random node otherwise.
        let target = match leader {
            Some(l) if self.rng.random_bool(0.5) => l,
            _ => order[0],
        };
        match kind {
            NemesisKind::None => bail!("the none nemesis injects nothing"),
            NemesisKind::PartitionRandom => {
                let (a, b) = order.split_at(n / 2);
                self.cut_groups(cluster, a, b)?;
                Ok((
                    Fault::Partition,
                    format!("partition {} | {}", ids(a), ids(b)),
                ))
            }
            NemesisKind::PartitionLeader => {
                let l = leader.unwrap_or(order[0]);
                let rest: Vec<usize> = (0..n).filter(|&i| i != l).collect();
                self.cut_groups(cluster, &[l], &rest)?;
                Ok((Fault::Partition, format!("isolate leader n{}", l + 1)))
            }
            NemesisKind::PartitionRing => {
                let net = cluster
                    .netns()
                    .context("partitions need --netns placement")?;
                // In a 5-ring each node keeps its two neighbours: a majority
                // for everyone, but no two nodes share the same majority.
                let pairs: Vec<(usize, usize)> =
                    (0..n).map(|k| (order[k], order[(k + 2) % n])).collect();
                for &(a, b) in &pairs {
                    net.cut(a, b)?;
                }
                self.timeline
                    .update(|s| s.cuts.extend(pairs.iter().map(|&p| ordered(p))));
                Ok((Fault::Partition, format!("majorities ring {}", ids(&order))))
            }
            NemesisKind::PartitionBridge => {
                let (a, b) = (&order[..2], &order[3..]);
                self.cut_groups(cluster, a, b)?;
                let desc = format!("bridge {} - n{} - {}", ids(a), order[2] + 1, ids(b));
                Ok((Fault::Partition, desc))
            }
            NemesisKind::Kill => {
                cluster.kill(target);
                self.timeline.update(|s| {
                    s.down.insert(target);
                });
                Ok((Fault::Killed(target), format!("kill -9 n{}", target + 1)))
            }
            NemesisKind::Pause => {
                cluster.signal(target, libc::SIGSTOP)?;
                self.timeline.update(|s| {
                    s.down.insert(target);
                });
                Ok((Fault::Paused(target), format!("pause n{}", target + 1)))
            }
            NemesisKind::Membership => {
                remove_member(cluster, target).await?;
                self.timeline.update(|s| {
                    s.down.insert(target);
                });
                Ok((
                    Fault::Removed(target),
                    format!("remove n{} (wiped, re-added)", target + 1),
                ))
            }
            NemesisKind::KillLeaderLagging => self.kill_leader_lagging(cluster, hold_until).await,
            NemesisKind::Mixed => unreachable!("resolved above"),
        }
    }

    fn cut_groups(&self, cluster: &LocalCluster, a: &[usize], b: &[usize]) -> anyhow::Result<()> {
        let net = cluster
            .netns()
            .context("partitions need --netns placement")?;
        for &x in a {
            for &y in b {
                net.cut(x, y)?;
            }
        }
        self.timeline.update(|s| {
            s.cuts.extend(
                a.iter()
                    .flat_map(|&x| b.iter().map(move |&y| ordered((x, y)))),
            );
        });
        Ok(())
    }

    /// Ends `fault`: heals, continues, restarts + unseals, or re-adds. The
    /// timeline says "healed" before the heal starts (see [`Timeline`]).
    pub async fn heal(&mut self, cluster: &mut LocalCluster, fault: Fault) -> anyhow::Result<()> {
        match fault {
            Fault::Partition => {
                self.timeline.update(|s| s.cuts.clear());
                cluster.netns().context("no namespaces")?.heal()
            }
            Fault::Paused(i) => {
                self.timeline.update(|s| {
                    s.down.remove(&i);
                });
                cluster.signal(i, libc::SIGCONT)
            }
            Fault::Killed(i) => {
                self.timeline.update(|s| {
                    s.down.remove(&i);
                });
                cluster.restart(i)?;
                cluster.unseal(i).await
            }
            Fault::Removed(i) => {
                self.timeline.update(|s| {
                    s.down.remove(&i);
                });
                readd_member(cluster, i).await
            }
        }
    }

    /// The `kill-leader-lagging` fault; see [`NemesisKind::KillLeaderLagging`].
    async fn kill_leader_lagging(
        &mut self,
        cluster: &mut LocalCluster,
        hold_until: Instant,
    ) -> anyhow::Result<(Fault, String)> {
        let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
        let followers: Vec<usize> = (0..cluster.nodes.len())
            .filter(|&i| i != leader && cluster.nodes[i].is_running())
            .collect();
        let lagging = *followers
            .choose(&mut self.rng)
            .context("no running follower")?;
        let before = probe(cluster, lagging).await;
        let lagging_applied_before = before.as_ref().map_or(0, |h| h.applied_index);
        let term = probe(cluster, leader).await.map_or(0, |h| h.term);

        // Hold the follower back until the leader's log no longer has what
        // it misses: snapshot index past its applied index by the kept log.
        let how = match cluster.netns() {
            Some(net) => {
                for other in (0..cluster.nodes.len()).filter(|&o| o != lagging) {
                    net.cut(lagging, other)?;
                }
                self.timeline.update(|s| {
                    s.cuts.extend(
                        (0..cluster.nodes.len())
                            .filter(|&o| o != lagging)
                            .map(|o| ordered((lagging, o))),
                    );
                });
                HoldBack::Cut
            }
            None => {
                cluster.signal(lagging, libc::SIGSTOP)?;
                self.timeline.update(|s| {
                    s.down.insert(lagging);
                });
                HoldBack::Paused
            }
        };
        let held = Instant::now();
        let hold_until = hold_until.min(held + LAG_MAX);
        let purge_target =
            lagging_applied_before + self.snapshot_logs / KEPT_PER_SNAPSHOT_INTERVAL + PURGE_MARGIN;
        let mut at_leader = Status::default();
        while Instant::now() < hold_until {
            if let Some(h) = probe(cluster, leader).await {
                at_leader = h;
                if at_leader.snapshot_index >= purge_target {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let held_ms = held.elapsed().as_secs_f64() * 1e3;

        // Let it back, and kill the leader as soon as the follower hears
        // from it again (answers 429): it is then receiving what it missed,
        // a snapshot by now.
        match how {
            HoldBack::Cut => {
                self.timeline.update(|s| s.cuts.clear());
                cluster.netns().context("no namespaces")?.heal()?;
            }
            HoldBack::Paused => {
                self.timeline.update(|s| {
                    s.down.remove(&lagging);
                });
                cluster.signal(lagging, libc::SIGCONT)?;
            }
        }
        let resumed = Instant::now();
        let mut recontact_ms = None;
        while resumed.elapsed() < RECONTACT_MAX {
            if probe(cluster, lagging).await.is_some_and(|h| h.in_contact) {
                recontact_ms = Some(resumed.elapsed().as_secs_f64() * 1e3);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cluster.kill(leader);
        self.timeline.update(|s| {
            s.down.insert(leader);
        });
        let kill_us = self.timeline.now_us();
        let killed_at = Instant::now();
        let after = probe(cluster, lagging).await;

        // The up-to-date follower must take over.
        let mut new_leader = None;
        let mut elected_after_ms = None;
        let mut new_term = None;
        while killed_at.elapsed() < ELECTION_MAX {
            if let Some(l) = find_leader(cluster, &BTreeSet::from([leader])).await {
                elected_after_ms = Some(killed_at.elapsed().as_secs_f64() * 1e3);
                new_term = probe(cluster, l).await.map(|h| h.term);
                new_leader = Some(l);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let report = LagReport {
            lagging,
            killed: leader,
            how,
            lagging_applied_before,
            leader_snapshot_at_resume: at_leader.snapshot_index,
            leader_applied_at_resume: at_leader.applied_index,
            purged_past: at_leader.snapshot_index >= purge_target,
            held_ms,
            recontact_ms,
            lagging_applied_after_kill: after.map(|h| h.applied_index),
            kill_us,
            new_leader,
            elected_after_ms,
            terms: (term, new_term),
        };
        let name = format!(
            "{how} n{} at applied {} for {:.1}s (leader snapshot {}), then kill -9 leader n{} \
             with n{} at applied {} of {}; new leader {}",
            lagging + 1,
            report.lagging_applied_before,
            held_ms / 1e3,
            report.leader_snapshot_at_resume,
            leader + 1,
            lagging + 1,
            report
                .lagging_applied_after_kill
                .map_or("?".to_string(), |a| a.to_string()),
            report.leader_applied_at_resume,
            new_leader.map_or("none".to_string(), |l| format!("n{}", l + 1)),
        );
        self.lags.push(report);
        Ok((Fault::Killed(leader), name))
    }
}

/// A cut pair in [`crate::history::NetState`]'s order.
fn ordered((a, b): (usize, usize)) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// The parts of a node's health the nemesis steers by.
#[derive(Clone, Copy, Debug, Default)]
struct Status {
    term: u64,
    applied_index: u64,
    snapshot_index: u64,
    /// Answered 200 or 429: in contact with a leader (or leading).
    in_contact: bool,
}

/// Node `i`'s health, if it answers at once.
async fn probe(cluster: &LocalCluster, i: usize) -> Option<Status> {
    let client = probe_client(cluster, i).ok()?;
    let h = client.sys().health().await.ok()?;
    Some(Status {
        term: h.body.term.unwrap_or(0),
        applied_index: h.body.applied_index.unwrap_or(0),
        snapshot_index: h.body.snapshot_index.unwrap_or(0),
        in_contact: matches!(h.status, 200 | 429),
    })
}

fn ids(nodes: &[usize]) -> String {
    let names: Vec<String> = nodes.iter().map(|i| format!("n{}", i + 1)).collect();
    format!("{{{}}}", names.join(","))
}

/// A client to any running node other than `except`, for admin calls.
fn admin_client(cluster: &LocalCluster, except: usize) -> anyhow::Result<Client> {
    let urls = (0..cluster.nodes.len())
        .filter(|&i| i != except && cluster.nodes[i].is_running())
        .map(|i| cluster.nodes[i].url())
        .collect();
    let mut cfg = cluster.client_config(urls)?;
    cfg.timeout = Duration::from_secs(15);
    Ok(Client::new(cfg)?)
}

async fn remove_member(cluster: &mut LocalCluster, i: usize) -> anyhow::Result<()> {
    let id = cluster.nodes[i].id;
    let client = admin_client(cluster, i)?;
    let mut last = None;
    for _ in 0..10 {
        match client.sys().remove(id).await {
            Ok(_) => {
                // A removed node keeps its old log; wipe it so it can only
                // come back as a brand-new learner.
                cluster.kill(i);
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
        // A retry after a lost answer is refused: check what happened.
        if membership(&client, id).await == Some(None) {
            cluster.kill(i);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("removing n{} failed: {:?}", i + 1, last)
}

async fn readd_member(cluster: &mut LocalCluster, i: usize) -> anyhow::Result<()> {
    cluster.wipe_and_start_fresh(i)?;
    let (id, api, raft) = {
        let n = &cluster.nodes[i];
        (n.id, n.api_addr.clone(), n.cluster_addr.clone())
    };
    let client = admin_client(cluster, i)?;
    let mut last = None;
    for _ in 0..10 {
        match client.sys().join(id, &api, &raft).await {
            Ok(_) => return cluster.unseal(i).await,
            Err(e) => last = Some(e),
        }
        if membership(&client, id).await == Some(Some(true)) {
            return cluster.unseal(i).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("re-adding n{} failed: {:?}", i + 1, last)
}

/// `Some(None)`: not a member; `Some(Some(voter))`: member; `None`: unknown.
async fn membership(client: &Client, id: u64) -> Option<Option<bool>> {
    let peers = client.sys().peers().await.ok()?;
    Some(
        peers
            .peers
            .iter()
            .find(|p| p.node_id == id)
            .map(|p| p.voter),
    )
}
