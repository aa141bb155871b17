//! The Raft type configuration and the replicated command set.
//!
//! The state machine is a transactional key/value store of opaque bytes: the
//! node barrier-encrypts every value before it is proposed, so this crate only
//! ever sees ciphertext and a sealed node can still apply replicated entries.
//! Domain logic (secrets, keys, …) builds [`Txn`]s with compare-and-set
//! conditions and retries on conflict.
//!
//! Byte fields are (de)serialized as byte strings (`serde_bytes`), not as
//! sequences of `u8`: postcard writes the same bytes either way (a varint
//! length, then the bytes), but the sequence form costs a visitor call per
//! byte — for 20 KB values that made encoding a replication batch slower
//! than the RPC's deadline.

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
    #[serde(with = "serde_bytes")]
    pub result: Vec<u8>,
}

/// A condition on the current state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    /// The key's modification revision equals `revision`; 0 means "absent".
    Revision {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        revision: u64,
    },
}

/// A change to the state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mutation {
    /// Insert or replace `key`.
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove `key` if present.
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Remove every key that starts with `prefix`.
    DeletePrefix {
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
    },
    /// Live restore: the values under `prefix`, in key order, are the
    /// chunks of a snapshot file staged by earlier entries. If the file
    /// verifies, every key/value record of the state is replaced by the
    /// file's (with their revisions; remembered request ids, membership and
    /// the applied index stay); if not, only the staged chunks are removed
    /// and the transaction reports `succeeded: false`. Alone in its
    /// transaction.
    RestoreStaged {
        #[serde(with = "serde_bytes")]
        prefix: Vec<u8>,
    },
    /// Proposal batching: `requests` are applied one after another at this
    /// entry's index, each exactly as if it were an entry of its own (its
    /// comparisons, its request id, its response). Built only by
    /// [`Batch::into_request`], alone in a transaction without comparisons
    /// or request id; a batch inside a batch is refused. The entry's
    /// [`Response::result`] carries the responses ([`Batch::responses`]).
    /// (Variants are only ever added last: older log entries keep their
    /// encoding.)
    Batch {
        /// The batched requests, in the order they are applied.
        requests: Vec<Request>,
    },
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
    #[serde(with = "serde_bytes")]
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
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// Many client requests proposed as one log entry, so the leader's Raft
/// core, the log appends, the replication messages and the apply each pay
/// once for the group. A key one request writes is neither written nor
/// compared by another in the same batch: a key's revision (the entry's
/// index) then still names one write, so a later compare-and-set against
/// it cannot mistake another request's value for the one it read, and no
/// request's comparison depends on its place in the batch.
#[derive(Debug, Default)]
pub struct Batch {
    requests: Vec<Request>,
    /// Keys the requests compare.
    compared: std::collections::HashSet<Vec<u8>>,
    /// Keys the requests write.
    written: std::collections::HashSet<Vec<u8>>,
    /// Bytes left.
    room: usize,
    /// Holds a request that must be an entry of its own.
    closed: bool,
}

/// Whether [`Batch::admit`] took the request.
#[derive(Debug)]
pub enum Admit {
    /// Added to the batch.
    Taken,
    /// Shares a key with a request in the batch, does not fit, or must be
    /// an entry of its own (it works on key prefixes) and the batch is not
    /// empty: propose it in a later batch.
    Later(Request),
}

