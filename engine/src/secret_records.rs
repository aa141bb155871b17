//! Stored secret records (JSON inside barrier ciphertext) and their
//! conversions to the engine's public views.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::object::DeletedInfo;
use super::secrets::{DeletedSecret, Secret, SecretProperties};

/// `sv/{vault}/{name_lower}/{version}`: one version.
#[derive(Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Version id (32 lowercase hex).
    pub version: String,
    /// The secret value.
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub created: u64,
    pub updated: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
}

impl std::fmt::Debug for VersionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VersionRecord")
            .field("version", &self.version)
            .field("value", &"<redacted>")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl VersionRecord {
    /// Public metadata of this version under the secret's display name.
    pub fn properties(&self, name: &str) -> SecretProperties {
        SecretProperties {
            name: name.to_owned(),
            version: self.version.clone(),
            content_type: self.content_type.clone(),
            enabled: self.enabled,
            nbf: self.nbf,
            exp: self.exp,
            created: self.created,
            updated: self.updated,
            tags: self.tags.clone(),
            kid: self.kid.clone(),
            managed: self.managed,
        }
    }

    /// The full secret (with its value).
    pub fn secret(&self, name: &str) -> Secret {
        Secret {
            properties: self.properties(name),
            value: self.value.clone(),
        }
    }

    /// The deleted-secret view of this version.
    pub fn deleted(&self, name: &str, info: DeletedInfo) -> DeletedSecret {
        DeletedSecret {
            properties: self.properties(name),
            deleted_date: info.deleted_date,
            scheduled_purge_date: info.scheduled_purge_date,
        }
    }
}
