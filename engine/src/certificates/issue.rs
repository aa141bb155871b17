//! Making certificates: the X.509 parameters a policy asks for, the
//! self-signed certificate and the CSR (rcgen, signed through the handle
//! of the key the keys engine made, software or HSM), and the secret value
//! (PKCS#12 or PEM) that carries the certificate, its chain and — when
//! exportable — its private key.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber,
};
use zeroize::Zeroizing;

use super::policy::{Policy, PEM, PKCS12};
use super::signer::Signer;
use crate::error::EngineError;

/// Certificates start this long before they are made (clock skew), as
/// Key Vault's do.
pub const BACKDATE_SECS: u64 = 600;

/// The arcs of a dotted OID (`None` if it is not one).
pub fn oid_arcs(oid: &str) -> Option<Vec<u64>> {
    let arcs: Option<Vec<u64>> = oid.split('.').map(|a| a.parse().ok()).collect();
    arcs.filter(|a| a.len() >= 2)
}

fn bad(m: impl Into<String>) -> EngineError {
    EngineError::BadParameter(m.into())
}

pub(super) fn internal(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Crypto(coffer_crypto::CryptoError::Internal(format!("{what}: {e}")))
}

/// `CN=a, O=b` as a distinguished name.
fn distinguished_name(subject: &str) -> Result<DistinguishedName, EngineError> {
    let mut dn = DistinguishedName::new();
    for part in subject
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("The subject part {part:?} is not KEY=value")))?;
        let ty = match k.trim().to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "C" => DnType::CountryName,
            "L" => DnType::LocalityName,
            "ST" | "S" => DnType::StateOrProvinceName,
            "E" | "EMAIL" => DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1]),
            other => {
                return Err(bad(format!(
                    "The subject attribute {other} is not supported"
                )))
            }
        };
        dn.push(ty, v.trim());
    }
    Ok(dn)
}

fn ia5(v: &str) -> Result<rcgen::string::Ia5String, EngineError> {
    rcgen::string::Ia5String::try_from(v.to_owned())
        .map_err(|_| bad(format!("The subject alternative name {v:?} is not ASCII")))
}

fn time_of(secs: i64) -> Result<time::OffsetDateTime, EngineError> {
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| internal("date", e))
}

/// `now` plus `months` calendar months (clamped to the month's last day).
pub fn add_months(now: u64, months: u32) -> Result<u64, EngineError> {
    let t = time_of(now as i64)?;
    let total = i64::from(t.year()) * 12 + i64::from(u8::from(t.month()) - 1) + i64::from(months);
    let year = i32::try_from(total / 12).map_err(|e| internal("date", e))?;
    let month =
        time::Month::try_from(u8::try_from(total % 12 + 1).map_err(|e| internal("date", e))?)
            .map_err(|e| internal("date", e))?;
    let last = time::util::days_in_month(month, year);
    let date = time::Date::from_calendar_date(year, month, t.day().min(last))
        .map_err(|e| internal("date", e))?;
    Ok(date.with_time(t.time()).assume_utc().unix_timestamp() as u64)
}

