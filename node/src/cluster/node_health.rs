//! [`ClusterNode`]'s health as operators and supervisors see it: what
//! makes it unfit to serve, when it must stop, its Raft state.

use std::time::Duration;

use super::super::RaftStatus;
use super::{describe, quorum_index, ClusterNode};

impl ClusterNode {
    /// What makes this node unfit to serve, in words for operators; empty
    /// when healthy. A stopped Raft core, failed storage, a follower that
    /// lost its leader or trails it too far, a leader without a quorum.
    pub fn problems(&self) -> Vec<String> {
        let m = self.raft.metrics().borrow().clone();
        let mut problems = Vec::new();
        if let Some(reason) = self.flag.corrupt() {
            problems.push(format!(
                "this node's state is damaged and it serves no data until repaired: {reason}"
            ));
        }
        if let Err(e) = &m.running_state {
            problems.push(format!("the Raft core stopped: {e}"));
        }
        if let Some(reason) = self.superseded.reason() {
            problems.push(reason);
        }
        if let Some(e) = self.log.failure() {
            problems.push(format!("the Raft log storage failed: {e}"));
        }
        let silence_limit = Duration::from_millis(self.tuning.max_leader_silence_ms);
        let is_member = m
            .membership_config
            .membership()
            .get_node(&self.id)
            .is_some();
        if m.current_leader == Some(self.id) {
            let single = m.membership_config.membership().voter_ids().count() == 1;
            let acked = m.millis_since_quorum_ack.map(Duration::from_millis);
            if !single && acked.is_none_or(|d| d > silence_limit) {
                problems.push(format!(
                    "this leader has not heard from a quorum for {}",
                    describe(acked)
                ));
            }
        } else if is_member {
            let since = self.contact.since();
            if since.is_none_or(|d| d > silence_limit) {
                problems.push(format!(
                    "no contact with a leader for {} (limit {} ms)",
                    describe(since),
                    self.tuning.max_leader_silence_ms
                ));
            }
            let applied = self.sm.applied_index();
            let lag = self.contact.leader_commit().saturating_sub(applied);
            if lag > self.tuning.max_lag_entries {
                problems.push(format!(
                    "lagging: applied index {applied} is {lag} entries behind the leader's \
                     commit index (limit {})",
                    self.tuning.max_lag_entries
                ));
            }
        }
        problems
    }

    /// Resolves with a description once this node can no longer work: the
    /// Raft core stopped on a fatal error, or the log storage failed. The
    /// server then exits non-zero so that a supervisor restarts it.
    pub async fn fatal(&self) -> String {
        let mut metrics = self.raft.metrics();
        let mut poll = tokio::time::interval(Duration::from_millis(200));
        loop {
            if let Err(e) = &metrics.borrow().running_state {
                return format!("the Raft core stopped: {e}");
            }
            if let Some(e) = self.log.failure() {
                return format!("the Raft log storage failed: {e}");
            }
            tokio::select! {
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return "the Raft core is gone".into();
                    }
                }
                _ = poll.tick() => {}
            }
        }
    }

    /// This node's Raft state.
    pub fn status(&self) -> RaftStatus {
        let m = self.raft.metrics().borrow().clone();
        let applied = m.last_applied.map_or(0, |l| l.index);
        let is_leader = m.current_leader == Some(self.id);
        let commit_index = if is_leader {
            quorum_index(&m).unwrap_or(applied).max(applied)
        } else {
            applied
        };
        RaftStatus {
            node_id: self.id,
            leader_id: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index,
            applied_index: applied,
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            is_leader,
        }
    }
}

/// Counts every new leadership this node observes in
/// `coffer_raft_leader_changes_total`: a leader id or term other than the
/// last one seen with a leader (the first leader seen after start counts,
/// as etcd's `leader_changes_seen_total` does). Driven by openraft's
/// metrics watch, so a change is counted once when it happens, whoever
/// scrapes; ends when Raft shuts down.
pub async fn count_leader_changes(raft: openraft::Raft<raft_store::TypeConfig>) {
    let mut metrics = raft.metrics();
    drop(raft);
    let changes = metrics::counter!(crate::metrics::LEADER_CHANGES);
    let mut last: Option<(u64, raft_store::NodeId)> = None;
    loop {
        let seen = {
            let m = metrics.borrow_and_update();
            m.current_leader.map(|leader| (m.current_term, leader))
        };
        if seen.is_some() && seen != last {
            changes.increment(1);
            last = seen;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
