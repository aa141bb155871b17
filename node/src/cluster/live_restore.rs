//! Live restore: `operator snapshot restore FILE` into a running cluster.
//!
//! A snapshot file can be far larger than one Raft entry (2 MiB), so it
//! travels through the log in chunks: each chunk is a raw write under
//! [`STAGING_PREFIX`]`<restore id>/<seq>`. The commit then reassembles the
//! chunks on this node and verifies the file completely (structure, state
//! digest, SHA-256; the cluster id unless forced) before anything changes;
//! a refused file only has its chunks removed. A verified file is installed
//! by one entry, [`raft_store::Mutation::RestoreStaged`], which every
//! replica applies the same way: the whole key/value state becomes the
//! file's, with the file's revisions, so the state digest right after that
//! entry equals the snapshot's. Membership, the log and remembered request
//! ids stay.

use std::path::PathBuf;

use raft_store::{Mutation, Request, Txn};
use serde::Serialize;

use super::{ClusterError, ClusterNode};
use crate::engine::clock::now_ms;

/// Raw key prefix of staged chunks.
pub const STAGING_PREFIX: &str = "sys/restore-staging/";
/// Largest chunk (well under the 2 MiB entry cap).
pub const RESTORE_CHUNK_BYTES: usize = 1024 * 1024;
/// Most chunks of one restore (a 64 GiB file).
const MAX_CHUNKS: u32 = 65_536;

/// What a committed restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreOutcome {
    /// Log index of the entry that installed the snapshot: the state
    /// digest at this index equals `kv_digest`.
    pub index: u64,
    /// Log index the snapshot covered in its source cluster.
    pub snapshot_index: u64,
    /// The snapshot's state digest (hex).
    pub kv_digest: String,
    /// The source cluster's id, when the file names one.
    pub source_cluster_id: Option<String>,
    /// Key/value records installed.
    pub kv_entries: u64,
}

/// Restore ids are chosen by the client: short, lowercase, safe in a key.
fn check_id(id: &str) -> Result<(), ClusterError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Invalid(
            "a restore id is 1-64 characters of a-z, 0-9 and '-'".into(),
        ))
    }
}

fn prefix(id: &str) -> Vec<u8> {
    format!("{STAGING_PREFIX}{id}/").into_bytes()
}

fn unavailable(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(e.to_string())
}

impl ClusterNode {
    async fn propose_raw(
        &self,
        mutations: Vec<Mutation>,
    ) -> Result<raft_store::Response, ClusterError> {
        let req = Request {
            request_id: Some(format!("restore-{}", uuid::Uuid::new_v4())),
            time_ms: now_ms(),
            txn: Txn {
                compare: Vec::new(),
                mutations,
                result: Vec::new(),
            },
        };
        self.propose(req).await.map_err(unavailable)
    }

    /// Stages chunk `seq` of the restore `id` through Raft.
    pub async fn stage_restore_chunk(
        &self,
        id: &str,
        seq: u32,
        bytes: Vec<u8>,
    ) -> Result<(), ClusterError> {
        check_id(id)?;
        if bytes.is_empty() || bytes.len() > RESTORE_CHUNK_BYTES || seq >= MAX_CHUNKS {
            return Err(ClusterError::Invalid(format!(
                "a restore chunk is 1 to {RESTORE_CHUNK_BYTES} bytes, numbered below {MAX_CHUNKS}"
            )));
        }
        let mut key = prefix(id);
        key.extend_from_slice(format!("{seq:08}").as_bytes());
        self.propose_raw(vec![Mutation::Put { key, value: bytes }])
            .await?;
        Ok(())
    }

    /// Drops the staged chunks of `id` (a refused or abandoned restore).
    pub async fn discard_restore(&self, id: &str) -> Result<(), ClusterError> {
        check_id(id)?;
        self.propose_raw(vec![Mutation::DeletePrefix { prefix: prefix(id) }])
            .await?;
        Ok(())
    }

    /// Verifies the `chunks` staged chunks of `id` as one snapshot file
    /// and, when it is whole and (unless `force`) of this cluster, installs
    /// it. A refused file changes nothing but the removal of its chunks.
    pub async fn commit_restore(
        &self,
        id: &str,
        chunks: u32,
        force: bool,
    ) -> Result<RestoreOutcome, ClusterError> {
        check_id(id)?;
        self.read_fence().await.map_err(unavailable)?;
        let staged = self
            .scan_raw(&prefix(id), None, chunks as usize + 1)
            .map_err(unavailable)?;
        let summary = match self.check_staged(id, &staged, chunks, force).await {
            Ok(summary) => summary,
            Err(e) => {
                tracing::warn!(
                    event = "snapshot.restore_refused",
                    restore = id,
                    error = %e,
                    "live restore refused; nothing changed"
                );
                self.discard_restore(id).await?;
                return Err(e);
            }
        };
        let installed = self
            .propose_raw(vec![Mutation::RestoreStaged { prefix: prefix(id) }])
            .await?;
        if !installed.succeeded {
            return Err(ClusterError::Invalid(
                "the staged snapshot was refused when applied; nothing changed".into(),
            ));
        }
        let outcome = RestoreOutcome {
            index: installed.revision,
            snapshot_index: summary.index(),
            kv_digest: summary.kv_digest_hex.clone(),
            source_cluster_id: summary.header.cluster_id.clone(),
            kv_entries: summary.kv_entries,
        };
        tracing::warn!(
            event = "snapshot.restored",
            index = outcome.index,
            snapshot_index = outcome.snapshot_index,
            kv_entries = outcome.kv_entries,
            forced = force,
            "live restore: the cluster's state was replaced by a snapshot"
        );
        Ok(outcome)
    }

    /// The staged file of `id`, checked as `commit_restore` requires.
    async fn check_staged(
        &self,
        id: &str,
        staged: &[(Vec<u8>, raft_store::Versioned)],
        chunks: u32,
        force: bool,
    ) -> Result<raft_store::SnapshotSummary, ClusterError> {
        if chunks == 0 || staged.len() != chunks as usize {
            return Err(ClusterError::Invalid(format!(
                "{} chunks of restore {id} are staged, {chunks} were announced",
                staged.len()
            )));
        }
        for (seq, (key, _)) in staged.iter().enumerate() {
            let mut want = prefix(id);
            want.extend_from_slice(format!("{seq:08}").as_bytes());
            if *key != want {
                return Err(ClusterError::Invalid(format!(
                    "chunk {seq} of restore {id} is missing"
                )));
            }
        }
        let path: PathBuf = self.data_dir().join(format!("restore-{id}.tmp"));
        let bytes: Vec<u8> = staged
            .iter()
            .flat_map(|(_, v)| v.value.iter().copied())
            .collect();
        let check = path.clone();
        let summary = tokio::task::spawn_blocking(move || {
            std::fs::write(&check, &bytes)
                .map_err(|e| ClusterError::Invalid(format!("writing {}: {e}", check.display())))?;
            let verified = raft_store::verify_snapshot_file(&check);
            let _ = std::fs::remove_file(&check);
            verified.map_err(|e| ClusterError::Invalid(format!("the snapshot is refused: {e}")))
        })
        .await
        .map_err(unavailable)??;
        let mine = self.cluster_id();
        let theirs = summary.header.cluster_id.clone();
        if !force && theirs.is_some() && theirs != mine {
            return Err(ClusterError::Invalid(format!(
                "the snapshot is of cluster {}, this is cluster {}: restore it with --force \
                 (then unseal every node with the source cluster's shares)",
                theirs.unwrap_or_default(),
                mine.unwrap_or_default()
            )));
        }
        Ok(summary)
    }
}
