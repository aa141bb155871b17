//! `coffer operator …`: init, unseal, seal, status, Raft membership, vaults.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use coffer_client::sys::{Health, PeersBody, SealStatusBody};
use serde_json::json;
use zeroize::Zeroizing;

use super::{print_json, print_rows, ClientArgs};

/// Operator subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum OperatorCommand {
    /// Initialise the cluster: creates the seal, prints the key shares and the
    /// root token exactly once.
    Init {
        /// Number of key shares to split the unseal key into.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(1..))]
        key_shares: u8,
        /// Number of shares needed to unseal.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..))]
        key_threshold: u8,
        /// OpenPGP public key files, one per share in share order (comma
        /// separated): each share is returned encrypted to its holder.
        #[arg(long, value_delimiter = ',')]
        pgp_keys: Vec<std::path::PathBuf>,
        /// OpenPGP public key file for the initial root token.
        #[arg(long)]
        root_token_pgp_key: Option<std::path::PathBuf>,
    },
    /// Rekey: new unseal shares from a quorum of the current ones.
    Rekey(super::custody::RekeyArgs),
    /// Generate a new root token from a quorum of unseal shares.
    GenerateRoot(super::custody::GenerateRootArgs),
    /// Migrate the seal between shamir and pkcs11 (a quorum of shares).
    SealMigrate(super::seal::SealMigrateArgs),
    /// The pkcs11 seal's key in the node's device (offline).
    #[command(subcommand)]
    SealKey(super::seal::SealKeyCommand),
    /// Rotate the data key: new writes use a new keyring term (replicated);
    /// old terms stay for reading. Needs no custodian.
    Rotate,
    /// Snapshots: save (consistent, checksummed, still encrypted), inspect.
    #[command(subcommand)]
    Snapshot(super::snapshot::SnapshotCommand),
    /// Root tokens: list, revoke.
    #[command(subcommand)]
    Root(super::custody::RootCommand),
    /// Submit one key share to the node (read from stdin when KEY is omitted).
    Unseal {
        /// The key share; omit it to type it without echo or pipe it in.
        #[arg(conflicts_with = "reset")]
        key: Option<String>,
        /// Forget the shares submitted so far.
        #[arg(long)]
        reset: bool,
    },
    /// Seal the node: it drops its keys and answers 503 until unsealed.
    Seal,
    /// Show the node's seal status and health.
    Status,
    /// Raft membership.
    #[command(subcommand)]
    Raft(RaftCommand),
    /// Disaster recovery: a DR replica's status, promotion of the DR site.
    #[command(subcommand)]
    Dr(super::dr::DrCommand),
    /// Vault management.
    #[command(subcommand)]
    Vault(super::vault::VaultCommand),
    /// The node's PKCS#11 device and the cluster KEK ceremony.
    #[command(subcommand)]
    Hsm(super::hsm::HsmCommand),
    // `Tls(crate::cli::tls::TlsArgs)` (certificate generation) is added by the
    // cluster helper.
}

