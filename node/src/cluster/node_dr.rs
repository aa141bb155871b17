//! [`ClusterNode`]'s disaster-recovery operations: joining a DR replica,
//! its status, and promoting the DR site (see `cluster::dr`).

use std::collections::BTreeMap;
use std::time::Duration;

use raft_store::{Node, NodeId};
use serde::Serialize;

use super::super::dr::{self, Promotion};
use super::super::forward::AdminRequest;
use super::super::{ClusterError, PeersInfo};
use super::ClusterNode;

/// What `GET /v1/sys/dr/status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DrStatus {
    /// This node is a DR replica (refuses writes, can be promoted).
    pub dr_replica: bool,
    /// Every DR member's id, as replicated.
    pub dr_members: Vec<NodeId>,
    /// Milliseconds since this node last heard from a leader (`None`: never
    /// since it started).
    pub ms_since_leader_contact: Option<u64>,
    /// A promotion is staged or still making the DR members voters.
    pub promotion_pending: bool,
}

impl ClusterNode {
    /// Adds `id` as a disaster-recovery replica: a learner the leader never
    /// promotes (run on the leader).
    pub async fn join_dr(&self, id: NodeId, node: Node) -> Result<PeersInfo, ClusterError> {
        self.admin(AdminRequest::JoinDr { id, node }).await
    }

    /// Whether this node is a DR replica: it refuses every write.
    pub fn is_dr_replica(&self) -> bool {
        dr::is_dr_replica(&self.raft, &self.sm, self.id)
    }

    /// This node's DR role as operators see it.
    pub fn dr_status(&self) -> Result<DrStatus, ClusterError> {
        let pending = [dr::PROMOTE_FILE, dr::PENDING_FILE]
            .iter()
            .any(|f| self.data_dir.join(f).exists());
        Ok(DrStatus {
            dr_replica: self.is_dr_replica(),
            dr_members: dr::dr_members(&self.sm)?.into_iter().collect(),
            ms_since_leader_contact: self.contact.since().map(|d| d.as_millis() as u64),
            promotion_pending: pending,
        })
    }

    /// Promotes the DR site this replica belongs to into a new cluster,
    /// once the primary is lost: the other DR members take a new cluster id
    /// (so they refuse the old primary from now on), the promotion is
    /// staged in the data dir, and the node asks for the restart that
    /// installs it (see `cluster::dr`). The caller authorised it with a DR
    /// operation token. Returns what happened, for the operator.
    pub async fn dr_promote(&self) -> Result<String, ClusterError> {
        if !self.is_dr_replica() {
            return Err(ClusterError::Invalid(
                "this node is not a disaster-recovery replica; only a DR member can be promoted"
                    .into(),
            ));
        }
        let silence = Duration::from_millis(self.tuning.max_leader_silence_ms);
        if let Some(since) = self.contact.since().filter(|d| *d < silence) {
            return Err(ClusterError::Invalid(format!(
                "this DR replica heard from the primary's leader {} ms ago: the primary is not \
                 lost. Promote only when it is (stop it first for a planned switch-over); a \
                 second writable cluster would split the data",
                since.as_millis()
            )));
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let mut members: BTreeMap<NodeId, Node> = dr::dr_members(&self.sm)?
            .into_iter()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.clone())))
            .collect();
        let old = self.identity.cluster_id().unwrap_or_default();
        let cluster_id = dr::promoted_cluster_id(&old, m.current_term, &members);
        let others: Vec<(NodeId, Node)> = members
            .iter()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, n)| (*id, n.clone()))
            .collect();
        let mut left_out = Vec::new();
        for (id, node) in others {
            let adopt = AdminRequest::DrAdopt {
                cluster_id: cluster_id.clone(),
                promoted_by: self.id,
            };
            if let Err(e) = self.remote_admin(&node, &adopt).await {
                tracing::warn!(
                    node_id = id,
                    error = %e,
                    "DR promotion: member unreachable, left out of the new cluster"
                );
                members.remove(&id);
                left_out.push(format!("{id} ({e})"));
            }
        }
        let ids: Vec<String> = members.keys().map(u64::to_string).collect();
        dr::stage(
            &self.data_dir,
            &Promotion {
                cluster_id: cluster_id.clone(),
                members,
            },
        )?;
        tracing::warn!(
            event = "dr.promote_staged",
            node_id = self.id,
            old_cluster_id = %old,
            cluster_id = %cluster_id,
            members = %ids.join(","),
            "disaster-recovery promotion staged; the node restarts to install it"
        );
        self.restart.notify_one();
        let mut done = format!(
            "DR site promoted: new cluster {cluster_id} with members [{}]. This node restarts \
             (a supervisor starts it again), leads, and makes the other members voters; unseal \
             it as usual.",
            ids.join(", ")
        );
        if !left_out.is_empty() {
            done.push_str(&format!(
                " Left out (unreachable; wipe them and join them again): {}.",
                left_out.join(", ")
            ));
        }
        Ok(done)
    }
}
