//! Secrets: versioned values with soft delete, recover, purge, backup and
//! restore — the semantics of Azure Key Vault secrets.
//!
//! Every write is a compare-and-set transaction over the vault record, the
//! secret's metadata record and (where touched) a version record, retried on
//! conflict. The transaction result carries the rendered outcome, so a client
//! retry with the same request id is answered with the first outcome.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::cas::{decode, encode, put, rev, write, Plan};
use super::clock::{system_clock, Clock};
use super::error::{EngineError, ObjectKind};
use super::names::{
    is_valid_object_name, is_valid_version, secret_meta_key, secret_meta_prefix,
    secret_version_key, secret_versions_prefix, vault_key, ALL_SECRET_META_PREFIX,
};
use super::paging::{collect_page, page_size, Page};
use super::secret_records::{BackupRecord, DeletedInfo, MetaRecord, VersionRecord, BACKUP_FORMAT};
use super::store::{Entry, Mutation, Store, StoreError, Txn};
use super::validate::{check_name, check_tags, normalize_vault};

/// Days a deleted secret stays recoverable.
pub const RECOVERABLE_DAYS: u64 = 90;
/// The recovery level every secret reports.
pub const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";
/// Largest secret value, in bytes of UTF-8.
pub const MAX_VALUE_BYTES: usize = 25 * 1024;
pub use super::validate::{MAX_TAGS, MAX_TAG_CHARS};
/// Most versions a backup may hold.
pub const MAX_BACKUP_VERSIONS: usize = 500;
/// Purpose label of backup blobs.
pub const BACKUP_PURPOSE: &[u8] = b"coffer/backup/secret/v1";

const DAY: u64 = 86_400;

/// Metadata of one secret version (no value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretProperties {
    /// Name as first written.
    pub name: String,
    /// Version id (32 lowercase hex).
    pub version: String,
    /// Free-form content type.
    pub content_type: Option<String>,
    /// Whether the value can be read.
    pub enabled: bool,
    /// Not-before, Unix seconds (informational: not enforced on get).
    pub nbf: Option<i64>,
    /// Expiry, Unix seconds (informational: not enforced on get).
    pub exp: Option<i64>,
    /// Unix seconds of creation.
    pub created: u64,
    /// Unix seconds of the last change.
    pub updated: u64,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Key id when the secret backs a certificate.
    pub kid: Option<String>,
    /// Whether the secret's lifetime is managed by a certificate.
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

/// The secrets engine of all vaults.
pub struct SecretsEngine {
    store: Arc<dyn Store>,
    clock: Clock,
}

/// A live or deleted secret's metadata as read, with its revision.
struct Meta {
    revision: u64,
    record: MetaRecord,
}

