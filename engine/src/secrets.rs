//! Secrets: versioned values with soft delete, recover, purge, backup and
//! restore — the semantics of Azure Key Vault secrets. The lifecycle is the
//! shared one of [`super::object`]; this module holds what is a secret's
//! own: the value, its limits, and set/get/update.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::clock::{system_clock, Clock};
use super::error::{EngineError, ObjectKind};
use super::names::{SECRETS, SECRET_VERSIONS};
use super::object::{DeletedInfo, Kind, NoExtra, Objects};
use super::secret_records::VersionRecord;
use super::validate::{check_name, check_tags};
use super::view::VaultView;

pub use super::object::{MAX_BACKUP_VERSIONS, RECOVERABLE_DAYS, RECOVERY_LEVEL};
/// Largest secret value, in bytes of UTF-8.
pub const MAX_VALUE_BYTES: usize = 25 * 1024;
pub use super::validate::{MAX_TAGS, MAX_TAG_CHARS};
/// Purpose label of backup blobs.
pub const BACKUP_PURPOSE: &[u8] = b"coffer/backup/secret/v1";
/// Format marker of secret backups.
pub const BACKUP_FORMAT: &str = "coffer-secret-backup-1";

/// Metadata of one secret version (no value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretProperties {
    /// Name as first written.
    pub name: String,
    /// Version id (32 lowercase hex).
    pub version: String,
    /// Free-form content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Whether the value can be read.
    pub enabled: bool,
    /// Not-before, Unix seconds (informational: not enforced on get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expiry, Unix seconds (informational: not enforced on get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Unix seconds of creation.
    pub created: u64,
    /// Unix seconds of the last change.
    pub updated: u64,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Key id when the secret backs a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Whether the secret's lifetime is managed by a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
}

/// A secret version with its value.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secret {
    /// Metadata.
    pub properties: SecretProperties,
    /// The value.
    pub value: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("properties", &self.properties)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// What a set keeps as its answer (the value is in the version record).
/// Unknown fields are ignored, so the whole [`Secret`] that older builds
/// kept decodes as this too.
#[derive(Serialize, Deserialize)]
struct SetAnswer {
    properties: SecretProperties,
}

/// A soft-deleted secret (its latest version's metadata).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedSecret {
    /// Metadata of the latest version.
    pub properties: SecretProperties,
    /// Unix seconds of the delete.
    pub deleted_date: u64,
    /// Unix seconds after which it is purged.
    pub scheduled_purge_date: u64,
}

/// Parameters of a set (new version).
#[derive(Clone, Default)]
pub struct SetSecret {
    /// The value (at most [`MAX_VALUE_BYTES`]).
    pub value: String,
    /// Content type.
    pub content_type: Option<String>,
    /// Enabled (default true).
    pub enabled: Option<bool>,
    /// Not-before, Unix seconds.
    pub nbf: Option<i64>,
    /// Expiry, Unix seconds.
    pub exp: Option<i64>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
}

impl std::fmt::Debug for SetSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetSecret")
            .field("value", &"<redacted>")
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

/// Changes of an update; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct UpdateSecret {
    /// New content type.
    pub content_type: Option<String>,
    /// New enabled flag.
    pub enabled: Option<bool>,
    /// New not-before.
    pub nbf: Option<i64>,
    /// New expiry.
    pub exp: Option<i64>,
    /// New tags (replace all tags).
    pub tags: Option<BTreeMap<String, String>>,
}

/// Secrets as a kind of versioned object.
pub struct SecretKind;

impl Kind for SecretKind {
    type Version = VersionRecord;
    type Extra = NoExtra;
    type Listed = SecretProperties;
    type Shown = SecretProperties;
    type Deleted = DeletedSecret;

    const LABEL: &'static str = "Secret";
    const LIVE: ObjectKind = ObjectKind::Secret;
    const DELETED: ObjectKind = ObjectKind::DeletedSecret;
    const META_TABLE: &'static str = SECRETS;
    const VERSION_TABLE: &'static str = SECRET_VERSIONS;
    const BACKUP_FORMAT: &'static str = BACKUP_FORMAT;
    const BACKUP_PURPOSE: &'static [u8] = BACKUP_PURPOSE;

    fn version_id(v: &VersionRecord) -> &str {
        &v.version
    }

    fn listed(v: &VersionRecord, name: &str) -> SecretProperties {
        v.properties(name)
    }

