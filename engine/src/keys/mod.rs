//! Keys: versioned RSA, EC and AES keys in software or in the HSM tier,
//! with soft delete, recover, purge, backup/restore, rotation (on demand
//! and by policy) and the cryptographic operations of Azure Key Vault.
//!
//! The lifecycle is the shared one of [`super::object`]; this module holds
//! what is a key's own, split by concern: [`generate`] (key material for
//! create, import and rotate), [`rotate`] (rotation and its policies) and
//! [`operations`] (sign, verify, encrypt, decrypt, wrap, unwrap).
//!
//! Key material is generated once per attempt of a logical write, before
//! its retry loop; a client retry of an applied write generates material
//! that the store's request-id dedup then discards. Software keys' private
//! material exists only inside version records (barrier-encrypted by the
//! store). HSM keys are generated and used in the device via
//! [`HsmProvider`] on blocking threads; public-key operations (verify, RSA
//! encrypt and wrap) run in software for both tiers. A request for an HSM
//! key on a node without a usable device fails with
//! [`HsmUnavailable`](coffer_crypto::CryptoError::HsmUnavailable) (503) and stores nothing.

mod generate;
mod operations;
mod rotate;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::cas::{decode, encode};
use super::clock::{system_clock, Clock};
use super::error::{EngineError, ObjectKind};
use super::key_records::{KeyBackupExtra, KeyMaterial, KeyVersionRecord};
use super::names::{KEYS, KEY_EVENTS, KEY_POLICIES, KEY_VERSIONS};
use super::object::{DeletedInfo, Kind, Objects};
use super::parsed_key_cache::{ParsedKeyCache, DEFAULT_CAPACITY};
use super::rotation::{RotationLimits, RotationPolicy};
use super::store::{Mutation, Store};
use super::validate::check_tags;
use super::view::VaultView;
use coffer_crypto::hsm::HsmProvider;
use coffer_crypto::{Curve, KeyType, PrivateKey, PublicKey};

pub use super::object::{MAX_BACKUP_VERSIONS, RECOVERABLE_DAYS, RECOVERY_LEVEL};
pub use super::validate::{MAX_TAGS, MAX_TAG_CHARS};
/// Largest plaintext or ciphertext of encrypt/decrypt/wrap/unwrap.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Largest signature accepted by verify.
pub const MAX_SIGNATURE_BYTES: usize = 1024;
/// Largest `/rng` request.
pub const MAX_RANDOM_BYTES: usize = 128;
/// Purpose label of key backup blobs.
pub const BACKUP_PURPOSE: &[u8] = b"coffer/backup/key/v1";
/// Format marker of key backups.
pub const BACKUP_FORMAT: &str = "coffer-key-backup-1";

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
    /// Backs a certificate (its lifetime is the certificate's).
    pub managed: Option<bool>,
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

/// Keys as a kind of versioned object: purge also removes the rotation
/// policy and Notify events; a backup also carries the policy.
pub struct KeyKind;

impl Kind for KeyKind {
    type Version = KeyVersionRecord;
    type Extra = KeyBackupExtra;
    type Listed = KeyProperties;
    type Shown = Key;
    type Deleted = DeletedKey;

    const LABEL: &'static str = "Key";
    const LIVE: ObjectKind = ObjectKind::Key;
    const DELETED: ObjectKind = ObjectKind::DeletedKey;
    const META_TABLE: &'static str = KEYS;
    const VERSION_TABLE: &'static str = KEY_VERSIONS;
    const BACKUP_FORMAT: &'static str = BACKUP_FORMAT;
    const BACKUP_PURPOSE: &'static [u8] = BACKUP_PURPOSE;

    fn version_id(v: &KeyVersionRecord) -> &str {
        &v.version
    }

    fn listed(v: &KeyVersionRecord, name: &str) -> KeyProperties {
        v.properties(name)
    }

    fn shown(v: &KeyVersionRecord, name: &str) -> Key {
        v.key(name)
    }

    fn deleted(v: &KeyVersionRecord, name: &str, info: DeletedInfo) -> DeletedKey {
        v.deleted(name, info)
    }

    fn purge_also(view: &VaultView<'_>, lower: &str) -> Vec<Mutation> {
        vec![
            view.delete_under(KEY_EVENTS, &format!("{lower}/")),
            view.delete(KEY_POLICIES, lower),
        ]
    }

    fn backup_extra(view: &VaultView<'_>, lower: &str) -> Result<KeyBackupExtra, EngineError> {
        Ok(KeyBackupExtra {
            policy: stored_policy(view, lower)?,
        })
    }

    fn restore_extra(
        view: &VaultView<'_>,
        lower: &str,
        extra: &KeyBackupExtra,
    ) -> Result<Vec<Mutation>, EngineError> {
        match &extra.policy {
            Some(p) => Ok(vec![view.put(KEY_POLICIES, lower, encode(p)?)]),
            None => Ok(Vec::new()),
        }
    }
}

/// The rotation policy stored for `lower`, if one was set.
fn stored_policy(view: &VaultView<'_>, lower: &str) -> Result<Option<RotationPolicy>, EngineError> {
    view.get(KEY_POLICIES, lower)?
        .map(|e| decode(&e.value))
        .transpose()
}

