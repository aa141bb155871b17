//! Keys: versioned RSA, EC and AES keys in software or in the HSM tier,
//! with soft delete, recover, purge, backup/restore, rotation (on demand
//! and by policy) and the cryptographic operations of Azure Key Vault.
//!
//! Writes follow the secrets engine: compare-and-set transactions over the
//! vault record, the key's metadata record and a version record, retried on
//! conflict, deduplicated by request id (the transaction result carries
//! the rendered outcome). Key material is generated once per attempt of a
//! logical write, before its retry loop; a client retry of an applied write
//! generates material that the store's request-id dedup then discards.
//!
//! Software keys' private material exists only inside version records
//! (barrier-encrypted by the store). HSM keys are generated and used in the
//! device via [`HsmProvider`] on blocking threads; public-key operations
//! (verify, RSA encrypt and wrap) run in software for both tiers. A request
//! for an HSM key on a node without a usable device fails with
//! [`CryptoError::HsmUnavailable`] (503) and stores nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::cas::{decode, encode, put, rev, write, Plan};
use super::clock::{system_clock, Clock};
use super::error::{EngineError, KeyRefusal, ObjectKind};
use super::key_cache::{CacheId, KeyCache, Ticket, DEFAULT_CAPACITY};
use super::key_records::{
    events_prefix, meta_key, meta_prefix, notify_event_key, policy_key, version_key,
    versions_prefix, KeyBackupRecord, KeyMaterial, KeyVersionRecord, ALL_META_PREFIX,
    ALL_POLICY_PREFIX, KEY_BACKUP_FORMAT,
};
use super::names::{is_valid_object_name, is_valid_version, vault_key};
use super::paging::{collect_page, page_size, Page};
use super::rotation::{self, ActionType, RotationLimits, RotationPolicy};
use super::secret_records::{DeletedInfo, MetaRecord};
use super::store::{Entry, Mutation, Store, StoreError, Txn};
use super::validate::{check_name, check_tags, normalize_vault};
use crate::crypto::hsm::HsmProvider;
use crate::crypto::software::{self, LoadedKey, SoftwareKey};
use crate::crypto::{
    Ciphertext, CryptoError, Curve, EncAlg, KeySpec, KeyType, PrivateKey, PublicKey, SignAlg,
    SymParams,
};

/// Days a deleted key stays recoverable.
pub const RECOVERABLE_DAYS: u64 = 90;
/// The recovery level every key reports.
pub const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";
pub use super::validate::{MAX_TAGS, MAX_TAG_CHARS};
/// Most versions a backup may hold.
pub const MAX_BACKUP_VERSIONS: usize = 500;
/// Largest plaintext or ciphertext of encrypt/decrypt/wrap/unwrap.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Largest signature accepted by verify.
pub const MAX_SIGNATURE_BYTES: usize = 1024;
/// Largest `/rng` request.
pub const MAX_RANDOM_BYTES: usize = 128;
/// Purpose label of key backup blobs.
pub const BACKUP_PURPOSE: &[u8] = b"coffer/backup/key/v1";

const DAY: u64 = 86_400;

/// Key operations (`key_ops`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyOp {
    /// Encrypt.
    Encrypt,
    /// Decrypt.
    Decrypt,
    /// Sign a digest.
    Sign,
    /// Verify a signature.
    Verify,
    /// Wrap a key.
    WrapKey,
    /// Unwrap a key.
    UnwrapKey,
    /// Import (informational).
    Import,
    /// Export (informational; export is not supported).
    Export,
}

impl KeyOp {
    /// Key Vault spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyOp::Encrypt => "encrypt",
            KeyOp::Decrypt => "decrypt",
            KeyOp::Sign => "sign",
            KeyOp::Verify => "verify",
            KeyOp::WrapKey => "wrapKey",
            KeyOp::UnwrapKey => "unwrapKey",
            KeyOp::Import => "import",
            KeyOp::Export => "export",
        }
    }

    /// Operations that stay allowed outside `nbf`/`exp`.
    fn ignores_validity(self) -> bool {
        matches!(self, KeyOp::Decrypt | KeyOp::UnwrapKey | KeyOp::Verify)
    }
}

/// Metadata of one key version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyProperties {
    /// Name as first written.
    pub name: String,
    /// Version id.
    pub version: String,
    /// Key type.
    pub kty: KeyType,
    /// Permitted operations.
    pub key_ops: Vec<KeyOp>,
    /// Enabled.
    pub enabled: bool,
    /// Not-before, Unix seconds.
    pub nbf: Option<i64>,
    /// Expiry, Unix seconds.
    pub exp: Option<i64>,
    /// Creation, Unix seconds.
    pub created: u64,
    /// Last change, Unix seconds.
    pub updated: u64,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Lives in the HSM tier.
    pub hsm: bool,
}

/// A key version: metadata and public key (never private material).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// Metadata.
    pub properties: KeyProperties,
    /// Public half (`Oct` for symmetric keys).
    pub public: PublicKey,
}

/// A soft-deleted key (its latest version).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedKey {
    /// Latest version.
    pub key: Key,
    /// Unix seconds of the delete.
    pub deleted_date: u64,
    /// Unix seconds after which it is purged.
    pub scheduled_purge_date: u64,
}

/// Attributes, ops and tags shared by create and import.
#[derive(Clone, Debug, Default)]
pub struct KeyAttributes {
    /// Permitted operations (default: every operation the key type supports).
    pub key_ops: Option<Vec<KeyOp>>,
    /// Enabled (default true).
    pub enabled: Option<bool>,
    /// Not-before.
    pub nbf: Option<i64>,
    /// Expiry.
    pub exp: Option<i64>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// `exportable: true` (unsupported: refused).
    pub exportable: Option<bool>,
    /// A release policy was given (unsupported: refused).
    pub release_policy: bool,
}

