//! The proxy's TLS: a certificate given in the configuration, or one
//! issued by a host-local CA the agent creates once in its state
//! directory (applications trust that CA's certificate file only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use zeroize::Zeroizing;

use super::AgentConfig;
use crate::tls::{api_server_config, generate_ca, issue_cert, TlsMaterial};

/// The host-local CA certificate in `state_dir`.
pub(super) fn ca_path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent-ca.pem")
}

/// The rustls server config of the proxy listener.
pub(super) fn server_config(cfg: &AgentConfig) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let material = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => TlsMaterial::load(cert, cert, key)?,
        _ => host_local(&cfg.state_dir, &cfg.tls_names)?,
    };
    Ok(api_server_config(&material)?)
}

/// Creates the host-local CA once (its key stays in `state_dir`, 0600)
/// and issues the proxy a fresh certificate for the loopback names and
/// `names` at every start (so a changed name list takes effect).
fn host_local(state_dir: &Path, names: &[String]) -> anyhow::Result<TlsMaterial> {
    // Readable by the applications (they read the CA certificate); the CA
    // key inside is 0600.
    if !state_dir.is_dir() {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let ca = ca_path(state_dir);
    let ca_key = state_dir.join("agent-ca-key.pem");
    let (ca_pem, ca_key_pem) = if ca.exists() && ca_key.exists() {
        (
            std::fs::read_to_string(&ca)?,
            Zeroizing::new(std::fs::read_to_string(&ca_key)?),
        )
    } else {
        let (c, k) = generate_ca("Coffer agent host-local CA")?;
        crate::tls::write_private_file(&ca_key, k.as_bytes())?;
        crate::tls::write_public_file(&ca, c.as_bytes())?;
        (c, k)
    };
    let mut sans: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    sans.extend(names.iter().cloned());
    let (cert_pem, key_pem) = issue_cert(&ca_pem, &ca_key_pem, "coffer-agent", &sans)?;
    Ok(TlsMaterial {
        ca_pem,
        cert_pem,
        key_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_ca_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let names = vec!["vault.example.internal".to_owned()];
        let first = host_local(&state, &names).unwrap();
        let again = host_local(&state, &names).unwrap();
        assert_eq!(first.ca_pem, again.ca_pem);
        assert_ne!(first.cert_pem, again.cert_pem);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.join("agent-ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
