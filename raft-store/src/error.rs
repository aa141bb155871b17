//! Error type of the storage layer and its mapping onto openraft's error.

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};

use crate::NodeId;

/// Failure of the redb-backed Raft storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// redb reported an error (I/O, corruption, transaction or table failure).
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    /// A stored record could not be encoded or decoded.
    #[error("encoding: {0}")]
    Codec(#[from] postcard::Error),
    /// File-system error outside redb (creating the data directory).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The stored data violates an invariant (e.g. a hole in the log).
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(String),
}

/// redb splits its errors into one type per operation; funnel them all into
/// [`StorageError::Redb`] so `?` works everywhere.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Redb(e.into())
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// openraft's storage error for Coffer's node id.
pub type RaftStorageError = openraft::StorageError<NodeId>;

impl StorageError {
    /// Converts into openraft's error, tagging what was being accessed.
    pub fn into_raft(self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> RaftStorageError {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// Shorthand for `map_err` closures in trait implementations.
pub(crate) fn raft_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(StorageError) -> RaftStorageError {
    move |e| e.into_raft(subject, verb)
}

/// Runs blocking redb work (commits fsync) off the async runtime's workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
}
