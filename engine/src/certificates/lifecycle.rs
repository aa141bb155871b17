//! Delete, recover, purge, purge of expired deletions, backup and restore
//! of a certificate with its key and secret: each one transaction made of
//! the three objects' lifecycle fragments.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::records::{CertBackupExtra, CertVersionRecord, Certificate, DeletedCertificate};
use super::{stored_policy, CertKind, CertificatesEngine, BACKUP_FORMAT, BACKUP_PURPOSE};
use crate::cas::{encode, write, Plan};
use crate::error::EngineError;
use crate::key_records::{KeyBackupExtra, KeyVersionRecord};
use crate::object::{BackupRecord, DeletedInfo, Found, Kind, NoExtra, RECOVERABLE_DAYS};
use crate::secret_records::VersionRecord;
use crate::validate::{check_name, normalize_vault};
use crate::view::{Fragment, VaultView};

const DAY: u64 = 86_400;

/// What a certificate backup blob holds: the certificate's backup record
/// and its key's and secret's.
#[derive(Serialize, Deserialize)]
struct CertBackup {
    format: String,
    certificate: BackupRecord<CertVersionRecord, CertBackupExtra>,
    key: BackupRecord<KeyVersionRecord, KeyBackupExtra>,
    secret: BackupRecord<VersionRecord, NoExtra>,
}

impl CertificatesEngine {
    /// Soft-deletes a certificate with its key and secret.
    pub async fn delete(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<DeletedCertificate, EngineError> {
        let lower = check_name(CertKind::LABEL, name)?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let latest = match self.certs.live_version(&view, &lower, name, None) {
                Ok(f) => f,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let now = self.now();
            let info = DeletedInfo {
                deleted_date: now,
                scheduled_purge_date: now + RECOVERABLE_DAYS * DAY,
            };
            let frag = self
                .certs
                .deleted_state_fragment(&view, &lower, &latest, Some(info))?
                .and(self.owned_state_fragment(&view, &lower, name, Some(info))?);
            let answer = CertKind::deleted(&latest.version, &latest.meta.record.name, info);
            Ok(Plan::Commit(view.txn(frag, encode(&answer)?)))
        })
        .await
    }

