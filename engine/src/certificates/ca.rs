//! The `Coffer` issuer provider: a private CA whose certificate and key are
//! a certificate of the same vault (a root made with issuer `Self` and
//! `basic_constraints.ca`, an intermediate issued by another `Coffer`
//! issuer, or one signed by an external root through `Unknown` + merge).
//! An issuer `{"provider": "Coffer", "credentials": {"account_id": "<CA
//! certificate name or id>"}}` names it; `create` with that issuer signs
//! the leaf at once with the CA's key (software or HSM tier: it signs
//! through its handle and never leaves its tier), embedding the CRL
//! distribution point and the OCSP responder (Authority Information
//! Access) of the issuer, and puts the CA's chain after the leaf in the
//! secret.

use der::asn1::{Ia5String, ObjectIdentifier};
use der::Encode as _;
use rcgen::{CrlDistributionPoint, CustomExtension};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};

use super::issue::{internal, params_of};
use super::policy::Policy;
use super::records::IssuerRecord;
use super::signer::{off_runtime, Signer, SubjectKey};
use super::{x509, CertificatesEngine};
use crate::cas::decode;
use crate::error::EngineError;
use crate::names::CERT_ISSUERS;
use crate::view::VaultView;
use coffer_crypto::{CryptoError, PublicKey};

/// Provider name of Coffer's own CA issuer.
pub const PROVIDER_COFFER: &str = "Coffer";

const OID_AIA: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
const OID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
const OID_AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");

/// Where an issuer's CA certificate, CRL and OCSP responder are served
/// (`{base}/ca`, `{base}/crl`, `{base}/ocsp`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiUrls {
    /// The CA certificate (DER).
    pub ca: String,
    /// The CRL (DER).
    pub crl: String,
    /// The OCSP responder.
    pub ocsp: String,
}

impl PkiUrls {
    /// The URLs under `base` (`https://host/v1/pki/{vault}/{issuer}`).
    pub fn under(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        Self {
            ca: format!("{base}/ca"),
            crl: format!("{base}/crl"),
            ocsp: format!("{base}/ocsp"),
        }
    }
}

/// Whether `provider` names Coffer's CA (any case).
pub fn is_coffer(provider: &str) -> bool {
    provider.eq_ignore_ascii_case(PROVIDER_COFFER)
}

/// The certificate name and version an issuer's `account_id` names: a
/// name, `name/version`, or a certificate id (`https://…/certificates/
/// {name}[/{version}]`).
pub fn parse_account(account: &str) -> Option<(String, Option<String>)> {
    let rest = match account.find("/certificates/") {
        Some(i) => &account[i + "/certificates/".len()..],
        None => account,
    };
    let mut parts = rest.trim_matches('/').split('/');
    let name = parts.next().filter(|n| !n.is_empty())?.to_owned();
    let version = parts.next().filter(|v| !v.is_empty()).map(str::to_owned);
    if parts.next().is_some() {
        return None;
    }
    Some((name, version))
}

/// A CA ready to sign: its certificate, the chain above it and its key
/// (software or HSM, used through its handle).
pub(super) struct Ca {
    /// Version of the CA certificate.
    pub version: String,
    /// The CA certificate, DER.
    pub cert: Vec<u8>,
    /// The CA certificate then its issuers, DER.
    pub chain: Vec<Vec<u8>>,
    /// Expiry of the CA certificate.
    pub exp: i64,
    /// The CA's key.
    key: Signer,
    /// Where the issuer's CRL and OCSP responder are served.
    pub urls: Option<PkiUrls>,
}

fn issuer_error(m: impl Into<String>) -> EngineError {
    EngineError::BadParameter(m.into())
}

impl Ca {
    /// The CA's key.
    pub fn key(&self) -> &Signer {
        &self.key
    }

    /// An rcgen issuer (subject, key identifier, key usages of the CA).
    pub fn issuer(&self) -> Result<rcgen::Issuer<'static, &Signer>, EngineError> {
        rcgen::Issuer::from_ca_cert_der(&self.cert.clone().into(), &self.key)
            .map_err(|e| internal("CA certificate", e))
    }

    /// A certificate of `policy` for the public key `subject`, signed by
    /// this CA: never valid past the CA, with the CRL distribution point
    /// and the OCSP responder of the issuer.
    pub fn sign(
        &self,
        policy: &Policy,
        subject: &PublicKey,
        now: u64,
    ) -> Result<Vec<u8>, EngineError> {
        let subject = SubjectKey::of(subject)?;
        let mut params = params_of(policy, now)?;
        if params.not_after.unix_timestamp() > self.exp {
            params.not_after = time::OffsetDateTime::from_unix_timestamp(self.exp)
                .map_err(|e| internal("date", e))?;
        }
        if let Some(urls) = &self.urls {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![urls.crl.clone()],
            }];
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(OID_AIA, aia(urls)?));
        }
        let cert = params
            .signed_by(&subject, &self.issuer()?)
            .map_err(|e| self.key.failure("signing the certificate", e))?;
        Ok(cert.der().to_vec())
    }
}

/// The Authority Information Access extension's value: the OCSP responder
/// and where the CA certificate is.
fn aia(urls: &PkiUrls) -> Result<Vec<u8>, EngineError> {
    let uri = |u: &str| {
        Ia5String::new(u)
            .map(GeneralName::UniformResourceIdentifier)
            .map_err(|e| issuer_error(format!("The issuer URL {u:?} is not ASCII: {e}")))
    };
    AuthorityInfoAccessSyntax(vec![
        AccessDescription {
            access_method: OID_AD_OCSP,
            access_location: uri(&urls.ocsp)?,
        },
        AccessDescription {
            access_method: OID_AD_CA_ISSUERS,
            access_location: uri(&urls.ca)?,
        },
    ])
    .to_der()
    .map_err(|e| internal("AIA extension", e))
}

