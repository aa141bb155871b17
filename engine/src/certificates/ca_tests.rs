//! The `Coffer` issuer: a root and an intermediate in the vault, leaves
//! issued at once with the chain, CRL and OCSP URLs; revocation, the CRL,
//! the OCSP responder (signature, status, nonce), CRL refresh and AutoRenew
//! through the CA.

use std::sync::atomic::Ordering;

use der::asn1::{Any, ObjectIdentifier, OctetString};
use der::{Decode as _, Encode as _};
use x509_cert::ext::Extension;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    TbsRequest, Version,
};

use super::super::ca::PkiUrls;
use super::super::issuers::IssuerParams;
use super::super::pending::CreateCertificate;
use super::super::pki::RevokeTarget;
use super::super::policy::{BasicConstraints, IssuerRef, KeyProps, X509Props, PEM};
use super::super::{import, x509, OpStatus, Policy};
use super::{create, fixture, T0};
use crate::error::EngineError;

const NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");

fn ca_policy(subject: &str, issuer: &str) -> CreateCertificate {
    CreateCertificate {
        policy: Policy {
            x509_props: Some(X509Props {
                subject: Some(subject.into()),
                validity_months: Some(120),
                basic_constraints: Some(BasicConstraints {
                    ca: true,
                    path_len_constraint: None,
                }),
                ..Default::default()
            }),
            key_props: Some(KeyProps {
                kty: Some("EC".into()),
                crv: Some("P-256".into()),
                exportable: Some(false),
                ..Default::default()
            }),
            issuer: Some(IssuerRef {
                name: Some(issuer.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn coffer_issuer(account: &str, url: &str) -> IssuerParams {
    IssuerParams {
        provider: Some("Coffer".into()),
        account_id: Some(account.into()),
        pki_url: Some(url.into()),
        ..Default::default()
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn sha1(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data)
        .as_ref()
        .to_vec()
}

/// An OCSP request for `serial` of `ca_der` with `nonce`.
fn ocsp_request(ca_der: &[u8], serial_hex: &str, nonce: &[u8]) -> Vec<u8> {
    let ca = x509_cert::Certificate::from_der(ca_der).unwrap();
    let tbs = ca.tbs_certificate;
    let key = tbs.subject_public_key_info.subject_public_key.raw_bytes();
    let id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: SHA1,
            parameters: Some(Any::null()),
        },
        issuer_name_hash: OctetString::new(sha1(&tbs.subject.to_der().unwrap())).unwrap(),
        issuer_key_hash: OctetString::new(sha1(key)).unwrap(),
        serial_number: SerialNumber::new(&hex::decode(serial_hex).unwrap()).unwrap(),
    };
    let nonce_value = OctetString::new(nonce).unwrap().to_der().unwrap();
    OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: id,
                single_request_extensions: None,
            }],
            request_extensions: Some(vec![Extension {
                extn_id: NONCE,
                critical: false,
                extn_value: OctetString::new(nonce_value).unwrap(),
            }]),
        },
        optional_signature: None,
    }
    .to_der()
    .unwrap()
}

/// The single status of an OCSP response, its signature checked with the
/// CA's P-256 key and its nonce compared.
fn ocsp_status(response: &[u8], ca_der: &[u8], nonce: &[u8]) -> CertStatus {
    let resp = OcspResponse::from_der(response).unwrap();
    assert_eq!(resp.response_status, OcspResponseStatus::Successful);
    let basic =
        BasicOcspResponse::from_der(resp.response_bytes.unwrap().response.as_bytes()).unwrap();
    let ca = x509_cert::Certificate::from_der(ca_der).unwrap();
    let key = ca
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes()
        .to_vec();
    let tbs = basic.tbs_response_data.to_der().unwrap();
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        key,
    )
    .verify(&tbs, basic.signature.raw_bytes())
    .expect("the OCSP response is signed by the CA");
    let echoed = basic.tbs_response_data.nonce().expect("nonce echoed");
    assert_eq!(echoed.0.as_bytes(), nonce);
    basic.tbs_response_data.responses[0].cert_status
}

