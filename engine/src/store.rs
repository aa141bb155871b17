//! The storage contracts, in two layers.
//!
//! [`RawStore`] is the replicated key/value store below the barrier: it
//! holds ciphertext, forwards writes to the leader and fences reads with
//! ReadIndex (the cluster), or keeps everything in memory (tests).
//! [`Store`] is what the engines are written against: plaintext values.
//! One implementation, [`BarrierStore`](super::barrier_store::BarrierStore),
//! barrier-encrypts every value over any raw store, so encryption is written
//! once. Engines never know which node they run on.

use async_trait::async_trait;
use zeroize::Zeroizing;

pub use raft_store::{Compare, Mutation, Txn, Versioned};

/// A decrypted value and the revision (log index) that last wrote it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Log index of the write that produced this value; use it in
    /// [`Compare::Revision`] for compare-and-set.
    pub revision: u64,
    /// Plaintext value, wiped from memory on drop.
    pub value: Zeroizing<Vec<u8>>,
}

/// What a committed transaction returned.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Every comparison held and the mutations were applied.
    pub succeeded: bool,
    /// Log index of the transaction.
    pub revision: u64,
    /// The plaintext `result` of the transaction that was applied under this
    /// request id (the first one, when `deduplicated`).
    pub result: Zeroizing<Vec<u8>>,
    /// This answer replays an earlier write with the same request id.
    pub deduplicated: bool,
}

/// Why the store could not serve a call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// This node is sealed: it cannot decrypt or encrypt.
    #[error("the vault is sealed")]
    Sealed,
    /// The cluster has not been initialised.
    #[error("the vault is not initialized")]
    NotInitialized,
    /// No leader could be reached, or the operation timed out; the write may
    /// or may not have been applied (retry with the same request id).
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// This node accepts no writes (a disaster-recovery replica); the
    /// message says what to do instead. Nothing was written.
    #[error("{0}")]
    ReadOnly(String),
    /// A stored value failed authentication or decoding.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The write is larger than one replicated entry may be; nothing was
    /// written.
    #[error("the write is too large: {0}")]
    TooLarge(String),
    /// Any other failure of the storage layer.
    #[error("storage error: {0}")]
    Internal(String),
}

/// Replicated, encrypted key/value storage with compare-and-set transactions.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Linearizable read fence: returns once the local state machine reflects
    /// every write committed before the call began.
    async fn read_fence(&self) -> Result<(), StoreError>;

    /// Reads one key from the local state machine.
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError>;

    /// Keys starting with `prefix`, in byte order, strictly after
    /// `start_after` when given, at most `limit` of them.
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError>;

    /// Encrypts the values and result of `txn`, replicates it through Raft
    /// (via the leader) and returns once it is applied locally. A request id
    /// already applied within the dedup window returns the first outcome.
    async fn commit(&self, request_id: Option<&str>, txn: Txn) -> Result<Outcome, StoreError>;

    /// Encrypts a blob that only this cluster can open (backups).
    fn seal_blob(&self, purpose: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError>;

    /// Opens a blob made by [`Store::seal_blob`] with the same `purpose`.
    fn open_blob(&self, purpose: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError>;
}

/// Replicated key/value storage below the barrier: values and transaction
/// results are opaque bytes (ciphertext), keys are plaintext.
#[async_trait]
pub trait RawStore: Send + Sync + 'static {
    /// Linearizable read fence (see [`Store::read_fence`]).
    async fn read_fence(&self) -> Result<(), StoreError>;

    /// Reads one stored value.
    fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StoreError>;

    /// Stored values under `prefix` (see [`Store::scan`]).
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError>;

    /// Applies `txn` as given (values already encrypted) and returns its
    /// outcome; the `result` is the stored (encrypted) bytes.
    async fn commit(&self, request_id: Option<&str>, txn: Txn) -> Result<Outcome, StoreError>;

    /// Told when a value this store holds failed the barrier's
    /// authentication: it was altered where it is stored. The cluster marks
    /// the node damaged; stores without that notion ignore it.
    fn stored_value_damaged(&self, _detail: &str) {}
}