/// The X.509 parameters of `policy` for a certificate made at `now`
/// (valid from `now - 600 s` for `validity_months`).
pub fn params_of(policy: &Policy, now: u64) -> Result<CertificateParams, EngineError> {
    let x = policy.x509_props.clone().unwrap_or_default();
    let mut p = CertificateParams::default();
    p.distinguished_name = distinguished_name(x.subject.as_deref().unwrap_or(""))?;
    let sans = x.sans.unwrap_or_default();
    for e in sans.emails.iter().flatten() {
        p.subject_alt_names.push(SanType::Rfc822Name(ia5(e)?));
    }
    for d in sans.dns_names.iter().flatten() {
        p.subject_alt_names.push(SanType::DnsName(ia5(d)?));
    }
    for u in sans.uris.iter().flatten() {
        p.subject_alt_names.push(SanType::URI(ia5(u)?));
    }
    for ip in sans.ip_addresses.iter().flatten() {
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| bad(format!("{ip:?} is not an IP address")))?;
        p.subject_alt_names.push(SanType::IpAddress(addr));
    }
    for upn in sans.upns.iter().flatten() {
        p.subject_alt_names.push(SanType::OtherName((
            vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
            rcgen::OtherNameValue::Utf8String(upn.clone()),
        )));
    }
    for ku in x.key_usage.iter().flatten() {
        p.key_usages.push(match ku.as_str() {
            "digitalSignature" => KeyUsagePurpose::DigitalSignature,
            "nonRepudiation" => KeyUsagePurpose::ContentCommitment,
            "keyEncipherment" => KeyUsagePurpose::KeyEncipherment,
            "dataEncipherment" => KeyUsagePurpose::DataEncipherment,
            "keyAgreement" => KeyUsagePurpose::KeyAgreement,
            "keyCertSign" => KeyUsagePurpose::KeyCertSign,
            "cRLSign" => KeyUsagePurpose::CrlSign,
            "encipherOnly" => KeyUsagePurpose::EncipherOnly,
            "decipherOnly" => KeyUsagePurpose::DecipherOnly,
            other => return Err(bad(format!("Key usage {other} is not valid"))),
        });
    }
    for eku in x.ekus.iter().flatten() {
        let arcs = oid_arcs(eku).ok_or_else(|| bad(format!("{eku} is not an OID")))?;
        p.extended_key_usages.push(match eku.as_str() {
            "1.3.6.1.5.5.7.3.1" => ExtendedKeyUsagePurpose::ServerAuth,
            "1.3.6.1.5.5.7.3.2" => ExtendedKeyUsagePurpose::ClientAuth,
            "1.3.6.1.5.5.7.3.3" => ExtendedKeyUsagePurpose::CodeSigning,
            "1.3.6.1.5.5.7.3.4" => ExtendedKeyUsagePurpose::EmailProtection,
            "1.3.6.1.5.5.7.3.8" => ExtendedKeyUsagePurpose::TimeStamping,
            "1.3.6.1.5.5.7.3.9" => ExtendedKeyUsagePurpose::OcspSigning,
            _ => ExtendedKeyUsagePurpose::Other(arcs),
        });
    }
    p.is_ca = match x.basic_constraints.as_ref().filter(|b| b.ca) {
        None => IsCa::ExplicitNoCa,
        Some(b) => IsCa::Ca(match b.path_len_constraint {
            Some(n) => rcgen::BasicConstraints::Constrained(n),
            None => rcgen::BasicConstraints::Unconstrained,
        }),
    };
    p.use_authority_key_identifier_extension = true;
    let start = now.saturating_sub(BACKDATE_SECS);
    p.not_before = time_of(start as i64)?;
    p.not_after = time_of(add_months(now, policy.validity_months())? as i64)?;
    let mut serial = coffer_crypto::software::random_bytes(16)?;
    if let Some(first) = serial.first_mut() {
        // A positive INTEGER of exactly 16 bytes.
        *first = (*first & 0x7f) | 0x40;
    }
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(p)
}

/// A self-signed certificate (DER) of `policy` signed by `key`.
pub(super) fn self_signed(policy: &Policy, key: &Signer, now: u64) -> Result<Vec<u8>, EngineError> {
    let cert = params_of(policy, now)?
        .self_signed(key)
        .map_err(|e| key.failure("self-signing", e))?;
    Ok(cert.der().to_vec())
}

/// A PKCS#10 request (DER) of `policy` signed by `key`.
pub(super) fn csr(policy: &Policy, key: &Signer, now: u64) -> Result<Vec<u8>, EngineError> {
    let mut params = params_of(policy, now)?;
    // The CA chooses these; a request cannot carry them.
    params.serial_number = None;
    params.use_authority_key_identifier_extension = false;
    let req = params
        .serialize_request(key)
        .map_err(|e| key.failure("CSR", e))?;
    Ok(req.der().to_vec())
}

/// PEM armour of `der` under `label`, 64-column lines, LF endings.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The secret value of a certificate: base64 PKCS#12 without password, or
/// PEM (PKCS#8 key first, then the leaf and its chain). The private key is
/// left out when `pkcs8` is `None` (not exportable).
pub fn secret_value(
    content_type: &str,
    pkcs8: Option<&[u8]>,
    chain: &[Vec<u8>],
) -> Result<Zeroizing<String>, EngineError> {
    match content_type {
        PEM => {
            let mut out = Zeroizing::new(String::new());
            if let Some(k) = pkcs8 {
                out.push_str(&pem_block("PRIVATE KEY", k));
            }
            for c in chain {
                out.push_str(&pem_block("CERTIFICATE", c));
            }
            Ok(out)
        }
        PKCS12 => {
            let pfx = Zeroizing::new(pkcs12(pkcs8, chain)?);
            Ok(Zeroizing::new(STANDARD.encode(pfx.as_slice())))
        }
        other => Err(bad(format!("Content type {other} is not supported"))),
    }
}

/// A PKCS#12 file without password holding `chain` and the key.
fn pkcs12(pkcs8: Option<&[u8]>, chain: &[Vec<u8>]) -> Result<Vec<u8>, EngineError> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKeyChain};
    let certs = chain
        .iter()
        .map(|d| Certificate::from_der(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| internal("PKCS#12 certificate", e))?;
    let mut ks = KeyStore::new();
    match pkcs8 {
        Some(k) => {
            let key =
                p12_keystore::PrivateKey::from_der(k).map_err(|e| internal("PKCS#12 key", e))?;
            let id = coffer_crypto::software::random_bytes(20)?;
            ks.add_entry(
                "1",
                KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(id, key, certs)),
            );
        }
        None => {
            for (i, c) in certs.into_iter().enumerate() {
                ks.add_entry(&(i + 1).to_string(), KeyStoreEntry::Certificate(c));
            }
        }
    }
    ks.writer("").write().map_err(|e| internal("PKCS#12", e))
}
