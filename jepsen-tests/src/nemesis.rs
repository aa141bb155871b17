//! Fault injection against a [`LocalCluster`]: partitions (iptables inside
//! the node namespaces), `kill -9` + restart on the same data dir, SIGSTOP /
//! SIGCONT pauses longer than the election timeout, and removing + re-adding
//! a member under load. Every fault is healed before the next one starts,
//! and [`Nemesis::heal_all`] restores everything before the final reads.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context};
use coffer_client::Client;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::cluster::LocalCluster;

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
    /// A nemesis of `kind` drawing from `rng`.
    pub fn new(kind: NemesisKind, rng: StdRng) -> Self {
        Self { kind, rng }
    }

    /// Injects one fault; returns it with a description.
    pub async fn inject(&mut self, cluster: &mut LocalCluster) -> anyhow::Result<(Fault, String)> {
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
                for k in 0..n {
                    net.cut(order[k], order[(k + 2) % n])?;
                }
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
                Ok((Fault::Killed(target), format!("kill -9 n{}", target + 1)))
            }
            NemesisKind::Pause => {
                cluster.signal(target, libc::SIGSTOP)?;
                Ok((Fault::Paused(target), format!("pause n{}", target + 1)))
            }
            NemesisKind::Membership => {
                remove_member(cluster, target).await?;
                Ok((
                    Fault::Removed(target),
                    format!("remove n{} (wiped, re-added)", target + 1),
                ))
            }
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
        Ok(())
    }

    /// Ends `fault`: heals, continues, restarts + unseals, or re-adds.
    pub async fn heal(&mut self, cluster: &mut LocalCluster, fault: Fault) -> anyhow::Result<()> {
        match fault {
            Fault::Partition => cluster.netns().context("no namespaces")?.heal(),
            Fault::Paused(i) => cluster.signal(i, libc::SIGCONT),
            Fault::Killed(i) => {
                cluster.restart(i)?;
                cluster.unseal(i).await
            }
            Fault::Removed(i) => readd_member(cluster, i).await,
        }
    }
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