/// Parameters of create.
#[derive(Clone, Debug)]
pub struct CreateKey {
    /// Key type.
    pub kty: KeyType,
    /// RSA modulus bits (default 2048) or AES bits (default 256).
    pub key_size: Option<u32>,
    /// EC curve (default P-256).
    pub curve: Option<Curve>,
    /// RSA public exponent (only 65537).
    pub public_exponent: Option<u32>,
    /// Attributes.
    pub attributes: KeyAttributes,
}

/// Parameters of import.
#[derive(Clone)]
pub struct ImportKey {
    /// Private material.
    pub key: PrivateKey,
    /// Import into the HSM (`Hsm: true`, or a `*-HSM` kty).
    pub hsm: bool,
    /// Attributes.
    pub attributes: KeyAttributes,
}

impl std::fmt::Debug for ImportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportKey")
            .field("key", &"<redacted>")
            .field("hsm", &self.hsm)
            .finish_non_exhaustive()
    }
}

/// Changes of an update; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct UpdateKey {
    /// New key_ops.
    pub key_ops: Option<Vec<KeyOp>>,
    /// New enabled flag.
    pub enabled: Option<bool>,
    /// New not-before.
    pub nbf: Option<i64>,
    /// New expiry.
    pub exp: Option<i64>,
    /// New tags (replace all).
    pub tags: Option<BTreeMap<String, String>>,
}

/// Result of a cryptographic operation.
#[derive(Clone)]
pub struct OpOutput {
    /// Key name (display spelling).
    pub name: String,
    /// Version used.
    pub version: String,
    /// Ciphertext, plaintext, signature or wrapped key.
    pub value: Zeroizing<Vec<u8>>,
    /// IV (symmetric encryption).
    pub iv: Option<Vec<u8>>,
    /// Authentication tag (GCM).
    pub tag: Option<Vec<u8>>,
}

impl std::fmt::Debug for OpOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpOutput")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// The keys engine of all vaults.
pub struct KeysEngine {
    store: Arc<dyn Store>,
    hsm: Option<Arc<dyn HsmProvider>>,
    clock: Clock,
    /// Parsed software keys for sign/decrypt; cleared on seal.
    loaded: KeyCache,
    /// Minimum durations of rotation policies.
    rotation_limits: RotationLimits,
}

struct Meta {
    revision: u64,
    record: MetaRecord,
}

/// A version ready for an operation.
struct Usable {
    name: String,
    record: KeyVersionRecord,
    /// Where the record is stored and at which revision (the cache key).
    id: CacheId,
    revision: u64,
    /// Cache generation seen before the record was read.
    ticket: Ticket,
}

impl KeysEngine {
    /// An engine over `store` (HSM tier: `hsm`) using the system clock.
    pub fn new(store: Arc<dyn Store>, hsm: Option<Arc<dyn HsmProvider>>) -> Self {
        Self::with_clock(store, hsm, system_clock())
    }

    /// An engine using `clock` (Unix seconds).
    pub fn with_clock(
        store: Arc<dyn Store>,
        hsm: Option<Arc<dyn HsmProvider>>,
        clock: Clock,
    ) -> Self {
        Self {
            store,
            hsm,
            clock,
            loaded: KeyCache::new(DEFAULT_CAPACITY),
            rotation_limits: RotationLimits::KEY_VAULT,
        }
    }

    /// The same engine with other rotation policy minimums (the test-only
    /// `unsafe_min_rotation_secs` of the config).
    pub fn with_rotation_limits(mut self, limits: RotationLimits) -> Self {
        self.rotation_limits = limits;
        self
    }

    /// Forgets every parsed software key held in memory. The node calls
    /// this when it seals; later operations fail on the sealed store before
    /// they could load a key again.
    pub fn clear_key_cache(&self) {
        self.loaded.clear();
    }

    // ---- lifecycle ----

    /// Creates a key (a new version if the name exists).
    pub async fn create(
        &self,
        vault: &str,
        name: &str,
        params: CreateKey,
        request_id: Option<&str>,
    ) -> Result<Key, EngineError> {
        let lower = check_name("Key", name)?;
        check_attributes(&params.attributes)?;
        let spec = spec_of(&params)?;
        self.check_vault(vault).await?;
        let material = self.make_material(params.kty, spec).await?;
        self.new_version(
            vault,
            name,
            &lower,
            params.kty,
            material,
            &params.attributes,
            request_id,
        )
        .await
    }

    /// Imports private material as a new version.
    pub async fn import(
        &self,
        vault: &str,
        name: &str,
        params: ImportKey,
        request_id: Option<&str>,
    ) -> Result<Key, EngineError> {
        let lower = check_name("Key", name)?;
        check_attributes(&params.attributes)?;
        self.check_vault(vault).await?;
        let (kty, material) = if params.hsm {
            let hsm = self.hsm()?;
            let key = params.key.clone();
            let k = blocking(move || hsm.import(&key)).await?;
            (k.kty, KeyMaterial::Hsm(k))
        } else {
            let key = params.key.clone();
            let k = blocking(move || software::import(&key)).await?;
            (k.kty, KeyMaterial::Software(k))
        };
        self.new_version(
            vault,
            name,
            &lower,
            kty,
            material,
            &params.attributes,
            request_id,
        )
        .await
    }

