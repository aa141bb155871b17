//! Reading certificates (x509-parser): the facts a bundle shows, the
//! policy derived from an imported certificate, and whether a
//! certificate's public key is a given key's.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey as SpkiKey;

use super::policy::{
    Action, IssuerRef, KeyProps, LifetimeAction, Policy, Sans, SecretProps, Trigger, X509Props,
    ISSUER_UNKNOWN,
};
use crate::error::EngineError;
use coffer_crypto::PublicKey;

/// What a certificate says about itself.
#[derive(Clone, Debug)]
pub struct CertInfo {
    /// Not-before, Unix seconds.
    pub nbf: i64,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Subject DN (`CN=…, O=…`).
    pub subject: String,
    /// Subject alternative names.
    pub sans: Sans,
    /// Extended key usages (OIDs).
    pub ekus: Vec<String>,
    /// Key usages (Key Vault spelling).
    pub key_usage: Vec<String>,
    /// `RSA` or `EC`.
    pub kty: &'static str,
    /// RSA modulus bits.
    pub key_size: Option<u32>,
    /// basicConstraints says CA.
    pub is_ca: bool,
    /// Serial number, lowercase hex of its big-endian bytes.
    pub serial: String,
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, EngineError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(EngineError::BadParameter(
            "Property x5c has invalid value X5C must has at least one valid item".into(),
        )),
    }
}

/// `x5t`: base64url of the SHA-1 of the DER, unpadded.
pub fn x5t(der: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// The facts of `der`.
pub fn info(der: &[u8]) -> Result<CertInfo, EngineError> {
    let cert = parse(der)?;
    let mut sans = Sans::default();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans
                    .dns_names
                    .get_or_insert_with(Vec::new)
                    .push((*d).into()),
                GeneralName::RFC822Name(e) => {
                    sans.emails.get_or_insert_with(Vec::new).push((*e).into())
                }
                GeneralName::URI(u) => sans.uris.get_or_insert_with(Vec::new).push((*u).into()),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        16 => <[u8; 16]>::try_from(*b)
                            .ok()
                            .map(|a| std::net::IpAddr::from(a).to_string()),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.ip_addresses.get_or_insert_with(Vec::new).push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    let mut ekus = Vec::new();
    if let Ok(Some(ext)) = cert.extended_key_usage() {
        let e = ext.value;
        for (on, oid) in [
            (e.server_auth, "1.3.6.1.5.5.7.3.1"),
            (e.client_auth, "1.3.6.1.5.5.7.3.2"),
            (e.code_signing, "1.3.6.1.5.5.7.3.3"),
            (e.email_protection, "1.3.6.1.5.5.7.3.4"),
            (e.time_stamping, "1.3.6.1.5.5.7.3.8"),
            (e.ocsp_signing, "1.3.6.1.5.5.7.3.9"),
        ] {
            if on {
                ekus.push(oid.to_owned());
            }
        }
        ekus.extend(e.other.iter().map(ToString::to_string));
    }
    let mut key_usage = Vec::new();
    if let Ok(Some(ext)) = cert.key_usage() {
        let k = ext.value;
        for (on, name) in [
            (k.digital_signature(), "digitalSignature"),
            (k.non_repudiation(), "nonRepudiation"),
            (k.key_encipherment(), "keyEncipherment"),
            (k.data_encipherment(), "dataEncipherment"),
            (k.key_agreement(), "keyAgreement"),
            (k.key_cert_sign(), "keyCertSign"),
            (k.crl_sign(), "cRLSign"),
            (k.encipher_only(), "encipherOnly"),
            (k.decipher_only(), "decipherOnly"),
        ] {
            if on {
                key_usage.push(name.to_owned());
            }
        }
    }
    let (kty, key_size) = match cert.public_key().parsed() {
        Ok(SpkiKey::RSA(r)) => ("RSA", Some(r.key_size() as u32)),
        Ok(SpkiKey::EC(_)) => ("EC", None),
        _ => {
            return Err(EngineError::BadParameter(
                "The certificate's key type is not supported: use RSA or EC".into(),
            ))
        }
    };
    Ok(CertInfo {
        nbf: cert.validity().not_before.timestamp(),
        exp: cert.validity().not_after.timestamp(),
        subject: cert.subject().to_string(),
        sans,
        ekus,
        key_usage,
        kty,
        key_size,
        is_ca: matches!(cert.basic_constraints(), Ok(Some(b)) if b.value.ca),
        serial: hex::encode(strip(cert.raw_serial())),
    })
}

/// Whether `der` names `ca_der`'s subject as its issuer (and is not
/// `ca_der` itself).
pub fn issued_by(der: &[u8], ca_der: &[u8]) -> Result<bool, EngineError> {
    let cert = parse(der)?;
    let ca = parse(ca_der)?;
    Ok(der != ca_der && cert.issuer().as_raw() == ca.subject().as_raw())
}

/// The subject key identifier of `der`, if it has one.
pub fn subject_key_id(der: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
    use x509_parser::extensions::ParsedExtension;
    let cert = parse(der)?;
    Ok(cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        }))
}

