//! `coffer agent`: a process on an application host that makes the
//! cluster look like one always-available vault to local applications.
//!
//! - A Key Vault proxy on a loopback HTTPS address ([`proxy`]): any
//!   unchanged Azure SDK points its vault URL at it; the agent forwards to
//!   a healthy node, writes to the leader when known, and retries on
//!   another node (same request id) when one fails — the failover of
//!   [`coffer_client::Client`] and its [`coffer_client::routing`].
//! - The managed-identity endpoint ([`msi`]) so `ManagedIdentityCredential()`
//!   gets the agent's token, and optionally the agent's token attached to an
//!   application's unauthenticated requests (auto-auth).
//! - Local callers are authenticated by a per-application key ([`apps`]),
//!   or on the optional unix socket by their user id (`SO_PEERCRED`).
//! - An optional read cache of secrets ([`cache`]), off by default.
//!
//! Configuration: the `[agent]` table of a TOML file ([`AgentConfig`]).

pub mod apps;
pub mod cache;
mod msi;
mod proxy;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use coffer_client::auth::{AppCredential, Credential, TokenSource, VAULT_RESOURCE};
use coffer_client::{Client, ClientConfig};
use serde::Deserialize;

use apps::{App, AppConfig};

/// How often the agent asks every node for its health (and the leader).
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The configuration file: only its `[agent]` table is read.
#[derive(Debug, Deserialize)]
struct File {
    agent: AgentConfig,
}

/// `[agent]`: where the cluster is, where to listen, who the agent is and
/// which local applications may use it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Node API addresses (`https://host:port`).
    pub nodes: Vec<String>,
    /// CA certificate (PEM) of the nodes' API certificates.
    pub ca_cert: PathBuf,
    /// Loopback address of the HTTPS Key Vault proxy; none: no proxy.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// A unix socket the Key Vault proxy also listens on (plain HTTP; the
    /// caller's user id must be an application's `unix_uids`).
    #[serde(default)]
    pub unix_socket: Option<PathBuf>,
    /// Keep successful secret reads this many seconds (0: no cache). See
    /// [`cache`] and the README for when this is safe.
    #[serde(default)]
    pub secrets_cache_ttl_secs: u64,
    /// Loopback address of the managed-identity endpoint (plain HTTP, as
    /// App Service's); none: no endpoint.
    #[serde(default)]
    pub msi_listen: Option<SocketAddr>,
    /// Directory of the host-local CA and the proxy's certificate.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The proxy's certificate and key (PEM); default: issued by the
    /// host-local CA in `state_dir`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// Key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Extra DNS names of the proxy's generated certificate (besides
    /// localhost, 127.0.0.1 and ::1), e.g. `myvault.vault.internal` mapped
    /// to 127.0.0.1 to select a vault by name.
    #[serde(default)]
    pub tls_names: Vec<String>,
    /// Deadline of one attempt on one node, in seconds.
    #[serde(default = "default_attempt_timeout")]
    pub attempt_timeout_secs: u64,
    /// Deadline of one application request across every attempt, in seconds.
    #[serde(default = "default_request_deadline")]
    pub request_deadline_secs: u64,
    /// Largest request body forwarded, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// The agent's own identity; none: pass-through only.
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    /// The applications allowed to use the agent.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/coffer-agent")
}
fn default_attempt_timeout() -> u64 {
    5
}
fn default_request_deadline() -> u64 {
    30
}
fn default_max_body() -> usize {
    4 << 20
}

/// `[agent.identity]`: the Coffer application that is this host's identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// Tenant id (GUID) or name.
    pub tenant: String,
    /// Client id of the application.
    pub client_id: String,
    /// File holding a client secret of the application.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The machine certificate (PEM) registered on the application.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its PKCS#8 RSA key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl IdentityConfig {
    fn credential(&self) -> anyhow::Result<AppCredential> {
        let proof = match (&self.client_secret_file, &self.cert, &self.key) {
            (Some(secret), None, None) => Credential::from_secret_file(secret)?,
            (None, Some(cert), Some(key)) => Credential::from_certificate_files(cert, key)?,
            _ => bail!("[agent.identity] needs either client_secret_file or both cert and key"),
        };
        Ok(AppCredential::new(&self.tenant, &self.client_id, proof))
    }
}

