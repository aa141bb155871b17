//! The one error type every engine returns.

use super::store::StoreError;

/// What kind of object an error is about (drives the API error code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A live secret (or one of its versions).
    Secret,
    /// A soft-deleted secret.
    DeletedSecret,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Secret => "secret",
            ObjectKind::DeletedSecret => "deleted secret",
        })
    }
}

/// Why an engine operation failed. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The object (or the given version of it) does not exist.
    #[error("{kind} {name} was not found")]
    NotFound {
        /// What was looked for.
        kind: ObjectKind,
        /// Name as given, `name/version` when a version was asked for.
        name: String,
    },
    /// The vault addressed by the request does not exist.
    #[error("vault {0} was not found")]
    VaultNotFound(String),
    /// The object exists but is disabled for this operation.
    #[error("{kind} {name} is disabled")]
    Disabled {
        /// What was asked for.
        kind: ObjectKind,
        /// Name as given.
        name: String,
    },
    /// The name is held by a soft-deleted object: recover or purge it first.
    #[error("{kind} {name} is deleted but recoverable")]
    DeletedButRecoverable {
        /// Kind of the deleted object.
        kind: ObjectKind,
        /// Name as given.
        name: String,
    },
    /// The operation conflicts with the current state (e.g. restore onto an
    /// existing name).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request is invalid; nothing was changed.
    #[error("bad parameter: {0}")]
    BadParameter(String),
    /// A backup blob could not be opened or parsed.
    #[error("malformed backup blob")]
    MalformedBackup,
    /// Compare-and-set kept losing to concurrent writers; nothing was changed.
    #[error("too many concurrent modifications, retry")]
    Busy,
    /// A stored record could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// The storage layer failed (sealed, unavailable, ...).
    #[error(transparent)]
    Store(#[from] StoreError),
}