    /// A new version of an existing key with the same type, size, curve,
    /// operations and tags (expiry from the rotation policy, if it sets one).
    pub async fn rotate(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<Key, EngineError> {
        let lower = check_name("Key", name)?;
        self.fence_vault(vault).await?;
        let v = normalize_vault(vault)?;
        let meta = self.live_meta(&v, &lower, name)?;
        let (_, latest) = self.version(&v, &lower, &meta.record, name, None)?;
        let policy = self.policy(&v, &lower)?;
        let material = self
            .make_material(latest.kty, spec_of_material(&latest.material)?)
            .await?;
        let attrs = rotated_attributes(&latest, policy.as_ref(), (self.clock)());
        write(self.store.as_ref(), request_id, || {
            let vault_rev = self.vault_rev(&v)?;
            let meta = match self.live_meta(&v, &lower, name) {
                Ok(m) => m,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let txn = self.version_txn(
                &v,
                &lower,
                name,
                Some(&meta),
                vault_rev,
                latest.kty,
                &material,
                &attrs,
            )?;
            Ok(Plan::Commit(txn))
        })
        .await
    }

    /// Reads a version (`None` or empty: the latest). Disabled keys are
    /// readable (only their operations are refused).
    pub async fn get(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Key, EngineError> {
        let lower = check_name("Key", name)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        let meta = self.live_meta(&vault, &lower, name)?;
        let (_, record) = self.version(&vault, &lower, &meta.record, name, version)?;
        Ok(record.key(&meta.record.name))
    }

    /// Changes key_ops, attributes or tags of a version.
    pub async fn update(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        patch: UpdateKey,
        request_id: Option<&str>,
    ) -> Result<Key, EngineError> {
        let lower = check_name("Key", name)?;
        check_tags(patch.tags.as_ref())?;
        let vault = normalize_vault(vault)?;
        write(self.store.as_ref(), request_id, || {
            let vault_rev = self.vault_rev(&vault)?;
            let found = self.live_meta(&vault, &lower, name).and_then(|meta| {
                let (rev, record) = self.version(&vault, &lower, &meta.record, name, version)?;
                Ok((meta, rev, record))
            });
            let (meta, rev_v, mut record) = match found {
                Ok(f) => f,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            apply_patch(&mut record, &patch, (self.clock)());
            let key = version_key(&vault, &lower, &record.version);
            let txn = Txn {
                compare: vec![
                    rev(vault_key(&vault), vault_rev),
                    rev(meta_key(&vault, &lower), meta.revision),
                    rev(key.clone(), rev_v),
                ],
                mutations: vec![put(key, encode(&record)?)],
                result: encode(&record.key(&meta.record.name))?,
            };
            Ok(Plan::Commit(txn))
        })
        .await
    }

    /// Live keys (latest version's metadata), ordered by lower-case name.
    pub async fn list(
        &self,
        vault: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<KeyProperties>, EngineError> {
        let size = page_size(maxresults)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        collect_page(
            self.store.as_ref(),
            &meta_prefix(&vault),
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

    /// Every version of a live key (empty for an unknown key, as Key Vault).
    pub async fn list_versions(
        &self,
        vault: &str,
        name: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<KeyProperties>, EngineError> {
        let lower = check_name("Key", name)?;
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
        collect_page(
            self.store.as_ref(),
            &versions_prefix(&vault, &lower),
            size,
            skiptoken,
            |_, e| {
                let record: KeyVersionRecord = decode(&e.value)?;
                Ok(Some(record.properties(&display)))
            },
        )
    }

    /// Soft-deletes a key (all versions).
    pub async fn delete(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<DeletedKey, EngineError> {
        let lower = check_name("Key", name)?;
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
            let key = meta_key(&vault, &lower);
            let txn = Txn {
                // The answer shows the latest version: it must be current too.
                compare: vec![
                    rev(vault_key(&vault), vault_rev),
                    rev(key.clone(), meta.revision),
                    rev(version_key(&vault, &lower, &latest.version), latest_rev),
                ],
                mutations: vec![put(key, encode(&new_meta)?)],
                result: encode(&latest.deleted(&meta.record.name, info))?,
            };
            Ok(Plan::Commit(txn))
        })
        .await
    }

    /// A soft-deleted key.
    pub async fn get_deleted(&self, vault: &str, name: &str) -> Result<DeletedKey, EngineError> {
        let lower = check_name("Key", name)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        let (meta, info) = self.deleted_meta(&vault, &lower, name)?;
        let (_, latest) = self.version(&vault, &lower, &meta.record, name, None)?;
        Ok(latest.deleted(&meta.record.name, info))
    }

    /// Soft-deleted keys.
    pub async fn list_deleted(
        &self,
        vault: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<DeletedKey>, EngineError> {
        let size = page_size(maxresults)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        collect_page(
            self.store.as_ref(),
            &meta_prefix(&vault),
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

    /// Brings a soft-deleted key back; returns its latest version.
    pub async fn recover(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<Key, EngineError> {
        let lower = check_name("Key", name)?;
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
            let key = meta_key(&vault, &lower);
            let txn = Txn {
                // The answer shows the latest version: it must be current too.
                compare: vec![
                    rev(vault_key(&vault), vault_rev),
                    rev(key.clone(), meta.revision),
                    rev(version_key(&vault, &lower, &latest.version), latest_rev),
                ],
                mutations: vec![put(key, encode(&new_meta)?)],
                result: encode(&latest.key(&meta.record.name))?,
            };
            Ok(Plan::Commit(txn))
        })
        .await
    }

    /// Removes a soft-deleted key, its versions, policy and events for good.
    pub async fn purge(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<(), EngineError> {
        let lower = check_name("Key", name)?;
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

    /// Purges every deleted key (of every vault) due at `now`. Returns how many.
    pub async fn purge_expired(&self, now: u64) -> Result<usize, EngineError> {
        self.store.read_fence().await?;
        let mut purged = 0;
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let batch = self.store.scan(ALL_META_PREFIX, cursor.as_deref(), 256)?;
            for (key, entry) in &batch {
                purged += usize::from(self.purge_if_expired(key, entry, now).await?);
            }
            match batch.last() {
                Some((k, _)) if batch.len() == 256 => cursor = Some(k.clone()),
                _ => return Ok(purged),
            }
        }
    }

    /// An opaque blob holding every version (and the policy) of a live key.
    /// HSM keys travel as their KEK-wrapped blobs.
    pub async fn backup(&self, vault: &str, name: &str) -> Result<Vec<u8>, EngineError> {
        let lower = check_name("Key", name)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        let meta = self.live_meta(&vault, &lower, name)?;
        let entries = self.store.scan(
            &versions_prefix(&vault, &lower),
            None,
            MAX_BACKUP_VERSIONS + 1,
        )?;
        if entries.len() > MAX_BACKUP_VERSIONS {
            return Err(EngineError::BadParameter(format!(
                "Backup of key {name} failed: it has more than {MAX_BACKUP_VERSIONS} versions"
            )));
        }
        let versions = entries
            .iter()
            .map(|(_, e)| decode(&e.value))
            .collect::<Result<Vec<KeyVersionRecord>, _>>()?;
        let backup = KeyBackupRecord {
            format: KEY_BACKUP_FORMAT.to_owned(),
            name: meta.record.name,
            latest: meta.record.latest,
            versions,
            policy: self.policy(&vault, &lower)?,
        };
        let plain = Zeroizing::new(encode(&backup)?);
        Ok(self.store.seal_blob(BACKUP_PURPOSE, &plain)?)
    }

    /// Restores a backup under its original name and version ids.
    pub async fn restore(
        &self,
        vault: &str,
        blob: &[u8],
        request_id: Option<&str>,
    ) -> Result<Key, EngineError> {
        let backup = self.open_backup(blob)?;
        let lower = backup.name.to_ascii_lowercase();
        let latest = backup
            .versions
            .iter()
            .find(|v| v.version == backup.latest)
            .ok_or(EngineError::MalformedBackup)?
            .key(&backup.name);
        let vault = normalize_vault(vault)?;
        write(self.store.as_ref(), request_id, || {
            let vault_rev = self.vault_rev(&vault)?;
            if let Some(meta) = self.meta(&vault, &lower)? {
                let err = if meta.record.deleted.is_some() {
                    deleted_but_recoverable(&backup.name)
                } else {
                    EngineError::Conflict(format!("Key {} already exists", backup.name))
                };
                return Ok(Plan::Refuse(err));
            }
            let meta = MetaRecord {
                name: backup.name.clone(),
                latest: backup.latest.clone(),
                deleted: None,
            };
            let mk = meta_key(&vault, &lower);
            let mut mutations = vec![put(mk.clone(), encode(&meta)?)];
            for v in &backup.versions {
                mutations.push(put(version_key(&vault, &lower, &v.version), encode(v)?));
            }
            if let Some(p) = &backup.policy {
                mutations.push(put(policy_key(&vault, &lower), encode(p)?));
            }
            let txn = Txn {
                compare: vec![rev(vault_key(&vault), vault_rev), rev(mk, 0)],
                mutations,
                result: encode(&latest)?,
            };
            Ok(Plan::Commit(txn))
        })
        .await
    }

    // ---- rotation policy ----

    /// The key's rotation policy (the default one when none was set).
    pub async fn get_rotation_policy(
        &self,
        vault: &str,
        name: &str,
    ) -> Result<RotationPolicy, EngineError> {
        let lower = check_name("Key", name)?;
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        self.live_meta(&vault, &lower, name)?;
        Ok(self
            .policy(&vault, &lower)?
            .unwrap_or_else(rotation::default_policy))
    }

    /// Sets the key's rotation policy (validated; `created` kept, `updated` now).
    pub async fn set_rotation_policy(
        &self,
        vault: &str,
        name: &str,
        mut policy: RotationPolicy,
        request_id: Option<&str>,
    ) -> Result<RotationPolicy, EngineError> {
        let lower = check_name("Key", name)?;
        rotation::validate(&policy, &self.rotation_limits)?;
        let vault = normalize_vault(vault)?;
        write(self.store.as_ref(), request_id, || {
            let vault_rev = self.vault_rev(&vault)?;
            let meta = match self.live_meta(&vault, &lower, name) {
                Ok(m) => m,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let pk = policy_key(&vault, &lower);
            let old = self.store.get(&pk)?;
            let now = (self.clock)();
            let created = match &old {
                Some(e) => decode::<RotationPolicy>(&e.value)?.attributes.created,
                None => None,
            };
            policy.attributes.created = Some(created.unwrap_or(now));
            policy.attributes.updated = Some(now);
            let txn = Txn {
                compare: vec![
                    rev(vault_key(&vault), vault_rev),
                    rev(meta_key(&vault, &lower), meta.revision),
                    rev(pk.clone(), old.map_or(0, |e| e.revision)),
                ],
                mutations: vec![put(pk, encode(&policy)?)],
                result: encode(&policy)?,
            };
            Ok(Plan::Commit(txn))
        })
        .await
    }

    /// Carries out due lifetime actions of every policy (the leader calls
    /// this periodically). A `Rotate` commits only if the key's metadata is
    /// unchanged since it was read, under a request id derived from the
    /// latest version, so two leaders cannot both rotate. A `Notify` is
    /// recorded once per version under `sys/events/keys/…` and logged.
    /// Returns how many keys were rotated.
    pub async fn run_rotation_policies(&self, now: u64) -> Result<usize, EngineError> {
        self.store.read_fence().await?;
        let mut rotated = 0;
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let batch = self.store.scan(ALL_POLICY_PREFIX, cursor.as_deref(), 256)?;
            for (key, entry) in &batch {
                let rest = String::from_utf8_lossy(&key[ALL_POLICY_PREFIX.len()..]).into_owned();
                let Some((vault, lower)) = rest.split_once('/') else {
                    continue;
                };
                let Ok(policy) = decode::<RotationPolicy>(&entry.value) else {
                    continue;
                };
                match self.apply_policy(vault, lower, &policy, now).await {
                    Ok(r) => rotated += usize::from(r),
                    Err(e) => {
                        tracing::warn!(vault, key = lower, error = %e, "rotation policy failed")
                    }
                }
            }
            match batch.last() {
                Some((k, _)) if batch.len() == 256 => cursor = Some(k.clone()),
                _ => return Ok(rotated),
            }
        }
    }

    async fn apply_policy(
        &self,
        vault: &str,
        lower: &str,
        policy: &RotationPolicy,
        now: u64,
    ) -> Result<bool, EngineError> {
        let Some(meta) = self.meta(vault, lower)? else {
            return Ok(false);
        };
        if meta.record.deleted.is_some() {
            return Ok(false);
        }
        let Some((_, latest)) = self.version_record(vault, lower, &meta.record.latest)? else {
            return Ok(false);
        };
        let mut rotated = false;
        for action in &policy.lifetime_actions {
            if !rotation::is_due(action, latest.created, latest.exp, now) {
                continue;
            }
            match action.action.kind {
                ActionType::Notify => {
                    self.notify(vault, lower, &meta.record.name, &latest)
                        .await?
                }
                ActionType::Rotate => {
                    rotated |= self
                        .policy_rotate(vault, lower, &meta, &latest, policy)
                        .await?
                }
            }
        }
        Ok(rotated)
    }

    async fn notify(
        &self,
        vault: &str,
        lower: &str,
        name: &str,
        latest: &KeyVersionRecord,
    ) -> Result<(), EngineError> {
        let key = notify_event_key(vault, lower, &latest.version);
        let event = serde_json::json!({
            "type": "KeyNearExpiry", "vault": vault, "name": name,
            "version": latest.version, "exp": latest.exp, "at": (self.clock)(),
        });
        let txn = Txn {
            compare: vec![rev(key.clone(), 0)],
            mutations: vec![put(key, encode(&event)?)],
            result: Vec::new(),
        };
        if self.store.commit(None, txn).await?.succeeded {
            tracing::info!(vault, key = name, version = %latest.version, exp = ?latest.exp, "key rotation policy: near-expiry notification");
        }
        Ok(())
    }

    async fn policy_rotate(
        &self,
        vault: &str,
        lower: &str,
        meta: &Meta,
        latest: &KeyVersionRecord,
        policy: &RotationPolicy,
    ) -> Result<bool, EngineError> {
        let vault_rev = match self.store.get(&vault_key(vault))? {
            Some(e) => e.revision,
            None => return Ok(false),
        };
        let material = self
            .make_material(latest.kty, spec_of_material(&latest.material)?)
            .await?;
        let attrs = rotated_attributes(latest, Some(policy), (self.clock)());
        let name = meta.record.name.clone();
        let txn = self.version_txn(
            vault,
            lower,
            &name,
            Some(meta),
            vault_rev,
            latest.kty,
            &material,
            &attrs,
        )?;
        let id = format!("keys/rotation-policy/{vault}/{lower}/{}", latest.version);
        let out = self.store.commit(Some(&id), txn).await?;
        if out.succeeded && !out.deduplicated {
            tracing::info!(vault, key = %name, "key rotated by its rotation policy");
        }
        Ok(out.succeeded && !out.deduplicated)
    }

    // ---- operations ----

    /// Signs a digest (RS*, PS*, ES*; the digest length must match).
    pub async fn sign(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: SignAlg,
        digest: &[u8],
    ) -> Result<OpOutput, EngineError> {
        let u = self.usable(vault, name, version, KeyOp::Sign).await?;
        software::check_sign(u.record.material.public(), alg, digest)?;
        let digest = digest.to_vec();
        let sig = match &u.record.material {
            KeyMaterial::Software(k) => {
                let k = self.loaded_key(&u, k);
                blocking(move || k.sign(alg, &digest)).await?
            }
            KeyMaterial::Hsm(k) => {
                let (hsm, k) = (self.hsm()?, k.clone());
                blocking(move || hsm.sign(&k, alg, &digest)).await?
            }
        };
        Ok(output(u, Zeroizing::new(sig), None, None))
    }

    /// Verifies a signature over a digest (in software, from the public key).
    pub async fn verify(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: SignAlg,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, EngineError> {
        if signature.len() > MAX_SIGNATURE_BYTES {
            return Err(EngineError::BadParameter(format!(
                "The signature is larger than {MAX_SIGNATURE_BYTES} bytes"
            )));
        }
        let u = self.usable(vault, name, version, KeyOp::Verify).await?;
        Ok(software::verify(
            u.record.material.public(),
            alg,
            digest,
            signature,
        )?)
    }

    /// Encrypts (RSA-OAEP, RSA-OAEP-256, RSA1_5, A*GCM, A*CBC, A*CBCPAD).
    pub async fn encrypt(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: EncAlg,
        plaintext: &[u8],
        params: SymParams,
    ) -> Result<OpOutput, EngineError> {
        check_alg_for(KeyOp::Encrypt, alg)?;
        self.forward(vault, name, version, KeyOp::Encrypt, alg, plaintext, params)
            .await
    }

    /// Decrypts (the algorithms of [`KeysEngine::encrypt`]).
    pub async fn decrypt(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: EncAlg,
        ciphertext: &[u8],
        params: SymParams,
    ) -> Result<OpOutput, EngineError> {
        check_alg_for(KeyOp::Decrypt, alg)?;
        self.backward(
            vault,
            name,
            version,
            KeyOp::Decrypt,
            alg,
            ciphertext,
            params,
        )
        .await
    }

    /// Wraps a key (RSA algorithms, A*KW, CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD).
    pub async fn wrap_key(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: EncAlg,
        key: &[u8],
    ) -> Result<OpOutput, EngineError> {
        check_alg_for(KeyOp::WrapKey, alg)?;
        self.forward(
            vault,
            name,
            version,
            KeyOp::WrapKey,
            alg,
            key,
            SymParams::default(),
        )
        .await
    }

    /// Unwraps a key (the algorithms of [`KeysEngine::wrap_key`]).
    pub async fn unwrap_key(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: EncAlg,
        wrapped: &[u8],
    ) -> Result<OpOutput, EngineError> {
        check_alg_for(KeyOp::UnwrapKey, alg)?;
        self.backward(
            vault,
            name,
            version,
            KeyOp::UnwrapKey,
            alg,
            wrapped,
            SymParams::default(),
        )
        .await
    }

    /// `count` (1–128) random bytes.
    pub fn random_bytes(&self, count: usize) -> Result<Vec<u8>, EngineError> {
        if !(1..=MAX_RANDOM_BYTES).contains(&count) {
            return Err(EngineError::BadParameter(format!(
                "count must be between 1 and {MAX_RANDOM_BYTES}"
            )));
        }
        Ok(software::random_bytes(count)?)
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        op: KeyOp,
        alg: EncAlg,
        input: &[u8],
        params: SymParams,
    ) -> Result<OpOutput, EngineError> {
        check_payload(input)?;
        let u = self.usable(vault, name, version, op).await?;
        software::check_enc(u.record.kty, u.record.material.bits(), alg)?;
        let input = Zeroizing::new(input.to_vec());
        let ct: Ciphertext = match (&u.record.material, software::sym_key_bits(alg)) {
            // RSA public-key operations run in software for both tiers.
            (m, None) => {
                let public = m.public().clone();
                Ciphertext {
                    value: blocking(move || software::public_encrypt(&public, alg, &input)).await?,
                    iv: None,
                    tag: None,
                }
            }
            (KeyMaterial::Software(k), Some(_)) => {
                let k = k.clone();
                blocking(move || k.encrypt(alg, &input, &params)).await?
            }
            (KeyMaterial::Hsm(k), Some(_)) => {
                let (hsm, k) = (self.hsm()?, k.clone());
                blocking(move || hsm.encrypt(&k, alg, &input, &params)).await?
            }
        };
        Ok(output(u, Zeroizing::new(ct.value), ct.iv, ct.tag))
    }

    #[allow(clippy::too_many_arguments)]
    async fn backward(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        op: KeyOp,
        alg: EncAlg,
        input: &[u8],
        params: SymParams,
    ) -> Result<OpOutput, EngineError> {
        check_payload(input)?;
        let u = self.usable(vault, name, version, op).await?;
        software::check_enc(u.record.kty, u.record.material.bits(), alg)?;
        let input = input.to_vec();
        let plain = match &u.record.material {
            KeyMaterial::Software(k) => {
                let k = self.loaded_key(&u, k);
                blocking(move || k.decrypt(alg, &input, &params)).await?
            }
            KeyMaterial::Hsm(k) => {
                let (hsm, k) = (self.hsm()?, k.clone());
                blocking(move || hsm.decrypt(&k, alg, &input, &params)).await?
            }
        };
        Ok(output(u, plain, None, None))
    }

    /// The version an operation uses, after the enabled / key_ops /
    /// validity checks of the service.
    async fn usable(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        op: KeyOp,
    ) -> Result<Usable, EngineError> {
        let lower = check_name("Key", name)?;
        // Before any store read: see `KeyCache::ticket`.
        let ticket = self.loaded.ticket();
        self.fence_vault(vault).await?;
        let vault = normalize_vault(vault)?;
        let meta = self.live_meta(&vault, &lower, name)?;
        let (revision, record) = self.version(&vault, &lower, &meta.record, name, version)?;
        let refuse = |reason| {
            Err(EngineError::KeyForbidden {
                name: name.to_owned(),
                op: op.as_str(),
                reason,
            })
        };
        if !record.enabled {
            return refuse(KeyRefusal::Disabled);
        }
        if !record.key_ops.contains(&op) {
            return refuse(KeyRefusal::OperationNotAllowed);
        }
        if !op.ignores_validity() {
            let now = (self.clock)() as i64;
            if record.nbf.is_some_and(|nbf| now < nbf) {
                return refuse(KeyRefusal::NotYetValid);
            }
            if record.exp.is_some_and(|exp| now >= exp) {
                return refuse(KeyRefusal::Expired);
            }
        }
        Ok(Usable {
            name: meta.record.name,
            id: CacheId {
                vault,
                name: lower,
                version: record.version.clone(),
            },
            record,
            revision,
            ticket,
        })
    }

    /// The parsed form of a usable version's software key (cached: only
    /// parsing is skipped, `usable` has already checked the version).
    fn loaded_key(&self, u: &Usable, key: &SoftwareKey) -> Arc<LoadedKey> {
        self.loaded.load(u.ticket, &u.id, u.revision, key)
    }

    // ---- helpers ----

    fn hsm(&self) -> Result<Arc<dyn HsmProvider>, EngineError> {
        self.hsm.clone().ok_or_else(|| {
            EngineError::Crypto(CryptoError::HsmUnavailable(
                "no HSM is configured on this node".into(),
            ))
        })
    }

    async fn make_material(&self, kty: KeyType, spec: KeySpec) -> Result<KeyMaterial, EngineError> {
        if kty.is_hsm() {
            let hsm = self.hsm()?;
            let k = blocking(move || hsm.generate(&spec)).await?;
            Ok(KeyMaterial::Hsm(k))
        } else {
            let k: SoftwareKey = blocking(move || software::generate(&spec)).await?;
            Ok(KeyMaterial::Software(k))
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn new_version(
        &self,
        vault: &str,
        name: &str,
        lower: &str,
        kty: KeyType,
        material: KeyMaterial,
        attrs: &KeyAttributes,
        request_id: Option<&str>,
    ) -> Result<Key, EngineError> {
        let v = normalize_vault(vault)?;
        write(self.store.as_ref(), request_id, || {
            let vault_rev = self.vault_rev(&v)?;
            let meta = self.meta(&v, lower)?;
            if meta.as_ref().is_some_and(|m| m.record.deleted.is_some()) {
                return Ok(Plan::Refuse(deleted_but_recoverable(name)));
            }
            let txn = self.version_txn(
                &v,
                lower,
                name,
                meta.as_ref(),
                vault_rev,
                kty,
                &material,
                attrs,
            )?;
            Ok(Plan::Commit(txn))
        })
        .await
    }

    /// The transaction adding a version and making it the latest.
    #[allow(clippy::too_many_arguments)]
    fn version_txn(
        &self,
        vault: &str,
        lower: &str,
        name: &str,
        meta: Option<&Meta>,
        vault_rev: u64,
        kty: KeyType,
        material: &KeyMaterial,
        attrs: &KeyAttributes,
    ) -> Result<Txn, EngineError> {
        let now = (self.clock)();
        let version = uuid::Uuid::new_v4().simple().to_string();
        let display = meta.map_or(name, |m| m.record.name.as_str()).to_owned();
        let record = KeyVersionRecord {
            version: version.clone(),
            kty,
            key_ops: attrs.key_ops.clone().unwrap_or_else(|| default_ops(kty)),
            enabled: attrs.enabled.unwrap_or(true),
            nbf: attrs.nbf,
            exp: attrs.exp,
            created: now,
            updated: now,
            tags: attrs.tags.clone(),
            material: material.clone(),
        };
        let new_meta = MetaRecord {
            name: display.clone(),
            latest: version.clone(),
            deleted: None,
        };
        let vk = version_key(vault, lower, &version);
        Ok(Txn {
            compare: vec![
                rev(vault_key(vault), vault_rev),
                rev(meta_key(vault, lower), meta.map_or(0, |m| m.revision)),
                rev(vk.clone(), 0),
            ],
            mutations: vec![
                put(meta_key(vault, lower), encode(&new_meta)?),
                put(vk, encode(&record)?),
            ],
            result: encode(&record.key(&display))?,
        })
    }

    /// Read fence, then the vault record's revision (VaultNotFound if
    /// absent). For reads; writes use [`Self::vault_rev`] inside a plan.
    async fn fence_vault(&self, vault: &str) -> Result<u64, EngineError> {
        let name = normalize_vault(vault)?;
        self.store.read_fence().await?;
        self.vault_rev(&name)
    }

    /// Fails early (before making key material) when the vault does not
    /// exist. Optimistic like writes: only "not found" pays for a fence, so
    /// it is never answered from a lagging replica.
    async fn check_vault(&self, vault: &str) -> Result<(), EngineError> {
        let name = normalize_vault(vault)?;
        if self.vault_rev(&name).is_ok() {
            return Ok(());
        }
        self.store.read_fence().await?;
        self.vault_rev(&name).map(|_| ())
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
        match self.store.get(&meta_key(vault, lower))? {
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
            _ => Err(not_found(ObjectKind::Key, name.to_owned())),
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
                None => Err(not_found(ObjectKind::DeletedKey, name.to_owned())),
            },
            None => Err(not_found(ObjectKind::DeletedKey, name.to_owned())),
        }
    }

    fn policy(&self, vault: &str, lower: &str) -> Result<Option<RotationPolicy>, EngineError> {
        self.store
            .get(&policy_key(vault, lower))?
            .map(|e| decode(&e.value))
            .transpose()
    }

    fn version_record(
        &self,
        vault: &str,
        lower: &str,
        version: &str,
    ) -> Result<Option<(u64, KeyVersionRecord)>, EngineError> {
        match self.store.get(&version_key(vault, lower, version))? {
            Some(e) => Ok(Some((e.revision, decode(&e.value)?))),
            None => Ok(None),
        }
    }

    fn version(
        &self,
        vault: &str,
        lower: &str,
        meta: &MetaRecord,
        name: &str,
        version: Option<&str>,
    ) -> Result<(u64, KeyVersionRecord), EngineError> {
        let wanted = version.filter(|v| !v.is_empty());
        let id = wanted.map_or_else(|| meta.latest.clone(), str::to_ascii_lowercase);
        let missing = || {
            let shown = wanted.map_or_else(|| name.to_owned(), |v| format!("{name}/{v}"));
            not_found(ObjectKind::Key, shown)
        };
        if !is_valid_version(&id) {
            return Err(missing());
        }
        self.version_record(vault, lower, &id)?.ok_or_else(missing)
    }

    fn open_backup(&self, blob: &[u8]) -> Result<KeyBackupRecord, EngineError> {
        let plain = match self.store.open_blob(BACKUP_PURPOSE, blob) {
            Ok(p) => p,
            Err(
                e @ (StoreError::Sealed | StoreError::NotInitialized | StoreError::Unavailable(_)),
            ) => return Err(EngineError::Store(e)),
            Err(_) => return Err(EngineError::MalformedBackup),
        };
        let backup: KeyBackupRecord =
            serde_json::from_slice(&plain).map_err(|_| EngineError::MalformedBackup)?;
        let sane = backup.format == KEY_BACKUP_FORMAT
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
        let rest = String::from_utf8_lossy(&key[ALL_META_PREFIX.len()..]).into_owned();
        let Some((vault, lower)) = rest.split_once('/') else {
            return Ok(false);
        };
        if !due {
            return Ok(false);
        }
        let txn = purge_txn(vault, lower, entry.revision, None);
        Ok(self.store.commit(None, txn).await?.succeeded)
    }
}

/// Runs blocking crypto (aws-lc-rs RSA, PKCS#11) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CryptoError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| EngineError::Crypto(CryptoError::Internal("crypto task failed".into())))?
        .map_err(EngineError::Crypto)
}

fn output(
    u: Usable,
    value: Zeroizing<Vec<u8>>,
    iv: Option<Vec<u8>>,
    tag: Option<Vec<u8>>,
) -> OpOutput {
    OpOutput {
        name: u.name,
        version: u.record.version,
        value,
        iv,
        tag,
    }
}

fn check_payload(input: &[u8]) -> Result<(), EngineError> {
    if input.len() > MAX_PAYLOAD_BYTES {
        return Err(EngineError::BadParameter(format!(
            "The value is too large: {} bytes, the limit is {MAX_PAYLOAD_BYTES}",
            input.len()
        )));
    }
    Ok(())
}

/// Which algorithms each operation accepts.
fn check_alg_for(op: KeyOp, alg: EncAlg) -> Result<(), EngineError> {
    use EncAlg::*;
    let rsa = matches!(alg, RsaOaep | RsaOaep256 | Rsa15);
    let ok = rsa
        || match op {
            KeyOp::Encrypt | KeyOp::Decrypt => matches!(
                alg,
                A128GCM
                    | A192GCM
                    | A256GCM
                    | A128CBC
                    | A192CBC
                    | A256CBC
                    | A128CBCPAD
                    | A192CBCPAD
                    | A256CBCPAD
            ),
            _ => matches!(
                alg,
                A128KW | A192KW | A256KW | CkmAesKeyWrap | CkmAesKeyWrapPad
            ),
        };
    if ok {
        Ok(())
    } else {
        Err(EngineError::BadParameter(format!(
            "Algorithm {} is not valid for the {} operation",
            software::enc_alg_name(alg),
            op.as_str()
        )))
    }
}

fn default_ops(kty: KeyType) -> Vec<KeyOp> {
    use KeyOp::*;
    match kty {
        KeyType::Rsa | KeyType::RsaHsm => vec![Encrypt, Decrypt, Sign, Verify, WrapKey, UnwrapKey],
        KeyType::Ec | KeyType::EcHsm => vec![Sign, Verify],
        KeyType::Oct | KeyType::OctHsm => vec![Encrypt, Decrypt, WrapKey, UnwrapKey],
    }
}

fn spec_of(p: &CreateKey) -> Result<KeySpec, EngineError> {
    let bad = |m: String| Err(EngineError::BadParameter(m));
    match p.kty {
        KeyType::Rsa | KeyType::RsaHsm => {
            let bits = p.key_size.unwrap_or(2048);
            if !matches!(bits, 2048 | 3072 | 4096) {
                return bad(format!(
                    "RSA key size {bits} is not supported: use 2048, 3072 or 4096"
                ));
            }
            let e = p.public_exponent.unwrap_or(65_537);
            if e != 65_537 {
                return bad(format!(
                    "Public exponent {e} is not supported: only 65537 is"
                ));
            }
            Ok(KeySpec::Rsa {
                bits,
                public_exponent: e,
            })
        }
        KeyType::Ec | KeyType::EcHsm => Ok(KeySpec::Ec {
            curve: p.curve.unwrap_or(Curve::P256),
        }),
        KeyType::Oct | KeyType::OctHsm => {
            let bits = p.key_size.unwrap_or(256);
            if !matches!(bits, 128 | 192 | 256) {
                return bad(format!(
                    "oct key size {bits} is not supported: use 128, 192 or 256"
                ));
            }
            Ok(KeySpec::Oct { bits })
        }
    }
}

fn spec_of_material(m: &KeyMaterial) -> Result<KeySpec, EngineError> {
    Ok(match m.public() {
        PublicKey::Rsa { e, .. } => {
            let e = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            KeySpec::Rsa {
                bits: m.bits(),
                public_exponent: u32::try_from(e)
                    .map_err(|_| EngineError::Corrupt("RSA exponent".into()))?,
            }
        }
        PublicKey::Ec { curve, .. } => KeySpec::Ec { curve: *curve },
        PublicKey::Oct => KeySpec::Oct { bits: m.bits() },
    })
}

fn rotated_attributes(
    latest: &KeyVersionRecord,
    policy: Option<&RotationPolicy>,
    now: u64,
) -> KeyAttributes {
    let exp = policy
        .and_then(|p| p.attributes.expiry_time.as_deref())
        .and_then(rotation::parse_duration)
        .map(|d| (now + d) as i64);
    KeyAttributes {
        key_ops: Some(latest.key_ops.clone()),
        enabled: Some(true),
        nbf: None,
        exp,
        tags: latest.tags.clone(),
        exportable: None,
        release_policy: false,
    }
}

fn check_attributes(a: &KeyAttributes) -> Result<(), EngineError> {
    if a.exportable == Some(true) || a.release_policy {
        return Err(EngineError::NotSupported(
            "exportable keys and key release policies are not supported by Coffer".into(),
        ));
    }
    check_tags(a.tags.as_ref())
}

fn purge_txn(vault: &str, lower: &str, meta_rev: u64, vault_rev: Option<u64>) -> Txn {
    let mk = meta_key(vault, lower);
    let mut compare = vec![rev(mk.clone(), meta_rev)];
    if let Some(v) = vault_rev {
        compare.push(rev(vault_key(vault), v));
    }
    Txn {
        compare,
        mutations: vec![
            Mutation::DeletePrefix {
                prefix: versions_prefix(vault, lower),
            },
            Mutation::DeletePrefix {
                prefix: events_prefix(vault, lower),
            },
            Mutation::Delete {
                key: policy_key(vault, lower),
            },
            Mutation::Delete { key: mk },
        ],
        result: b"null".to_vec(),
    }
}

fn apply_patch(record: &mut KeyVersionRecord, patch: &UpdateKey, now: u64) {
    if let Some(ops) = &patch.key_ops {
        record.key_ops = ops.clone();
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
        kind: ObjectKind::Key,
        name: name.to_owned(),
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
