//! Full backup and restore of one vault (`KeyVaultBackupClient`).
//!
//! A full backup is a folder: one sealed backup blob per live secret, key
//! and certificate — the very blobs of the per-object backup operations,
//! every version included, encrypted by the cluster's barrier — and a
//! `manifest.json` naming each file with its SHA-256. A certificate's blob
//! carries its managed key and secret, so those are not stored twice.
//! Restore puts every object of a folder back under its name and version
//! ids (certificates first, as they bring their key and secret); selective
//! restore brings one key back. Blobs open only in this cluster (its root
//! key), as per-object backups do.
//!
//! Where the folder lives is the caller's: a [`BackupTarget`] reads and
//! writes files relative to it (a local directory in the API layer).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::cas::decode;
use super::certificates::CertificatesEngine;
use super::error::EngineError;
use super::keys::KeysEngine;
use super::names::{CERTS, KEYS, SECRETS};
use super::object::records::MetaRecord;
use super::secrets::SecretsEngine;
use super::view::VaultView;

/// `format` of the manifests this module writes and reads.
pub const MANIFEST_FORMAT: &str = "coffer-vault-backup-1";

/// Name of the manifest file in a backup folder.
pub const MANIFEST: &str = "manifest.json";

/// Where a backup folder is written and read (paths are relative to the
/// folder, `/`-separated, made only of object names and fixed words).
pub trait BackupTarget: Send + Sync {
    /// Writes one file (its directories are created as needed).
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), String>;
    /// Reads one file.
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;
}

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// An engine refused (the vault is gone, an object exists, …).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The storage target could not be written or read.
    #[error("storage: {0}")]
    Target(String),
    /// The folder is not a backup this cluster can restore.
    #[error("invalid backup folder: {0}")]
    Invalid(String),
}

/// One object in a backup folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Object name as first written.
    pub name: String,
    /// File in the folder.
    pub file: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
}

/// `manifest.json`: what a backup folder holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The vault backed up.
    pub vault: String,
    /// Unix seconds when the backup began.
    pub created: u64,
    /// Live secrets (certificates' own secrets are in their blobs).
    pub secrets: Vec<ManifestEntry>,
    /// Live keys (certificates' own keys are in their blobs).
    pub keys: Vec<ManifestEntry>,
    /// Live certificates.
    pub certificates: Vec<ManifestEntry>,
}

impl Manifest {
    /// Number of objects in the backup.
    pub fn len(&self) -> usize {
        self.secrets.len() + self.keys.len() + self.certificates.len()
    }

    /// Whether the backup holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Objects restored.
    pub restored: usize,
    /// `kind name: reason` of every object that was not.
    pub failed: Vec<String>,
}

/// Full backups and restores of vaults.
pub struct BackupEngine {
    secrets: Arc<SecretsEngine>,
    keys: Arc<KeysEngine>,
    certificates: Arc<CertificatesEngine>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl BackupEngine {
    /// An engine over the object engines of the node.
    pub fn new(
        secrets: Arc<SecretsEngine>,
        keys: Arc<KeysEngine>,
        certificates: Arc<CertificatesEngine>,
    ) -> Self {
        Self {
            secrets,
            keys,
            certificates,
        }
    }

    /// Names of the live objects of `table` that stand on their own (not
    /// deleted, not managed by a certificate), after a read fence.
    async fn live(&self, vault: &str, table: &str) -> Result<Vec<String>, EngineError> {
        let view = VaultView::fenced(self.secrets.store(), vault).await?;
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = view.page(table, "", 256, token.as_deref(), |_, e| {
                let meta: MetaRecord = decode(&e.value)?;
                Ok((meta.deleted.is_none() && !meta.managed).then_some(meta.name))
            })?;
            names.extend(page.items);
            match page.skiptoken {
                Some(t) => token = Some(t),
                None => return Ok(names),
            }
        }
    }

