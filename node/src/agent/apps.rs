//! Local callers: every application on the host that may use the agent
//! has its own key, sent in a header (`x-coffer-agent-key` to the proxy,
//! `X-IDENTITY-HEADER` to the managed-identity endpoint). Keys live in
//! files readable by that application only; the agent creates a missing
//! one (32 random bytes, base64url, mode 0600). On the agent's unix socket
//! an application is known by the kernel instead: the connecting process's
//! user id (`SO_PEERCRED`) must be one of its `unix_uids`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Header carrying an application's key on proxied requests.
pub const APP_KEY_HEADER: &str = "x-coffer-agent-key";

/// `[[agent.apps]]`: one application allowed to use the agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Name, for the logs.
    pub name: String,
    /// File holding the application's key; created when missing.
    pub key_file: PathBuf,
    /// Attach the agent's own token to this application's requests that
    /// carry no `Authorization` (auto-auth for clients without any
    /// credential). Off for Azure SDK clients: their first request is an
    /// unauthenticated probe for the 401 challenge, without its body.
    #[serde(default)]
    pub attach_token: bool,
    /// User ids whose processes are this application on the agent's unix
    /// socket (checked with the kernel's peer credentials, no key needed).
    #[serde(default)]
    pub unix_uids: Vec<u32>,
}

/// An application and its key.
pub struct App {
    /// Name, for the logs.
    pub name: String,
    /// Whether requests without `Authorization` get the agent's token.
    pub attach_token: bool,
    /// User ids allowed on the unix socket as this application.
    pub unix_uids: Vec<u32>,
    key: Zeroizing<String>,
}

impl App {
    /// An application with a fresh random key (not written anywhere).
    pub fn generated(name: &str, attach_token: bool) -> Self {
        Self {
            name: name.to_owned(),
            attach_token,
            unix_uids: Vec::new(),
            key: Zeroizing::new(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())),
        }
    }

    /// Reads the application's key file, creating it first when missing.
    pub fn load(cfg: &AppConfig) -> anyhow::Result<Self> {
        let path = &cfg.key_file;
        if !path.exists() {
            let mut app = Self::generated(&cfg.name, cfg.attach_token);
            app.unix_uids = cfg.unix_uids.clone();
            app.write_key(path)?;
            return Ok(app);
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        );
        let key = text.trim();
        anyhow::ensure!(
            key.len() >= 16,
            "the key in {} is shorter than 16 characters",
            path.display()
        );
        Ok(Self {
            name: cfg.name.clone(),
            attach_token: cfg.attach_token,
            unix_uids: cfg.unix_uids.clone(),
            key: Zeroizing::new(key.to_owned()),
        })
    }

    /// Writes the key to `path` (mode 0600).
    pub fn write_key(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        crate::files::write_private_file(path, self.key.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The key (printed once for the legacy `IDENTITY_HEADER` output).
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The application whose key is `given`, compared in constant time with
/// every key (so the answer time does not tell which prefix matched).
pub fn find<'a>(apps: &'a [App], given: Option<&[u8]>) -> Option<&'a App> {
    let given = given?;
    let mut found = None;
    for app in apps {
        if bool::from(app.key.as_bytes().ct_eq(given)) {
            found = Some(app);
        }
    }
    found
}

/// The application the process with user id `uid` is, on the unix socket.
/// A uid listed by two applications is refused (which one would be a guess).
pub fn find_uid(apps: &[App], uid: u32) -> Option<&App> {
    let mut matching = apps.iter().filter(|a| a.unix_uids.contains(&uid));
    let first = matching.next()?;
    matching.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_private_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AppConfig {
            name: "payments".into(),
            key_file: dir.path().join("keys/payments.key"),
            attach_token: true,
            unix_uids: vec![1000],
        };
        let first = App::load(&cfg).unwrap();
        let again = App::load(&cfg).unwrap();
        assert_eq!(first.key(), again.key());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cfg.key_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = App::generated("other", false);
        let apps = vec![first, other];
        let key = apps[1].key().to_owned();
        assert_eq!(find(&apps, Some(key.as_bytes())).unwrap().name, "other");
        assert!(find(&apps, Some(b"wrong")).is_none());
        assert!(find(&apps, None).is_none());
        assert_eq!(find_uid(&apps, 1000).unwrap().name, "payments");
        assert!(find_uid(&apps, 0).is_none());
    }

    #[test]
    fn short_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "short\n").unwrap();
        let cfg = AppConfig {
            name: "a".into(),
            key_file: path,
            attach_token: false,
            unix_uids: Vec::new(),
        };
        assert!(App::load(&cfg).is_err());
    }
}
