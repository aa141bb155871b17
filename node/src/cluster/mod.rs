//! Raft wiring, gRPC transport, forwarding and membership.
//!
//! Every node runs one openraft instance over the redb storage of
//! `raft-store` and one gRPC server (mutual TLS) with two services: `Raft`
//! (peer replication) and `Forward` (a follower hands writes, read-index
//! requests and membership changes to the leader). [`ClusterNode`] is the
//! node-local handle; [`ClusterStore`] layers barrier encryption on top and
//! implements the engines' [`Store`](crate::engine::store::Store).

mod forward;
mod grpc;
mod membership;
mod network;
mod node;
mod read_index;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use raft_store::NodeId;
use serde::{Deserialize, Serialize};

pub use forward::ForwardError;
pub use node::ClusterNode;
pub use store::ClusterStore;

/// Generated protobuf/gRPC code for `proto/cluster.proto`.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("coffer.cluster.v1");
}

/// Heartbeat period. Followers hear from the leader ~4–8 times per election
/// timeout, so one or two lost heartbeats do not trigger an election.
pub const HEARTBEAT_MS: u64 = 75;
/// Randomised election timeout range: failover takes roughly this long plus
/// one vote round trip. Measured (10 × kill -9 of the leader under writes,
/// 2 cores): 400–800 ms gave a median of 1.44 s until writes succeed again.
pub const ELECTION_TIMEOUT_MS: (u64, u64) = (300, 600);
/// Default: build a snapshot after this many log entries since the last one.
pub const SNAPSHOT_LOGS: u64 = 5000;
/// Log entries kept after a snapshot (a fifth of the snapshot interval) so
/// slightly lagging followers catch up from the log instead of a snapshot.
const LOGS_KEPT_PER_SNAPSHOT_INTERVAL: u64 = 5;

/// How long `propose` and `read_fence` keep trying before giving up.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long membership changes may take end to end (a new learner may need
/// a snapshot).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a new learner has to acknowledge the log before the join is
/// abandoned.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(30);
/// Wait between retries when the leader is unknown or moved.
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// Upper bound on attempts for one operation.
const MAX_ATTEMPTS: u32 = 50;

/// How a node joins the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's Raft id.
    pub node_id: NodeId,
    /// Socket address the gRPC server binds.
    pub listen_addr: SocketAddr,
    /// Addresses published to the other members.
    pub advertise: raft_store::Node,
    /// Directory for the Raft storage.
    pub data_dir: PathBuf,
    /// Cluster CA and this node's certificate (mutual TLS).
    pub tls: crate::tls::TlsMaterial,
    /// Test-only: serve reads without a ReadIndex round (may be stale).
    pub stale_reads: bool,
    /// Build a snapshot (and purge the log) every this many entries.
    pub snapshot_logs: u64,
}

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Opening the Raft storage failed.
    #[error("raft storage: {0}")]
    Storage(#[from] raft_store::StorageError),
    /// The gRPC listener could not be bound or configured.
    #[error("cluster transport: {0}")]
    Transport(String),
    /// openraft refused or failed the operation.
    #[error("raft: {0}")]
    Raft(String),
    /// No leader could be reached in time.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The request was invalid (e.g. removing an unknown node).
    #[error("{0}")]
    Invalid(String),
}

/// One member as seen in the committed membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Raft id.
    pub node_id: NodeId,
    /// HTTPS API address.
    pub api_addr: String,
    /// gRPC cluster address.
    pub cluster_addr: String,
    /// Voter (true) or learner (false).
    pub voter: bool,
}

/// The membership and who leads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersInfo {
    /// Current leader, when known.
    pub leader_id: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Every member, ordered by id.
    pub peers: Vec<PeerInfo>,
}

/// A snapshot of this node's Raft state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftStatus {
    /// This node's id.
    pub node_id: NodeId,
    /// Current leader, when known.
    pub leader_id: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Index of the last log entry (0 when empty).
    pub last_log_index: u64,
    /// Best known commit index: the quorum-acknowledged index on the leader,
    /// the applied index elsewhere (commit is at least that).
    pub commit_index: u64,
    /// Index of the last entry applied to the local state machine.
    pub applied_index: u64,
    /// Last log index covered by this node's current snapshot (0: none).
    pub snapshot_index: u64,
    /// Whether this node is the leader.
    pub is_leader: bool,
}

/// The openraft configuration Coffer runs with.
pub fn raft_config(snapshot_logs: u64) -> Result<openraft::Config, ClusterError> {
    let cfg = openraft::Config {
        cluster_name: "coffer".into(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_TIMEOUT_MS.0,
        election_timeout_max: ELECTION_TIMEOUT_MS.1,
        install_snapshot_timeout: 2_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_logs),
        max_in_snapshot_log_to_keep: snapshot_logs / LOGS_KEPT_PER_SNAPSHOT_INTERVAL,
        ..Default::default()
    };
    cfg.validate()
        .map_err(|e| ClusterError::Raft(format!("invalid raft config: {e}")))
}