impl SecretsEngine {
    /// An engine over `store` using the system clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_clock(store, system_clock())
    }

    /// An engine over `store` using `clock` (Unix seconds).
    pub fn with_clock(store: Arc<dyn Store>, clock: Clock) -> Self {
        Self { store, clock }
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
        let lower = check_name("Secret", name)?;
        check_value(&params.value)?;
        check_tags(params.tags.as_ref())?;
        let vault = normalize_vault(vault)?;
        write(self.store.as_ref(), request_id, || {
            let vault_rev = self.vault_rev(&vault)?;
            let meta = self.meta(&vault, &lower)?;
            if meta.as_ref().is_some_and(|m| m.record.deleted.is_some()) {
                return Ok(Plan::Refuse(deleted_but_recoverable(name)));
            }
            let now = (self.clock)();
            let version = uuid::Uuid::new_v4().simple().to_string();
            let display = meta
                .as_ref()
                .map_or(name, |m| m.record.name.as_str())
                .to_owned();
            let record = VersionRecord {
                version: version.clone(),
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
            let new_meta = MetaRecord {
                name: display.clone(),
                latest: version.clone(),
                deleted: None,
            };
            let version_key = secret_version_key(&vault, &lower, &version);
            let txn = Txn {
                compare: vec![
                    rev(vault_key(&vault), vault_rev),
                    rev(
                        secret_meta_key(&vault, &lower),
                        meta.as_ref().map_or(0, |m| m.revision),
                    ),
                    rev(version_key.clone(), 0),
                ],
                mutations: vec![
                    put(secret_meta_key(&vault, &lower), encode(&new_meta)?),
                    put(version_key, encode(&record)?),
                ],
                result: encode(&record.secret(&display))?,
            };
            Ok(Plan::Commit(txn))
        })
        .await
    }

    /// Reads a version (`None` or empty: the latest) with its value.
    /// `nbf`/`exp` are not enforced, as in Key Vault.
    pub async fn get(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Secret, EngineError> {
        let lower = check_name("Secret", name)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        let meta = self.live_meta(&vault, &lower, name)?;
        let (_, record) = self.version(&vault, &lower, &meta.record, name, version)?;
        if !record.enabled {
            return Err(EngineError::Disabled {
                kind: ObjectKind::Secret,
                name: name.to_owned(),
            });
        }
        Ok(record.secret(&meta.record.name))
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
        let lower = check_name("Secret", name)?;
        check_tags(patch.tags.as_ref())?;
        let vault = normalize_vault(vault)?;
        write(self.store.as_ref(), request_id, || {
            let vault_rev = self.vault_rev(&vault)?;
            let found = self.live_meta(&vault, &lower, name).and_then(|meta| {
                let (entry, record) = self.version(&vault, &lower, &meta.record, name, version)?;
                Ok((meta, entry, record))
            });
            let (meta, entry, mut record) = match found {
                Ok(f) => f,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            apply_patch(&mut record, &patch, (self.clock)());
            let key = secret_version_key(&vault, &lower, &record.version);
            let txn = Txn {
                compare: vec![
                    rev(vault_key(&vault), vault_rev),
                    rev(secret_meta_key(&vault, &lower), meta.revision),
                    rev(key.clone(), entry),
                ],
                mutations: vec![put(key, encode(&record)?)],
                result: encode(&record.properties(&meta.record.name))?,
            };
            Ok(Plan::Commit(txn))
        })
        .await
    }

    /// Live secrets (latest version's metadata), ordered by lower-case name.
    pub async fn list(
        &self,
        vault: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<SecretProperties>, EngineError> {
        let size = page_size(maxresults)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        collect_page(
            self.store.as_ref(),
            &secret_meta_prefix(&vault),
            size,
            skiptoken,
            |lower, e| {
                let meta: MetaRecord = decode(&e.value)?;
                if meta.deleted.is_some() {
                    return Ok(None);
                }
                Ok(self
                    .version_record(&vault, lower, &meta.latest)?
                    .map(|(_, r)| r.properties(&meta.name)))
            },
        )
    }

    /// Versions of a live secret; empty when the secret does not exist.
    pub async fn list_versions(
        &self,
        vault: &str,
        name: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<SecretProperties>, EngineError> {
        let lower = check_name("Secret", name)?;
        let size = page_size(maxresults)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        let display = match self.meta(&vault, &lower)? {
            Some(m) if m.record.deleted.is_none() => m.record.name,
            _ => {
                return Ok(Page {
                    items: Vec::new(),
                    skiptoken: None,
                })
            }
        };
        let prefix = secret_versions_prefix(&vault, &lower);
        collect_page(self.store.as_ref(), &prefix, size, skiptoken, |_, e| {
            let record: VersionRecord = decode(&e.value)?;
            Ok(Some(record.properties(&display)))
        })
    }

    /// Soft-deletes a secret: every version stays, the name is reserved until
    /// it is recovered or purged.
    pub async fn delete(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<DeletedSecret, EngineError> {
        let lower = check_name("Secret", name)?;
        let vault = normalize_vault(vault)?;
        write(self.store.as_ref(), request_id, || {
            let vault_rev = self.vault_rev(&vault)?;
            let found = self.live_meta(&vault, &lower, name).and_then(|meta| {
                let (latest_rev, latest) =
                    self.version(&vault, &lower, &meta.record, name, None)?;
                Ok((meta, latest_rev, latest))
            });
            let (meta, latest_rev, latest) = match found {
                Ok(f) => f,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let now = (self.clock)();
            let info = DeletedInfo {
                deleted_date: now,
                scheduled_purge_date: now + RECOVERABLE_DAYS * DAY,
            };
            let new_meta = MetaRecord {
                deleted: Some(info),
                ..meta.record.clone()
            };
            let key = secret_meta_key(&vault, &lower);
            let txn = Txn {
                // The answer shows the latest version: it must be current too.
                compare: vec![
                    rev(vault_key(&vault), vault_rev),
                    rev(key.clone(), meta.revision),
                    rev(
                        secret_version_key(&vault, &lower, &latest.version),
                        latest_rev,
                    ),
                ],
                mutations: vec![put(key, encode(&new_meta)?)],
                result: encode(&latest.deleted(&meta.record.name, info))?,
            };
            Ok(Plan::Commit(txn))
        })
        .await
    }

    /// A soft-deleted secret.
    pub async fn get_deleted(&self, vault: &str, name: &str) -> Result<DeletedSecret, EngineError> {
        let lower = check_name("Secret", name)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        let (meta, info) = self.deleted_meta(&vault, &lower, name)?;
        let (_, latest) = self.version(&vault, &lower, &meta.record, name, None)?;
        Ok(latest.deleted(&meta.record.name, info))
    }

    /// Soft-deleted secrets, ordered by lower-case name.
    pub async fn list_deleted(
        &self,
        vault: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<DeletedSecret>, EngineError> {
        let size = page_size(maxresults)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        collect_page(
            self.store.as_ref(),
            &secret_meta_prefix(&vault),
            size,
            skiptoken,
            |lower, e| {
                let meta: MetaRecord = decode(&e.value)?;
                let Some(info) = meta.deleted else {
                    return Ok(None);
                };
                Ok(self
                    .version_record(&vault, lower, &meta.latest)?
                    .map(|(_, r)| r.deleted(&meta.name, info)))
            },
        )
    }

    /// Brings a soft-deleted secret back; returns its latest version.
    pub async fn recover(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<SecretProperties, EngineError> {
        let lower = check_name("Secret", name)?;
        let vault = normalize_vault(vault)?;
        write(self.store.as_ref(), request_id, || {
            let vault_rev = self.vault_rev(&vault)?;
            let found = self
                .deleted_meta(&vault, &lower, name)
                .and_then(|(meta, _)| {
                    let (latest_rev, latest) =
                        self.version(&vault, &lower, &meta.record, name, None)?;
                    Ok((meta, latest_rev, latest))
                });
            let (meta, latest_rev, latest) = match found {
                Ok(f) => f,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let new_meta = MetaRecord {
                deleted: None,
                ..meta.record.clone()
            };
            let key = secret_meta_key(&vault, &lower);
            let txn = Txn {
                compare: vec![
                    rev(vault_key(&vault), vault_rev),
                    rev(key.clone(), meta.revision),
                    rev(
                        secret_version_key(&vault, &lower, &latest.version),
                        latest_rev,
                    ),
                ],
                mutations: vec![put(key, encode(&new_meta)?)],
                result: encode(&latest.properties(&meta.record.name))?,
            };
            Ok(Plan::Commit(txn))
        })
        .await
    }

    /// Removes a soft-deleted secret and all its versions for good.
    pub async fn purge(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<(), EngineError> {
        let lower = check_name("Secret", name)?;
        let vault = normalize_vault(vault)?;
        write(self.store.as_ref(), request_id, || {
            let vault_rev = self.vault_rev(&vault)?;
            let meta = match self.deleted_meta(&vault, &lower, name) {
                Ok((meta, _)) => meta,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            Ok(Plan::Commit(purge_txn(
                &vault,
                &lower,
                meta.revision,
                Some(vault_rev),
            )))
        })
        .await
    }

    /// Purges every deleted secret (of every vault) whose scheduled purge
    /// date is at or before `now` (Unix seconds). Returns how many.
    pub async fn purge_expired(&self, now: u64) -> Result<usize, EngineError> {
        self.store.read_fence().await?;
        let mut purged = 0;
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let batch = self
                .store
                .scan(ALL_SECRET_META_PREFIX, cursor.as_deref(), 256)?;
            for (key, entry) in &batch {
                purged += usize::from(self.purge_if_expired(key, entry, now).await?);
            }
            match batch.last() {
                Some((k, _)) if batch.len() == 256 => cursor = Some(k.clone()),
                _ => return Ok(purged),
            }
        }
    }

    /// An opaque blob holding every version of a live secret.
    pub async fn backup(&self, vault: &str, name: &str) -> Result<Vec<u8>, EngineError> {
        let lower = check_name("Secret", name)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        let meta = self.live_meta(&vault, &lower, name)?;
        let prefix = secret_versions_prefix(&vault, &lower);
        let entries = self.store.scan(&prefix, None, MAX_BACKUP_VERSIONS + 1)?;
        if entries.len() > MAX_BACKUP_VERSIONS {
            return Err(EngineError::BadParameter(format!(
                "Backup of secret {name} failed: it has more than {MAX_BACKUP_VERSIONS} versions"
            )));
        }
        let versions = entries
            .iter()
            .map(|(_, e)| decode(&e.value))
            .collect::<Result<Vec<VersionRecord>, _>>()?;
        let backup = BackupRecord {
            format: BACKUP_FORMAT.to_owned(),
            name: meta.record.name,
            latest: meta.record.latest,
            versions,
        };
        let plain = Zeroizing::new(encode(&backup)?);
        Ok(self.store.seal_blob(BACKUP_PURPOSE, &plain)?)
    }

    /// Restores a backup made by [`SecretsEngine::backup`] (of any vault of
    /// this cluster) under its original name and version ids.
    pub async fn restore(
        &self,
        vault: &str,
        blob: &[u8],
        request_id: Option<&str>,
    ) -> Result<SecretProperties, EngineError> {
        let backup = self.open_backup(blob)?;
        let lower = backup.name.to_ascii_lowercase();
        let latest = backup
            .versions
            .iter()
            .find(|v| v.version == backup.latest)
            .ok_or(EngineError::MalformedBackup)?
            .properties(&backup.name);
        let vault = normalize_vault(vault)?;
        write(self.store.as_ref(), request_id, || {
            let vault_rev = self.vault_rev(&vault)?;
            if let Some(meta) = self.meta(&vault, &lower)? {
                let err = if meta.record.deleted.is_some() {
                    deleted_but_recoverable(&backup.name)
                } else {
                    EngineError::Conflict(format!("Secret {} already exists", backup.name))
                };
                return Ok(Plan::Refuse(err));
            }
            let meta = MetaRecord {
                name: backup.name.clone(),
                latest: backup.latest.clone(),
                deleted: None,
            };
            let meta_key = secret_meta_key(&vault, &lower);
            let mut mutations = vec![put(meta_key.clone(), encode(&meta)?)];
            for v in &backup.versions {
                mutations.push(put(
                    secret_version_key(&vault, &lower, &v.version),
                    encode(v)?,
                ));
            }
            let txn = Txn {
                compare: vec![rev(vault_key(&vault), vault_rev), rev(meta_key, 0)],
                mutations,
                result: encode(&latest)?,
            };
            Ok(Plan::Commit(txn))
        })
        .await
    }

    // ---- helpers ----

    /// Read fence, then the vault record's revision (VaultNotFound if
    /// absent). For reads; writes use [`Self::vault_rev`] inside a plan.
    async fn fence_vault(&self, vault: &str) -> Result<u64, EngineError> {
        let name = normalize_vault(vault)?;
        self.store.read_fence().await?;
        self.vault_rev(&name)
    }

    /// The vault record's revision in local state, unfenced (VaultNotFound
    /// if absent); `vault` is already normalised.
    fn vault_rev(&self, vault: &str) -> Result<u64, EngineError> {
        match self.store.get(&vault_key(vault))? {
            Some(e) => Ok(e.revision),
            None => Err(EngineError::VaultNotFound(vault.to_owned())),
        }
    }

    fn meta(&self, vault: &str, lower: &str) -> Result<Option<Meta>, EngineError> {
        match self.store.get(&secret_meta_key(vault, lower))? {
            Some(e) => Ok(Some(Meta {
                revision: e.revision,
                record: decode(&e.value)?,
            })),
            None => Ok(None),
        }
    }

    fn live_meta(&self, vault: &str, lower: &str, name: &str) -> Result<Meta, EngineError> {
        match self.meta(vault, lower)? {
            Some(m) if m.record.deleted.is_none() => Ok(m),
            _ => Err(not_found(ObjectKind::Secret, name.to_owned())),
        }
    }

    fn deleted_meta(
        &self,
        vault: &str,
        lower: &str,
        name: &str,
    ) -> Result<(Meta, DeletedInfo), EngineError> {
        match self.meta(vault, lower)? {
            Some(m) => match m.record.deleted {
                Some(info) => Ok((m, info)),
                None => Err(not_found(ObjectKind::DeletedSecret, name.to_owned())),
            },
            None => Err(not_found(ObjectKind::DeletedSecret, name.to_owned())),
        }
    }

    fn version_record(
        &self,
        vault: &str,
        lower: &str,
        version: &str,
    ) -> Result<Option<(u64, VersionRecord)>, EngineError> {
        match self.store.get(&secret_version_key(vault, lower, version))? {
            Some(e) => Ok(Some((e.revision, decode(&e.value)?))),
            None => Ok(None),
        }
    }

    /// The requested version (`None`/empty: latest) with its revision.
    fn version(
        &self,
        vault: &str,
        lower: &str,
        meta: &MetaRecord,
        name: &str,
        version: Option<&str>,
    ) -> Result<(u64, VersionRecord), EngineError> {
        let wanted = version.filter(|v| !v.is_empty());
        let id = wanted.map_or_else(|| meta.latest.clone(), str::to_ascii_lowercase);
        let missing = || {
            let shown = wanted.map_or_else(|| name.to_owned(), |v| format!("{name}/{v}"));
            not_found(ObjectKind::Secret, shown)
        };
        if !is_valid_version(&id) {
            return Err(missing());
        }
        self.version_record(vault, lower, &id)?.ok_or_else(missing)
    }

    fn open_backup(&self, blob: &[u8]) -> Result<BackupRecord, EngineError> {
        let plain = match self.store.open_blob(BACKUP_PURPOSE, blob) {
            Ok(p) => p,
            Err(
                e @ (StoreError::Sealed | StoreError::NotInitialized | StoreError::Unavailable(_)),
            ) => return Err(EngineError::Store(e)),
            Err(_) => return Err(EngineError::MalformedBackup),
        };
        let backup: BackupRecord =
            serde_json::from_slice(&plain).map_err(|_| EngineError::MalformedBackup)?;
        let sane = backup.format == BACKUP_FORMAT
            && is_valid_object_name(&backup.name)
            && !backup.versions.is_empty()
            && backup.versions.len() <= MAX_BACKUP_VERSIONS
            && backup.versions.iter().all(|v| is_valid_version(&v.version));
        if sane {
            Ok(backup)
        } else {
            Err(EngineError::MalformedBackup)
        }
    }

    /// Purges one metadata record if it is deleted and due. `true` if purged.
    async fn purge_if_expired(
        &self,
        key: &[u8],
        entry: &Entry,
        now: u64,
    ) -> Result<bool, EngineError> {
        let Ok(meta) = decode::<MetaRecord>(&entry.value) else {
            return Ok(false);
        };
        let due = meta.deleted.is_some_and(|d| d.scheduled_purge_date <= now);
        let rest = String::from_utf8_lossy(&key[ALL_SECRET_META_PREFIX.len()..]).into_owned();
        let Some((vault, lower)) = rest.split_once('/') else {
            return Ok(false);
        };
        if !due {
            return Ok(false);
        }
        let txn = purge_txn(vault, lower, entry.revision, None);
        // A lost race means someone recovered or purged it meanwhile.
        Ok(self.store.commit(None, txn).await?.succeeded)
    }
}

fn purge_txn(vault: &str, lower: &str, meta_rev: u64, vault_rev: Option<u64>) -> Txn {
    let meta_key = secret_meta_key(vault, lower);
    let mut compare = vec![rev(meta_key.clone(), meta_rev)];
    if let Some(v) = vault_rev {
        compare.push(rev(vault_key(vault), v));
    }
    Txn {
        compare,
        mutations: vec![
            Mutation::DeletePrefix {
                prefix: secret_versions_prefix(vault, lower),
            },
            Mutation::Delete { key: meta_key },
        ],
        result: b"null".to_vec(),
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

fn not_found(kind: ObjectKind, name: String) -> EngineError {
    EngineError::NotFound { kind, name }
}

fn deleted_but_recoverable(name: &str) -> EngineError {
    EngineError::DeletedButRecoverable {
        kind: ObjectKind::Secret,
        name: name.to_owned(),
    }
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
