//! The records every versioned object kind stores (JSON inside barrier
//! ciphertext): one name record per object and the backup envelope.

use serde::{Deserialize, Serialize};

/// `{meta table}/{vault}/{name_lower}`: one object name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetaRecord {
    /// Name as first written (ids use this spelling).
    pub name: String,
    /// Version id of the most recently created version.
    pub latest: String,
    /// Set while the object is soft-deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<DeletedInfo>,
    /// The object's lifetime is managed by a certificate of the same name
    /// (its key or secret): direct writes are refused, and it changes
    /// only in the certificate's transactions.
    #[serde(default, skip_serializing_if = "is_false")]
    pub managed: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// When an object was soft-deleted and when it will be purged.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeletedInfo {
    /// Unix seconds of the delete.
    pub deleted_date: u64,
    /// Unix seconds after which the purger removes it.
    pub scheduled_purge_date: u64,
}

/// What a backup blob holds (JSON, then sealed by the store): the name
/// record's content, every version and what else the kind keeps (`extra`,
/// flattened, e.g. a key's rotation policy).
#[derive(Serialize, Deserialize)]
pub struct BackupRecord<V, E> {
    /// Format marker of the kind.
    pub format: String,
    /// Display name.
    pub name: String,
    /// Latest version id.
    pub latest: String,
    /// Every version.
    pub versions: Vec<V>,
    /// Managed by a certificate (restored only with it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub managed: bool,
    /// What else the kind keeps per object.
    #[serde(flatten)]
    pub extra: E,
}

/// The `extra` of kinds that keep nothing besides name and versions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NoExtra {}