/// `coffer operator raft …`.
#[derive(Debug, Clone, Subcommand)]
pub enum RaftCommand {
    /// List the cluster members.
    ListPeers,
    /// Add a node (as learner, then voter).
    Join {
        /// Id of the new node.
        #[arg(long)]
        node_id: u64,
        /// Its API address (`host:port`).
        #[arg(long)]
        api_addr: String,
        /// Its cluster (gRPC) address (`host:port`).
        #[arg(long)]
        cluster_addr: String,
        /// As a disaster-recovery replica: it receives every entry, never
        /// votes and refuses writes until `operator dr promote`.
        #[arg(long)]
        dr: bool,
    },
    /// Lost quorum, offline: make the surviving nodes listed in --peers the
    /// whole membership. Run it on every survivor (stopped), then start
    /// them. Entries the lost majority never committed may become committed.
    Recover {
        /// JSON array of {"node_id","api_addr","cluster_addr"}: every
        /// survivor, this node included.
        #[arg(long)]
        peers: std::path::PathBuf,
        /// The stopped node's config file.
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Remove a node.
    Remove {
        /// Id of the node to remove.
        #[arg(long)]
        node_id: u64,
    },
    /// Repair a node whose state is damaged. Without --config: tells the
    /// running node (COFFER_ADDR) to fetch the leader's snapshot and
    /// restart to install it. With --config: offline, on the stopped node's
    /// data dir — from its own snapshot (--local) or a member's.
    Repair {
        /// The stopped node's config file (offline repair).
        #[arg(long)]
        config: Option<std::path::PathBuf>,
        /// A healthy member's cluster address (`host:port`) to fetch a
        /// snapshot from; repeat for several (default: the config's peers).
        #[arg(long, requires = "config")]
        from: Vec<String>,
        /// Use the node's own newest snapshot (damage found at open, not a
        /// state that diverged).
        #[arg(long, requires = "config", conflicts_with = "from")]
        local: bool,
    },
}

/// Runs one operator command against the cluster.
pub async fn run_operator(args: &ClientArgs, cmd: OperatorCommand) -> anyhow::Result<()> {
    // The offline repair works on a stopped node's files: no API to call.
    if let OperatorCommand::Raft(RaftCommand::Repair {
        config: Some(config),
        from,
        local,
    }) = &cmd
    {
        let config = crate::config::Config::load(config)?;
        let done = crate::cluster::integrity::repair_offline(&config, from, *local).await?;
        println!("{done}");
        return Ok(());
    }
    // Inspecting a snapshot file needs no node and no key; restoring one
    // works on a node that is not running.
    match &cmd {
        OperatorCommand::Snapshot(super::snapshot::SnapshotCommand::Inspect { file }) => {
            let info = super::snapshot::inspect(file)?;
            return super::snapshot::show(&info, args.json_output());
        }
        OperatorCommand::Snapshot(super::snapshot::SnapshotCommand::Restore {
            file,
            config: Some(config),
            ..
        }) => {
            println!("{}", super::snapshot::restore(file, config)?);
            return Ok(());
        }
        _ => {}
    }
    if let OperatorCommand::SealKey(cmd) = &cmd {
        return super::seal::run_seal_key(cmd.clone());
    }
    if let OperatorCommand::Raft(RaftCommand::Recover { peers, config }) = &cmd {
        eprintln!("WARNING: lost-quorum recovery rewrites this node's Raft membership.");
        eprintln!("WARNING: run it only when a majority of the members is gone for good;");
        eprintln!("WARNING: destroyed members must never come back with their old data.");
        let config = crate::config::Config::load(config)?;
        println!(
            "{}",
            crate::cluster::recover::recover_offline(&config, peers)?
        );
        return Ok(());
    }
    let client = args.client()?;
    let sys = client.sys();
    let json = args.json_output();
    match cmd {
        OperatorCommand::Init {
            key_shares,
            key_threshold,
            pgp_keys,
            root_token_pgp_key,
        } => {
            if key_threshold > key_shares {
                bail!(
                    "--key-threshold ({key_threshold}) must not exceed --key-shares ({key_shares})"
                );
            }
            let keys = super::custody::read_key_files(&pgp_keys)?;
            let token_key = root_token_pgp_key
                .map(|p| super::custody::read_key_file(&p))
                .transpose()?;
            let init = if keys.is_empty() && token_key.is_none() {
                sys.init(key_shares, key_threshold).await?
            } else {
                sys.init_with_keys(key_shares, key_threshold, &keys, token_key.as_deref())
                    .await?
            };
            if json {
                print_json(&init)?;
            } else {
                let recovery = init.seal_type.as_deref() == Some("pkcs11");
                let label = if recovery {
                    "Recovery Key"
                } else {
                    "Unseal Key"
                };
                super::custody::print_shares(&init.keys, &init.pgp_fingerprints, label);
                print_init(
                    &init.root_token,
                    init.root_token_pgp_fingerprint.as_deref(),
                    init.keys.len(),
                    key_threshold,
                    recovery,
                );
            }
        }
        OperatorCommand::Rekey(rekey) => super::custody::run_rekey(&sys, rekey, json).await?,
        OperatorCommand::GenerateRoot(g) => {
            super::custody::run_generate_root(&sys, g, json).await?
        }
        OperatorCommand::Root(cmd) => super::custody::run_root(&sys, cmd, json).await?,
        OperatorCommand::SealMigrate(args) => {
            super::seal::run_seal_migrate(&sys, args, json).await?
        }
        // Handled above, offline.
        OperatorCommand::SealKey(_) => {}
        OperatorCommand::Snapshot(cmd) => super::snapshot::run_snapshot(&sys, cmd, json).await?,
        OperatorCommand::Rotate => {
            let term = sys.rotate().await?;
            if json {
                print_json(&json!({ "term": term }))?;
            } else {
                println!("Keyring rotated: new writes use term {term}.");
            }
        }
        OperatorCommand::Unseal { reset: true, .. } => {
            show_seal_status(&sys.unseal_reset().await?, json)?;
        }
        OperatorCommand::Unseal { key, .. } => {
            let key = match key {
                Some(k) => Zeroizing::new(k),
                None => read_share()?,
            };
            show_seal_status(&sys.unseal(key.trim()).await?, json)?;
        }
        OperatorCommand::Seal => {
            sys.seal().await?;
            if !json {
                println!("Node sealed.");
            }
        }
        OperatorCommand::Status => {
            let seal = sys.seal_status().await?;
            let health = sys.health().await?;
            show_status(&seal, &health, json)?;
        }
        OperatorCommand::Raft(cmd) => run_raft(&client, cmd, json).await?,
        OperatorCommand::Dr(cmd) => super::dr::run_dr(&sys, cmd, json).await?,
        OperatorCommand::Vault(cmd) => super::vault::run_vault(&client, cmd, json).await?,
        OperatorCommand::Hsm(cmd) => super::hsm::run_hsm(args, cmd).await?,
    }
    Ok(())
}

async fn run_raft(
    client: &coffer_client::Client,
    cmd: RaftCommand,
    json: bool,
) -> anyhow::Result<()> {
    let sys = client.sys();
    let peers = match cmd {
        RaftCommand::Repair { .. } => {
            println!("{}", sys.repair().await?);
            return Ok(());
        }
        RaftCommand::Recover { .. } => {
            bail!("raft recover runs offline (it is handled before any API call)")
        }
        RaftCommand::ListPeers => sys.peers().await?,
        RaftCommand::Join {
            node_id,
            api_addr,
            cluster_addr,
            dr: false,
        } => sys.join(node_id, &api_addr, &cluster_addr).await?,
        RaftCommand::Join {
            node_id,
            api_addr,
            cluster_addr,
            dr: true,
        } => sys.join_dr(node_id, &api_addr, &cluster_addr).await?,
        RaftCommand::Remove { node_id } => sys.remove(node_id).await?,
    };
    if json {
        return print_json(&peers);
    }
    show_peers(&peers);
    Ok(())
}

// Printing the shares and the root token is the one purpose of `init`; they
// are shown once and never stored by Coffer in clear.
fn print_init(
    root_token: &str,
    token_fingerprint: Option<&str>,
    shares: usize,
    threshold: u8,
    recovery: bool,
) {
    match token_fingerprint {
        Some(fp) => println!("Initial Root Token (encrypted to {fp}):\n{root_token}"),
        None => println!("Initial Root Token: {root_token}"),
    }
    println!();
    println!("Cluster initialised with {shares} key shares and a key threshold of {threshold}.");
    println!("Store the key shares and the root token now, each share with a different");
    println!("custodian: they are shown only this once and cannot be recovered.");
    if recovery {
        println!("Seal type pkcs11: nodes unseal themselves from the device. These are");
        println!("RECOVERY shares: {threshold} of them authorise rekey, generate-root and seal");
        println!("migration; they cannot unseal a node.");
    } else {
        println!("Every node must be unsealed with {threshold} shares after each restart.");
    }
}

/// Reads one share from stdin, without echo when stdin is a terminal.
pub(super) fn read_share() -> anyhow::Result<Zeroizing<String>> {
    read_hidden("Unseal key share (will be hidden): ", "key share")
}

/// Reads one line from stdin (a share, a password), prompting and without
/// echo when stdin is a terminal; `what` names it in errors.
pub(super) fn read_hidden(prompt: &str, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    if tty {
        eprint!("{prompt}");
        std::io::stderr().flush().ok();
        set_echo(false);
    }
    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    if tty {
        set_echo(true);
        eprintln!();
    }
    read.with_context(|| format!("cannot read the {what} from stdin"))?;
    if line.trim().is_empty() {
        bail!("no {what} given");
    }
    Ok(line)
}

/// Toggles terminal echo through `stty`; harmless if `stty` is missing.
fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
}