impl AgentConfig {
    /// Reads the `[agent]` table of `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: File =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        file.agent.validate()?;
        Ok(file.agent)
    }

    fn validate(&self) -> anyhow::Result<()> {
        for addr in self.listen.iter().chain(&self.msi_listen) {
            if !addr.ip().is_loopback() {
                bail!("the agent serves on loopback addresses only (got {addr})");
            }
        }
        if self.listen.is_none() && self.msi_listen.is_none() && self.unix_socket.is_none() {
            bail!(
                "[agent] needs listen or unix_socket (the Key Vault proxy) or msi_listen (managed identity)"
            );
        }
        if self.msi_listen.is_some() && self.identity.is_none() {
            bail!("msi_listen needs [agent.identity]");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("tls_cert and tls_key go together");
        }
        Ok(())
    }
}

/// What the request handlers share.
pub(crate) struct Shared {
    /// Failover to the nodes (their breakers and leader live in it).
    client: Client,
    apps: Vec<App>,
    /// The agent's own identity: signs in through `client`, caches tokens.
    identity: Option<TokenSource>,
    /// Secret reads kept for a while, when configured.
    cache: Option<cache::ReadCache>,
    /// The proxy's TLS names (a resource naming one is the vault resource).
    names: Vec<String>,
    max_body: usize,
}

/// Errors the proxy answers with itself, in the Key Vault error format.
/// None carries a token, a key or a value.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The caller presented no known application key.
    #[error("the caller presented no valid application key (header x-coffer-agent-key)")]
    UnknownCaller,
    /// The request body is larger than `max_body_bytes`.
    #[error("the request body exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// The agent could not get its own token.
    #[error("the agent could not get its token: {0}")]
    NoToken(String),
    /// No node answered before the request's deadline.
    #[error("no cluster node answered: {0}")]
    NoNode(String),
    /// The request could not be forwarded at all.
    #[error("the request cannot be forwarded: {0}")]
    Forward(String),
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let (status, code, inner) = match &self {
            Self::UnknownCaller => (StatusCode::FORBIDDEN, "Forbidden", "AgentCallerUnknown"),
            Self::BodyTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLarge",
                "AgentBodyTooLarge",
            ),
            Self::NoToken(_) => (StatusCode::BAD_GATEWAY, "BadGateway", "AgentNoToken"),
            Self::NoNode(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "AgentNoNode",
            ),
            Self::Forward(_) => (StatusCode::BAD_REQUEST, "BadParameter", "AgentForward"),
        };
        let body = serde_json::json!({"error": {
            "code": code, "message": self.to_string(), "innererror": {"code": inner}
        }});
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// What [`run`] prints on stdout once it listens (for scripts and tests).
fn announce(line: &str) {
    println!("{line}");
}

