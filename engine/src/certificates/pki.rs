//! Revocation for `Coffer` issuers: the revoked serials and the current
//! signed CRL of each issuer live in one replicated record
//! (`cr/{vault}/{issuer}`). A revocation adds its serial and re-signs the
//! CRL (next CRL number) in the same compare-and-set transaction, so every
//! node serves the same bytes; the leader re-signs CRLs before they go
//! stale (and when the CA was renewed). The OCSP responder ([`ocsp`])
//! answers from the same record.

pub mod ocsp;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use serde::{Deserialize, Serialize};

use super::ca::{is_coffer, Ca};
use super::issue::internal;
use super::records::IssuerRecord;
use super::signer::{in_place, off_runtime};
use super::{x509, CertKind, CertificatesEngine};
use crate::cas::{decode, encode, write, Plan};
use crate::error::{EngineError, ObjectKind};
use crate::names::{CERT_ISSUERS, CERT_REVOCATIONS};
use crate::object::Kind;
use crate::validate::{check_name, normalize_vault};
use crate::view::{Fragment, TableScan, VaultView};

/// How long a CRL is valid (`nextUpdate - thisUpdate`).
pub const CRL_LIFETIME_SECS: i64 = 86_400;
/// The leader re-signs a CRL once less than this is left of it.
pub const CRL_REFRESH_BEFORE_SECS: i64 = CRL_LIFETIME_SECS / 2;

/// RFC 5280 reason names (CRLReason), by code.
const REASONS: &[(u8, &str)] = &[
    (0, "unspecified"),
    (1, "keyCompromise"),
    (2, "cACompromise"),
    (3, "affiliationChanged"),
    (4, "superseded"),
    (5, "cessationOfOperation"),
    (6, "certificateHold"),
    (9, "privilegeWithdrawn"),
    (10, "aACompromise"),
];

/// The code of a reason name (any case).
pub fn reason_code(name: &str) -> Result<u8, EngineError> {
    REASONS
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(name))
        .map(|(c, _)| *c)
        .ok_or_else(|| {
            EngineError::BadParameter(format!(
                "Revocation reason {name} is not valid: use one of {}",
                REASONS
                    .iter()
                    .map(|(_, n)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// The name of a reason code.
pub fn reason_name(code: u8) -> &'static str {
    REASONS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("unspecified", |(_, n)| n)
}

fn rcgen_reason(code: u8) -> RevocationReason {
    match code {
        1 => RevocationReason::KeyCompromise,
        2 => RevocationReason::CaCompromise,
        3 => RevocationReason::AffiliationChanged,
        4 => RevocationReason::Superseded,
        5 => RevocationReason::CessationOfOperation,
        6 => RevocationReason::CertificateHold,
        9 => RevocationReason::PrivilegeWithdrawn,
        10 => RevocationReason::AaCompromise,
        _ => RevocationReason::Unspecified,
    }
}

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedEntry {
    /// Serial, canonical lowercase hex.
    pub serial: String,
    /// When it was revoked, Unix seconds.
    pub revoked_at: i64,
    /// CRLReason code.
    pub reason: u8,
    /// `name/version` of the certificate in the vault, when revoked by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

/// `cr/{vault}/{issuer_lower}`: an issuer's revocations and current CRL.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RevocationRecord {
    /// Number of the current CRL (increases with every CRL signed).
    pub crl_number: u64,
    /// Revoked certificates, in revocation order.
    pub revoked: Vec<RevokedEntry>,
    /// The current CRL, DER (standard base64 in the record).
    #[serde(with = "super::records::b64")]
    pub crl: Vec<u8>,
    /// thisUpdate of the current CRL.
    pub this_update: i64,
    /// nextUpdate of the current CRL.
    pub next_update: i64,
    /// Version of the CA certificate that signed it.
    pub ca_version: String,
}

impl RevocationRecord {
    /// The revocation of canonical `serial`, if revoked.
    pub fn find(&self, serial: &str) -> Option<&RevokedEntry> {
        self.revoked.iter().find(|r| r.serial == serial)
    }

    /// Signs the next CRL with `ca` at `now`.
    fn resign(&mut self, ca: &Ca, now: i64) -> Result<(), EngineError> {
        self.crl_number += 1;
        self.crl = sign_crl(ca, self.crl_number, &self.revoked, now)?;
        self.this_update = now;
        self.next_update = now + CRL_LIFETIME_SECS;
        self.ca_version = ca.version.clone();
        Ok(())
    }
}

/// A CRL number `number` listing `revoked`, signed by `ca`, valid from
/// `now` for [`CRL_LIFETIME_SECS`].
fn sign_crl(
    ca: &Ca,
    number: u64,
    revoked: &[RevokedEntry],
    now: i64,
) -> Result<Vec<u8>, EngineError> {
    let at = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| internal("date", e));
    let mut revoked_certs = Vec::with_capacity(revoked.len());
    for r in revoked {
        let serial = hex::decode(&r.serial).map_err(|e| internal("stored serial", e))?;
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: at(r.revoked_at)?,
            reason_code: Some(rcgen_reason(r.reason)),
            invalidity_date: None,
        });
    }
    let key_identifier_method = match x509::subject_key_id(&ca.cert)? {
        Some(ski) => KeyIdMethod::PreSpecified(ski),
        None => KeyIdMethod::Sha256,
    };
    let params = CertificateRevocationListParams {
        this_update: at(now)?,
        next_update: at(now + CRL_LIFETIME_SECS)?,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method,
    };
    let crl = params
        .signed_by(&ca.issuer()?)
        .map_err(|e| ca.key().failure("signing the CRL", e))?;
    Ok(crl.der().to_vec())
}

/// What to revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeTarget {
    /// A serial number (hex, colons allowed).
    Serial(String),
    /// A certificate of the vault (latest version when `None`).
    Certificate {
        /// Certificate name.
        name: String,
        /// Version.
        version: Option<String>,
    },
}

