//! `coffer operator snapshot save | inspect | restore`: backups a custodian
//! can keep, and putting one back.
//!
//! A snapshot file is the cluster's state as members exchange it: a JSON
//! header (cluster id, node, index, term, time, membership), every record
//! with its barrier-encrypted value, and a SHA-256 over everything. It is
//! useless without the custodians' shares; `inspect` checks it without them.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use coffer_client::sys::Sys;
use serde::Serialize;

use super::print_json;
use crate::seal::{SealConfig, SEAL_CONFIG_KEY};

/// `coffer operator snapshot …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCommand {
    /// Stream a consistent snapshot from the node (COFFER_ADDR) into FILE,
    /// written atomically and verified before it is renamed into place.
    Save {
        /// Where to write the snapshot.
        file: PathBuf,
    },
    /// Without --config: into the running cluster (COFFER_ADDR, a token):
    /// the file is verified here, sent in chunks through Raft, verified
    /// again and installed by one entry; the whole state becomes the
    /// snapshot's. With --config: offline, on a node of a new cluster that
    /// has never started: install FILE into its data dir with the new
    /// cluster's membership (from the config's peers). Either way the
    /// custodians unseal with the shares of the snapshot's time.
    Restore {
        /// The snapshot file.
        file: PathBuf,
        /// The stopped node's config file (offline restore).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Live restore of a snapshot of another cluster.
        #[arg(long, conflicts_with = "config")]
        force: bool,
    },
    /// Verify FILE (format, every record, digest, checksum) and show its
    /// header, without any key.
    Inspect {
        /// The snapshot file.
        file: PathBuf,
    },
}

/// What `inspect` (and `save`) report about a snapshot file.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotInfo {
    /// The cluster the snapshot belongs to.
    pub cluster_id: Option<String>,
    /// The member that wrote it.
    pub node_id: Option<u64>,
    /// Last log index covered.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// When it was written (Unix milliseconds).
    pub created_unix_ms: u64,
    /// `shamir` or `pkcs11` (with its parameters), or `uninitialised`.
    pub seal_type: String,
    /// Shares and threshold of the seal, when initialised.
    pub seal: Option<SealConfig>,
    /// Voting members at that index.
    pub voters: Vec<u64>,
    /// Key/value records.
    pub kv_entries: u64,
    /// Hex digest of the records (what `/v1/sys/raft/digest` compares).
    pub kv_digest: String,
    /// File size.
    pub bytes: u64,
}

/// Verifies `path` completely and describes it.
pub fn inspect(path: &Path) -> anyhow::Result<SnapshotInfo> {
    let (summary, seal) = raft_store::inspect_snapshot_file(path, SEAL_CONFIG_KEY)
        .with_context(|| format!("{} is not a valid snapshot", path.display()))?;
    let seal = seal.map(|v| SealConfig::from_json(&v)).transpose()?;
    let header = &summary.header;
    Ok(SnapshotInfo {
        cluster_id: header.cluster_id.clone(),
        node_id: header.node_id,
        index: summary.index(),
        term: header.meta.last_log_id.map_or(0, |l| l.leader_id.term),
        created_unix_ms: header.created_unix_ms,
        seal_type: seal
            .map_or("uninitialised", |c| c.seal_type.as_str())
            .into(),
        seal,
        voters: header
            .meta
            .last_membership
            .membership()
            .voter_ids()
            .collect(),
        kv_entries: summary.kv_entries,
        kv_digest: summary.kv_digest_hex.clone(),
        bytes: summary.bytes,
    })
}

/// Runs `operator snapshot …`.
pub async fn run_snapshot(sys: &Sys<'_>, cmd: SnapshotCommand, json: bool) -> anyhow::Result<()> {
    let info = match cmd {
        SnapshotCommand::Inspect { file } => inspect(&file)?,
        SnapshotCommand::Save { file } => save(sys, &file).await?,
        SnapshotCommand::Restore {
            file,
            config: Some(config),
            ..
        } => {
            println!("{}", restore(&file, &config)?);
            return Ok(());
        }
        SnapshotCommand::Restore {
            file,
            config: None,
            force,
        } => return restore_live(sys, &file, force, json).await,
    };
    show(&info, json)
}