/// Runs the agent with `cfg` until SIGINT/SIGTERM. `legacy_header` is the
/// `--header-file` of the command-line form: one more application whose
/// key is written there (or printed when no path is given).
pub async fn run(cfg: AgentConfig, legacy_header: Option<Option<PathBuf>>) -> anyhow::Result<()> {
    cfg.validate()?;
    let ca_pem = std::fs::read(&cfg.ca_cert)
        .with_context(|| format!("reading {}", cfg.ca_cert.display()))?;
    let client_cfg = ClientConfig {
        endpoints: coffer_client::parse_endpoints(&cfg.nodes.join(","))?,
        token: None,
        ca_pem: Some(ca_pem),
        timeout: Duration::from_secs(cfg.attempt_timeout_secs.max(1)),
        // One application request may take every attempt that fits.
        deadline: Some(Duration::from_secs(cfg.request_deadline_secs.max(1))),
        // The agent attaches its own token only to the requests of the
        // applications that asked for it (auto-auth), not to every one.
        credential: None,
        // HTTP/1.1 to the nodes: the Host header (the vault) reaches them
        // as the application sent it.
        http2: false,
        max_attempts: 0,
    };
    let client = Client::new(client_cfg)?;
    let mut apps = cfg
        .apps
        .iter()
        .map(App::load)
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(path) = legacy_header {
        let app = App::generated("identity-header", false);
        match &path {
            Some(path) => {
                app.write_key(path)?;
                announce(&format!("IDENTITY_HEADER_FILE={}", path.display()));
            }
            None => announce(&format!("IDENTITY_HEADER={}", app.key())),
        }
        apps.push(app);
    }
    if apps.is_empty() {
        bail!("no application may use the agent: add [[agent.apps]]");
    }
    let identity = match &cfg.identity {
        Some(id) => Some(TokenSource::new(client.clone(), id.credential()?)),
        None => None,
    };
    if let Some(identity) = &identity {
        // Fail at start, not at the first workload request, when the
        // cluster refuses the agent's credential.
        identity
            .token_for(VAULT_RESOURCE)
            .await
            .context("the cluster refused the agent's credential")?;
    }
    let shared = Arc::new(Shared {
        cache: (cfg.secrets_cache_ttl_secs > 0)
            .then(|| cache::ReadCache::new(Duration::from_secs(cfg.secrets_cache_ttl_secs))),
        client,
        apps,
        identity,
        names: cfg.tls_names.clone(),
        max_body: cfg.max_body_bytes,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(probe_nodes(shared.clone(), stop_rx.clone()));
    if let Some(addr) = cfg.msi_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let bound = listener.local_addr()?;
        announce(&format!("IDENTITY_ENDPOINT=http://{bound}/msi/token"));
        tracing::info!(addr = %bound, "managed identity endpoint listening");
        let router = Router::new()
            .route("/msi/token", get(msi::token))
            .with_state(shared.clone());
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = stop.changed().await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "managed identity endpoint failed");
            }
        });
    }
    if let Some(addr) = cfg.listen {
        let server_tls = tls::server_config(&cfg)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let bound = listener.local_addr()?;
        announce(&format!("AGENT_URL=https://{bound}"));
        if cfg.tls_cert.is_none() {
            announce(&format!(
                "AGENT_CA={}",
                tls::ca_path(&cfg.state_dir).display()
            ));
        }
        tracing::info!(addr = %bound, nodes = shared.client.endpoints().len(), "Key Vault proxy listening");
        let router = Router::new()
            .fallback(proxy::forward)
            .with_state(shared.clone());
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = stop.changed().await;
            };
            crate::listener::serve(
                listener,
                server_tls,
                router,
                crate::config::LimitsConfig::default(),
                shutdown,
            )
            .await;
        });
    }
    if let Some(path) = &cfg.unix_socket {
        let listener = unix_listener(path)?;
        announce(&format!("AGENT_SOCKET={}", path.display()));
        tracing::info!(path = %path.display(), "Key Vault proxy listening on a unix socket");
        let router = Router::new()
            .fallback(proxy::forward_unix)
            .with_state(shared.clone())
            .into_make_service_with_connect_info::<proxy::PeerCred>();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = stop.changed().await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "unix socket listener failed");
            }
        });
    }
    shutdown_signal().await;
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Binds the unix socket at `path` (a stale socket file from an earlier
/// run is replaced; any other file is not), reachable by every local user:
/// who may use it is decided per connection from the kernel's peer
/// credentials, not by the file's mode.
fn unix_listener(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!("{} exists and is not a socket", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(listener)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Asks every node for its health each [`PROBE_INTERVAL`] (see
/// [`Client::probe_nodes`]): breakers and the leader stay current even
/// while no application calls.
async fn probe_nodes(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        shared.client.probe_nodes().await;
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod config_tests;