impl Batch {
    /// An empty batch that holds at most `max_bytes` (by [`request_bytes`];
    /// a first request is taken whatever its size).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            room: max_bytes,
            ..Self::default()
        }
    }

    /// Requests in the batch.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Nothing in the batch.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Adds `req` unless it conflicts with the batch or would overfill it.
    pub fn admit(&mut self, req: Request) -> Admit {
        if self.closed {
            return Admit::Later(req);
        }
        let size = request_bytes(&req);
        if !self.requests.is_empty() && size > self.room {
            return Admit::Later(req);
        }
        match request_keys(&req) {
            None if self.requests.is_empty() => self.closed = true,
            None => return Admit::Later(req),
            Some(RequestKeys { compared, written }) => {
                // Comparing a key another request only compares is fine:
                // neither changes its revision.
                let clash = written
                    .iter()
                    .any(|k| self.written.contains(*k) || self.compared.contains(*k))
                    || compared.iter().any(|k| self.written.contains(*k));
                if clash {
                    return Admit::Later(req);
                }
                self.compared
                    .extend(compared.into_iter().map(<[u8]>::to_vec));
                self.written.extend(written.into_iter().map(<[u8]>::to_vec));
            }
        }
        self.room = self.room.saturating_sub(size);
        self.requests.push(req);
        Admit::Taken
    }

    /// The request to propose: the one request itself when the batch holds
    /// one (an ordinary entry), else one [`Mutation::Batch`]. `time_ms`
    /// stamps the batch and every request in it.
    pub fn into_request(mut self, time_ms: u64) -> Request {
        for r in &mut self.requests {
            r.time_ms = time_ms;
        }
        if self.requests.len() == 1 {
            if let Some(one) = self.requests.pop() {
                return one;
            }
        }
        Request {
            request_id: None,
            time_ms,
            txn: Txn {
                compare: Vec::new(),
                mutations: vec![Mutation::Batch {
                    requests: self.requests,
                }],
                result: Vec::new(),
            },
        }
    }

    /// The responses, in the batch's order, that the state machine gave to
    /// the requests of a batch entry (`response` is the entry's).
    pub fn responses(response: &Response) -> Result<Vec<Response>, postcard::Error> {
        postcard::from_bytes(&response.result)
    }
}

/// The keys one request compares and the keys it writes.
struct RequestKeys<'r> {
    compared: Vec<&'r [u8]>,
    written: Vec<&'r [u8]>,
}

/// The keys `req` compares and writes; `None` when it works on key
/// prefixes or is a batch (it must be an entry of its own).
fn request_keys(req: &Request) -> Option<RequestKeys<'_>> {
    let compared = req
        .txn
        .compare
        .iter()
        .map(|Compare::Revision { key, .. }| key.as_slice())
        .collect();
    let mut written: Vec<&[u8]> = Vec::with_capacity(req.txn.mutations.len());
    for m in &req.txn.mutations {
        match m {
            Mutation::Put { key, .. } | Mutation::Delete { key } => written.push(key),
            Mutation::DeletePrefix { .. }
            | Mutation::RestoreStaged { .. }
            | Mutation::Batch { .. } => return None,
        }
    }
    Some(RequestKeys { compared, written })
}

/// Bytes a transaction puts into a message, near enough: keys and values
/// dominate, postcard adds a few bytes per field. Cheap (no encoding).
pub fn request_bytes(req: &Request) -> usize {
    let mutations: usize = req
        .txn
        .mutations
        .iter()
        .map(|m| match m {
            Mutation::Put { key, value } => key.len() + value.len() + 8,
            Mutation::Delete { key } => key.len() + 4,
            Mutation::DeletePrefix { prefix } | Mutation::RestoreStaged { prefix } => {
                prefix.len() + 4
            }
            Mutation::Batch { requests } => requests.iter().map(request_bytes).sum::<usize>() + 4,
        })
        .sum();
    let compares: usize = req
        .txn
        .compare
        .iter()
        .map(|Compare::Revision { key, .. }| key.len() + 12)
        .sum();
    let id = req.request_id.as_ref().map_or(0, String::len);
    mutations + compares + req.txn.result.len() + id + 16
}

/// [`request_bytes`] of a log entry; membership and blank entries are small.
pub fn entry_bytes(entry: &openraft::Entry<crate::TypeConfig>) -> usize {
    match &entry.payload {
        openraft::EntryPayload::Normal(req) => request_bytes(req) + 24,
        openraft::EntryPayload::Membership(_) => 512,
        openraft::EntryPayload::Blank => 24,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The on-disk and wire format did not change when byte fields moved to
    /// `serde_bytes`: postcard writes a byte string and a sequence of `u8`
    /// identically, so logs and states written before still decode.
    #[test]
    fn byte_fields_encode_exactly_as_sequences_did() {
        #[derive(Serialize)]
        enum OldMutation {
            Put { key: Vec<u8>, value: Vec<u8> },
        }
        let key = b"s/default/x".to_vec();
        let value: Vec<u8> = (0..=255u8).cycle().take(20_000).collect();
        let new = postcard::to_allocvec(&Mutation::Put {
            key: key.clone(),
            value: value.clone(),
        })
        .unwrap();
        let old = postcard::to_allocvec(&OldMutation::Put { key, value }).unwrap();
        assert_eq!(new, old);
        let back: Mutation = postcard::from_bytes(&old).unwrap();
        assert!(matches!(back, Mutation::Put { value, .. } if value.len() == 20_000));
    }
}