impl CertificatesEngine {
    /// The issuer record `name` of the vault, if any.
    pub(super) fn issuer_record(
        &self,
        view: &VaultView<'_>,
        name: &str,
    ) -> Result<Option<IssuerRecord>, EngineError> {
        view.get(CERT_ISSUERS, &name.to_ascii_lowercase())?
            .map(|e| decode(&e.value))
            .transpose()
    }

    /// The CA a `Coffer` issuer names, checked: a live, enabled, unexpired
    /// CA certificate (basicConstraints CA, keyCertSign) whose key this
    /// node can sign with.
    pub(super) fn load_ca(
        &self,
        view: &VaultView<'_>,
        issuer: &IssuerRecord,
        now: u64,
    ) -> Result<Ca, EngineError> {
        if !is_coffer(&issuer.provider) {
            return Err(issuer_error(format!(
                "Issuer {} (provider {}) cannot issue certificates: Coffer issues with Self, a Coffer issuer, or completes Unknown requests by merge",
                issuer.name, issuer.provider
            )));
        }
        if !issuer.enabled {
            return Err(issuer_error(format!("Issuer {} is disabled", issuer.name)));
        }
        let account = issuer.account_id.as_deref().unwrap_or("");
        let (name, version) = parse_account(account).ok_or_else(|| {
            issuer_error(format!(
                "Issuer {}: credentials.account_id must name the CA certificate of this vault (name or certificate id)",
                issuer.name
            ))
        })?;
        let lower = name.to_ascii_lowercase();
        let missing = || {
            issuer_error(format!(
                "Issuer {}: the CA certificate {name} does not exist in this vault",
                issuer.name
            ))
        };
        let found = self
            .certs
            .live_version(view, &lower, &name, version.as_deref())
            .map_err(|_| missing())?;
        let v = found.version;
        if !v.enabled {
            return Err(issuer_error(format!(
                "Issuer {}: the CA certificate {name} is disabled",
                issuer.name
            )));
        }
        if v.exp <= now as i64 {
            return Err(issuer_error(format!(
                "Issuer {}: the CA certificate {name} has expired",
                issuer.name
            )));
        }
        let info = x509::info(&v.cer)?;
        if !info.is_ca || !info.key_usage.iter().any(|k| k == "keyCertSign") {
            return Err(issuer_error(format!(
                "Issuer {}: the certificate {name} is not a CA (it needs basicConstraints CA and the keyCertSign key usage)",
                issuer.name
            )));
        }
        let key = match self.keys.version_record(view, &lower, &v.version)? {
            Some((_, k)) => Signer::new(self.keys.handle_of(&k.material))?,
            None => return Err(missing()),
        };
        let mut chain = vec![v.cer.clone()];
        if let Some((_, secret)) = self.secrets.version_record(view, &lower, &v.version)? {
            let ct = secret
                .content_type
                .as_deref()
                .unwrap_or(super::policy::PKCS12);
            let (certs, _) = super::import::secret_parts(&secret.value, ct)?;
            chain.extend(certs.into_iter().filter(|c| *c != v.cer));
        }
        Ok(Ca {
            version: v.version,
            cert: v.cer,
            chain,
            exp: v.exp,
            key,
            urls: issuer.pki_url.as_deref().map(PkiUrls::under),
        })
    }

    /// Signs a certificate of `policy` for the public key `subject` with
    /// the named issuer: the chain (leaf first) or why the issuer cannot
    /// (the operation fails with that message). Store errors, and a CA key
    /// this node's HSM cannot use now, are errors (the request may be
    /// retried).
    pub(super) async fn issue_by_issuer(
        &self,
        vault: &str,
        issuer: &str,
        policy: &Policy,
        subject: &PublicKey,
        now: u64,
    ) -> Result<Result<Vec<Vec<u8>>, String>, EngineError> {
        let view = VaultView::fenced(self.store(), vault).await?;
        let Some(record) = self.issuer_record(&view, issuer)? else {
            return Ok(Err(format!("Issuer {issuer} not found")));
        };
        let ca = match self.load_ca(&view, &record, now) {
            Ok(ca) => ca,
            Err(e @ EngineError::Store(_)) => return Err(e),
            Err(e) => return Ok(Err(e.to_string())),
        };
        let (policy, subject) = (policy.clone(), subject.clone());
        let signed = off_runtime(move || {
            let leaf = ca.sign(&policy, &subject, now)?;
            let mut chain = vec![leaf];
            chain.extend(ca.chain);
            Ok(chain)
        })
        .await;
        match signed {
            Ok(chain) => Ok(Ok(chain)),
            Err(e @ EngineError::Crypto(CryptoError::HsmUnavailable(_))) => Err(e),
            Err(e) => Ok(Err(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_name_a_certificate() {
        assert_eq!(parse_account("corp-ca"), Some(("corp-ca".into(), None)));
        assert_eq!(
            parse_account("https://v.example/certificates/corp-ca/0123"),
            Some(("corp-ca".into(), Some("0123".into())))
        );
        assert_eq!(
            parse_account("https://v.example/certificates/corp-ca"),
            Some(("corp-ca".into(), None))
        );
        assert_eq!(parse_account(""), None);
        assert_eq!(parse_account("a/b/c"), None);
    }
}
