//! The Raft type configuration and the replicated command set.
//!
//! The state machine is a transactional key/value store of opaque bytes: the
//! node barrier-encrypts every value before it is proposed, so this crate only
//! ever sees ciphertext and a sealed node can still apply replicated entries.
//! Domain logic (secrets, keys, …) builds [`Txn`]s with compare-and-set
//! conditions and retries on conflict.

use serde::{Deserialize, Serialize};

/// Raft node id.
pub type NodeId = u64;

/// Addresses a member publishes to the rest of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `host:port` of the HTTPS API (Key Vault and operator endpoints).
    pub api_addr: String,
    /// `host:port` of the gRPC cluster endpoint (mutual TLS).
    pub cluster_addr: String,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "api={} cluster={}", self.api_addr, self.cluster_addr)
    }
}

openraft::declare_raft_types!(
    /// Coffer's openraft type configuration.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Node,
        // Snapshots are files (see `snapshot.rs`), streamed, never held
        // in memory whole.
        SnapshotData = tokio::fs::File,
);

/// One replicated command: an idempotent, conditional transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Idempotency key. When an entry with the same id was applied within the
    /// dedup window, the state machine answers with that entry's response and
    /// changes nothing.
    pub request_id: Option<String>,
    /// Leader wall-clock time in Unix milliseconds when proposed. Used for
    /// deterministic expiry of remembered request ids.
    pub time_ms: u64,
    /// The transaction to apply.
    pub txn: Txn,
}

/// Conditions and mutations applied atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// All must hold for `mutations` to be applied.
    pub compare: Vec<Compare>,
    /// Applied in order when every comparison holds.
    pub mutations: Vec<Mutation>,
    /// Opaque (encrypted) bytes handed back in [`Response::result`] when the
    /// transaction applied; remembered with the request id so a retry gets the
    /// first outcome.
    pub result: Vec<u8>,
}

/// A condition on the current state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    /// The key's modification revision equals `revision`; 0 means "absent".
    Revision { key: Vec<u8>, revision: u64 },
}

/// A change to the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mutation {
    /// Insert or replace `key`.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Remove `key` if present.
    Delete { key: Vec<u8> },
    /// Remove every key that starts with `prefix`.
    DeletePrefix { prefix: Vec<u8> },
}

/// Outcome of applying a [`Request`] (or a membership/blank entry).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Whether every comparison held and the mutations were applied.
    pub succeeded: bool,
    /// Log index at which the transaction was applied (the new revision of
    /// every key it wrote).
    pub revision: u64,
    /// The applied transaction's `result`, empty when it did not apply.
    pub result: Vec<u8>,
    /// True when this answer replays an earlier entry with the same request id.
    pub deduplicated: bool,
}

/// A stored value together with the log index that last wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// Log index of the write that produced `value`.
    pub revision: u64,
    /// The stored bytes (ciphertext when written by a node).
    pub value: Vec<u8>,
}