fn show_seal_status(s: &SealStatusBody, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(s);
    }
    print_rows(&seal_rows(s));
    Ok(())
}

fn seal_rows(s: &SealStatusBody) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("Seal Type", s.seal_type.clone()),
        ("Initialized", s.initialized.to_string()),
        ("Sealed", s.sealed.to_string()),
        ("Total Shares", s.n.to_string()),
        ("Threshold", s.t.to_string()),
        ("Unseal Progress", format!("{}/{}", s.progress, s.t)),
        (
            "Unseal Nonce",
            s.nonce.clone().unwrap_or_else(|| "-".into()),
        ),
        ("Node ID", opt(s.node_id)),
    ];
    if s.recovery_seal {
        rows.push(("Recovery Seal", "true (shares cannot unseal)".into()));
    }
    if let Some(reason) = &s.reason {
        rows.push(("Sealed Because", reason.clone()));
    }
    rows
}

fn show_status(seal: &SealStatusBody, health: &Health, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({
            "seal_status": seal,
            "health": { "status": health.status, "body": health.body },
        }));
    }
    let h = &health.body;
    let role = match health.status {
        200 => "leader",
        429 => "standby",
        501 => "not initialised",
        503 => "sealed",
        _ => "unknown",
    };
    let mut rows = seal_rows(seal);
    rows.extend([
        ("Health", format!("{} ({role})", health.status)),
        ("Leader ID", opt(h.leader_id)),
        ("Raft Term", opt(h.term)),
        ("Commit Index", opt(h.commit_index)),
        ("Applied Index", opt(h.applied_index)),
        ("Version", h.version.clone().unwrap_or_else(|| "-".into())),
    ]);
    if let Some(snap) = &h.snapshots {
        rows.push((
            "Auto Snapshot",
            match (&snap.last_file, snap.last_index) {
                (Some(file), Some(index)) => format!("index {index}: {file}"),
                _ => "none yet".into(),
            },
        ));
        if let Some(e) = &snap.last_error {
            rows.push(("Auto Snapshot Error", e.clone()));
        }
    }
    print_rows(&rows);
    Ok(())
}

