//! Raft wiring, gRPC transport, forwarding and membership.
//!
//! Every node runs one openraft instance over the redb storage of
//! `raft-store` and one gRPC server (mutual TLS) with two services: `Raft`
//! (peer replication) and `Forward` (a follower hands writes, read-index
//! requests and membership changes to the leader). [`ClusterNode`] is the
//! node-local handle; [`ClusterStore`] is the replicated raw store over it,
//! and [`cluster_store`] puts the barrier layer on top for the engines.

pub mod dr;
mod election;
mod forward;
mod grpc;
pub mod identity;
pub mod integrity;
mod join;
pub mod live_restore;
mod membership;
mod network;
mod node;
mod proposals;
mod read_index;
pub mod recover;
pub mod request_fence;
pub mod snapshot_file;
mod snapshot_pace;
mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use raft_store::NodeId;
use serde::{Deserialize, Serialize};

pub use forward::ForwardError;
pub use join::JoinToken;
pub use node::{ClusterNode, DrStatus};
pub use store::{cluster_store, ClusterStore};

/// Generated protobuf/gRPC code for `proto/cluster.proto`.
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("coffer.cluster.v1");
}

/// Largest gRPC message between members, both directions (tonic's default
/// of 4 MiB is what broke replication of 20 KB secrets: openraft batched up
/// to 300 entries into one AppendEntries).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest single replicated entry (an encrypted transaction). Request
/// bodies are bounded far below it, so only a bug can exceed it; the write
/// is then refused before it reaches the log, because an entry that does not
/// fit in one message could never be replicated.
pub const MAX_ENTRY_BYTES: usize = 2 * 1024 * 1024;
/// Default: build a snapshot after this many log entries since the last one
/// (a setting: it lives with the configuration).
pub use crate::config::SNAPSHOT_LOGS;
/// Deadline of one snapshot chunk (and of the final install).
const SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 60_000;
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

pub use raft_store::{entry_bytes, request_bytes};

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
    /// Transport limits and health thresholds.
    pub tuning: RaftTuning,
    /// The join token this member accepts auto-join requests with (none:
    /// it refuses them).
    pub join_token: Option<JoinToken>,
}

/// Transport limits and the thresholds at which a node reports itself
/// unhealthy. Defaults suit a LAN; `[raft]` in the node config overrides.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftTuning {
    /// Largest gRPC message between members (both ends). AppendEntries
    /// batches are cut to fit half of it; snapshots travel in chunks of at
    /// most a quarter of it.
    pub max_message_bytes: usize,
    /// A follower whose applied index trails the leader's commit index by
    /// more than this many entries reports itself unhealthy.
    pub max_lag_entries: u64,
    /// A follower that has not heard from a leader for this long reports
    /// itself unhealthy; a leader that has not heard from a quorum for this
    /// long does too.
    pub max_leader_silence_ms: u64,
    /// Heartbeat period; also openraft's deadline for one AppendEntries.
    pub heartbeat_ms: u64,
    /// Election timeout range. A voter trusts a leader it heard from for
    /// `election_timeout_max_ms` (the lease) and campaigns (after a
    /// pre-vote) a random part of the range after that: failover takes
    /// about `max` to `2 × max − min` plus a vote round trip.
    pub election_timeout_min_ms: u64,
    /// Upper end of the election timeout range (and the leader lease).
    pub election_timeout_max_ms: u64,
    /// How often the leader compares every member's state digest at a
    /// common applied index (0: never).
    pub corruption_check_interval_secs: u64,
    /// Repair a damaged state without an operator: at start from the
    /// node's own snapshot when the storage checks fail, and at run time
    /// from a healthy member's snapshot (the node then restarts itself,
    /// which needs a supervisor such as systemd).
    pub auto_repair: bool,
    /// The Raft log backend of a new data directory: `"wal"` (default:
    /// append-only segment files, one fdatasync per group of appends) or
    /// `"redb"`. A data directory that already holds a log keeps its kind.
    pub log_store: raft_store::LogKind,
    /// Page cache of each redb database, in MiB (see
    /// `raft_store::StoreOptions::cache_bytes`): bounds what the state adds
    /// to the node's memory.
    pub cache_mb: usize,
    /// Raft entries of client writes the leader keeps being replicated at
    /// once; writes arriving while all are taken share the next entry
    /// (proposal batching, `cluster::proposals`). 0 turns batching off:
    /// every write is an entry of its own, as before batching, which a
    /// member on such an older build can still decode.
    pub proposals_in_flight: usize,
}

