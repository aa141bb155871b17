//! Disaster-recovery site: members that replicate everything and never vote.
//!
//! `operator raft join --dr` adds a node as a learner that the leader never
//! promotes. Which members are DR replicas is replicated state (the raw key
//! [`DR_MEMBERS_KEY`], a JSON list of node ids, written before the learner is
//! added), so every node — the leader deciding on promotions, the replica
//! refusing writes — reads it from its own state machine. A DR replica is a
//! member listed there that is not a voter: it refuses every write with
//! [`DR_WRITE_REFUSED`] and serves reads through the primary's leader while
//! that leader is reachable.
//!
//! `operator dr promote` on a DR replica (authorised by a DR operation token,
//! see `operator::dr`) turns the DR members into a new cluster:
//!
//! 1. the promoted node gives every other DR member a new cluster id
//!    ([`DrAdopt`](super::forward::AdminRequest::DrAdopt)); from then on they
//!    refuse every RPC of the old primary, whose returning leader could
//!    otherwise overwrite their logs (fencing);
//! 2. it stages [`PROMOTE_FILE`] and restarts; before Raft starts, the file
//!    is installed: a membership entry in a new term with this node as the
//!    only voter and the other DR members as learners
//!    ([`raft_store::promote_membership`]), and the new cluster id;
//! 3. once it leads (a single voter elects itself), it makes the other DR
//!    members voters and clears the DR list ([`finish_promotion`]).
//!
//! The old primary keeps its old membership and cluster id: the DR members
//! refuse it, so it can neither disturb them nor count them in its quorum.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use openraft::ChangeMembers;
use raft_store::{Mutation, Node, NodeId, Request, StateMachineStore, Txn};
use serde::{Deserialize, Serialize};

use super::forward::{leader_write, ForwardError, RaftHandle};
use super::identity::IdentityFile;
use super::ClusterError;

/// Raw (not barrier-encrypted) state key listing the DR members' ids.
pub const DR_MEMBERS_KEY: &[u8] = b"sys/dr-members";
/// Staged promotion, installed at the next start before Raft opens.
pub const PROMOTE_FILE: &str = "dr-promote.json";
/// Members the promoted leader still has to make voters.
pub const PENDING_FILE: &str = "dr-promote-pending.json";
/// What a DR replica answers to a write.
pub const DR_WRITE_REFUSED: &str = "this node is a disaster-recovery replica and accepts no \
     writes: write to the primary cluster, or promote the DR site with \
     `coffer operator dr promote` if the primary is lost";

/// The DR members' ids as this node's state machine has them.
pub fn dr_members(sm: &StateMachineStore) -> Result<BTreeSet<NodeId>, ClusterError> {
    let Some(v) = sm.get(DR_MEMBERS_KEY)? else {
        return Ok(BTreeSet::new());
    };
    serde_json::from_slice(&v.value)
        .map_err(|e| ClusterError::Invalid(format!("the DR member list does not decode: {e}")))
}

/// Whether `id` is a DR replica: listed as DR and not a voter.
pub fn is_dr_replica(raft: &RaftHandle, sm: &StateMachineStore, id: NodeId) -> bool {
    let voter = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == id);
    // A list that cannot be read counts as "DR": refusing a write is the
    // safe side on a node that might be a replica.
    !voter && dr_members(sm).map_or(true, |m| m.contains(&id))
}

/// On the leader: replicates the DR list with `update` applied.
pub(super) async fn write_dr_members(
    raft: &RaftHandle,
    sm: &StateMachineStore,
    update: impl FnOnce(&mut BTreeSet<NodeId>),
) -> Result<(), ForwardError> {
    let mut members = dr_members(sm).map_err(|e| ForwardError::Unavailable(e.to_string()))?;
    update(&mut members);
    let value = serde_json::to_vec(&members)
        .map_err(|e| ForwardError::Unavailable(format!("encoding the DR list: {e}")))?;
    let req = Request {
        request_id: None,
        time_ms: 0,
        txn: Txn {
            compare: Vec::new(),
            mutations: vec![Mutation::Put {
                key: DR_MEMBERS_KEY.to_vec(),
                value,
            }],
            result: Vec::new(),
        },
    };
    leader_write(raft, req).await.map(|_| ())
}

/// A promotion staged by `dr promote`, installed at the next start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Promotion {
    /// The new cluster's id.
    pub cluster_id: String,
    /// Every member of the new cluster, the promoted node included.
    pub members: BTreeMap<NodeId, Node>,
}

/// The new cluster's id: derived from the old one, the members and the
/// term, so that it differs from the primary's and from any earlier
/// promotion.
pub fn promoted_cluster_id(old: &str, term: u64, members: &BTreeMap<NodeId, Node>) -> String {
    super::identity::derive_cluster_id(&format!("{old}/dr-promoted/{term}"), members)
}

