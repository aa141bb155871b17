//! The `coffer` binary: the server and the operator/secret CLI.

mod cpu;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use coffer::cli::{self, ClientArgs, OperatorCommand, SecretCommand};
use coffer::config::Config;
use coffer::server::{self, DevOptions, Server};

/// Coffer: a self-hosted, Raft-replicated key vault speaking the Azure Key Vault API.
#[derive(Parser)]
#[command(name = "coffer", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Server(ServerArgs),
    /// Operate the cluster: init, unseal, seal, status, raft, vaults, tls.
    Operator {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: OperatorCli,
    },
    /// Manage secrets through the Key Vault API.
    Secret {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Manage the tenant's applications, users, groups and signing keys.
    Identity {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: cli::IdentityCommand,
    },
    /// Serve the managed-identity protocol to workloads on this host,
    /// signing in to the cluster with the machine certificate.
    Agent {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: cli::AgentArgs,
    },
    /// Load-test a cluster (or a comparison peer) and report throughput and latency.
    Bench {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: cli::BenchArgs,
    },
}

#[derive(Subcommand)]
enum OperatorCli {
    /// Create the cluster CA and node certificates.
    Tls(cli::tls::TlsArgs),
    #[command(flatten)]
    Remote(OperatorCommand),
}

#[derive(Args)]
struct ServerArgs {
    /// Single node, embedded store, auto-initialised and auto-unsealed, TLS
    /// from a generated CA. For development only.
    #[arg(long, conflicts_with = "config")]
    dev: bool,
    /// Node configuration file (TOML).
    #[arg(long, required_unless_present = "dev")]
    config: Option<PathBuf>,
    /// Data directory of the dev node.
    #[arg(long, default_value = "coffer-dev")]
    data_dir: PathBuf,
    /// HTTPS API address of the dev node.
    #[arg(long, default_value = "127.0.0.1:8443")]
    api_addr: SocketAddr,
    /// gRPC cluster address of the dev node.
    #[arg(long, default_value = "127.0.0.1:8444")]
    cluster_addr: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    // Before anything can touch AES: refuse a CPU lacking compiled-in features.
    cpu::refuse_unsupported_cpu();
    // Whatever umask was inherited, nothing this process creates is
    // readable by others unless given an explicit mode.
    coffer::files::restrict_umask();
    let cli = Cli::parse();
    // One crypto provider for every TLS stack in the process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => run_server(args).await,
        Command::Operator { client, command } => match command {
            OperatorCli::Tls(args) => cli::tls::run(args),
            OperatorCli::Remote(command) => cli::run_operator(&client, command).await,
        },
        Command::Secret { client, command } => cli::run_secret(&client, command).await,
        Command::Identity { client, command } => cli::run_identity(&client, command).await,
        Command::Agent { client, args } => cli::run_agent(&client, args).await,
        Command::Bench { client, args } => cli::run_bench(&client, args).await,
    }
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    if args.dev {
        init_logging("text");
        raise_open_files_limit();
        return server::run_dev(DevOptions {
            data_dir: args.data_dir,
            api_addr: args.api_addr,
            cluster_addr: args.cluster_addr,
        })
        .await;
    }
    let path = args.config.context("--config is required without --dev")?;
    let config = Config::load(&path)?;
    init_logging(&config.log_format);
    raise_open_files_limit();
    Server::start(&config).await?.serve().await
}

/// Every API connection takes a file descriptor: the soft limit goes up to
/// the hard one before anything is opened, and the result is logged once.
fn raise_open_files_limit() {
    use coffer::listener::OpenFilesLimit;
    match coffer::listener::raise_open_files_limit() {
        Ok(limit) => tracing::info!(
            before = %OpenFilesLimit::show(limit.before),
            now = %OpenFilesLimit::show(limit.now),
            hard = %OpenFilesLimit::show(limit.hard),
            "open-files limit (RLIMIT_NOFILE)"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit (RLIMIT_NOFILE)")
        }
    }
}

fn init_logging(format: &str) {
    // `h2` warns once per connection it cuts off for abuse (rapid resets);
    // the listener reports those itself, rate-limited.
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        // openraft logs every failed RPC at ERROR (one line per read while a
        // follower is down); Coffer reports what needs a human itself: peers
        // going down and back (rate-limited), storage and core failures.
        // `COFFER_LOG=info,openraft=warn` shows openraft's own view.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=off,h2=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
