//! The `coffer` binary: the server and the operator/secret CLI.

mod cpu;

/// glibc's malloc took 12 % of a node's CPU under replicated writes (a
/// profile of 3 nodes at 1–256 clients): requests, Raft messages and redb
/// pages make many small allocations freed on other threads. mimalloc's
/// per-thread heaps serve those without the arena locks and consolidation.
/// Secrets are zeroized before they are freed whatever the allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use coffer::cli::{self, ClientArgs, KeyCommand, OperatorCommand, SecretCommand};
use coffer::config::Config;
use coffer::hardening;
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
    /// Manage keys and use them (sign, verify, encrypt, decrypt, rotate)
    /// through the Key Vault API.
    Key {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Manage the tenant's applications, users, groups and signing keys.
    Identity {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: cli::IdentityCommand,
    },
    /// Coffer's private CA: create a CA and its issuer, revoke certificates.
    Cert {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: cli::CertCommand,
    },
    /// Manage role definitions and assignments of the addressed vault (RBAC).
    Role {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: cli::RoleCommand,
    },
    /// Run the host agent: a local Key Vault endpoint that fails over
    /// between the nodes, and the managed-identity endpoint for workloads.
    Agent {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        args: cli::AgentArgs,
    },
    /// Alert rules, receivers and firings.
    Alert {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: cli::AlertCommand,
    },
    /// Verify and query the audit trail.
    Audit {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: cli::AuditCommand,
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
    /// Node configuration file (TOML). Every key can also be set by a
    /// `COFFER_<KEY>` variable (`COFFER_<TABLE>__<KEY>` inside a table).
    #[arg(long, required_unless_present = "dev")]
    config: Option<PathBuf>,
    /// Print the effective configuration (file plus environment, secrets
    /// redacted) and exit.
    #[arg(long, requires = "config")]
    print_config: bool,
    /// Before starting, install this snapshot file (`coffer operator
    /// snapshot save`) into the node's data dir, which must be empty (a node
    /// of a new cluster that has never started), with the membership of the
    /// config's peers. A damaged file is refused and nothing is written.
    /// Then custodians unseal with the cluster's existing shares. Use it
    /// once: a node that has a Raft log refuses it.
    #[arg(long, requires = "config", conflicts_with = "print_config")]
    restore: Option<PathBuf>,
    /// Data directory of the dev node.
    #[arg(long, default_value = "coffer-dev")]
    data_dir: PathBuf,
    /// HTTPS API address of the dev node.
    #[arg(long, default_value = "127.0.0.1:8443")]
    api_addr: SocketAddr,
    /// gRPC cluster address of the dev node (default: the API port + 1).
    #[arg(long)]
    cluster_addr: Option<SocketAddr>,
    #[command(flatten)]
    hsm: server::DevHsmArgs,
}

fn main() -> anyhow::Result<()> {
    // Before anything can touch AES: refuse a CPU lacking compiled-in features.
    cpu::refuse_unsupported_cpu();
    // Whatever umask was inherited, nothing this process creates is
    // readable by others unless given an explicit mode.
    coffer::files::restrict_umask();
    // Keys, tokens and shares pass through every command: none of them may
    // end up in a core file.
    hardening::disable_core_dumps()?;
    let cli = Cli::parse();
    // Everything that reads or changes the environment happens here, while
    // this is the only thread.
    let (prepared, command) = match cli.command {
        Command::Server(args) => (Some(prepare_server(args)?), None),
        other => (None, Some(other)),
    };
    // One crypto provider for every TLS stack in the process.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match prepared {
        Some(PreparedServer::PrintConfig(text)) => {
            print!("{text}");
            Ok(())
        }
        Some(server) => runtime.block_on(run_server(server)),
        None => match command {
            Some(command) => runtime.block_on(run(command)),
            None => Ok(()),
        },
    }
}

/// A server command with its configuration read and the process prepared.
enum PreparedServer {
    Dev(DevOptions),
    Node(Box<Config>),
    PrintConfig(String),
}

/// Reads the configuration (taking secret variables out of the
/// environment) and locks memory, before any other thread starts.
fn prepare_server(args: ServerArgs) -> anyhow::Result<PreparedServer> {
    if args.dev {
        let cluster_addr = args
            .cluster_addr
            .unwrap_or_else(|| server::dev_cluster_addr(args.api_addr));
        let hsm = server::prepare_dev_hsm(&args.hsm, &args.data_dir)?;
        return Ok(PreparedServer::Dev(DevOptions {
            data_dir: args.data_dir,
            api_addr: args.api_addr,
            cluster_addr,
            hsm,
        }));
    }
    let path = args.config.context("--config is required without --dev")?;
    let taken = coffer::config::take_secret_env();
    let config = Config::load_with_env(&path, std::env::vars().chain(taken))?;
    if args.print_config {
        return Ok(PreparedServer::PrintConfig(config.to_redacted_toml()?));
    }
    if let Some(var) = config.hsm.as_ref().and_then(|h| h.pin_env.as_deref()) {
        hardening::take_env_secret(var);
        // The device layer reads the PIN from what was taken, not from the
        // (now scrubbed) environment.
        coffer::crypto::pkcs11::set_env_secret_source(hardening::env_secret);
    }
    if let Some(file) = &args.restore {
        let done = coffer::cluster::snapshot_file::restore_offline(&config, file)
            .with_context(|| format!("restoring {}", file.display()))?;
        eprintln!("{done}");
    }
    if config.lock_memory {
        hardening::lock_memory()?;
    }
    Ok(PreparedServer::Node(Box::new(config)))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        // Prepared and run by `main`.
        Command::Server(_) => Ok(()),
        Command::Operator { client, command } => match command {
            OperatorCli::Tls(args) => cli::tls::run(args),
            OperatorCli::Remote(command) => cli::run_operator(&client, command).await,
        },
        Command::Secret { client, command } => cli::run_secret(&client, command).await,
        Command::Key { client, command } => cli::run_key(&client, command).await,
        Command::Identity { client, command } => cli::run_identity(&client, command).await,
        Command::Role { client, command } => cli::run_role(&client, command).await,
        Command::Cert { client, command } => cli::run_cert(&client, command).await,
        Command::Agent { client, args } => cli::run_agent(&client, args).await,
        Command::Bench { client, args } => cli::run_bench(&client, args).await,
        Command::Alert { client, command } => cli::run_alert(&client, command).await,
        Command::Audit { client, command } => cli::run_audit(&client, command).await,
    }
}

async fn run_server(prepared: PreparedServer) -> anyhow::Result<()> {
    match prepared {
        PreparedServer::Dev(opts) => {
            init_logging("text");
            raise_open_files_limit();
            server::run_dev(opts).await
        }
        PreparedServer::Node(config) => {
            init_logging(&config.log_format);
            if config.lock_memory {
                tracing::info!("memory locked (mlockall): nothing of this process is swapped out");
            }
            raise_open_files_limit();
            Server::start(&config).await?.serve().await
        }
        PreparedServer::PrintConfig(_) => Ok(()),
    }
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