fn show_peers(p: &PeersBody) {
    println!("Leader: {}   Term: {}", opt(p.leader_id), p.term);
    println!(
        "{:<8}  {:<24}  {:<24}  {:<7}  STATE",
        "NODE", "API ADDRESS", "CLUSTER ADDRESS", "ROLE"
    );
    for peer in &p.peers {
        let role = if peer.voter { "voter" } else { "learner" };
        let state = if Some(peer.node_id) == p.leader_id {
            "leader"
        } else {
            "follower"
        };
        println!(
            "{:<8}  {:<24}  {:<24}  {:<7}  {state}",
            peer.node_id, peer.api_addr, peer.cluster_addr, role
        );
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: OperatorCommand,
    }

    fn parse(args: &[&str]) -> Result<OperatorCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("operator").chain(args.iter().copied())).map(|c| c.cmd)
    }

    #[test]
    fn parses_init_and_rejects_zero_shares() {
        let cmd = parse(&["init", "--key-shares", "3", "--key-threshold", "2"]).unwrap();
        assert!(matches!(
            cmd,
            OperatorCommand::Init {
                key_shares: 3,
                key_threshold: 2,
                ..
            }
        ));
        assert!(parse(&["init", "--key-shares", "0"]).is_err());
    }

    #[test]
    fn unseal_key_and_reset_are_exclusive() {
        assert!(matches!(
            parse(&["unseal", "abc"]).unwrap(),
            OperatorCommand::Unseal { key: Some(ref k), reset: false } if k == "abc"
        ));
        assert!(matches!(
            parse(&["unseal", "--reset"]).unwrap(),
            OperatorCommand::Unseal {
                key: None,
                reset: true
            }
        ));
        assert!(parse(&["unseal", "abc", "--reset"]).is_err());
    }

    #[test]
    fn parses_raft_and_vault_subcommands() {
        let cmd = parse(&[
            "raft",
            "join",
            "--node-id",
            "4",
            "--api-addr",
            "127.0.0.1:8453",
            "--cluster-addr",
            "127.0.0.1:8454",
        ])
        .unwrap();
        assert!(matches!(
            cmd,
            OperatorCommand::Raft(RaftCommand::Join { node_id: 4, .. })
        ));
        assert!(matches!(
            parse(&["raft", "list-peers"]).unwrap(),
            OperatorCommand::Raft(RaftCommand::ListPeers)
        ));
        assert!(parse(&["raft", "remove"]).is_err(), "--node-id is required");
        assert!(matches!(
            parse(&["vault", "create", "team-a"]).unwrap(),
            OperatorCommand::Vault(super::super::vault::VaultCommand::Create { ref name, .. }) if name == "team-a"
        ));
    }
}
