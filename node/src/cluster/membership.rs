//! Membership changes (executed on the leader) and the peer listing.

use std::collections::BTreeSet;

use openraft::ChangeMembers;
use raft_store::{Node, NodeId, StateMachineStore};

use super::dr;
use super::forward::{AdminRequest, AdminResult, ForwardError, RaftHandle};
use super::{PeerInfo, PeersInfo, LEARNER_CATCH_UP};

/// The membership as this node last saw it.
pub fn peers_info(raft: &RaftHandle) -> PeersInfo {
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let peers = membership
        .nodes()
        .map(|(id, node)| PeerInfo {
            node_id: *id,
            api_addr: node.api_addr.clone(),
            cluster_addr: node.cluster_addr.clone(),
            voter: voters.contains(id),
        })
        .collect();
    PeersInfo {
        leader_id: m.current_leader,
        term: m.current_term,
        peers,
    }
}

/// Runs a membership change on this node, which must be the leader.
pub async fn leader_admin(
    raft: &RaftHandle,
    sm: &StateMachineStore,
    req: AdminRequest,
) -> AdminResult {
    match req {
        AdminRequest::Join { id, node } => {
            let dr = dr::dr_members(sm).map_err(|e| ForwardError::Unavailable(e.to_string()))?;
            if dr.contains(&id) {
                return Err(ForwardError::Refused(format!(
                    "node {id} is a disaster-recovery replica: it never becomes a voter of this \
                     cluster (if the primary is lost, promote the DR site with \
                     `coffer operator dr promote`)"
                )));
            }
            add_learner(raft, id, node).await?;
            let voters = BTreeSet::from([id]);
            raft.change_membership(ChangeMembers::AddVoterIds(voters), true)
                .await?;
        }
        AdminRequest::JoinDr { id, node } => {
            if raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == id)
            {
                return Err(ForwardError::Refused(format!(
                    "node {id} is a voter of this cluster; a DR replica must be a new node"
                )));
            }
            // Listed first, so that no leader ever promotes it, even one
            // elected while the learner is being added.
            dr::write_dr_members(raft, sm, |m| {
                m.insert(id);
            })
            .await?;
            add_learner(raft, id, node).await?;
            tracing::info!(event = "dr.joined", node_id = id, "DR replica added");
        }
        AdminRequest::Remove { id } => {
            remove(raft, id).await?;
            let dr = dr::dr_members(sm).map_err(|e| ForwardError::Unavailable(e.to_string()))?;
            if dr.contains(&id) {
                dr::write_dr_members(raft, sm, |m| {
                    m.remove(&id);
                })
                .await?;
            }
        }
        AdminRequest::DrAdopt { .. } => {
            return Err(ForwardError::Refused(
                "a DR promotion is answered by DR members, not by the leader".into(),
            ))
        }
    }
    Ok(peers_info(raft))
}

/// Adds `id` as a learner and waits until it acknowledged the log.
async fn add_learner(raft: &RaftHandle, id: NodeId, node: Node) -> Result<(), ForwardError> {
    // Learner first: it catches up on the log before it counts towards the
    // quorum. openraft's own "blocking" wait accepts any learner within
    // `replication_lag_threshold`, even one never reached, so wait for a
    // real acknowledgement of the membership entry instead.
    let added = raft.add_learner(id, node, false).await?;
    let want = added.log_id.index;
    let caught_up = raft
        .wait(Some(LEARNER_CATCH_UP))
        .metrics(
            |m| matched_index(m, id).is_some_and(|i| i >= want),
            "learner caught up",
        )
        .await;
    if caught_up.is_err() {
        // Undo, so an unreachable or untrusted node is not left behind.
        let nodes = BTreeSet::from([id]);
        let _ = raft
            .change_membership(ChangeMembers::RemoveNodes(nodes), false)
            .await;
        return Err(ForwardError::Unavailable(format!(
            "node {id} did not catch up within {LEARNER_CATCH_UP:?}; check that it is \
             reachable and its certificate is issued by the cluster CA"
        )));
    }
    Ok(())
}

/// Highest log index `id` acknowledged, as seen by this leader.
fn matched_index(m: &openraft::RaftMetrics<NodeId, Node>, id: NodeId) -> Option<u64> {
    let matched = m.replication.as_ref()?.get(&id)?.as_ref()?;
    Some(matched.index)
}

async fn remove(raft: &RaftHandle, id: NodeId) -> Result<(), ForwardError> {
    let info = peers_info(raft);
    let Some(peer) = info.peers.iter().find(|p| p.node_id == id) else {
        return Err(ForwardError::Refused(format!("node {id} is not a member")));
    };
    if peer.voter {
        let voters = BTreeSet::from([id]);
        // retain=false: the removed voter does not linger as a learner.
        raft.change_membership(ChangeMembers::RemoveVoters(voters), false)
            .await?;
    }
    if peers_info(raft).peers.iter().any(|p| p.node_id == id) {
        let nodes = BTreeSet::from([id]);
        raft.change_membership(ChangeMembers::RemoveNodes(nodes), false)
            .await?;
    }
    Ok(())
}