/// Canonical form of a serial number: lowercase hex of its big-endian
/// bytes without leading zeros (`None` if `hex` is not hexadecimal).
pub fn canonical_serial(hex_serial: &str) -> Option<String> {
    let digits: String = hex_serial
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect();
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes = hex::decode(padded).ok()?;
    let s = hex::encode(strip(&bytes));
    (!s.is_empty()).then_some(s)
}

/// The canonical serial of big-endian `bytes` (an INTEGER's content).
pub fn serial_of_bytes(bytes: &[u8]) -> String {
    hex::encode(strip(bytes))
}

fn strip(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[first..]
}

/// Whether the public key of `der` is `key`.
pub fn public_matches(der: &[u8], key: &PublicKey) -> Result<bool, EngineError> {
    let cert = parse(der)?;
    Ok(match (cert.public_key().parsed(), key) {
        (Ok(SpkiKey::RSA(r)), PublicKey::Rsa { n, e }) => {
            strip(r.modulus) == strip(n) && strip(r.exponent) == strip(e)
        }
        (Ok(SpkiKey::EC(p)), PublicKey::Ec { x, y, .. }) => {
            let mut point = vec![4u8];
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            p.data() == point.as_slice()
        }
        _ => false,
    })
}

/// The policy of an imported certificate: what it says about itself,
/// issuer `Unknown`, EmailContacts at 80 %, exportability and content type
/// from the policy sent with it.
pub fn derived_policy(info: &CertInfo, sent: Option<&Policy>) -> Policy {
    let sent_kp = sent.and_then(|p| p.key_props.clone()).unwrap_or_default();
    let months = ((info.exp - info.nbf).max(0) / (30 * 86_400)).clamp(1, 1200) as u32;
    Policy {
        key_props: Some(KeyProps {
            exportable: Some(sent_kp.exportable.unwrap_or(true)),
            kty: Some(info.kty.into()),
            key_size: info.key_size,
            reuse_key: Some(sent_kp.reuse_key.unwrap_or(false)),
            crv: None,
        }),
        secret_props: Some(SecretProps {
            content_type: Some(
                sent.map_or(super::policy::PKCS12, Policy::content_type)
                    .to_owned(),
            ),
        }),
        x509_props: Some(X509Props {
            subject: Some(info.subject.clone()),
            ekus: Some(info.ekus.clone()),
            sans: Some(info.sans.clone()),
            key_usage: Some(info.key_usage.clone()),
            validity_months: Some(months),
            basic_constraints: info.is_ca.then_some(super::policy::BasicConstraints {
                ca: true,
                path_len_constraint: None,
            }),
        }),
        lifetime_actions: Some(vec![LifetimeAction {
            trigger: Trigger {
                lifetime_percentage: Some(80),
                days_before_expiry: None,
            },
            action: Action {
                action_type: "EmailContacts".into(),
            },
        }]),
        issuer: Some(IssuerRef {
            name: Some(ISSUER_UNKNOWN.into()),
            ..Default::default()
        }),
        attributes: None,
    }
}
