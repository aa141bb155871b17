//! What a follower sends to the leader over the `Forward` service, and the
//! typed answers. Every reply is a postcard-encoded `Result<_, ForwardError>`.

use openraft::error::{ClientWriteError, RaftError};
use raft_store::{Node, NodeId, Request, Response};
use serde::{Deserialize, Serialize};

use super::PeersInfo;
use crate::engine::clock::now_ms;

/// Why the leader-side handling of a forwarded request failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    /// The receiver is not the leader; retry at `leader` when known.
    #[error("not the leader (leader: {leader_id:?})")]
    ForwardToLeader {
        /// The leader the receiver knows of.
        leader_id: Option<NodeId>,
        /// Its addresses.
        leader_node: Option<Node>,
    },
    /// Leadership could not be confirmed, or the node is shutting down.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request was refused (e.g. an invalid membership change).
    #[error("refused: {0}")]
    Refused(String),
}

/// A write replicated by the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteReply {
    /// Log index of the entry that carried the request; a node has seen the
    /// write once it applied this index.
    pub log_index: u64,
    /// The state machine's answer.
    pub response: Response,
}

/// Membership changes executed on the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Add `id` as a learner, then promote it to voter.
    Join {
        /// New member id.
        id: NodeId,
        /// Its addresses.
        node: Node,
    },
    /// Remove `id` from the membership entirely.
    Remove {
        /// Member to remove.
        id: NodeId,
    },
    /// Add `id` as a disaster-recovery replica: a learner that is never
    /// promoted (see `cluster::dr`).
    JoinDr {
        /// New member id.
        id: NodeId,
        /// Its addresses.
        node: Node,
    },
    /// Sent by a DR replica being promoted to the other DR members (not to
    /// the leader): adopt the new cluster's id.
    DrAdopt {
        /// The promoted cluster's id.
        cluster_id: String,
        /// The DR member being promoted.
        promoted_by: NodeId,
    },
}

/// Reply to a forwarded write.
pub type WriteResult = Result<WriteReply, ForwardError>;
/// Reply to a read-index request: the index to apply before reading.
pub type ReadIndexResult = Result<u64, ForwardError>;
/// Reply to an admin request.
pub type AdminResult = Result<PeersInfo, ForwardError>;
/// The body of a forwarded write.
pub type WriteRequest = Request;

impl From<RaftError<NodeId, ClientWriteError<NodeId, Node>>> for ForwardError {
    fn from(e: RaftError<NodeId, ClientWriteError<NodeId, Node>>) -> Self {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                ForwardError::ForwardToLeader {
                    leader_id: f.leader_id,
                    leader_node: f.leader_node,
                }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                ForwardError::Refused(c.to_string())
            }
            RaftError::Fatal(f) => ForwardError::Unavailable(f.to_string()),
        }
    }
}

impl From<RaftError<NodeId, openraft::error::CheckIsLeaderError<NodeId, Node>>> for ForwardError {
    fn from(e: RaftError<NodeId, openraft::error::CheckIsLeaderError<NodeId, Node>>) -> Self {
        use openraft::error::CheckIsLeaderError;
        match e {
            RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
                ForwardError::ForwardToLeader {
                    leader_id: f.leader_id,
                    leader_node: f.leader_node,
                }
            }
            RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                ForwardError::Unavailable(q.to_string())
            }
            RaftError::Fatal(f) => ForwardError::Unavailable(f.to_string()),
        }
    }
}

/// The Raft handle the leader-side handlers work with.
pub type RaftHandle = openraft::Raft<raft_store::TypeConfig>;

/// Replicates `req` if this node leads; stamps the leader's clock on it.
pub async fn leader_write(raft: &RaftHandle, mut req: Request) -> WriteResult {
    req.time_ms = now_ms();
    let resp = raft.client_write(req).await?;
    Ok(WriteReply {
        log_index: resp.log_id.index,
        response: resp.data,
    })
}

/// The read index, after a quorum confirmed this node still leads.
pub async fn leader_read_index(raft: &RaftHandle) -> ReadIndexResult {
    let (read_log_id, _applied) = raft.get_read_log_id().await?;
    Ok(read_log_id.map_or(0, |l| l.index))
}