/// Writes `promotion` for the next start (temp file, fsync, rename).
pub fn stage(data_dir: &Path, promotion: &Promotion) -> Result<(), ClusterError> {
    write_json(&data_dir.join(PROMOTE_FILE), promotion)
}

/// At start, before Raft opens the storage: installs a staged promotion.
pub fn install_staged(
    data_dir: &Path,
    id: NodeId,
    identity: &IdentityFile,
) -> Result<Option<String>, ClusterError> {
    let path = data_dir.join(PROMOTE_FILE);
    let promotion: Promotion = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            ClusterError::Invalid(format!("{} does not decode: {e}", path.display()))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ClusterError::Invalid(format!(
                "reading {}: {e}",
                path.display()
            )))
        }
    };
    let log_id = raft_store::promote_membership(data_dir, id, &promotion.members)?;
    identity.replace(&promotion.cluster_id)?;
    let pending: BTreeSet<NodeId> = promotion
        .members
        .keys()
        .copied()
        .filter(|m| *m != id)
        .collect();
    write_json(&data_dir.join(PENDING_FILE), &pending)?;
    std::fs::remove_file(&path)
        .map_err(|e| ClusterError::Invalid(format!("removing {}: {e}", path.display())))?;
    tracing::warn!(
        event = "dr.promotion_installed",
        node_id = id,
        cluster_id = %promotion.cluster_id,
        index = log_id.index,
        term = log_id.leader_id.term,
        "disaster-recovery promotion installed: this node is the only voter until it leads \
         and makes the other DR members voters"
    );
    Ok(Some(format!(
        "promoted at log index {} (cluster {})",
        log_id.index, promotion.cluster_id
    )))
}

/// Pause between attempts to finish a promotion.
const FINISH_RETRY: Duration = Duration::from_secs(1);

/// After a promotion: once this node leads, makes the other DR members
/// voters, clears the DR list and removes [`PENDING_FILE`]. Retries until
/// done (a DR member may be down for a while).
pub async fn finish_promotion(
    raft: RaftHandle,
    sm: StateMachineStore,
    data_dir: std::path::PathBuf,
) {
    let path = data_dir.join(PENDING_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return;
    };
    let pending: BTreeSet<NodeId> = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, file = %path.display(), "the pending DR promotion does not decode");
            return;
        }
    };
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        match finish_once(&raft, &sm, &pending).await {
            Ok(()) => break,
            Err(e) => {
                if attempt % 30 == 1 {
                    tracing::warn!(error = %e, "DR promotion: waiting to make the DR members voters");
                }
                if raft.metrics().borrow().running_state.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(FINISH_RETRY).await;
    }
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(error = %e, "removing {}", path.display());
    }
    let ids: Vec<String> = pending.iter().map(u64::to_string).collect();
    tracing::warn!(
        event = "dr.promoted",
        voters_added = %ids.join(","),
        "disaster-recovery promotion complete: the DR members are this cluster's voters"
    );
}

async fn finish_once(
    raft: &RaftHandle,
    sm: &StateMachineStore,
    pending: &BTreeSet<NodeId>,
) -> Result<(), ForwardError> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(m.id) {
        return Err(ForwardError::Unavailable("not leading yet".into()));
    }
    let membership = m.membership_config.membership().clone();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let missing: BTreeSet<NodeId> = pending
        .iter()
        .copied()
        .filter(|id| !voters.contains(id) && membership.get_node(id).is_some())
        .collect();
    if !missing.is_empty() {
        raft.change_membership(ChangeMembers::AddVoterIds(missing), true)
            .await?;
    }
    write_dr_members(raft, sm, |m| m.clear()).await
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ClusterError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| ClusterError::Invalid(format!("encoding {}: {e}", path.display())))?;
    super::identity::write_file_atomically(path, &bytes)
}

/// A DR member's answer to [`DrAdopt`](super::forward::AdminRequest::DrAdopt):
/// when this node is a DR replica and `promoted_by` a DR member, it takes
/// the promoted cluster's id (and from then on refuses the old primary).
pub(super) fn answer_adopt(
    raft: &RaftHandle,
    sm: &StateMachineStore,
    identity: &IdentityFile,
    cluster_id: &str,
    promoted_by: NodeId,
) -> super::forward::AdminResult {
    let me = raft.metrics().borrow().id;
    let members = dr_members(sm).map_err(|e| ForwardError::Unavailable(e.to_string()))?;
    if !is_dr_replica(raft, sm, me) || !members.contains(&promoted_by) {
        return Err(ForwardError::Refused(format!(
            "node {me} is not a DR replica of the same site as node {promoted_by}"
        )));
    }
    identity
        .replace(cluster_id)
        .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
    tracing::warn!(
        event = "dr.adopted",
        promoted_by,
        cluster_id,
        "this DR replica follows the promoted DR member now; the old primary is refused"
    );
    Ok(super::membership::peers_info(raft))
}

