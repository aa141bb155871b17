//! The one way a certificate's key signs X.509 structures (self-signed
//! certificates, CSRs, certificates a CA issues, CRLs, OCSP responses),
//! whichever tier holds it: rcgen's [`SigningKey`] over the keys engine's
//! [`KeyHandle`]. The structure is hashed on the host and the digest signed
//! through the handle (RS256/ES256/ES384/ES512), so an HSM key signs inside
//! its device and is never extracted; the JOSE `r || s` of ECDSA becomes the
//! DER `ECDSA-Sig-Value` X.509 wants.
//!
//! Signing may block (RSA math, PKCS#11): async code runs it through
//! [`off_runtime`], code inside a synchronous write plan through [`in_place`].

use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::digest::{digest, SHA256, SHA384, SHA512};
use der::asn1::{Any, ObjectIdentifier, Uint};
use der::Encode as _;
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};
use x509_cert::spki::AlgorithmIdentifierOwned;

use super::issue::internal;
use crate::error::EngineError;
use coffer_crypto::key::KeyHandle;
use coffer_crypto::{CryptoError, Curve, PublicKey, SignAlg};

const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");

/// A public key as X.509 carries it, and the signature it makes.
pub(super) struct SubjectKey {
    /// The subjectPublicKey bits: DER `RSAPublicKey`, or the uncompressed
    /// EC point.
    der: Vec<u8>,
    alg: &'static SignatureAlgorithm,
    sign_alg: SignAlg,
}

impl SubjectKey {
    /// The X.509 form of `public` (RSA, or EC on P-256, P-384, P-521).
    pub fn of(public: &PublicKey) -> Result<Self, EngineError> {
        let unsupported =
            || EngineError::NotSupported("this key type cannot sign a certificate here".into());
        Ok(match public {
            PublicKey::Rsa { n, e } => {
                let uint = |b: &[u8]| Uint::new(b).map_err(|e| internal("RSA public key", e));
                Self {
                    der: vec![uint(n)?, uint(e)?]
                        .to_der()
                        .map_err(|e| internal("RSA public key", e))?,
                    alg: &rcgen::PKCS_RSA_SHA256,
                    sign_alg: SignAlg::RS256,
                }
            }
            PublicKey::Ec { curve, x, y } => {
                let (alg, sign_alg) = match curve {
                    Curve::P256 => (&rcgen::PKCS_ECDSA_P256_SHA256, SignAlg::ES256),
                    Curve::P384 => (&rcgen::PKCS_ECDSA_P384_SHA384, SignAlg::ES384),
                    Curve::P521 => (&rcgen::PKCS_ECDSA_P521_SHA512, SignAlg::ES512),
                    Curve::P256K => return Err(unsupported()),
                };
                let mut der = Vec::with_capacity(1 + x.len() + y.len());
                der.push(4);
                der.extend_from_slice(x);
                der.extend_from_slice(y);
                Self { der, alg, sign_alg }
            }
            PublicKey::Oct => return Err(unsupported()),
        })
    }
}

impl PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.der
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// A key that signs through its handle. rcgen sees only its own error
/// type, so the cause of a failed signature (an HSM that is unavailable,
/// a device error) is kept here and given back by [`Signer::failure`].
pub(super) struct Signer {
    key: SubjectKey,
    handle: Arc<dyn KeyHandle>,
    failed: Mutex<Option<CryptoError>>,
}

impl Signer {
    /// A signer over `handle`.
    pub fn new(handle: Arc<dyn KeyHandle>) -> Result<Self, EngineError> {
        Ok(Self {
            key: SubjectKey::of(handle.public())?,
            handle,
            failed: Mutex::new(None),
        })
    }

    /// The error of a failed X.509 operation: the key's own failure when it
    /// refused to sign, else `what` failed with `e`.
    pub fn failure(&self, what: &str, e: impl std::fmt::Display) -> EngineError {
        let kept = self
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        kept.map_or_else(|| internal(what, e), EngineError::Crypto)
    }

    /// The signature AlgorithmIdentifier of what this key signs (for the
    /// structures rcgen does not build: OCSP responses).
    pub fn algorithm_identifier(&self) -> AlgorithmIdentifierOwned {
        let (oid, null_params) = match self.key.sign_alg {
            SignAlg::ES256 => (ECDSA_SHA256, false),
            SignAlg::ES384 => (ECDSA_SHA384, false),
            SignAlg::ES512 => (ECDSA_SHA512, false),
            _ => (SHA256_WITH_RSA, true),
        };
        AlgorithmIdentifierOwned {
            oid,
            parameters: null_params.then(Any::null),
        }
    }