/// A revocation as answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Issuer name.
    pub issuer: String,
    /// Serial, lowercase hex.
    pub serial: String,
    /// Unix seconds.
    pub revoked_at: i64,
    /// Reason name.
    pub reason: String,
    /// `name/version` when revoked by certificate.
    pub certificate: Option<String>,
    /// Number of the CRL that lists it first.
    pub crl_number: u64,
}

const ISSUER_LABEL: &str = "Issuer";

fn issuer_missing(name: &str) -> EngineError {
    EngineError::NotFound {
        kind: ObjectKind::CertificateIssuer,
        name: name.to_owned(),
    }
}

/// The stored revocation record of `issuer_lower` and its revision.
fn stored(
    view: &VaultView<'_>,
    issuer_lower: &str,
) -> Result<Option<(u64, RevocationRecord)>, EngineError> {
    view.get(CERT_REVOCATIONS, issuer_lower)?
        .map(|e| Ok((e.revision, decode(&e.value)?)))
        .transpose()
}

impl CertificatesEngine {
    /// A `Coffer` issuer of the vault with its CA, or why not.
    fn coffer_issuer(
        &self,
        view: &VaultView<'_>,
        issuer: &str,
        now: u64,
    ) -> Result<(IssuerRecord, Ca), EngineError> {
        let record = self
            .issuer_record(view, issuer)?
            .ok_or_else(|| issuer_missing(issuer))?;
        let ca = self.load_ca(view, &record, now)?;
        Ok((record, ca))
    }

    /// Revokes a certificate issued by the `Coffer` issuer `issuer`: the
    /// serial joins the issuer's CRL (re-signed, next number) in one
    /// replicated write. Revoking a revoked serial answers the first
    /// revocation.
    pub async fn revoke(
        &self,
        vault: &str,
        issuer: &str,
        target: RevokeTarget,
        reason: Option<&str>,
        request_id: Option<&str>,
    ) -> Result<Revocation, EngineError> {
        let issuer_lower = check_name(ISSUER_LABEL, issuer)?;
        let reason = reason_code(reason.unwrap_or("unspecified"))?;
        if let RevokeTarget::Certificate { name, .. } = &target {
            check_name(CertKind::LABEL, name)?;
        }
        VaultView::check(self.store(), vault).await?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let now = self.now();
            let (record, ca) = match self.coffer_issuer(&view, issuer, now) {
                Ok(v) => v,
                Err(e @ EngineError::Store(_)) => return Err(e),
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let (serial, certificate) = match self.revoked_serial(&view, &target, &ca, issuer) {
                Ok(v) => v,
                Err(e @ EngineError::Store(_)) => return Err(e),
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let (revision, mut state) = stored(&view, &issuer_lower)?.unwrap_or_default();
            let answer = |e: &RevokedEntry, n: u64| Revocation {
                issuer: record.name.clone(),
                serial: e.serial.clone(),
                revoked_at: e.revoked_at,
                reason: reason_name(e.reason).to_owned(),
                certificate: e.certificate.clone(),
                crl_number: n,
            };
            if let Some(e) = state.find(&serial) {
                return Ok(Plan::Answer(answer(e, state.crl_number)));
            }
            let entry = RevokedEntry {
                serial,
                revoked_at: now as i64,
                reason,
                certificate,
            };
            state.revoked.push(entry.clone());
            in_place(|| state.resign(&ca, now as i64))?;
            let result = answer(&entry, state.crl_number);
            let frag = Fragment {
                compare: vec![view.unchanged(CERT_REVOCATIONS, &issuer_lower, revision)],
                mutations: vec![view.put(CERT_REVOCATIONS, &issuer_lower, encode(&state)?)],
            };
            Ok(Plan::Commit(view.txn(frag, encode(&result)?)))
        })
        .await
    }