    fn shown(v: &VersionRecord, name: &str) -> SecretProperties {
        v.properties(name)
    }

    fn deleted(v: &VersionRecord, name: &str, info: DeletedInfo) -> DeletedSecret {
        v.deleted(name, info)
    }

    fn backup_extra(_view: &VaultView<'_>, _lower: &str) -> Result<NoExtra, EngineError> {
        Ok(NoExtra {})
    }
}

/// The secrets engine of all vaults. The shared lifecycle (list, versions,
/// delete, recover, purge, backup, restore, …) is reached through
/// [`Objects`] (`Deref`); this type adds what is a secret's own.
pub struct SecretsEngine {
    objects: Objects<SecretKind>,
}

impl SecretsEngine {
    /// An engine over `store` using the system clock.
    pub fn new(store: Arc<dyn super::store::Store>) -> Self {
        Self::with_clock(store, system_clock())
    }

    /// An engine over `store` using `clock` (Unix seconds).
    pub fn with_clock(store: Arc<dyn super::store::Store>, clock: Clock) -> Self {
        Self {
            objects: Objects::new(store, clock),
        }
    }

    /// Creates a new version of `name` (creating the secret if needed) and
    /// makes it the latest.
    pub async fn set(
        &self,
        vault: &str,
        name: &str,
        params: SetSecret,
        request_id: Option<&str>,
    ) -> Result<Secret, EngineError> {
        check_name(SecretKind::LABEL, name)?;
        check_value(&params.value)?;
        check_tags(params.tags.as_ref())?;
        let make = |version, now| VersionRecord {
            version,
            value: params.value.clone(),
            content_type: params.content_type.clone(),
            enabled: params.enabled.unwrap_or(true),
            nbf: params.nbf,
            exp: params.exp,
            created: now,
            updated: now,
            tags: params.tags.clone(),
            kid: None,
            managed: None,
        };
        // The answer kept with the request id (and carried in the log entry)
        // leaves the value out; the value is read back from the version the
        // write made. Keeping it there too doubled every set's log entry (a
        // 25 KiB secret made a 50 KiB entry) and its one-hour dedup record.
        let written: SetAnswer = self
            .objects
            .add_version((vault, name), false, request_id, make, |record, name| {
                SetAnswer {
                    properties: record.properties(name),
                }
            })
            .await?;
        let props = written.properties;
        let record = self.objects.written_version(vault, name, &props.version)?;
        Ok(record.secret(&props.name))
    }

    /// Reads a version (`None` or empty: the latest) with its value.
    /// `nbf`/`exp` are not enforced, as in Key Vault.
    pub async fn get(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Secret, EngineError> {
        let found = self.objects.get(vault, name, version).await?;
        if !found.version.enabled {
            return Err(EngineError::Disabled {
                kind: ObjectKind::Secret,
                name: name.to_owned(),
            });
        }
        Ok(found.version.secret(&found.meta.record.name))
    }

    /// Changes content type, attributes or tags of a version (`None` or
    /// empty: the latest).
    pub async fn update(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        patch: UpdateSecret,
        request_id: Option<&str>,
    ) -> Result<SecretProperties, EngineError> {
        check_name(SecretKind::LABEL, name)?;
        check_tags(patch.tags.as_ref())?;
        self.objects
            .update(vault, name, version, request_id, |record, now| {
                apply_patch(record, &patch, now)
            })
            .await
    }
}

/// The engine *is* the secrets' lifecycle plus set/get/update: the
/// lifecycle's operations are its own, without a wrapper per operation.
impl std::ops::Deref for SecretsEngine {
    type Target = Objects<SecretKind>;

    fn deref(&self) -> &Objects<SecretKind> {
        &self.objects
    }
}

fn apply_patch(record: &mut VersionRecord, patch: &UpdateSecret, now: u64) {
    if let Some(ct) = &patch.content_type {
        record.content_type = Some(ct.clone());
    }
    if let Some(enabled) = patch.enabled {
        record.enabled = enabled;
    }
    if patch.nbf.is_some() {
        record.nbf = patch.nbf;
    }
    if patch.exp.is_some() {
        record.exp = patch.exp;
    }
    if let Some(tags) = &patch.tags {
        record.tags = Some(tags.clone());
    }
    record.updated = now;
}

fn check_value(value: &str) -> Result<(), EngineError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(EngineError::BadParameter(format!(
            "The secret value is too large: {} bytes, the limit is {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
