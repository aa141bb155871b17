//! The one error type every engine returns.

use super::store::StoreError;
use coffer_crypto::CryptoError;

/// What kind of object an error is about (drives the API error code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A live secret (or one of its versions).
    Secret,
    /// A soft-deleted secret.
    DeletedSecret,
    /// A live key (or one of its versions).
    Key,
    /// A soft-deleted key.
    DeletedKey,
    /// A live certificate (or one of its versions).
    Certificate,
    /// A soft-deleted certificate.
    DeletedCertificate,
    /// A certificate's pending operation.
    CertificateOperation,
    /// A certificate issuer.
    CertificateIssuer,
    /// The vault's certificate contacts.
    CertificateContacts,
    /// An alert rule.
    AlertRule,
    /// An alert receiver.
    AlertReceiver,
    /// An alert firing.
    AlertFiring,
}

/// Why a key refused an operation (403 of the Key Vault API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    /// The key version is disabled.
    Disabled,
    /// The operation is not in the key's `key_ops`.
    OperationNotAllowed,
    /// `nbf` is in the future (encrypt, sign and wrap only).
    NotYetValid,
    /// `exp` has passed (encrypt, sign and wrap only).
    Expired,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Secret => "secret",
            ObjectKind::DeletedSecret => "deleted secret",
            ObjectKind::Key => "key",
            ObjectKind::DeletedKey => "deleted key",
            ObjectKind::Certificate => "certificate",
            ObjectKind::DeletedCertificate => "deleted certificate",
            ObjectKind::CertificateOperation => "pending certificate",
            ObjectKind::CertificateIssuer => "certificate issuer",
            ObjectKind::CertificateContacts => "certificate contacts",
            ObjectKind::AlertRule => "alert rule",
            ObjectKind::AlertReceiver => "alert receiver",
            ObjectKind::AlertFiring => "alert firing",
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
    /// A direct write to a key or secret whose lifetime a certificate
    /// manages; nothing was changed.
    #[error("operation {op} is not allowed on a {kind} managed by a certificate")]
    Managed {
        /// The managed object's kind.
        kind: ObjectKind,
        /// The refused operation (`set`, `delete`, …).
        op: &'static str,
    },
    /// The current state forbids the operation (403 of the Key Vault API:
    /// merge on an issuer's pending request, cancel of a finished one).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A certificate request is still in progress: create and import wait
    /// (409 with code `Forbidden` in Key Vault).
    #[error("pending: {0}")]
    PendingInProgress(String),
    /// The request is invalid; nothing was changed.
    #[error("bad parameter: {0}")]
    BadParameter(String),
    /// A key refused an operation (disabled, not in `key_ops`, outside its
    /// validity window).
    #[error("operation {op} is not allowed on key {name}: {reason:?}")]
    KeyForbidden {
        /// Key name as given.
        name: String,
        /// The operation (`sign`, `decrypt`, …).
        op: &'static str,
        /// Why.
        reason: KeyRefusal,
    },
    /// A cryptographic operation failed or its input was invalid.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A feature of the real service that Coffer does not offer.
    #[error("not supported: {0}")]
    NotSupported(String),
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
