//! Certificates: the third kind of versioned object on the shared lifecycle
//! of [`super::object`]. A certificate version owns a key (of the keys
//! engine) and a secret (of the secrets engine) of the same name and
//! version, both marked managed: direct writes to them are refused, and
//! every change of the certificate (new version, update, delete, recover,
//! purge, restore) acts on all three in one compare-and-set transaction
//! built from the lifecycle's fragments.
//!
//! Split by concern: [`policy`] (the policy, its defaults and checks),
//! [`issue`] (self-signed certificates, CSRs, the secret value),
//! [`x509`] (reading certificates), [`import`] (PFX and PEM), `signer`
//! (the certificate key signing X.509 structures through its handle,
//! software or HSM),
//! `versions` (the one place a version of the trio is written), `pending`
//! (create, import, merge and the pending operation), `lifecycle` (delete,
//! recover, purge, backup, restore), `contacts` and `issuers`; [`ca`]
//! (the `Coffer` issuer: a private CA in the vault) and [`pki`] (its
//! revocations, CRL and OCSP responder).

pub mod ca;
pub mod import;
pub mod issue;
pub mod issuers;
mod lifecycle;
pub mod pending;
pub mod pki;
pub mod policy;
pub mod records;
mod renew;
mod signer;
mod versions;
pub mod x509;

mod contacts;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::cas::{decode, encode, write, Plan};
use super::clock::{system_clock, Clock};
use super::error::{EngineError, ObjectKind};
use super::keys::KeysEngine;
use super::names::{CERTS, CERT_OPS, CERT_POLICIES, CERT_VERSIONS};
use super::object::{DeletedInfo, Kind, Objects};
use super::paging::Page;
use super::secrets::SecretsEngine;
use super::store::{Mutation, Store};
use super::validate::{check_name, check_tags, normalize_vault};
use super::view::{Fragment, VaultView};

pub use contacts::email_contacts_due;
pub use policy::Policy;
pub use records::{
    AdminDetails, CertBackupExtra, CertVersionRecord, Certificate, CertificateOperation, Contact,
    DeletedCertificate, Issuer, OpStatus, OrgDetails,
};

pub use super::object::{RECOVERABLE_DAYS, RECOVERY_LEVEL};
/// Purpose label of certificate backup blobs.
pub const BACKUP_PURPOSE: &[u8] = b"coffer/backup/certificate/v1";
/// Format marker of certificate backups.
pub const BACKUP_FORMAT: &str = "coffer-certificate-backup-1";

/// Certificates as a kind of versioned object: purge also removes the
/// policy and the pending operation; a backup also carries the policy.
pub struct CertKind;

impl Kind for CertKind {
    type Version = CertVersionRecord;
    type Extra = CertBackupExtra;
    type Listed = Certificate;
    type Shown = Certificate;
    type Deleted = DeletedCertificate;

    const LABEL: &'static str = "Certificate";
    const LIVE: ObjectKind = ObjectKind::Certificate;
    const DELETED: ObjectKind = ObjectKind::DeletedCertificate;
    const META_TABLE: &'static str = CERTS;
    const VERSION_TABLE: &'static str = CERT_VERSIONS;
    const BACKUP_FORMAT: &'static str = BACKUP_FORMAT;
    const BACKUP_PURPOSE: &'static [u8] = BACKUP_PURPOSE;

    fn version_id(v: &CertVersionRecord) -> &str {
        &v.version
    }

    fn listed(v: &CertVersionRecord, name: &str) -> Certificate {
        v.view(name, None)
    }

    fn shown(v: &CertVersionRecord, name: &str) -> Certificate {
        v.view(name, None)
    }

    fn deleted(v: &CertVersionRecord, name: &str, info: DeletedInfo) -> DeletedCertificate {
        DeletedCertificate::of(v, name, info)
    }

    fn purge_also(view: &VaultView<'_>, lower: &str) -> Vec<Mutation> {
        vec![
            view.delete(CERT_POLICIES, lower),
            view.delete(CERT_OPS, lower),
        ]
    }

