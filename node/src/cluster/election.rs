//! Elections with a pre-vote round (Raft thesis §9.6).
//!
//! openraft 0.9 has no PreVote: a follower whose election timer fires bumps
//! its term at once. A follower cut off from the leader (a partition, a
//! stalled disk, a message it could not decode) therefore comes back with a
//! higher term, and the leader's next AppendEntries to it returns that term
//! and deposes a perfectly healthy leader. Coffer turns openraft's own
//! election timer off (`enable_elect = false`) and runs [`Driver`] instead:
//! when this node has not heard from a leader for the leader lease plus a
//! random delay, it first asks the other voters whether they *would* vote
//! for it — without anyone changing their term — and only when a quorum of
//! every joint configuration says yes does it trigger a real election.
//!
//! A voter answers yes only if it has not heard from a live leader within
//! the lease (a leader: has not heard from a quorum within it) and the
//! candidate's log is at least as up to date as its own — the same checks
//! openraft applies to the real vote, done before any term moves.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{LogId, ServerState};
use raft_store::{LogStore, NodeId};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::forward::RaftHandle;
use super::network::{blob, Peers};
use super::{pb, RaftTuning};

/// The election clock of a node.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How long a voter trusts a leader it heard from (openraft's leader
    /// lease is `election_timeout_max`; the real vote is refused within it
    /// anyway).
    pub lease: Duration,
    /// The random extra wait before campaigning: up to this.
    pub jitter: Duration,
}

impl Timing {
    /// The timing of `tuning`.
    pub fn of(tuning: &RaftTuning) -> Self {
        Self {
            lease: Duration::from_millis(tuning.election_timeout_max_ms),
            jitter: Duration::from_millis(
                tuning.election_timeout_max_ms - tuning.election_timeout_min_ms,
            ),
        }
    }

    /// The lease plus a random part of the election timeout range.
    fn jittered(&self) -> Duration {
        let extra = rand::rng().random_range(0..=self.jitter.as_millis() as u64);
        self.lease + Duration::from_millis(extra)
    }
}
/// How often the driver looks at the clock.
const TICK: Duration = Duration::from_millis(25);
/// Deadline of one pre-vote request.
const PRE_VOTE_TIMEOUT: Duration = Duration::from_millis(250);

/// When this node last heard from a leader it accepted, and what that
/// leader had committed. Updated by the gRPC `Raft` service.
#[derive(Default)]
pub struct LeaderContact {
    last: Mutex<Option<Instant>>,
    /// Leader RPCs being processed right now (a long snapshot install is
    /// contact for as long as it runs).
    in_flight: AtomicUsize,
    /// The leader's commit index from its last accepted AppendEntries.
    leader_commit: AtomicU64,
}

/// Marks one leader RPC as in progress until dropped.
pub struct InFlight<'a>(&'a LeaderContact);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LeaderContact {
    /// A leader RPC starts.
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    /// A leader RPC was accepted (the sender's vote is not below ours).
    pub fn heard(&self, leader_commit: Option<u64>) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        if let Some(c) = leader_commit {
            self.leader_commit.fetch_max(c, Ordering::AcqRel);
        }
    }

    /// Time since the last accepted leader RPC: zero while one is being
    /// processed, `None` if no leader was ever heard from since start.
    pub fn since(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Some(Duration::ZERO);
        }
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.elapsed())
    }

    /// The highest commit index a leader reported to this node.
    pub fn leader_commit(&self) -> u64 {
        self.leader_commit.load(Ordering::Acquire)
    }

    fn heard_within(&self, window: Duration) -> bool {
        self.since().is_some_and(|d| d < window)
    }
}

/// "Would you vote for me?" — changes nothing on the receiver.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreVoteRequest {
    /// The node that wants to campaign.
    pub candidate: NodeId,
    /// Its last log id.
    pub last_log_id: Option<LogId<NodeId>>,
}

/// The receiver's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreVoteResponse {
    /// Whether the receiver would grant a real vote now.
    pub granted: bool,
    /// Why not, for the logs.
    pub reason: String,
}

/// Answers a pre-vote request with this node's view.
pub fn answer(
    raft: &RaftHandle,
    contact: &LeaderContact,
    log: &LogStore,
    timing: &Timing,
    req: &PreVoteRequest,
) -> PreVoteResponse {
    let refuse = |reason: String| PreVoteResponse {
        granted: false,
        reason,
    };
    {
        let m = raft.metrics();
        let m = m.borrow();
        if m.state == ServerState::Leader {
            let acked = m
                .millis_since_quorum_ack
                .is_some_and(|ms| ms < timing.lease.as_millis() as u64);
            if acked {
                return refuse(format!("node {} leads with a live quorum", m.id));
            }
        } else if contact.heard_within(timing.lease) {
            return refuse(format!(
                "node {} hears from leader {:?}",
                m.id, m.current_leader
            ));
        }
    }
    let mine = match log.log_state() {
        Ok(s) => s.last_log_id,
        Err(e) => return refuse(format!("cannot read the local log: {e}")),
    };
    if req.last_log_id < mine {
        return refuse(format!(
            "candidate's log ends at {:?}, this node's at {mine:?}",
            req.last_log_id
        ));
    }
    PreVoteResponse {
        granted: true,
        reason: String::new(),
    }
}