    /// The canonical serial `target` names and, for a certificate of the
    /// vault, its `name/version`; refused when `ca` did not issue it.
    fn revoked_serial(
        &self,
        view: &VaultView<'_>,
        target: &RevokeTarget,
        ca: &Ca,
        issuer: &str,
    ) -> Result<(String, Option<String>), EngineError> {
        match target {
            RevokeTarget::Serial(s) => {
                x509::canonical_serial(s).map(|s| (s, None)).ok_or_else(|| {
                    EngineError::BadParameter(format!("Serial number {s:?} is not hexadecimal"))
                })
            }
            RevokeTarget::Certificate { name, version } => {
                let lower = name.to_ascii_lowercase();
                let found = self
                    .certs
                    .live_version(view, &lower, name, version.as_deref())?;
                if !x509::issued_by(&found.version.cer, &ca.cert)? {
                    return Err(EngineError::BadParameter(format!(
                        "Certificate {name} was not issued by issuer {issuer}"
                    )));
                }
                let serial = x509::info(&found.version.cer)?.serial;
                Ok((
                    serial,
                    Some(format!(
                        "{}/{}",
                        found.meta.record.name, found.version.version
                    )),
                ))
            }
        }
    }

    /// The revocations of a `Coffer` issuer.
    pub async fn revocations(
        &self,
        vault: &str,
        issuer: &str,
    ) -> Result<Vec<RevokedEntry>, EngineError> {
        let issuer_lower = check_name(ISSUER_LABEL, issuer)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        self.coffer_issuer(&view, issuer, self.now())?;
        Ok(stored(&view, &issuer_lower)?
            .map(|(_, s)| s.revoked)
            .unwrap_or_default())
    }

    /// The CA certificate (DER) of a `Coffer` issuer.
    pub async fn ca_certificate(&self, vault: &str, issuer: &str) -> Result<Vec<u8>, EngineError> {
        check_name(ISSUER_LABEL, issuer)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        Ok(self.coffer_issuer(&view, issuer, self.now())?.1.cert)
    }

    /// The current CRL (DER) of a `Coffer` issuer: the stored one while it
    /// is valid and signed by the current CA; otherwise one signed now
    /// from the same revocations (the leader stores a fresh one soon).
    pub async fn crl(&self, vault: &str, issuer: &str) -> Result<Vec<u8>, EngineError> {
        let issuer_lower = check_name(ISSUER_LABEL, issuer)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        let now = self.now() as i64;
        let (_, ca) = self.coffer_issuer(&view, issuer, now as u64)?;
        let mut state = stored(&view, &issuer_lower)?
            .map(|(_, s)| s)
            .unwrap_or_default();
        if state.ca_version == ca.version && now < state.next_update && !state.crl.is_empty() {
            return Ok(state.crl);
        }
        off_runtime(move || {
            state.resign(&ca, now)?;
            Ok(state.crl)
        })
        .await
    }

    /// Re-signs every `Coffer` issuer's CRL that is missing, signed by an
    /// older CA version, or within [`CRL_REFRESH_BEFORE_SECS`] of its
    /// nextUpdate (leader work). Returns how many were re-signed.
    pub async fn refresh_crls(&self, now: u64) -> Result<usize, EngineError> {
        let store = self.store();
        store.read_fence().await?;
        let mut refreshed = 0;
        let mut scan = TableScan::new(store, CERT_ISSUERS);
        while let Some(batch) = scan.next_batch()? {
            for (vault, lower, entry) in batch {
                let Ok(record) = decode::<IssuerRecord>(&entry.value) else {
                    continue;
                };
                if !is_coffer(&record.provider) {
                    continue;
                }
                let view = VaultView::unchecked(store, &vault);
                let Ok(ca) = self.load_ca(&view, &record, now) else {
                    continue;
                };
                let (revision, state) = stored(&view, &lower)?.unwrap_or_default();
                let fresh = state.ca_version == ca.version
                    && (now as i64) < state.next_update - CRL_REFRESH_BEFORE_SECS;
                if fresh {
                    continue;
                }
                let state = off_runtime(move || {
                    let mut state = state;
                    state.resign(&ca, now as i64)?;
                    Ok(state)
                })
                .await?;
                let frag = Fragment {
                    compare: vec![view.unchanged(CERT_REVOCATIONS, &lower, revision)],
                    mutations: vec![view.put(CERT_REVOCATIONS, &lower, encode(&state)?)],
                };
                let txn = view.txn(frag, b"null".to_vec());
                refreshed += usize::from(store.commit(None, txn).await?.succeeded);
            }
        }
        Ok(refreshed)
    }
}