/// See [`RaftTuning::proposals_in_flight`].
pub const DEFAULT_PROPOSALS_IN_FLIGHT: usize = 2;

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_lag_entries: 10_000,
            max_leader_silence_ms: 3_000,
            // Measured with 300–600 ms: leaders were deposed on a loaded
            // 2-core machine when a busy leader's heartbeats slipped past
            // 600 ms; 500–1000 ms keeps failover under 2 s.
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1_000,
            corruption_check_interval_secs: 60,
            auto_repair: false,
            log_store: raft_store::LogKind::default(),
            cache_mb: raft_store::DEFAULT_CACHE_BYTES >> 20,
            proposals_in_flight: DEFAULT_PROPOSALS_IN_FLIGHT,
        }
    }
}

impl RaftTuning {
    /// Checks that every entry fits in one message, whatever its batch.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let floor = 2 * MAX_ENTRY_BYTES + 64 * 1024;
        if self.max_message_bytes < floor {
            return Err(ClusterError::Invalid(format!(
                "[raft] max_message_bytes must be at least {floor} (twice the largest \
                 replicated entry, {MAX_ENTRY_BYTES} bytes, plus framing)"
            )));
        }
        if self.heartbeat_ms == 0 || self.election_timeout_min_ms < 3 * self.heartbeat_ms {
            return Err(ClusterError::Invalid(
                "[raft] election_timeout_min_ms must be at least three heartbeats (heartbeat_ms)"
                    .into(),
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(ClusterError::Invalid(
                "[raft] election_timeout_max_ms must be above election_timeout_min_ms".into(),
            ));
        }
        if self.cache_mb == 0 {
            return Err(ClusterError::Invalid(
                "[raft] cache_mb must be at least 1".into(),
            ));
        }
        if self.max_leader_silence_ms < self.election_timeout_max_ms {
            return Err(ClusterError::Invalid(format!(
                "[raft] max_leader_silence_ms must be at least the election timeout ({} ms)",
                self.election_timeout_max_ms
            )));
        }
        Ok(())
    }

    /// Byte budget of one AppendEntries request.
    pub fn max_append_bytes(&self) -> usize {
        self.max_message_bytes / 2
    }
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
pub fn raft_config(
    snapshot_logs: u64,
    tuning: &RaftTuning,
) -> Result<openraft::Config, ClusterError> {
    tuning.validate()?;
    let cfg = openraft::Config {
        cluster_name: "coffer".into(),
        heartbeat_interval: tuning.heartbeat_ms,
        election_timeout_min: tuning.election_timeout_min_ms,
        election_timeout_max: tuning.election_timeout_max_ms,
        // Per snapshot chunk, and for the last chunk the install on the
        // follower: restoring a large state takes seconds, and a timeout
        // here makes the leader start the whole transfer again.
        install_snapshot_timeout: SNAPSHOT_CHUNK_TIMEOUT_MS,
        snapshot_max_chunk_size: (tuning.max_message_bytes / 4) as u64,
        // Nodes build snapshots themselves, every `snapshot_logs` entries
        // but not while streaming one to a lagging follower
        // (`snapshot_pace`).
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: snapshot_logs / LOGS_KEPT_PER_SNAPSHOT_INTERVAL,
        // Elections are started by `election::Driver` after a pre-vote
        // round (Raft thesis §9.6), so that a node cut off from the leader
        // cannot raise the term and depose it when it comes back.
        enable_elect: false,
        ..Default::default()
    };
    cfg.validate()
        .map_err(|e| ClusterError::Raft(format!("invalid raft config: {e}")))
}
