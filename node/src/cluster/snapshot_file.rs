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
        let path = self.backup_snapshot().await?;
        let seq = crate::operator::now_ms();
        let copy = self
            .data_dir()
            .join(format!("{BACKUP_PREFIX}{seq}-{}.tmp", self.id()));
        let (cluster_id, node_id) = (self.cluster_id(), self.id());
        let src = path.clone();
        let dst = copy.clone();
        tokio::task::spawn_blocking(move || {
            raft_store::rewrite_snapshot(&src, &dst, |header| {
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
    let log = data_dir.join(raft_store::LOG_FILE);
    if log.exists() {
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