/// `snapshot restore FILE` into the running cluster.
async fn restore_live(sys: &Sys<'_>, file: &Path, force: bool, json: bool) -> anyhow::Result<()> {
    // A damaged file is refused before anything is sent.
    let info = inspect(file)?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    eprintln!(
        "WARNING: the running cluster's whole state becomes the snapshot's (index {}); \
         writes since then are lost.",
        info.index
    );
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(bytes.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let result = sys
        .snapshot_restore(
            &bytes,
            crate::cluster::live_restore::RESTORE_CHUNK_BYTES,
            force,
            |done, _| bar.set_position(done),
        )
        .await;
    bar.finish_and_clear();
    let outcome = result?;
    if json {
        return print_json(&outcome);
    }
    println!(
        "Restored: the state is the snapshot's (index {} of its cluster) from log index {} on.",
        outcome["snapshot_index"], outcome["index"]
    );
    println!("Digest:   {}", outcome["kv_digest"].as_str().unwrap_or("-"));
    println!(
        "Nodes whose keys differ from the restored seal records seal themselves: unseal them."
    );
    Ok(())
}

/// `snapshot restore`: offline, no node to talk to.
pub fn restore(file: &Path, config: &Path) -> anyhow::Result<String> {
    let config = crate::config::Config::load(config)?;
    Ok(crate::cluster::snapshot_file::restore_offline(
        &config, file,
    )?)
}

/// Prints what is known about a verified snapshot.
pub fn show(info: &SnapshotInfo, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(info);
    }
    println!("Snapshot OK (format, records, digest and checksum verified)");
    println!(
        "Cluster ID:   {}",
        info.cluster_id.as_deref().unwrap_or("-")
    );
    println!(
        "Written by:   node {}",
        info.node_id.map_or("-".into(), |n| n.to_string())
    );
    println!("Index / term: {} / {}", info.index, info.term);
    println!("Created:      {} (Unix ms)", info.created_unix_ms);
    match &info.seal {
        Some(c) => println!(
            "Seal:         {}, {} {}shares, threshold {}",
            c.seal_type.as_str(),
            c.shares,
            if c.seal_type == crate::seal::SealType::Pkcs11 {
                "recovery "
            } else {
                ""
            },
            c.threshold
        ),
        None => println!("Seal:         not initialised"),
    }
    println!("Voters:       {:?}", info.voters);
    println!("Records:      {}", info.kv_entries);
    println!("Digest:       {}", info.kv_digest);
    println!("Bytes:        {}", info.bytes);
    Ok(())
}

/// Downloads into `FILE.partial`, fsyncs, verifies, renames, fsyncs the
/// directory: a failed or interrupted save never leaves a file named FILE.
async fn save(sys: &Sys<'_>, file: &Path) -> anyhow::Result<SnapshotInfo> {
    if file.exists() {
        bail!("{} exists; choose another name", file.display());
    }
    let partial = file.with_extension("partial");
    let mut out = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} [{bar:40}] {bytes_per_sec}, {eta} left",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let result = sys
        .snapshot_save(
            |chunk| out.write_all(chunk),
            |done, total| {
                if let Some(t) = total {
                    bar.set_length(t);
                }
                bar.set_position(done);
            },
        )
        .await;
    bar.finish_and_clear();
    let done = result
        .map_err(anyhow::Error::from)
        .and_then(|_| out.sync_all().context("fsync of the snapshot"))
        .and_then(|()| inspect(&partial));
    let info = match done {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, file)
        .with_context(|| format!("cannot rename into {}", file.display()))?;
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync of {}", dir.display()))?;
    Ok(info)
}