#[tokio::test]
async fn a_coffer_ca_issues_revokes_and_answers_ocsp() {
    let f = fixture().await;
    let base = "https://pki.test/v1/pki/v/corp";
    // A certificate that is not a CA, or none at all, cannot back an issuer.
    f.certs
        .create("v", "plain", create("Self", None), None)
        .await
        .unwrap();
    for account in ["plain", "nothing"] {
        let err = f
            .certs
            .set_issuer("v", "corp", coffer_issuer(account, base), None)
            .await
            .unwrap_err();
        assert!(matches!(err, EngineError::BadParameter(_)), "{err}");
    }

    let op = f
        .certs
        .create(
            "v",
            "root-ca",
            ca_policy("CN=Test Root, O=Coffer", "Self"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(op.status, OpStatus::Completed);
    let root = f.certs.get("v", "root-ca", None).await.unwrap().cer;
    assert!(x509::info(&root).unwrap().is_ca);
    f.certs
        .set_issuer("v", "Corp", coffer_issuer("root-ca", base), None)
        .await
        .unwrap();

    // A leaf: issued at once, chain in the secret, CRL and OCSP embedded.
    let op = f
        .certs
        .create("v", "web", create("Corp", Some(PEM)), None)
        .await
        .unwrap();
    assert_eq!(op.status, OpStatus::Completed, "{:?}", op.error);
    let leaf = f.certs.get("v", "web", None).await.unwrap();
    assert!(x509::issued_by(&leaf.cer, &root).unwrap());
    let urls = PkiUrls::under(base);
    assert!(contains(&leaf.cer, &urls.crl), "CRL distribution point");
    assert!(contains(&leaf.cer, &urls.ocsp), "OCSP responder");
    assert!(!x509::info(&leaf.cer).unwrap().is_ca);
    let secret = f
        .secrets
        .get("v", "web", Some(&leaf.version))
        .await
        .unwrap();
    let (chain, key) = import::secret_parts(&secret.value, PEM).unwrap();
    assert_eq!(chain, vec![leaf.cer.clone(), root.clone()]);
    assert!(key.is_some());

    // An intermediate under Corp, and a leaf under it: chain of three.
    f.certs
        .create(
            "v",
            "inter-ca",
            ca_policy("CN=Test Intermediate", "corp"),
            None,
        )
        .await
        .unwrap();
    f.certs
        .set_issuer(
            "v",
            "sub",
            coffer_issuer("inter-ca", "https://pki.test/v1/pki/v/sub"),
            None,
        )
        .await
        .unwrap();
    f.certs
        .create("v", "api", create("sub", Some(PEM)), None)
        .await
        .unwrap();
    let api = f.certs.get("v", "api", None).await.unwrap();
    let inter = f.certs.get("v", "inter-ca", None).await.unwrap().cer;
    let secret = f.secrets.get("v", "api", Some(&api.version)).await.unwrap();
    let (chain, _) = import::secret_parts(&secret.value, PEM).unwrap();
    assert_eq!(chain, vec![api.cer.clone(), inter.clone(), root.clone()]);

    // OCSP before revocation: good.
    let serial = x509::info(&leaf.cer).unwrap().serial;
    let nonce = b"0123456789abcdef";
    let answer = f
        .certs
        .ocsp("v", "corp", &ocsp_request(&root, &serial, nonce))
        .await;
    assert!(matches!(
        ocsp_status(&answer, &root, nonce),
        CertStatus::Good(_)
    ));

    // Revoke by name; again answers the first revocation.
    let r = f
        .certs
        .revoke(
            "v",
            "corp",
            RevokeTarget::Certificate {
                name: "web".into(),
                version: None,
            },
            Some("keyCompromise"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.serial, serial);
    assert_eq!(r.reason, "keyCompromise");
    assert_eq!(r.crl_number, 1);
    let again = f
        .certs
        .revoke(
            "v",
            "corp",
            RevokeTarget::Serial(serial.to_uppercase()),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(again, r);
    // A certificate of another CA is not Corp's to revoke.
    let err = f
        .certs
        .revoke(
            "v",
            "corp",
            RevokeTarget::Certificate {
                name: "api".into(),
                version: None,
            },
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::BadParameter(_)), "{err}");

    // The CRL lists the serial, signed by the root.
    let crl = f.certs.crl("v", "corp").await.unwrap();
    let (_, parsed) = x509_parser::parse_x509_crl(&crl).unwrap();
    let listed: Vec<String> = parsed
        .iter_revoked_certificates()
        .map(|c| x509::serial_of_bytes(c.raw_serial()))
        .collect();
    assert_eq!(listed, vec![serial.clone()]);
    assert_eq!(
        parsed.crl_number().map(|n| n.to_string()),
        Some("1".to_owned())
    );
    let (_, root_parsed) = x509_parser::parse_x509_certificate(&root).unwrap();
    assert_eq!(parsed.issuer().as_raw(), root_parsed.subject().as_raw());

    // OCSP after: revoked; another CA's issuer hash: unknown.
    let answer = f
        .certs
        .ocsp("v", "corp", &ocsp_request(&root, &serial, nonce))
        .await;
    assert!(matches!(
        ocsp_status(&answer, &root, nonce),
        CertStatus::Revoked(_)
    ));
    let answer = f
        .certs
        .ocsp("v", "corp", &ocsp_request(&inter, &serial, nonce))
        .await;
    assert!(matches!(
        ocsp_status(&answer, &root, nonce),
        CertStatus::Unknown(_)
    ));
    // Garbage and unknown issuers get an OCSP error status.
    let bad = OcspResponse::from_der(&f.certs.ocsp("v", "corp", b"junk").await).unwrap();
    assert_eq!(bad.response_status, OcspResponseStatus::MalformedRequest);
    let none = f
        .certs
        .ocsp("v", "nobody", &ocsp_request(&root, &serial, nonce))
        .await;
    let none = OcspResponse::from_der(&none).unwrap();
    assert_eq!(none.response_status, OcspResponseStatus::Unauthorized);

    // The leader re-signs CRLs before they go stale, once.
    let later = T0 + 13 * 3600;
    f.now.store(later, Ordering::SeqCst);
    assert_eq!(
        f.certs.refresh_crls(later).await.unwrap(),
        2,
        "corp and sub"
    );
    assert_eq!(f.certs.refresh_crls(later).await.unwrap(), 0);
    let crl = f.certs.crl("v", "corp").await.unwrap();
    let (_, parsed) = x509_parser::parse_x509_crl(&crl).unwrap();
    assert_eq!(
        parsed.crl_number().map(|n| n.to_string()),
        Some("2".to_owned())
    );
    assert_eq!(parsed.iter_revoked_certificates().count(), 1);
}

#[tokio::test]
async fn a_coffer_issued_certificate_is_renewed_by_its_ca() {
    let f = fixture().await;
    f.certs
        .create("v", "root-ca", ca_policy("CN=Renewing Root", "Self"), None)
        .await
        .unwrap();
    f.certs
        .set_issuer(
            "v",
            "corp",
            coffer_issuer("root-ca", "https://pki.test/v1/pki/v/corp"),
            None,
        )
        .await
        .unwrap();
    let mut req = create("corp", None);
    req.policy.x509_props.as_mut().unwrap().validity_months = Some(1);
    f.certs.create("v", "svc", req, None).await.unwrap();
    let first = f.certs.get("v", "svc", None).await.unwrap();
    let due = (first.nbf + (first.exp - first.nbf) * 80 / 100) as u64;
    f.now.store(due, Ordering::SeqCst);
    assert_eq!(f.certs.run_lifetime_actions(due).await.unwrap(), 1);
    assert_eq!(f.certs.run_lifetime_actions(due + 60).await.unwrap(), 0);
    let second = f.certs.get("v", "svc", None).await.unwrap();
    assert_ne!(second.version, first.version);
    let root = f.certs.get("v", "root-ca", None).await.unwrap().cer;
    assert!(x509::issued_by(&second.cer, &root).unwrap());
    assert!(second.exp > first.exp);
}

#[tokio::test]
async fn a_ca_policy_needs_key_cert_sign() {
    let mut req = ca_policy("CN=No Sign", "Self");
    req.policy.x509_props.as_mut().unwrap().key_usage = Some(vec!["digitalSignature".into()]);
    let err = req.policy.completed(T0).unwrap_err();
    assert!(err.to_string().contains("keyCertSign"), "{err}");
    let ok = ca_policy("CN=Defaults", "Self")
        .policy
        .completed(T0)
        .unwrap();
    let x = ok.x509_props.unwrap();
    assert_eq!(x.ekus, Some(Vec::new()));
    assert!(x.key_usage.unwrap().contains(&"cRLSign".to_owned()));
}