    /// Writes a full backup of `vault` to `target`: every blob, then the
    /// manifest (a folder without a manifest is an unfinished backup).
    pub async fn backup(
        &self,
        vault: &str,
        now: u64,
        target: &dyn BackupTarget,
    ) -> Result<Manifest, BackupError> {
        let mut manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            vault: vault.to_ascii_lowercase(),
            created: now,
            secrets: Vec::new(),
            keys: Vec::new(),
            certificates: Vec::new(),
        };
        for (table, dir) in [
            (SECRETS, "secrets"),
            (KEYS, "keys"),
            (CERTS, "certificates"),
        ] {
            for name in self.live(vault, table).await? {
                let blob = match dir {
                    "secrets" => self.secrets.backup(vault, &name).await,
                    "keys" => self.keys.backup(vault, &name).await,
                    _ => self.certificates.backup(vault, &name).await,
                };
                let blob = match blob {
                    Ok(b) => b,
                    // Deleted since it was listed: not part of this backup.
                    Err(EngineError::NotFound { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                let file = format!("{dir}/{}.blob", name.to_ascii_lowercase());
                target.write(&file, &blob).map_err(BackupError::Target)?;
                let entry = ManifestEntry {
                    name,
                    file,
                    sha256: sha256_hex(&blob),
                };
                match dir {
                    "secrets" => manifest.secrets.push(entry),
                    "keys" => manifest.keys.push(entry),
                    _ => manifest.certificates.push(entry),
                }
            }
        }
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BackupError::Invalid(format!("encoding the manifest: {e}")))?;
        target
            .write(MANIFEST, &bytes)
            .map_err(BackupError::Target)?;
        Ok(manifest)
    }

    /// Reads and checks the manifest of a backup folder.
    pub fn manifest(&self, target: &dyn BackupTarget) -> Result<Manifest, BackupError> {
        let bytes = target.read(MANIFEST).map_err(BackupError::Target)?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| BackupError::Invalid(format!("{MANIFEST}: {e}")))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(BackupError::Invalid(format!(
                "{MANIFEST} has format {:?}, not {MANIFEST_FORMAT:?}",
                manifest.format
            )));
        }
        Ok(manifest)
    }

    fn blob(&self, target: &dyn BackupTarget, entry: &ManifestEntry) -> Result<Vec<u8>, String> {
        let blob = target.read(&entry.file)?;
        if sha256_hex(&blob) != entry.sha256 {
            return Err(format!(
                "{} does not match its SHA-256 in the manifest",
                entry.file
            ));
        }
        Ok(blob)
    }

    /// Restores every object of the folder into `vault` (or only the key
    /// `only_key`). An object that cannot be restored — its name is taken,
    /// its file is damaged — is reported and the others still are.
    pub async fn restore(
        &self,
        vault: &str,
        target: &dyn BackupTarget,
        only_key: Option<&str>,
        request_id: &str,
    ) -> Result<RestoreReport, BackupError> {
        let manifest = self.manifest(target)?;
        let mut report = RestoreReport::default();
        if let Some(key) = only_key {
            let entry = manifest
                .keys
                .iter()
                .find(|e| e.name.eq_ignore_ascii_case(key))
                .ok_or_else(|| BackupError::Invalid(format!("the folder holds no key {key}")))?;
            let blob = self.blob(target, entry).map_err(BackupError::Invalid)?;
            let id = format!("{request_id}/keys/{}", entry.name.to_ascii_lowercase());
            self.keys.restore(vault, &blob, Some(&id)).await?;
            report.restored = 1;
            return Ok(report);
        }
        // Certificates first: they bring their managed key and secret.
        let all = [
            ("certificates", &manifest.certificates),
            ("secrets", &manifest.secrets),
            ("keys", &manifest.keys),
        ];
        for (kind, entries) in all {
            for entry in entries {
                let blob = match self.blob(target, entry) {
                    Ok(b) => b,
                    Err(e) => {
                        report.failed.push(format!("{kind} {}: {e}", entry.name));
                        continue;
                    }
                };
                let id = format!("{request_id}/{kind}/{}", entry.name.to_ascii_lowercase());
                let done = match kind {
                    "certificates" => self
                        .certificates
                        .restore(vault, &blob, Some(&id))
                        .await
                        .map(drop),
                    "secrets" => self
                        .secrets
                        .restore(vault, &blob, Some(&id))
                        .await
                        .map(drop),
                    _ => self.keys.restore(vault, &blob, Some(&id)).await.map(drop),
                };
                match done {
                    Ok(()) => report.restored += 1,
                    // The vault itself is gone: nothing else will succeed.
                    Err(e @ (EngineError::VaultNotFound(_) | EngineError::Store(_))) => {
                        return Err(e.into())
                    }
                    Err(e) => report.failed.push(format!("{kind} {}: {e}", entry.name)),
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
