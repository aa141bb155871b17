//! The OCSP responder of `Coffer` issuers (RFC 6960): requests are read
//! with `x509-ocsp`, each CertID is matched against the issuer's CA (name
//! and key hashes in the request's hash algorithm) and its serial against
//! the replicated revocations; the BasicOCSPResponse is signed by the CA
//! key itself (responder id by key hash) and echoes the request's nonce.
//! Every outcome is an OCSPResponse: malformed requests, unknown issuers and
//! a node that cannot read its store get the matching response status.

use std::time::Duration;

use der::asn1::{BitString, GeneralizedTime, ObjectIdentifier, OctetString};
use der::{Decode as _, Encode as _};
use rcgen::SigningKey as _;
use x509_cert::ext::pkix::CrlReason;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    ResponderId, ResponseData, RevokedInfo, SingleResponse, Version,
};

use super::super::ca::Ca;
use super::super::issue::internal;
use super::super::signer::off_runtime;
use super::super::{x509, CertificatesEngine};
use super::{stored, RevocationRecord};
use crate::error::EngineError;
use crate::validate::check_name;
use crate::view::VaultView;
use coffer_crypto::CryptoError;

/// How long a response may be cached (`nextUpdate - thisUpdate`).
pub const OCSP_VALIDITY_SECS: u64 = 3_600;

const ID_PKIX_OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// `digest` of `data` for a CertID hash algorithm (`None`: not supported).
fn hash(alg: &ObjectIdentifier, data: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY, SHA256, SHA384, SHA512};
    let algorithm = match *alg {
        ID_SHA1 => &SHA1_FOR_LEGACY_USE_ONLY,
        ID_SHA256 => &SHA256,
        ID_SHA384 => &SHA384,
        ID_SHA512 => &SHA512,
        _ => return None,
    };
    Some(digest(algorithm, data).as_ref().to_vec())
}

fn generalized(secs: u64) -> Result<OcspGeneralizedTime, EngineError> {
    GeneralizedTime::from_unix_duration(Duration::from_secs(secs))
        .map(OcspGeneralizedTime)
        .map_err(|e| internal("OCSP time", e))
}

fn crl_reason(code: u8) -> CrlReason {
    match code {
        1 => CrlReason::KeyCompromise,
        2 => CrlReason::CaCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        6 => CrlReason::CertificateHold,
        9 => CrlReason::PrivilegeWithdrawn,
        10 => CrlReason::AaCompromise,
        _ => CrlReason::Unspecified,
    }
}

/// What the responder knows of a CA: the hashes a CertID must carry.
struct Issuer {
    /// DER of the CA's subject name.
    name: Vec<u8>,
    /// The CA's subjectPublicKey (BIT STRING contents).
    key: Vec<u8>,
}

impl Issuer {
    fn of(ca: &Ca) -> Result<Self, EngineError> {
        let cert = x509_cert::Certificate::from_der(&ca.cert)
            .map_err(|e| internal("CA certificate", e))?;
        let tbs = cert.tbs_certificate;
        Ok(Self {
            name: tbs.subject.to_der().map_err(|e| internal("CA name", e))?,
            key: tbs
                .subject_public_key_info
                .subject_public_key
                .raw_bytes()
                .to_vec(),
        })
    }

    /// Whether `id` names a certificate of this CA.
    fn matches(&self, id: &CertId) -> bool {
        let alg = &id.hash_algorithm.oid;
        hash(alg, &self.name).is_some_and(|h| h == id.issuer_name_hash.as_bytes())
            && hash(alg, &self.key).is_some_and(|h| h == id.issuer_key_hash.as_bytes())
    }
}

/// The status of `id` for `issuer` with `state`'s revocations.
fn status(
    issuer: &Issuer,
    state: &RevocationRecord,
    id: &CertId,
) -> Result<CertStatus, EngineError> {
    if !issuer.matches(id) {
        return Ok(CertStatus::unknown());
    }
    let serial = x509::serial_of_bytes(id.serial_number.as_bytes());
    Ok(match state.find(&serial) {
        Some(r) => CertStatus::revoked(RevokedInfo {
            revocation_time: generalized(r.revoked_at.max(0) as u64)?,
            revocation_reason: Some(crl_reason(r.reason)),
        }),
        None => CertStatus::good(),
    })
}

