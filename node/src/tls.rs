//! TLS: certificate generation (cluster CA, node certs) and rustls/tonic configs.
//!
//! One CA per cluster signs every node certificate. Node certificates carry
//! both the serverAuth and clientAuth extended key usages because the same
//! identity serves the API, serves gRPC and dials peers (mutual TLS).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use crate::files;

/// Years a node certificate stays valid.
const NODE_CERT_YEARS: i32 = 5;
/// Years the cluster CA stays valid.
const CA_YEARS: i32 = 20;

/// Why TLS material could not be produced or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A PEM document could not be parsed.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected the material.
    #[error("TLS configuration failed: {0}")]
    Config(#[from] rustls::Error),
}

/// The PEM documents a node needs: the cluster CA, its certificate and key.
#[derive(Clone)]
pub struct TlsMaterial {
    /// Cluster CA certificate (trust anchor for peers).
    pub ca_pem: String,
    /// This node's certificate chain.
    pub cert_pem: String,
    /// This node's private key.
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Reads the three PEM files.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            ca_pem: read_text(ca)?,
            cert_pem: read_text(cert)?,
            key_pem: Zeroizing::new(read_text(key)?),
        })
    }
}

/// Where [`ensure_dev_tls`] put the files.
#[derive(Clone, Debug)]
pub struct TlsPaths {
    /// CA certificate.
    pub ca: PathBuf,
    /// Node certificate.
    pub cert: PathBuf,
    /// Node private key.
    pub key: PathBuf,
}

fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn current_year() -> i32 {
    let secs = crate::engine::clock::now_secs();
    // Average Gregorian year; off by at most a day around New Year, and
    // validity starts on Jan 1 of the year before to absorb that and skew.
    1970 + (secs / 31_556_952) as i32
}

fn set_validity(params: &mut CertificateParams, years: i32) {
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

/// Creates a self-signed cluster CA. Returns (certificate PEM, key PEM).
pub fn generate_ca(common_name: &str) -> Result<(String, Zeroizing<String>), TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_YEARS);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_pem())))
}

/// Issues a node certificate signed by the CA, valid for TLS server and
/// client authentication. `sans` are DNS names or IP addresses (parsed as
/// IP SANs when they parse as one). Returns (certificate PEM, key PEM).
pub fn issue_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    name: &str,
    sans: &[String],
) -> Result<(String, Zeroizing<String>), TlsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, NODE_CERT_YEARS);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_pem())))
}

fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(format!("certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("no certificate found".into()));
    }
    Ok(certs)
}

fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    // The error text of a key parse never includes key bytes.
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError::Pem(format!("private key: {e}")))
}

/// rustls server config for the HTTPS API: ALPN h2 and http/1.1, no client
/// certificates (clients authenticate with tokens).
pub fn api_server_config(m: &TlsMaterial) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(parse_certs(&m.cert_pem)?, parse_key(&m.key_pem)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// tonic server TLS for the cluster port: a client certificate signed by the
/// cluster CA is required (mutual TLS).
pub fn grpc_server_tls(m: &TlsMaterial) -> tonic::transport::ServerTlsConfig {
    use tonic::transport::{Certificate, Identity};
    tonic::transport::ServerTlsConfig::new()
        .identity(Identity::from_pem(&m.cert_pem, m.key_pem.as_bytes()))
        .client_ca_root(Certificate::from_pem(&m.ca_pem))
        .client_auth_optional(false)
}

/// tonic client TLS for dialing a peer: trusts only the cluster CA, presents
/// this node's certificate, and verifies the peer against `domain` (the host
/// part of its cluster address; an IP address is matched against IP SANs).
pub fn grpc_client_tls(m: &TlsMaterial, domain: &str) -> tonic::transport::ClientTlsConfig {
    use tonic::transport::{Certificate, Identity};
    tonic::transport::ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&m.ca_pem))
        .identity(Identity::from_pem(&m.cert_pem, m.key_pem.as_bytes()))
        .domain_name(domain)
}

/// Writes `contents` to `path`, readable by the owner only (for keys).
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    files::write_private_file(path, contents).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a public file (certificates): 0644 whatever the umask.
pub fn write_public_file(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    files::write_public_file(path, contents).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates a development CA and node certificate in `dir` unless they
/// already exist (SANs localhost, 127.0.0.1, ::1).
pub fn ensure_dev_tls(dir: &Path) -> Result<TlsPaths, TlsError> {
    let paths = TlsPaths {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node-key.pem"),
    };
    let ca_key_path = dir.join("ca-key.pem");
    if paths.ca.exists() && paths.cert.exists() && paths.key.exists() {
        return Ok(paths);
    }
    files::create_private_dir(dir).map_err(|source| TlsError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let (ca_pem, ca_key) = if paths.ca.exists() && ca_key_path.exists() {
        (
            read_text(&paths.ca)?,
            Zeroizing::new(read_text(&ca_key_path)?),
        )
    } else {
        let (c, k) = generate_ca("Coffer development CA")?;
        write_public_file(&paths.ca, c.as_bytes())?;
        write_private_file(&ca_key_path, k.as_bytes())?;
        (c, k)
    };
    let sans = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let (cert, key) = issue_cert(&ca_pem, &ca_key, "coffer-node", &sans)?;
    write_public_file(&paths.cert, cert.as_bytes())?;
    write_private_file(&paths.key, key.as_bytes())?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(sans: &[&str]) -> TlsMaterial {
        let (ca, ca_key) = generate_ca("test CA").unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let (cert, key) = issue_cert(&ca, &ca_key, "n1", &sans).unwrap();
        TlsMaterial {
            ca_pem: ca,
            cert_pem: cert,
            key_pem: key,
        }
    }

    #[test]
    fn issued_cert_has_both_ekus_and_ip_san() {
        let m = material(&["127.0.0.1", "node1.local"]);
        let der = parse_certs(&m.cert_pem).unwrap().remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|n| format!("{n:?}")).collect();
        assert!(names.iter().any(|n| n.contains("IPAddress")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("node1.local")), "{names:?}");
    }

    #[test]
    fn node_cert_verifies_against_its_ca_only() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let m = material(&["127.0.0.1"]);
        let other = material(&["127.0.0.1"]);
        let verifier = |ca: &str| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(parse_certs(ca).unwrap().remove(0)).unwrap();
            rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap()
        };
        let cert = parse_certs(&m.cert_pem).unwrap().remove(0);
        let now = rustls::pki_types::UnixTime::now();
        assert!(verifier(&m.ca_pem)
            .verify_client_cert(&cert, &[], now)
            .is_ok());
        assert!(verifier(&other.ca_pem)
            .verify_client_cert(&cert, &[], now)
            .is_err());
    }

    #[test]
    fn api_config_advertises_h2_and_http11() {
        let cfg = api_server_config(&material(&["localhost"])).unwrap();
        assert_eq!(
            cfg.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn dev_tls_is_created_once_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = ensure_dev_tls(dir.path()).unwrap();
        let first = std::fs::read_to_string(&p.cert).unwrap();
        let again = ensure_dev_tls(dir.path()).unwrap();
        assert_eq!(first, std::fs::read_to_string(&again.cert).unwrap());
        TlsMaterial::load(&p.ca, &p.cert, &p.key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