    /// Brings a deleted certificate back with its key and secret.
    pub async fn recover(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<Certificate, EngineError> {
        self.certs
            .recover_with(vault, name, request_id, |view, lower, latest| {
                let owned = self.owned_state_fragment(view, lower, name, None)?;
                let policy = stored_policy(view, lower)?.map(|(_, p)| p);
                let answer = latest.version.view(&latest.meta.record.name, policy);
                Ok((owned, encode(&answer)?))
            })
            .await
    }

    /// Purges a deleted certificate, its key and its secret for good.
    pub async fn purge(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<(), EngineError> {
        self.certs
            .purge_with(vault, name, request_id, |view, lower, revision| {
                self.purge_all_fragment(view, lower, revision)
            })
            .await
    }

    /// Purges every deleted certificate (with key and secret) whose purge
    /// date is at or before `now`. Returns how many.
    pub async fn purge_expired(&self, now: u64) -> Result<usize, EngineError> {
        self.certs
            .purge_expired_with(now, |view, lower, revision| {
                self.purge_all_fragment(view, lower, revision)
            })
            .await
    }

    /// An opaque blob with every version of the certificate, its key and
    /// its secret; only this cluster can open it.
    pub async fn backup(&self, vault: &str, name: &str) -> Result<Vec<u8>, EngineError> {
        let lower = check_name(CertKind::LABEL, name)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        let certificate = self.certs.backup_record(&view, &lower, name)?;
        let backup = CertBackup {
            format: BACKUP_FORMAT.to_owned(),
            certificate,
            key: self.keys.backup_record(&view, &lower, name)?,
            secret: self.secrets.backup_record(&view, &lower, name)?,
        };
        let plain = Zeroizing::new(encode(&backup)?);
        Ok(self.store().seal_blob(BACKUP_PURPOSE, &plain)?)
    }

    /// Restores a backup made by [`CertificatesEngine::backup`]: the
    /// certificate, key and secret, none of which may exist.
    pub async fn restore(
        &self,
        vault: &str,
        blob: &[u8],
        request_id: Option<&str>,
    ) -> Result<Certificate, EngineError> {
        let plain = self.certs.open_blob(BACKUP_PURPOSE, blob)?;
        let backup: CertBackup =
            serde_json::from_slice(&plain).map_err(|_| EngineError::MalformedBackup)?;
        if backup.format != BACKUP_FORMAT {
            return Err(EngineError::MalformedBackup);
        }
        let certificate = self.certs.checked_backup(backup.certificate)?;
        let key = self.keys.checked_backup(backup.key)?;
        let secret = self.secrets.checked_backup(backup.secret)?;
        let lower = certificate.name.to_ascii_lowercase();
        let same = |n: &str| n.eq_ignore_ascii_case(&lower);
        if !same(&key.name) || !same(&secret.name) || !key.managed || !secret.managed {
            return Err(EngineError::MalformedBackup);
        }
        let latest = certificate
            .versions
            .iter()
            .find(|v| v.version == certificate.latest)
            .ok_or(EngineError::MalformedBackup)?;
        let answer = encode(&latest.view(&certificate.name, certificate.extra.policy.clone()))?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            if let Some(meta) = self.certs.meta(&view, &lower)? {
                let err = if meta.record.deleted.is_some() {
                    self.certs.deleted_but_recoverable(&certificate.name)
                } else {
                    EngineError::Conflict(format!(
                        "Certificate {} already exists",
                        certificate.name
                    ))
                };
                return Ok(Plan::Refuse(err));
            }
            if self.keys.meta(&view, &lower)?.is_some()
                || self.secrets.meta(&view, &lower)?.is_some()
            {
                return Ok(Plan::Refuse(EngineError::Conflict(format!(
                    "A key or secret named {} already exists",
                    certificate.name
                ))));
            }
            let frag = self
                .certs
                .restore_fragment(&view, &lower, &certificate)?
                .and(self.keys.restore_fragment(&view, &lower, &key)?)
                .and(self.secrets.restore_fragment(&view, &lower, &secret)?);
            Ok(Plan::Commit(view.txn(frag, answer.clone())))
        })
        .await
    }

    /// Sets the deleted state of the certificate's key and secret (those
    /// that exist).
    fn owned_state_fragment(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        name: &str,
        deleted: Option<DeletedInfo>,
    ) -> Result<Fragment, EngineError> {
        let mut frag = Fragment::default();
        if let Some(latest) = latest_of(&self.keys, view, lower, name)? {
            frag = frag.and(
                self.keys
                    .deleted_state_fragment(view, lower, &latest, deleted)?,
            );
        }
        if let Some(latest) = latest_of(&self.secrets, view, lower, name)? {
            frag = frag.and(
                self.secrets
                    .deleted_state_fragment(view, lower, &latest, deleted)?,
            );
        }
        Ok(frag)
    }

    /// Purges the certificate (name record at `revision`), its key and its
    /// secret.
    fn purge_all_fragment(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        revision: u64,
    ) -> Result<Fragment, EngineError> {
        let mut frag = self.certs.purge_fragment(view, lower, revision);
        if let Some(m) = self.keys.meta(view, lower)?.filter(|m| m.record.managed) {
            frag = frag.and(self.keys.purge_fragment(view, lower, m.revision));
        }
        if let Some(m) = self.secrets.meta(view, lower)?.filter(|m| m.record.managed) {
            frag = frag.and(self.secrets.purge_fragment(view, lower, m.revision));
        }
        Ok(frag)
    }
}

/// The latest version of the managed object `lower` of `objects`, live or
/// deleted (`None` when there is none).
fn latest_of<K: Kind>(
    objects: &crate::object::Objects<K>,
    view: &VaultView<'_>,
    lower: &str,
    name: &str,
) -> Result<Option<Found<K::Version>>, EngineError> {
    let Some(meta) = objects.meta(view, lower)?.filter(|m| m.record.managed) else {
        return Ok(None);
    };
    let (revision, version) = objects.version(view, lower, &meta.record, name, None)?;
    Ok(Some(Found {
        meta,
        revision,
        version,
    }))
}
