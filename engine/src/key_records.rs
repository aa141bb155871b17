//! Stored key records (JSON inside barrier ciphertext) and their
//! conversions to the engine's public views.
//!
//! Layout (tables in [`super::names`]): `k/{vault}/{name_lower}` the name
//! record (shared by every object kind), `kv/{vault}/{name_lower}/{version}`
//! versions with the key material, `kp/{vault}/{name_lower}` the rotation
//! policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keys::{DeletedKey, Key, KeyOp, KeyProperties};
use super::object::DeletedInfo;
use super::rotation::RotationPolicy;
pub use coffer_crypto::key::KeyMaterial;
use coffer_crypto::KeyType;

/// `kv/{vault}/{name_lower}/{version}`: one key version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyVersionRecord {
    /// Version id (32 lowercase hex).
    pub version: String,
    /// Key type as created (`RSA`, `EC-HSM`, …).
    pub kty: KeyType,
    /// Permitted operations.
    pub key_ops: Vec<KeyOp>,
    /// Whether operations are allowed.
    pub enabled: bool,
    /// Not-before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expiry, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Creation, Unix seconds.
    pub created: u64,
    /// Last change, Unix seconds.
    pub updated: u64,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// The key material (private part redacted from Debug by its types).
    pub material: KeyMaterial,
    /// Backs a certificate of the same name and version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
}

impl KeyVersionRecord {
    /// Public metadata under the key's display name.
    pub fn properties(&self, name: &str) -> KeyProperties {
        KeyProperties {
            name: name.to_owned(),
            version: self.version.clone(),
            kty: self.kty,
            key_ops: self.key_ops.clone(),
            enabled: self.enabled,
            nbf: self.nbf,
            exp: self.exp,
            created: self.created,
            updated: self.updated,
            tags: self.tags.clone(),
            hsm: self.kty.is_hsm(),
            managed: self.managed,
        }
    }

    /// The public view with the public key.
    pub fn key(&self, name: &str) -> Key {
        Key {
            properties: self.properties(name),
            public: self.material.public().clone(),
        }
    }

    /// The deleted view.
    pub fn deleted(&self, name: &str, info: DeletedInfo) -> DeletedKey {
        DeletedKey {
            key: self.key(name),
            deleted_date: info.deleted_date,
            scheduled_purge_date: info.scheduled_purge_date,
        }
    }
}

/// What a key backup carries besides name and versions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeyBackupExtra {
    /// Rotation policy, if one was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RotationPolicy>,
}
