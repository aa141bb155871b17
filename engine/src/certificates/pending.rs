//! Create, import and merge, and the pending operation that create leaves:
//! `Self` certificates are issued at once (the operation is stored as
//! completed), `Unknown` ones wait for a merge with the key kept in the
//! operation record, a `Coffer` issuer's CA signs at once (completed),
//! other issuers are refused as a failed operation.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::import;
use super::issue;
use super::policy::{Policy, PEM};
use super::records::{CertificateOperation, OpStatus, PendingRecord};
use super::signer::{off_runtime, Signer};
use super::versions::NewVersion;
use super::x509;
use super::{stored_policy, CertKind, CertificatesEngine};
use crate::cas::{decode, encode, write, Plan};
use crate::error::{EngineError, ObjectKind};
use crate::key_records::KeyMaterial;
use crate::names::{CERT_OPS, CERT_POLICIES};
use crate::object::Kind;
use crate::validate::{check_name, check_tags, normalize_vault};
use crate::view::{Fragment, VaultView};
use coffer_crypto::software;

/// Parameters of create.
#[derive(Clone, Debug, Default)]
pub struct CreateCertificate {
    /// The policy as sent (defaults are filled in).
    pub policy: Policy,
    /// Enabled (default true).
    pub enabled: Option<bool>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
}

/// Parameters of import.
#[derive(Clone, Default)]
pub struct ImportCertificate {
    /// base64 PFX, base64 PEM or raw PEM.
    pub value: Zeroizing<String>,
    /// PFX password (or of an encrypted PEM key).
    pub password: Option<Zeroizing<String>>,
    /// Policy as sent (exportability, content type).
    pub policy: Option<Policy>,
    /// Enabled (default true).
    pub enabled: Option<bool>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
}

impl std::fmt::Debug for ImportCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportCertificate")
            .field("value", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Parameters of merge.
#[derive(Clone, Debug, Default)]
pub struct MergeCertificate {
    /// DER certificates, leaf first.
    pub x5c: Vec<Vec<u8>>,
    /// Enabled (default: as requested at create).
    pub enabled: Option<bool>,
    /// Tags (default: as requested at create).
    pub tags: Option<BTreeMap<String, String>>,
}

const START_SELF: &str = "Pending certificate created. Certificate request is in progress. This may take some time based on the issuer provider. Please check again later.";
const START_UNKNOWN: &str =
    "Pending certificate created. Please Perform Merge to complete the request.";

/// `status_details` of an operation, as Key Vault words it.
pub fn status_details(op: &CertificateOperation) -> Option<&'static str> {
    match op.status {
        OpStatus::InProgress if op.issuer.eq_ignore_ascii_case("Unknown") => Some(START_UNKNOWN),
        OpStatus::InProgress => Some(START_SELF),
        _ => None,
    }
}

fn op_missing(name: &str) -> EngineError {
    EngineError::NotFound {
        kind: ObjectKind::CertificateOperation,
        name: name.to_owned(),
    }
}

fn in_progress() -> EngineError {
    EngineError::PendingInProgress(
        "A new key vault certificate can not be created or imported while a pending key vault certificate's status is inProgress.".into(),
    )
}

/// The stored operation of `lower` and its revision.
fn stored_op(
    view: &VaultView<'_>,
    lower: &str,
) -> Result<Option<(u64, PendingRecord)>, EngineError> {
    view.get(CERT_OPS, lower)?
        .map(|e| Ok((e.revision, decode(&e.value)?)))
        .transpose()
}

fn put_policy(
    view: &VaultView<'_>,
    lower: &str,
    revision: u64,
    policy: &Policy,
) -> Result<Fragment, EngineError> {
    Ok(Fragment {
        compare: vec![view.unchanged(CERT_POLICIES, lower, revision)],
        mutations: vec![view.put(CERT_POLICIES, lower, encode(policy)?)],
    })
}