    fn backup_extra(view: &VaultView<'_>, lower: &str) -> Result<CertBackupExtra, EngineError> {
        Ok(CertBackupExtra {
            policy: stored_policy(view, lower)?.map(|(_, p)| p),
        })
    }

    fn restore_extra(
        view: &VaultView<'_>,
        lower: &str,
        extra: &CertBackupExtra,
    ) -> Result<Vec<Mutation>, EngineError> {
        match &extra.policy {
            Some(p) => Ok(vec![view.put(CERT_POLICIES, lower, encode(p)?)]),
            None => Ok(Vec::new()),
        }
    }
}

/// The policy stored for `lower` and its revision.
fn stored_policy(view: &VaultView<'_>, lower: &str) -> Result<Option<(u64, Policy)>, EngineError> {
    view.get(CERT_POLICIES, lower)?
        .map(|e| Ok((e.revision, decode(&e.value)?)))
        .transpose()
}

/// Changes of a certificate update; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct UpdateCertificate {
    /// New enabled flag (mirrored to the key and the secret).
    pub enabled: Option<bool>,
    /// New tags (replace all; mirrored).
    pub tags: Option<BTreeMap<String, String>>,
    /// Policy changes.
    pub policy: Option<Policy>,
}

/// The certificates engine of all vaults.
pub struct CertificatesEngine {
    certs: Objects<CertKind>,
    keys: Arc<KeysEngine>,
    secrets: Arc<SecretsEngine>,
}

impl CertificatesEngine {
    /// An engine over `store` whose certificates own keys of `keys` and
    /// secrets of `secrets` (engines over the same store).
    pub fn new(store: Arc<dyn Store>, keys: Arc<KeysEngine>, secrets: Arc<SecretsEngine>) -> Self {
        Self::with_clock(store, keys, secrets, system_clock())
    }

    /// The same with `clock` (Unix seconds).
    pub fn with_clock(
        store: Arc<dyn Store>,
        keys: Arc<KeysEngine>,
        secrets: Arc<SecretsEngine>,
        clock: Clock,
    ) -> Self {
        Self {
            certs: Objects::new(store, clock),
            keys,
            secrets,
        }
    }

    fn store(&self) -> &dyn Store {
        self.certs.store()
    }

    fn now(&self) -> u64 {
        self.certs.now()
    }

    // ---- reading ----

