//! Reading what an import brings: base64 of a PFX (with or without
//! password), base64 of PEM text (what the SDKs send), or raw PEM text
//! (what azure-cli sends); PEM holds the certificates and a PKCS#8 key.
//! Every failure is a 400 with Key Vault's message, before anything is
//! stored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::error::EngineError;

/// Longest import password.
pub const MAX_PASSWORD_CHARS: usize = 200;

const PFX_ERROR: &str = "The specified PKCS#12 X.509 certificate content can not be read. Please check if certificate is in valid PKCS#12 format.";
const PEM_NO_KEY: &str = "Private key is not specified in the specified X.509 PEM certificate content. Please specify private key in the X.509 PEM certificate content.";
const PEM_ERROR: &str = "The specified PEM X.509 certificate content is in an unexpected format. Check if certificate is in valid PEM format.";

/// The certificates (leaf first) and PKCS#8 key of an import.
pub struct Imported {
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// PKCS#8 DER of the private key.
    pub key: Zeroizing<Vec<u8>>,
}

fn bad(m: &str) -> EngineError {
    EngineError::BadParameter(m.to_owned())
}

/// Reads `value` as PEM (`pem`: the policy's content type says so) or PFX.
pub fn read(value: &str, password: Option<&str>, pem: bool) -> Result<Imported, EngineError> {
    if password.is_some_and(|p| p.chars().count() > MAX_PASSWORD_CHARS) {
        return Err(bad("The password is longer than 200 characters"));
    }
    let trimmed = value.trim();
    let bytes = if trimmed.starts_with("-----BEGIN") {
        Zeroizing::new(trimmed.as_bytes().to_vec())
    } else {
        let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
        Zeroizing::new(
            STANDARD
                .decode(compact.as_bytes())
                .map_err(|_| bad(if pem { PEM_ERROR } else { PFX_ERROR }))?,
        )
    };
    if pem || bytes.starts_with(b"-----BEGIN") {
        read_pem(&bytes)
    } else {
        read_pfx(&bytes, password.unwrap_or(""))
    }
}

fn read_pem(bytes: &[u8]) -> Result<Imported, EngineError> {
    let mut chain = Vec::new();
    let mut key = None;
    for block in x509_parser::pem::Pem::iter_from_buffer(bytes) {
        let block = block.map_err(|_| bad(PEM_ERROR))?;
        match block.label.as_str() {
            "CERTIFICATE" => chain.push(block.contents),
            "PRIVATE KEY" => key = Some(Zeroizing::new(block.contents)),
            "ENCRYPTED PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                return Err(EngineError::BadParameter(format!(
                    "{PEM_ERROR} The private key must be an unencrypted PKCS#8 PRIVATE KEY block."
                )))
            }
            _ => return Err(bad(PEM_ERROR)),
        }
    }
    if chain.is_empty() {
        return Err(bad(PEM_ERROR));
    }
    let key = key.ok_or_else(|| bad(PEM_NO_KEY))?;
    Ok(Imported { chain, key })
}

fn read_pfx(bytes: &[u8], password: &str) -> Result<Imported, EngineError> {
    use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
    let ks = KeyStore::from_pkcs12(bytes, password, Pkcs12ImportPolicy::Relaxed)
        .map_err(|_| bad(PFX_ERROR))?;
    let (_, chain) = ks.private_key_chain().ok_or_else(|| bad(PFX_ERROR))?;
    let certs: Vec<Vec<u8>> = chain.certs().iter().map(|c| c.as_der().to_vec()).collect();
    if certs.is_empty() {
        return Err(bad(PFX_ERROR));
    }
    Ok(Imported {
        chain: certs,
        key: Zeroizing::new(chain.key().as_der().to_vec()),
    })
}

/// A certificate's secret value converted to `to` (`outContentType` of a
/// secret read): PEM ↔ PKCS#12, private key and chain kept.
pub fn convert(value: &str, from: &str, to: &str) -> Result<Zeroizing<String>, EngineError> {
    if from == to {
        return Ok(Zeroizing::new(value.to_owned()));
    }
    let (chain, key) = secret_parts(value, from)?;
    super::issue::secret_value(to, key.as_deref().map(Vec::as_slice), &chain)
}

/// The certificates (leaf first) and, when present, the PKCS#8 key of a
/// certificate's secret value of `content_type`.
pub fn secret_parts(value: &str, content_type: &str) -> Result<SecretParts, EngineError> {
    use super::policy::PEM;
    if content_type == PEM {
        let mut chain = Vec::new();
        let mut key = None;
        for block in x509_parser::pem::Pem::iter_from_buffer(value.as_bytes()) {
            let block = block.map_err(|_| bad(PEM_ERROR))?;
            match block.label.as_str() {
                "CERTIFICATE" => chain.push(block.contents),
                "PRIVATE KEY" => key = Some(Zeroizing::new(block.contents)),
                _ => {}
            }
        }
        return Ok((chain, key));
    }
    let der = Zeroizing::new(STANDARD.decode(value.trim()).map_err(|_| bad(PFX_ERROR))?);
    let ks =
        p12_keystore::KeyStore::from_pkcs12(&der, "", p12_keystore::Pkcs12ImportPolicy::Relaxed)
            .map_err(|_| bad(PFX_ERROR))?;
    Ok(match ks.private_key_chain() {
        Some((_, c)) => (
            c.certs().iter().map(|c| c.as_der().to_vec()).collect(),
            Some(Zeroizing::new(c.key().as_der().to_vec())),
        ),
        None => {
            let certs = ks
                .entries()
                .filter_map(|(_, e)| match e {
                    p12_keystore::KeyStoreEntry::Certificate(c) => Some(c.as_der().to_vec()),
                    _ => None,
                })
                .collect();
            (certs, None)
        }
    })
}

/// What a certificate's secret holds: DER certificates (leaf first) and the
/// PKCS#8 key when exportable.
pub type SecretParts = (Vec<Vec<u8>>, Option<Zeroizing<Vec<u8>>>);