fn put_op(
    view: &VaultView<'_>,
    lower: &str,
    revision: u64,
    op: &PendingRecord,
) -> Result<Fragment, EngineError> {
    Ok(Fragment {
        compare: vec![view.unchanged(CERT_OPS, lower, revision)],
        mutations: vec![view.put(CERT_OPS, lower, encode(op)?)],
    })
}

impl CertificatesEngine {
    /// Creates a certificate (a new version if it exists). `Self`: issued
    /// at once, the operation stored as completed; a `Coffer` issuer: signed
    /// by its CA at once, completed; `Unknown`: a CSR waits for a merge.
    /// Answers the stored operation.
    pub async fn create(
        &self,
        vault: &str,
        name: &str,
        req: CreateCertificate,
        request_id: Option<&str>,
    ) -> Result<CertificateOperation, EngineError> {
        let lower = check_name(CertKind::LABEL, name)?;
        check_tags(req.tags.as_ref())?;
        let now = self.now();
        let policy = req.policy.clone().completed(now)?;
        VaultView::check(self.store(), vault).await?;
        let choice = policy.key()?;
        let material = self
            .keys
            .certificate_material(choice.kty, choice.key_size, choice.curve)
            .await?;
        let issuer = policy.issuer_name().to_owned();
        let mut op = PendingRecord {
            name: name.to_owned(),
            issuer: issuer.clone(),
            csr: None,
            cancellation_requested: false,
            status: OpStatus::Completed,
            error: None,
            request_id: uuid::Uuid::new_v4().simple().to_string(),
            material: None,
            enabled: req.enabled.unwrap_or(true),
            tags: req.tags.clone(),
        };
        let mut chain = Vec::new();
        if policy.is_self() || policy.is_unknown() {
            // Signed with the new key itself, wherever it lives.
            let signer = Signer::new(self.keys.handle_of(&material))?;
            let p = policy.clone();
            if policy.is_self() {
                chain.push(off_runtime(move || issue::self_signed(&p, &signer, now)).await?);
            } else {
                let csr = off_runtime(move || issue::csr(&p, &signer, now)).await?;
                op.csr = Some(STANDARD.encode(csr));
                op.status = OpStatus::InProgress;
                op.material = Some(material.clone());
            }
        } else {
            // A named issuer: a Coffer CA signs at once; anything else
            // fails the operation with the reason (as a partner CA's
            // refusal would).
            match self
                .issue_by_issuer(vault, &issuer, &policy, material.public(), now)
                .await?
            {
                Ok(issued) => chain = issued,
                Err(message) => {
                    op.status = OpStatus::Failed;
                    op.error = Some(("Certificate issuer error".into(), message));
                }
            }
        }
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let current = stored_op(&view, &lower)?;
            if current
                .as_ref()
                .is_some_and(|(_, o)| o.status == OpStatus::InProgress)
            {
                return Ok(Plan::Refuse(in_progress()));
            }
            let op_rev = current.as_ref().map_or(0, |(r, _)| *r);
            let policy_rev = stored_policy(&view, &lower)?.map_or(0, |(r, _)| r);
            let mut frag = put_policy(&view, &lower, policy_rev, &policy)?;
            if !chain.is_empty() {
                let nv = NewVersion {
                    name,
                    policy: &policy,
                    material: &material,
                    chain: &chain,
                    enabled: op.enabled,
                    tags: req.tags.clone(),
                };
                match self.version_fragment(&view, &lower, &nv, now) {
                    Ok((f, _, _)) => frag = frag.and(f),
                    Err(e) => return Ok(Plan::Refuse(e)),
                }
            } else if self
                .certs
                .meta(&view, &lower)?
                .is_some_and(|m| m.record.deleted.is_some())
            {
                return Ok(Plan::Refuse(EngineError::Conflict(format!(
                    "Certificate {name} is currently being deleted and cannot be re-created; retry later."
                ))));
            }
            frag = frag.and(put_op(&view, &lower, op_rev, &op)?);
            Ok(Plan::Commit(view.txn(frag, encode(&op.operation())?)))
        })
        .await
    }

    /// Imports a PFX or PEM certificate with its key as a new version.
    /// Nothing is stored when the content cannot be read, the password is
    /// wrong or the key does not match the certificate.
    pub async fn import(
        &self,
        vault: &str,
        name: &str,
        req: ImportCertificate,
        request_id: Option<&str>,
    ) -> Result<super::Certificate, EngineError> {
        let lower = check_name(CertKind::LABEL, name)?;
        check_tags(req.tags.as_ref())?;
        let now = self.now();
        let pem = req.policy.as_ref().is_some_and(|p| p.content_type() == PEM);
        let imported = import::read(&req.value, req.password.as_ref().map(|p| p.as_str()), pem)?;
        let key = software::import_pkcs8(&imported.key).map_err(|_| {
            EngineError::BadParameter(
                "The private key of the certificate is not a supported RSA or EC key".into(),
            )
        })?;
        // The leaf is the certificate of the key, wherever it stands.
        let mut chain = imported.chain;
        let leaf = chain
            .iter()
            .position(|c| x509::public_matches(c, &key.public).unwrap_or(false))
            .ok_or_else(|| {
                EngineError::BadParameter(
                    "Public key from x509 certificate and key of this instance doesn't match"
                        .into(),
                )
            })?;
        chain.swap(0, leaf);
        let info = x509::info(&chain[0])?;
        if info.exp <= now as i64 {
            return Err(EngineError::BadParameter(
                "The certificate has expired and cannot be imported".into(),
            ));
        }
        let policy = x509::derived_policy(&info, req.policy.as_ref()).completed(now)?;
        let material = KeyMaterial::Software(key);
        VaultView::check(self.store(), vault).await?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let current = stored_op(&view, &lower)?;
            if current
                .as_ref()
                .is_some_and(|(_, o)| o.status == OpStatus::InProgress)
            {
                return Ok(Plan::Refuse(in_progress()));
            }
            let policy_rev = stored_policy(&view, &lower)?.map_or(0, |(r, _)| r);
            let nv = NewVersion {
                name,
                policy: &policy,
                material: &material,
                chain: &chain,
                enabled: req.enabled.unwrap_or(true),
                tags: req.tags.clone(),
            };
            let (frag, record, display) = match self.version_fragment(&view, &lower, &nv, now) {
                Ok(v) => v,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let mut frag = frag.and(put_policy(&view, &lower, policy_rev, &policy)?);
            if let Some((rev, _)) = current {
                // A finished operation is replaced by the import.
                frag = frag.and(Fragment {
                    compare: vec![view.unchanged(CERT_OPS, &lower, rev)],
                    mutations: vec![view.delete(CERT_OPS, &lower)],
                });
            }
            let answer = record.view(&display, Some(policy.clone()));
            Ok(Plan::Commit(view.txn(frag, encode(&answer)?)))
        })
        .await
    }

    /// Completes an `Unknown` request with the certificate signed for its
    /// CSR (leaf first, then its chain).
    pub async fn merge(
        &self,
        vault: &str,
        name: &str,
        req: MergeCertificate,
        request_id: Option<&str>,
    ) -> Result<super::Certificate, EngineError> {
        let lower = check_name(CertKind::LABEL, name)?;
        check_tags(req.tags.as_ref())?;
        if req.x5c.is_empty() {
            return Err(EngineError::BadParameter(
                "Property x5c has invalid value X5C must has at least one valid item".into(),
            ));
        }
        for c in &req.x5c {
            x509::info(c)?;
        }
        let vault = normalize_vault(vault)?;
        let now = self.now();
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let Some((op_rev, op)) = stored_op(&view, &lower)? else {
                return Ok(Plan::Refuse(op_missing(name)));
            };
            let material = match (&op.material, op.status) {
                (Some(m), OpStatus::InProgress) => m.clone(),
                _ if !op.issuer.eq_ignore_ascii_case("Unknown")
                    && op.status == OpStatus::InProgress =>
                {
                    return Ok(Plan::Refuse(EngineError::Forbidden(format!(
                        "Merge is forbidden on pending object created with issuer : {} while it is in progess.",
                        op.issuer
                    ))))
                }
                _ => {
                    return Ok(Plan::Refuse(EngineError::Forbidden(format!(
                        "The pending certificate {name} has no request awaiting a merge (status {})",
                        op.status.as_str()
                    ))))
                }
            };
            if !x509::public_matches(&req.x5c[0], material.public())? {
                return Ok(Plan::Refuse(EngineError::BadParameter(
                    "Public key from x509 certificate and key of this instance doesn't match"
                        .into(),
                )));
            }
            let Some((_, policy)) = stored_policy(&view, &lower)? else {
                return Ok(Plan::Refuse(op_missing(name)));
            };
            let nv = NewVersion {
                name: &op.name,
                policy: &policy,
                material: &material,
                chain: &req.x5c,
                enabled: req.enabled.unwrap_or(op.enabled),
                tags: req.tags.clone().or_else(|| op.tags.clone()),
            };
            let (frag, record, display) = match self.version_fragment(&view, &lower, &nv, now) {
                Ok(v) => v,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let done = PendingRecord {
                status: OpStatus::Completed,
                material: None,
                ..op.clone()
            };
            let frag = frag.and(put_op(&view, &lower, op_rev, &done)?);
            let answer = record.view(&display, Some(policy));
            Ok(Plan::Commit(view.txn(frag, encode(&answer)?)))
        })
        .await
    }

    /// The pending operation of a certificate.
    pub async fn get_operation(
        &self,
        vault: &str,
        name: &str,
    ) -> Result<CertificateOperation, EngineError> {
        let lower = check_name(CertKind::LABEL, name)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        stored_op(&view, &lower)?
            .map(|(_, op)| op.operation())
            .ok_or_else(|| op_missing(name))
    }

    /// Cancels a request in progress (Coffer cancels at once; the key
    /// waiting for a merge is dropped).
    pub async fn cancel_operation(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<CertificateOperation, EngineError> {
        self.change_operation(vault, name, request_id, |op| {
            if op.status != OpStatus::InProgress {
                return Err(EngineError::Forbidden(format!(
                    "The pending certificate {} cannot be cancelled: its status is {}",
                    op.name,
                    op.status.as_str()
                )));
            }
            op.cancellation_requested = true;
            op.status = OpStatus::Cancelled;
            op.material = None;
            Ok(false)
        })
        .await
    }

    /// Removes the pending operation; answers it.
    pub async fn delete_operation(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<CertificateOperation, EngineError> {
        self.change_operation(vault, name, request_id, |_| Ok(true))
            .await
    }

    /// Applies `change` to the stored operation; it answers whether the
    /// operation is removed.
    async fn change_operation(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
        change: impl Fn(&mut PendingRecord) -> Result<bool, EngineError>,
    ) -> Result<CertificateOperation, EngineError> {
        let lower = check_name(CertKind::LABEL, name)?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let Some((rev, mut op)) = stored_op(&view, &lower)? else {
                return Ok(Plan::Refuse(op_missing(name)));
            };
            let remove = match change(&mut op) {
                Ok(r) => r,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let mutation = if remove {
                view.delete(CERT_OPS, &lower)
            } else {
                view.put(CERT_OPS, &lower, encode(&op)?)
            };
            let frag = Fragment {
                compare: vec![view.unchanged(CERT_OPS, &lower, rev)],
                mutations: vec![mutation],
            };
            Ok(Plan::Commit(view.txn(frag, encode(&op.operation())?)))
        })
        .await
    }
}
