//! `coffer agent`: the command line of [`crate::agent`]. With `--config`
//! everything comes from the file's `[agent]` table; without it the flags
//! describe an agent that serves the managed-identity protocol (and, with
//! `--proxy-listen`, the Key Vault proxy) under the machine certificate.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use super::ClientArgs;
use crate::agent::{self, AgentConfig, IdentityConfig};

/// `coffer agent` arguments (the cluster comes from `--addr`/`--ca-cert`
/// unless `--config` is given).
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Agent configuration file (TOML, `[agent]` table); replaces every
    /// other flag.
    #[arg(long, conflicts_with_all = ["tenant", "client_id", "cert", "key", "header_file", "proxy_listen"])]
    pub config: Option<PathBuf>,
    /// Tenant id (GUID) or name.
    #[arg(long, env = "COFFER_TENANT", required_unless_present = "config")]
    pub tenant: Option<String>,
    /// Client id of the application that is this machine's identity.
    #[arg(long, required_unless_present = "config")]
    pub client_id: Option<String>,
    /// The machine certificate (PEM), registered with `identity app cert add`.
    #[arg(long, required_unless_present = "config")]
    pub cert: Option<PathBuf>,
    /// Its RSA private key (PKCS#8 PEM).
    #[arg(long, required_unless_present = "config")]
    pub key: Option<PathBuf>,
    /// Loopback address of the managed-identity endpoint (port 0: any
    /// free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Loopback address of the HTTPS Key Vault proxy (none: no proxy).
    #[arg(long)]
    pub proxy_listen: Option<SocketAddr>,
    /// Where to write the `IDENTITY_HEADER` value (mode 0600); without it,
    /// it is printed on stdout.
    #[arg(long)]
    pub header_file: Option<PathBuf>,
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run_agent(client_args: &ClientArgs, args: AgentArgs) -> anyhow::Result<()> {
    // Logs on stderr: stdout carries the lines scripts read
    // (IDENTITY_ENDPOINT=…, AGENT_URL=…). `COFFER_LOG` filters them.
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
    if let Some(path) = &args.config {
        return agent::run(AgentConfig::load(path)?, None).await;
    }
    let missing = |flag: &str| format!("{flag} is required without --config");
    let cfg = AgentConfig {
        nodes: client_args.addr.split(',').map(str::to_owned).collect(),
        ca_cert: client_args
            .ca_cert
            .clone()
            .context("a CA certificate is required: pass --ca-cert or set COFFER_CACERT")?,
        listen: args.proxy_listen,
        unix_socket: None,
        secrets_cache_ttl_secs: 0,
        msi_listen: Some(args.listen),
        state_dir: PathBuf::from("coffer-agent"),
        tls_cert: None,
        tls_key: None,
        tls_names: Vec::new(),
        attempt_timeout_secs: client_args.timeout.max(1),
        request_deadline_secs: 30,
        max_body_bytes: 4 << 20,
        identity: Some(IdentityConfig {
            tenant: args.tenant.context(missing("--tenant"))?,
            client_id: args.client_id.context(missing("--client-id"))?,
            client_secret_file: None,
            cert: Some(args.cert.context(missing("--cert"))?),
            key: Some(args.key.context(missing("--key"))?),
        }),
        apps: Vec::new(),
    };
    agent::run(cfg, Some(args.header_file)).await
}
