//! Restoring a saved snapshot into a new cluster, offline.
//!
//! Each node of the new cluster is configured (its own addresses, the same
//! node ids or others) but never started; `coffer operator snapshot restore
//! FILE --config nodeN.toml` then installs the snapshot into its empty data
//! dir with the membership rewritten to the new cluster's (from the
//! config's peers), and records the new cluster id the bootstrap would have
//! given it. Started, the nodes elect a leader at the snapshot's index; the
//! custodians unseal them with their existing shares (the values are still
//! under the source cluster's barrier).

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use super::identity::{derive_cluster_id, IdentityFile};
use super::node::ClusterNode;
use super::ClusterError;
use crate::config::Config;

/// Name prefix of the labelled copies streamed to operators.
const BACKUP_PREFIX: &str = "backup-";

impl ClusterNode {
    /// A consistent snapshot labelled with this cluster's id and this node:
    /// a copy of [`ClusterNode::backup_snapshot`] in the data dir, which the
    /// caller streams and then deletes (the open handle keeps it readable).
    pub async fn labelled_backup(&self) -> Result<PathBuf, ClusterError> {
        let (src, file) = self.backup_snapshot().await?;
        let seq = crate::engine::clock::now_ms();
        let copy = self
            .data_dir()
            .join(format!("{BACKUP_PREFIX}{seq}-{}.tmp", self.id()));
        let (cluster_id, node_id) = (self.cluster_id(), self.id());
        let dst = copy.clone();
        tokio::task::spawn_blocking(move || {
            raft_store::rewrite_open_snapshot(file, &src, &dst, |header| {
                header.cluster_id = cluster_id;
                header.node_id = Some(node_id);
            })
        })
        .await
        .map_err(|e| ClusterError::Unavailable(format!("labelling the snapshot: {e}")))??;
        Ok(copy)
    }
}

/// Installs `snapshot` into the (empty) data dir of the node configured by
/// `config`. Returns what was done, for the operator.
pub fn restore_offline(config: &Config, snapshot: &Path) -> Result<String, ClusterError> {
    let data_dir = &config.data_dir;
    if raft_store::has_log(data_dir) {
        let log = [raft_store::LOG_FILE, raft_store::WAL_DIR]
            .map(|name| data_dir.join(name))
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or_else(|| data_dir.join(raft_store::LOG_FILE));
        return Err(ClusterError::Invalid(format!(
            "{} exists: this node already has a Raft log. Restore only into a node that has \
             never started (an empty data dir); to restore over an existing cluster, stop \
             every node and move their data dirs aside first",
            log.display()
        )));
    }
    let source = raft_store::verify_snapshot_file(snapshot)?;
    let ca_pem = std::fs::read_to_string(&config.tls.ca).map_err(|e| {
        ClusterError::Invalid(format!("reading the CA {}: {e}", config.tls.ca.display()))
    })?;
    let members = config.initial_members();
    let cluster_id = derive_cluster_id(&ca_pem, &members);
    // Private to the node's user, as the server requires of a data dir.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| ClusterError::Invalid(format!("creating {}: {e}", data_dir.display())))?;
    let rewritten = data_dir.join("restore.snap.tmp");
    let _ = std::fs::remove_file(&rewritten);
    raft_store::rewrite_snapshot(snapshot, &rewritten, |header| {
        let voters: std::collections::BTreeSet<u64> = members.keys().copied().collect();
        let membership = openraft::Membership::new(vec![voters], members.clone());
        header.meta.last_membership = openraft::StoredMembership::new(
            header.meta.last_membership.log_id().to_owned(),
            membership,
        );
        header.cluster_id = Some(cluster_id.clone());
        header.node_id = None;
    })?;
    let installed = raft_store::repair_state_from_snapshot(data_dir, &rewritten);
    let _ = std::fs::remove_file(&rewritten);
    let report = installed?;
    IdentityFile::open(data_dir, config.node_id)?.adopt(&cluster_id)?;
    let voters: Vec<String> = members.keys().map(u64::to_string).collect();
    tracing::warn!(
        event = "snapshot.restored",
        index = report.snapshot.index(),
        source_cluster = source.header.cluster_id.as_deref().unwrap_or("-"),
        cluster = %cluster_id,
        "snapshot restored into a new node; the custodians unseal it with their existing shares"
    );
    Ok(format!(
        "restored the snapshot at index {} (cluster {} → {cluster_id}, members {}) into {}; \
         start the node, then unseal it with the existing shares",
        report.snapshot.index(),
        source.header.cluster_id.as_deref().unwrap_or("-"),
        voters.join(","),
        data_dir.display()
    ))
}

/// `[snapshots]`: automated snapshots, taken by the leader only.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotsConfig {
    /// Seconds between two snapshots.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// How many snapshot files to keep in `dir` (the oldest go first).
    #[serde(default = "default_retain")]
    pub retain: usize,
    /// Where the files go (created if missing); best on another disk.
    pub dir: PathBuf,
}