/// The signed answer to `request` for `ca` at `now`.
fn respond(
    ca: &Ca,
    state: &RevocationRecord,
    request: &OcspRequest,
    now: u64,
) -> Result<Vec<u8>, EngineError> {
    let issuer = Issuer::of(ca)?;
    let mut responses = Vec::new();
    for r in &request.tbs_request.request_list {
        responses.push(SingleResponse {
            cert_id: r.req_cert.clone(),
            cert_status: status(&issuer, state, &r.req_cert)?,
            this_update: generalized(now)?,
            next_update: Some(generalized(now + OCSP_VALIDITY_SECS)?),
            single_extensions: None,
        });
    }
    let nonce: Vec<_> = request
        .tbs_request
        .request_extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == ID_PKIX_OCSP_NONCE)
        .cloned()
        .map(|mut e| {
            e.critical = false;
            e
        })
        .collect();
    let key_hash = hash(&ID_SHA1, &issuer.key).unwrap_or_default();
    let tbs = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByKey(
            OctetString::new(key_hash).map_err(|e| internal("OCSP", e))?,
        ),
        produced_at: generalized(now)?,
        responses,
        response_extensions: (!nonce.is_empty()).then_some(nonce),
    };
    let tbs_der = tbs.to_der().map_err(|e| internal("OCSP", e))?;
    let key = ca.key();
    let signature = key
        .sign(&tbs_der)
        .map_err(|e| key.failure("signing the OCSP response", e))?;
    let basic = BasicOcspResponse {
        tbs_response_data: tbs,
        signature_algorithm: key.algorithm_identifier(),
        signature: BitString::from_bytes(&signature).map_err(|e| internal("OCSP", e))?,
        certs: None,
    };
    OcspResponse::successful(basic)
        .and_then(|r| r.to_der())
        .map_err(|e| internal("OCSP", e))
}

/// An OCSPResponse without body.
fn bare(response: OcspResponse) -> Vec<u8> {
    // Two fixed bytes plus the status: encoding cannot fail.
    response
        .to_der()
        .unwrap_or_else(|_| vec![0x30, 0x03, 0x0a, 0x01, 0x02])
}

impl CertificatesEngine {
    /// The OCSP response (DER) to the DER `request` for the `Coffer`
    /// issuer `issuer` of `vault`.
    pub async fn ocsp(&self, vault: &str, issuer: &str, request: &[u8]) -> Vec<u8> {
        let Ok(request) = OcspRequest::from_der(request) else {
            return bare(OcspResponse::malformed_request());
        };
        if request.tbs_request.request_list.is_empty() {
            return bare(OcspResponse::malformed_request());
        }
        let Ok(issuer_lower) = check_name("Issuer", issuer) else {
            return bare(OcspResponse::unauthorized());
        };
        let view = match VaultView::fenced(self.store(), vault).await {
            Ok(v) => v,
            Err(EngineError::VaultNotFound(_)) => return bare(OcspResponse::unauthorized()),
            Err(_) => return bare(OcspResponse::try_later()),
        };
        let now = self.now();
        let ca = match self.coffer_issuer(&view, issuer, now) {
            Ok((_, ca)) => ca,
            Err(EngineError::Store(_)) => return bare(OcspResponse::try_later()),
            Err(_) => return bare(OcspResponse::unauthorized()),
        };
        let state = match stored(&view, &issuer_lower) {
            Ok(s) => s.map(|(_, s)| s).unwrap_or_default(),
            Err(_) => return bare(OcspResponse::try_later()),
        };
        match off_runtime(move || respond(&ca, &state, &request, now)).await {
            Ok(der) => der,
            Err(EngineError::Crypto(CryptoError::HsmUnavailable(_))) => {
                bare(OcspResponse::try_later())
            }
            Err(e) => {
                tracing::warn!(%vault, %issuer, error = %e, "OCSP response failed");
                bare(OcspResponse::internal_error())
            }
        }
    }
}