/// The keys engine of all vaults. The shared lifecycle (list, versions,
/// delete, recover, purge, backup, restore, …) is reached through
/// [`Objects`] (`Deref`); this type adds what is a key's own: material,
/// rotation and the cryptographic operations.
pub struct KeysEngine {
    objects: Objects<KeyKind>,
    hsm: Option<Arc<dyn HsmProvider>>,
    clock: Clock,
    /// Parsed software keys for sign/decrypt; cleared on seal.
    loaded: ParsedKeyCache,
    /// Minimum durations of rotation policies.
    rotation_limits: RotationLimits,
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
            objects: Objects::new(store, clock.clone()),
            hsm,
            clock,
            loaded: ParsedKeyCache::new(DEFAULT_CAPACITY),
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

    fn store(&self) -> &dyn Store {
        self.objects.store()
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
        check_name_of_key(name)?;
        generate::check_attributes(&params.attributes)?;
        let spec = generate::spec_of(&params)?;
        VaultView::check(self.store(), vault).await?;
        let material = self.make_material(params.kty, spec).await?;
        self.new_version(
            vault,
            name,
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
        check_name_of_key(name)?;
        generate::check_attributes(&params.attributes)?;
        VaultView::check(self.store(), vault).await?;
        let (kty, material) = self.import_material(&params).await?;
        self.new_version(vault, name, kty, material, &params.attributes, request_id)
            .await
    }

    /// New key material for a certificate's key, made exactly as a create
    /// makes it (same spec rules, HSM tier for `*-HSM`): a certificate's
    /// key is a key of this engine.
    pub async fn certificate_material(
        &self,
        kty: KeyType,
        key_size: Option<u32>,
        curve: Option<Curve>,
    ) -> Result<KeyMaterial, EngineError> {
        let spec = generate::spec_of(&CreateKey {
            kty,
            key_size,
            curve,
            public_exponent: None,
            attributes: KeyAttributes::default(),
        })?;
        self.make_material(kty, spec).await
    }

    /// A version record of a certificate's key (`managed`), with the
    /// operations the certificate's key usages allow.
    pub fn certificate_key_record(
        version: String,
        now: u64,
        material: &KeyMaterial,
        key_ops: Vec<KeyOp>,
        nbf: Option<i64>,
        exp: Option<i64>,
        tags: Option<BTreeMap<String, String>>,
    ) -> KeyVersionRecord {
        let attrs = KeyAttributes {
            key_ops: Some(key_ops),
            nbf,
            exp,
            tags,
            ..KeyAttributes::default()
        };
        KeyVersionRecord {
            managed: Some(true),
            ..version_record(version, now, material.kty(), material, &attrs)
        }
    }

    /// Reads a version (`None` or empty: the latest). Disabled keys are
    /// readable (only their operations are refused).
    pub async fn get(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Key, EngineError> {
        let found = self.objects.get(vault, name, version).await?;
        Ok(found.version.key(&found.meta.record.name))
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
        check_name_of_key(name)?;
        check_tags(patch.tags.as_ref())?;
        self.objects
            .update(vault, name, version, request_id, |record, now| {
                apply_patch(record, &patch, now)
            })
            .await
    }

    /// Stores `material` as the new latest version of `name` (creating the
    /// key if needed).
    async fn new_version(
        &self,
        vault: &str,
        name: &str,
        kty: KeyType,
        material: KeyMaterial,
        attrs: &KeyAttributes,
        request_id: Option<&str>,
    ) -> Result<Key, EngineError> {
        let make = |version, now| version_record(version, now, kty, &material, attrs);
        self.objects
            .add_version(
                (vault, name),
                false,
                request_id,
                make,
                KeyVersionRecord::key,
            )
            .await
    }
}

/// The engine *is* the keys' lifecycle plus creation, rotation and the
/// operations: the lifecycle's operations are its own, without a wrapper
/// per operation.
impl std::ops::Deref for KeysEngine {
    type Target = Objects<KeyKind>;

    fn deref(&self) -> &Objects<KeyKind> {
        &self.objects
    }
}

/// A new version record of `material` with `attrs`.
fn version_record(
    version: String,
    now: u64,
    kty: KeyType,
    material: &KeyMaterial,
    attrs: &KeyAttributes,
) -> KeyVersionRecord {
    KeyVersionRecord {
        version,
        kty,
        key_ops: attrs
            .key_ops
            .clone()
            .unwrap_or_else(|| generate::default_ops(kty)),
        enabled: attrs.enabled.unwrap_or(true),
        nbf: attrs.nbf,
        exp: attrs.exp,
        created: now,
        updated: now,
        tags: attrs.tags.clone(),
        material: material.clone(),
        managed: None,
    }
}

/// Validates a key name (the lifecycle checks it again; this is for the
/// checks that must come before making material).
fn check_name_of_key(name: &str) -> Result<String, EngineError> {
    super::validate::check_name(KeyKind::LABEL, name)
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

#[cfg(test)]
mod tests;