fn default_interval() -> u64 {
    3600
}

fn default_retain() -> usize {
    24
}

/// What the last automated snapshots did, as `operator status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct AutoSnapshotStatus {
    /// The last file written.
    pub last_file: Option<String>,
    /// Its log index.
    pub last_index: Option<u64>,
    /// When it was written (Unix ms).
    pub last_success_unix_ms: Option<u64>,
    /// The last failure, if it came after the last success.
    pub last_error: Option<String>,
    /// When it happened (Unix ms).
    pub last_error_unix_ms: Option<u64>,
}

/// Prefix and extension of automated snapshot files; the name sorts by
/// index, then time, so pruning keeps the newest.
const AUTO_PREFIX: &str = "coffer-";
const AUTO_EXT: &str = "snap";

impl ClusterNode {
    /// What the automated snapshots did (empty when none ran here).
    pub fn auto_snapshot_status(&self) -> AutoSnapshotStatus {
        self.auto_snapshots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn record_auto_snapshot(&self, outcome: Result<(PathBuf, u64), String>) {
        let mut st = self
            .auto_snapshots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = crate::engine::clock::now_ms();
        match outcome {
            Ok((path, index)) => {
                st.last_file = Some(path.display().to_string());
                st.last_index = Some(index);
                st.last_success_unix_ms = Some(now);
                st.last_error = None;
                st.last_error_unix_ms = None;
            }
            Err(e) => {
                st.last_error = Some(e);
                st.last_error_unix_ms = Some(now);
            }
        }
    }
}

/// Every `interval_secs`, on the leader only: a labelled snapshot written
/// into `dir` atomically (temporary name, fsync, rename, fsync of the
/// directory), then the oldest files beyond `retain` removed. Failures are
/// logged and shown by `operator status`; the next round tries again.
pub async fn auto_snapshot_loop(node: std::sync::Arc<ClusterNode>, cfg: SnapshotsConfig) {
    let interval = std::time::Duration::from_secs(cfg.interval_secs.max(1));
    loop {
        tokio::time::sleep(interval).await;
        if !node.status().is_leader {
            continue;
        }
        let outcome = take_auto_snapshot(&node, &cfg).await;
        match &outcome {
            Ok((path, index)) => tracing::info!(
                event = "snapshot.auto",
                index,
                file = %path.display(),
                "automated snapshot written"
            ),
            Err(e) => tracing::error!(
                event = "snapshot.auto_failed",
                error = %e,
                dir = %cfg.dir.display(),
                "automated snapshot failed"
            ),
        }
        node.record_auto_snapshot(outcome);
    }
}

async fn take_auto_snapshot(
    node: &ClusterNode,
    cfg: &SnapshotsConfig,
) -> Result<(PathBuf, u64), String> {
    let labelled = node.labelled_backup().await.map_err(|e| e.to_string())?;
    let dir = cfg.dir.clone();
    let retain = cfg.retain.max(1);
    let result = tokio::task::spawn_blocking(move || publish(&labelled, &dir, retain))
        .await
        .map_err(|e| format!("snapshot task: {e}"))?;
    result.map_err(|e| e.to_string())
}

/// Copies `labelled` into `dir` under its final name atomically, removes
/// `labelled`, and prunes. Returns the new file and its index.
fn publish(labelled: &Path, dir: &Path, retain: usize) -> std::io::Result<(PathBuf, u64)> {
    let copied: std::io::Result<(PathBuf, u64)> = (|| {
        let summary = raft_store::verify_snapshot_file(labelled)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        std::fs::create_dir_all(dir)?;
        let name = format!(
            "{AUTO_PREFIX}{:020}-{:020}.{AUTO_EXT}",
            summary.index(),
            crate::engine::clock::now_ms()
        );
        let tmp = dir.join(format!("{name}.tmp"));
        let dst = dir.join(&name);
        // A copy, not a rename: `dir` is usually on another filesystem.
        std::fs::copy(labelled, &tmp)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &dst)?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok((dst, summary.index()))
    })();
    let _ = std::fs::remove_file(labelled);
    let done = copied?;
    prune(dir, retain)?;
    Ok(done)
}

/// Removes the oldest automated snapshot files beyond `retain` (and
/// temporary files left by an interrupted round).
fn prune(dir: &Path, retain: usize) -> std::io::Result<()> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with(AUTO_PREFIX) {
            continue;
        }
        if name.ends_with(&format!(".{AUTO_EXT}")) {
            files.push(name);
        } else if name.ends_with(&format!(".{AUTO_EXT}.tmp")) {
            let _ = std::fs::remove_file(dir.join(&name));
        }
    }
    files.sort();
    let excess = files.len().saturating_sub(retain);
    for name in &files[..excess] {
        std::fs::remove_file(dir.join(name))?;
    }
    Ok(())
}