    /// A version (`None` or empty: the latest) with the current policy.
    pub async fn get(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Certificate, EngineError> {
        let lower = check_name(CertKind::LABEL, name)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        let found = self.certs.live_version(&view, &lower, name, version)?;
        let policy = stored_policy(&view, &lower)?.map(|(_, p)| p);
        Ok(found.version.view(&found.meta.record.name, policy))
    }

    /// Live certificates (latest versions), by lower-case name.
    pub async fn list(
        &self,
        vault: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<Certificate>, EngineError> {
        self.certs.list(vault, maxresults, skiptoken).await
    }

    /// Versions of a live certificate.
    pub async fn list_versions(
        &self,
        vault: &str,
        name: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<Certificate>, EngineError> {
        self.certs
            .list_versions(vault, name, maxresults, skiptoken)
            .await
    }

    /// A soft-deleted certificate.
    pub async fn get_deleted(
        &self,
        vault: &str,
        name: &str,
    ) -> Result<DeletedCertificate, EngineError> {
        self.certs.get_deleted(vault, name).await
    }

    /// Soft-deleted certificates.
    pub async fn list_deleted(
        &self,
        vault: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<DeletedCertificate>, EngineError> {
        self.certs.list_deleted(vault, maxresults, skiptoken).await
    }

    /// The policy of a certificate (also while its first version is
    /// pending).
    pub async fn get_policy(&self, vault: &str, name: &str) -> Result<Policy, EngineError> {
        let lower = check_name(CertKind::LABEL, name)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        let deleted = self
            .certs
            .meta(&view, &lower)?
            .is_some_and(|m| m.record.deleted.is_some());
        match stored_policy(&view, &lower)? {
            Some((_, p)) if !deleted => Ok(p),
            _ => Err(EngineError::NotFound {
                kind: ObjectKind::Certificate,
                name: name.to_owned(),
            }),
        }
    }

    /// Changes the policy (members not sent stay); answers the new one.
    pub async fn update_policy(
        &self,
        vault: &str,
        name: &str,
        patch: Policy,
        request_id: Option<&str>,
    ) -> Result<Policy, EngineError> {
        let lower = check_name(CertKind::LABEL, name)?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let deleted = self
                .certs
                .meta(&view, &lower)?
                .is_some_and(|m| m.record.deleted.is_some());
            let Some((revision, current)) = stored_policy(&view, &lower)?.filter(|_| !deleted)
            else {
                return Ok(Plan::Refuse(EngineError::NotFound {
                    kind: ObjectKind::Certificate,
                    name: name.to_owned(),
                }));
            };
            let next = match current.patched(patch.clone(), self.now()) {
                Ok(p) => p,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let frag = Fragment {
                compare: vec![view.unchanged(CERT_POLICIES, &lower, revision)],
                mutations: vec![view.put(CERT_POLICIES, &lower, encode(&next)?)],
            };
            Ok(Plan::Commit(view.txn(frag, encode(&next)?)))
        })
        .await
    }

    /// Changes attributes, tags (mirrored to the key and secret of the
    /// version) and the policy, in one transaction.
    pub async fn update(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        patch: UpdateCertificate,
        request_id: Option<&str>,
    ) -> Result<Certificate, EngineError> {
        let lower = check_name(CertKind::LABEL, name)?;
        check_tags(patch.tags.as_ref())?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let found = match self.certs.live_version(&view, &lower, name, version) {
                Ok(f) => f,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let now = self.now();
            let mut record = found.version.clone();
            if let Some(e) = patch.enabled {
                record.enabled = e;
            }
            if let Some(t) = &patch.tags {
                record.tags = Some(t.clone());
            }
            record.updated = now;
            let mut frag = self.certs.update_fragment(&view, &lower, &found, &record)?;
            frag = frag.and(self.mirror_fragment(&view, &lower, &record, now)?);
            let mut policy = stored_policy(&view, &lower)?;
            if let Some(p) = &patch.policy {
                let (revision, current) = policy.clone().unwrap_or_default();
                let next = match current.patched(p.clone(), now) {
                    Ok(n) => n,
                    Err(e) => return Ok(Plan::Refuse(e)),
                };
                frag = frag.and(Fragment {
                    compare: vec![view.unchanged(CERT_POLICIES, &lower, revision)],
                    mutations: vec![view.put(CERT_POLICIES, &lower, encode(&next)?)],
                });
                policy = Some((revision, next));
            }
            let answer = record.view(&found.meta.record.name, policy.map(|(_, p)| p));
            Ok(Plan::Commit(view.txn(frag, encode(&answer)?)))
        })
        .await
    }

    /// Mirrors `record`'s enabled flag and tags onto the key and secret of
    /// the same version.
    fn mirror_fragment(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        record: &CertVersionRecord,
        now: u64,
    ) -> Result<Fragment, EngineError> {
        let mut frag = Fragment::default();
        if let Some(meta) = self.keys.meta(view, lower)? {
            if let Some((revision, mut key)) =
                self.keys.version_record(view, lower, &record.version)?
            {
                let found = super::object::Found {
                    meta,
                    revision,
                    version: key.clone(),
                };
                key.enabled = record.enabled;
                key.tags = record.tags.clone();
                key.updated = now;
                frag = frag.and(self.keys.update_fragment(view, lower, &found, &key)?);
            }
        }
        if let Some(meta) = self.secrets.meta(view, lower)? {
            if let Some((revision, mut secret)) =
                self.secrets.version_record(view, lower, &record.version)?
            {
                let found = super::object::Found {
                    meta,
                    revision,
                    version: secret.clone(),
                };
                secret.enabled = record.enabled;
                secret.tags = record.tags.clone();
                secret.updated = now;
                frag = frag.and(self.secrets.update_fragment(view, lower, &found, &secret)?);
            }
        }
        Ok(frag)
    }
}

#[cfg(test)]
mod tests;