/// File in the data dir of an old primary's node that learnt that its DR
/// site was promoted.
pub const SUPERSEDED_FILE: &str = "dr-superseded.txt";

/// Fencing of an old primary: set once a member refuses this node's RPCs
/// for belonging to another cluster — what DR members do once promoted.
/// The node then refuses writes (a returning primary that can still reach
/// its DR site must not take writes the promoted site never sees) and
/// reports it in its health. Kept in the data dir, so a restart keeps it;
/// wiping the node (to join it to the new cluster) clears it.
#[derive(Debug)]
pub struct Superseded {
    path: std::path::PathBuf,
    reason: std::sync::Mutex<Option<String>>,
}

/// Marks [`super::grpc`]'s refusal of an RPC from another cluster.
pub const FOREIGN_CLUSTER: &str = "contacted this node of cluster";

impl Superseded {
    /// The state of the node with `data_dir`.
    pub fn load(data_dir: &Path) -> Self {
        let path = data_dir.join(SUPERSEDED_FILE);
        let reason = std::fs::read_to_string(&path).ok();
        Self {
            path,
            reason: std::sync::Mutex::new(reason),
        }
    }

    /// Why this node's cluster is superseded, if it is.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records that member `peer` refused this node with `detail` (the
    /// refusal of a member that now belongs to another cluster).
    pub fn mark(&self, peer: NodeId, detail: &str) {
        let mut reason = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if reason.is_some() {
            return;
        }
        let text = format!(
            "member {peer} now belongs to another cluster ({detail}): its disaster-recovery \
             site was promoted, and this old primary accepts no writes. Wipe this node and \
             join it to the promoted cluster"
        );
        if let Err(e) = super::identity::write_file_atomically(&self.path, text.as_bytes()) {
            tracing::error!(error = %e, "recording that this cluster is superseded");
        }
        tracing::error!(event = "dr.superseded", peer, reason = %text, "this cluster is superseded");
        *reason = Some(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u64) -> Node {
        Node {
            api_addr: format!("10.0.0.{n}:8443"),
            cluster_addr: format!("10.0.0.{n}:8444"),
        }
    }

    #[test]
    fn a_promoted_cluster_gets_an_id_of_its_own() {
        let members: BTreeMap<NodeId, Node> = [(4, node(4)), (5, node(5))].into();
        let id = promoted_cluster_id("old", 7, &members);
        assert_ne!(id, "old");
        assert_eq!(id, promoted_cluster_id("old", 7, &members));
        // A later promotion (another term) is another cluster again.
        assert_ne!(id, promoted_cluster_id("old", 8, &members));
    }

    #[test]
    fn a_superseded_node_stays_fenced_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let s = Superseded::load(dir.path());
        assert_eq!(s.reason(), None);
        s.mark(
            4,
            "FailedPrecondition: a member of cluster a contacted this node of cluster b",
        );
        let reason = s.reason().unwrap();
        assert!(reason.contains("member 4"), "{reason}");
        // The first reason is kept.
        s.mark(5, "other");
        assert_eq!(s.reason().as_deref(), Some(reason.as_str()));
        assert_eq!(Superseded::load(dir.path()).reason(), Some(reason));
    }

    #[test]
    fn a_staged_promotion_is_installed_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (log, _sm) = raft_store::open(dir.path()).unwrap();
            let entry = openraft::Entry::<raft_store::TypeConfig> {
                log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(2, 1), 1),
                payload: openraft::EntryPayload::Blank,
            };
            log.append_offline(&entry).unwrap();
        }
        let identity = IdentityFile::open(dir.path(), 4).unwrap();
        identity.adopt("old").unwrap();
        let members: BTreeMap<NodeId, Node> = [(4, node(4)), (5, node(5))].into();
        let promotion = Promotion {
            cluster_id: "new".into(),
            members,
        };
        stage(dir.path(), &promotion).unwrap();
        let done = install_staged(dir.path(), 4, &identity).unwrap();
        assert!(done.is_some());
        assert_eq!(identity.cluster_id().as_deref(), Some("new"));
        let pending: BTreeSet<NodeId> =
            serde_json::from_slice(&std::fs::read(dir.path().join(PENDING_FILE)).unwrap()).unwrap();
        assert_eq!(pending, BTreeSet::from([5]));
        // Nothing is staged any more.
        assert!(install_staged(dir.path(), 4, &identity).unwrap().is_none());
    }
}