    fn sign_digest(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let hash = match self.key.sign_alg {
            SignAlg::ES384 => &SHA384,
            SignAlg::ES512 => &SHA512,
            _ => &SHA256,
        };
        let digest = digest(hash, msg);
        let signature = self.handle.sign(self.key.sign_alg, digest.as_ref())?;
        match self.key.sign_alg {
            SignAlg::RS256 => Ok(signature),
            _ => ecdsa_der(&signature),
        }
    }
}

impl PublicKeyData for Signer {
    fn der_bytes(&self) -> &[u8] {
        self.key.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.key.algorithm()
    }
}

impl SigningKey for Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_digest(msg).map_err(|e| {
            *self.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
            rcgen::Error::RemoteKeyError
        })
    }
}

/// The DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` of a
/// JOSE `r || s` signature.
fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(CryptoError::Internal(
            "an ECDSA signature of odd length".into(),
        ));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let bad = |e: der::Error| CryptoError::Internal(format!("ECDSA signature: {e}"));
    vec![Uint::new(r).map_err(bad)?, Uint::new(s).map_err(bad)?]
        .to_der()
        .map_err(bad)
}

/// Runs `f`, which may sign, on a blocking thread.
pub(super) async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| internal("signing", "the signing task failed"))?
}

/// Runs `f`, which may sign, from synchronous code on the runtime (a write
/// plan): the worker thread hands its other tasks away first where the
/// runtime allows it (multi-threaded), else `f` simply runs.
pub(super) fn in_place<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_crypto::software::{self, LoadedKey};
    use coffer_crypto::KeySpec;

    fn signer(spec: KeySpec) -> Signer {
        let key = software::generate(&spec).unwrap();
        Signer::new(Arc::new(LoadedKey::new(key))).unwrap()
    }

    /// Checks the certificate's signature with its own public key.
    fn verify_self_signed(der: &[u8]) {
        use aws_lc_rs::signature::{self as sig, UnparsedPublicKey, VerificationAlgorithm};
        let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
        let alg: &'static dyn VerificationAlgorithm =
            match c.signature_algorithm.algorithm.to_id_string().as_str() {
                "1.2.840.113549.1.1.11" => &sig::RSA_PKCS1_2048_8192_SHA256,
                "1.2.840.10045.4.3.2" => &sig::ECDSA_P256_SHA256_ASN1,
                "1.2.840.10045.4.3.3" => &sig::ECDSA_P384_SHA384_ASN1,
                "1.2.840.10045.4.3.4" => &sig::ECDSA_P521_SHA512_ASN1,
                other => panic!("signature algorithm {other}"),
            };
        let key = UnparsedPublicKey::new(alg, &c.public_key().subject_public_key.data);
        key.verify(c.tbs_certificate.as_ref(), &c.signature_value.data)
            .unwrap();
    }

    #[test]
    fn ecdsa_signatures_are_der_and_verify_under_the_certificate_key() {
        for curve in [Curve::P256, Curve::P384, Curve::P521] {
            let s = signer(KeySpec::Ec { curve });
            let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
            params.is_ca = rcgen::IsCa::ExplicitNoCa;
            let cert = params.self_signed(&s).unwrap();
            verify_self_signed(cert.der());
        }
    }

    #[test]
    fn rsa_certificates_verify_and_p256k_is_refused() {
        let s = signer(KeySpec::Rsa {
            bits: 2048,
            public_exponent: 65_537,
        });
        let cert = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&s)
            .unwrap();
        verify_self_signed(cert.der());
        let k1 = software::generate(&KeySpec::Ec {
            curve: Curve::P256K,
        })
        .unwrap();
        assert!(matches!(
            Signer::new(Arc::new(LoadedKey::new(k1))),
            Err(EngineError::NotSupported(_))
        ));
    }

    #[test]
    fn a_key_that_cannot_sign_reports_its_own_error() {
        let soft = software::generate(&KeySpec::Ec { curve: Curve::P256 }).unwrap();
        let hsm = coffer_crypto::hsm::HsmKey {
            kty: coffer_crypto::KeyType::EcHsm,
            wrapped: Vec::new(),
            public: soft.public.clone(),
            bits: soft.bits,
        };
        let s = Signer::new(Arc::new(coffer_crypto::key::HsmHandle::new(None, hsm))).unwrap();
        let err = rcgen::CertificateParams::new(vec!["a.test".into()])
            .unwrap()
            .self_signed(&s)
            .unwrap_err();
        assert!(matches!(
            s.failure("self-signing", err),
            EngineError::Crypto(CryptoError::HsmUnavailable(_))
        ));
    }
}