/// Starts elections after a successful pre-vote round.
pub struct Driver {
    /// This node's Raft.
    pub raft: RaftHandle,
    /// When it last heard from a leader.
    pub contact: Arc<LeaderContact>,
    /// Its log (for the last log id a pre-vote carries).
    pub log: LogStore,
    /// Channels to the other voters.
    pub peers: Peers,
    /// Its id.
    pub id: NodeId,
    /// Its election clock.
    pub timing: Timing,
    /// Its verdict on its own state: a damaged node never campaigns.
    pub flag: Arc<super::integrity::CorruptFlag>,
    /// When the driver started (the silence before any leader was heard).
    pub started: Instant,
}

impl Driver {
    /// Runs until the task is aborted.
    pub async fn run(self) {
        let mut next_try = Instant::now() + self.timing.jittered();
        loop {
            tokio::time::sleep(TICK).await;
            if !self.should_campaign() {
                // Heard from a leader (or leading): the timer restarts.
                next_try = Instant::now() + self.timing.jittered();
                continue;
            }
            if Instant::now() < next_try {
                continue;
            }
            tracing::debug!(node = self.id, silence = ?self.contact.since(), "no leader: pre-vote round");
            // A quorum's yes is only good while nobody else won meanwhile:
            // a node that heard from a new leader during its round must not
            // depose it with a higher term.
            if self.pre_vote().await && self.should_campaign() {
                tracing::info!(
                    node = self.id,
                    "pre-vote granted by a quorum; starting an election"
                );
                if let Err(e) = self.raft.trigger().elect().await {
                    tracing::warn!(error = %e, "triggering an election failed");
                }
            }
            // Whether or not it was won, retry only after another random
            // delay, so that two candidates do not keep colliding.
            next_try = Instant::now() + self.timing.jittered();
        }
    }

    /// A voter that has not heard from a leader within the lease (and
    /// whose state is not damaged: a leader answers writes from it).
    fn should_campaign(&self) -> bool {
        if self.flag.corrupt().is_some() {
            return false;
        }
        let m = self.raft.metrics();
        let m = m.borrow();
        if m.state == ServerState::Leader || m.state == ServerState::Shutdown {
            return false;
        }
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id)
        {
            return false;
        }
        let silence = self
            .contact
            .since()
            .unwrap_or_else(|| self.started.elapsed());
        silence >= self.timing.lease
    }

    /// Asks every other voter; true when a quorum of every joint
    /// configuration (this node included) would grant the vote.
    async fn pre_vote(&self) -> bool {
        let (configs, nodes) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            let configs: Vec<BTreeSet<NodeId>> = membership.get_joint_config().clone();
            let nodes: Vec<(NodeId, String)> = membership
                .voter_ids()
                .filter(|id| *id != self.id)
                .filter_map(|id| {
                    membership
                        .get_node(&id)
                        .map(|n| (id, n.cluster_addr.clone()))
                })
                .collect();
            (configs, nodes)
        };
        let last_log_id = match self.log.log_state() {
            Ok(s) => s.last_log_id,
            Err(e) => {
                tracing::warn!(error = %e, "pre-vote: cannot read the local log");
                return false;
            }
        };
        let req = PreVoteRequest {
            candidate: self.id,
            last_log_id,
        };
        let mut answers: futures::stream::FuturesUnordered<_> = nodes
            .into_iter()
            .map(|(id, addr)| {
                let req = req.clone();
                async move { (id, self.ask(&addr, &req).await) }
            })
            .collect();
        let mut granted = BTreeSet::from([self.id]);
        let quorum = |granted: &BTreeSet<NodeId>| {
            configs
                .iter()
                .all(|c| c.iter().filter(|id| granted.contains(id)).count() * 2 > c.len())
        };
        // Done at the first quorum: waiting for a voter that does not answer
        // (stopped, cut off) would hold every candidate for the full
        // deadline and let their elections start together and split votes.
        while let Some((id, answer)) = futures::StreamExt::next(&mut answers).await {
            match answer {
                Some(a) if a.granted => {
                    granted.insert(id);
                    if quorum(&granted) {
                        return true;
                    }
                }
                Some(a) => tracing::debug!(node = id, reason = %a.reason, "pre-vote refused"),
                None => tracing::debug!(node = id, "pre-vote unanswered"),
            }
        }
        quorum(&granted)
    }

    async fn ask(&self, addr: &str, req: &PreVoteRequest) -> Option<PreVoteResponse> {
        let msg = blob(addr, req).ok()?;
        self.peers
            .call(addr, msg, Some(PRE_VOTE_TIMEOUT), |ch, r| async move {
                super::network::limited!(
                    pb::raft_client::RaftClient::new(ch),
                    self.peers.max_message_bytes()
                )
                .pre_vote(r)
                .await
            })
            .await
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_is_fresh_while_an_rpc_runs_and_ages_after() {
        let c = LeaderContact::default();
        assert_eq!(c.since(), None);
        {
            let _g = c.begin();
            assert_eq!(c.since(), Some(Duration::ZERO));
        }
        assert_eq!(c.since(), None);
        c.heard(Some(7));
        c.heard(Some(5));
        assert!(c.heard_within(Duration::from_secs(1)));
        assert_eq!(c.leader_commit(), 7);
    }

    #[test]
    fn jitter_stays_within_the_election_window() {
        let timing = Timing::of(&RaftTuning::default());
        assert_eq!(timing.lease, Duration::from_millis(1000));
        for _ in 0..100 {
            let d = timing.jittered();
            assert!(
                d >= timing.lease && d <= timing.lease + timing.jitter,
                "{d:?}"
            );
        }
    }
}
