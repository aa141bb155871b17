//! Durable openraft storage for Coffer on redb.
//!
//! [`open`] returns the two halves openraft's storage-v2 API needs: a
//! [`LogStore`] (log, vote, committed id in `log.redb`, or in the
//! write-ahead log `log.wal/` — see [`LogKind`]) and a
//! [`StateMachineStore`] (key/value data and request-id dedup in
//! `state.redb`, snapshots as files in `snapshots/`). Log appends are
//! group-committed: one durable redb commit (fsync) covers every append
//! queued while the previous one was written.
//!
//! Integrity is checked at every open, whatever the last shutdown was (see
//! [`StoreOptions::verify_on_open`]); a damaged file fails the open with
//! [`StorageError::Corrupt`] naming it, and [`repair_state_from_snapshot`]
//! rebuilds a damaged state database from a verified snapshot.

mod apply;
mod digest;
pub mod error;
pub mod log_store;
mod repair;
mod snapshot;
pub mod state_machine;
mod tables;
pub mod types;

use std::path::Path;

pub use digest::{StateDigest, DIGEST_RING};
pub use error::{ErrorKind, StorageError};
pub use log_store::{has_log, LogKind, LogStore};
pub use repair::{
    local_repair_possible, promote_membership, recover_membership, repair_state_from_snapshot,
    LocalRepair, RepairReport,
};
pub use snapshot::{
    inspect_snapshot_file, rewrite_open_snapshot, rewrite_snapshot, verify_snapshot_file,
    SnapshotHeader, SnapshotSummary, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC,
};
pub use state_machine::{AppliedState, OpenSnapshot, StateMachineStore, DEFAULT_DEDUP_WINDOW_MS};
pub use types::*;

/// File name of the log database inside the data directory.
pub const LOG_FILE: &str = "log.redb";
/// Directory of the write-ahead log (segments, vote, purge point) inside
/// the data directory, when the log store is [`LogKind::Wal`].
pub const WAL_DIR: &str = "log.wal";
/// File name of the state machine database inside the data directory.
pub const STATE_FILE: &str = "state.redb";
/// Directory of snapshot files inside the data directory.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Tunables for [`open_with`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long (in entry `time_ms`) an applied request id is remembered.
    pub dedup_window_ms: u64,
    /// Verify both databases and the newest snapshot at open: redb's page
    /// checksums, the state's stored digest against a full re-hash, the
    /// request-id index, and the snapshot's checksum. Reads every byte once
    /// (about a second per few hundred MB); on by default.
    pub verify_on_open: bool,
    /// Commit log appends in two phases (two fsyncs instead of one). Then a
    /// power loss cannot leave a torn newest commit, so any checksum failure
    /// of the newest commit at open is damage and fails the open, and a
    /// power loss never does. With one phase, a power loss during an append
    /// can leave a torn commit that the open cannot tell from damage: the
    /// node then refuses to start (nothing acknowledged is lost either way).
    /// On by default; costs one extra fsync per group commit.
    pub log_two_phase_commit: bool,
    /// The log backend of a new data directory; an existing log keeps the
    /// backend it was written by. The WAL by default.
    pub log_store: LogKind,
    /// Page cache of each redb database (the state, and the log when it is
    /// redb). redb's own default is 1 GiB, which lets a node's RSS grow with
    /// the whole state; past this, pages are read from the file (the OS page
    /// cache) again.
    pub cache_bytes: usize,
    /// WAL only: a segment past this size is closed and a new one started
    /// (purges delete whole segments, so this is also the purge grain).
    pub wal_segment_bytes: u64,
}

/// Default [`StoreOptions::cache_bytes`]: 32 MiB (measured in README
/// "Performance", the scaling run).
pub const DEFAULT_CACHE_BYTES: usize = 32 << 20;

/// Default [`StoreOptions::wal_segment_bytes`]: 64 MiB, as etcd.
pub const DEFAULT_WAL_SEGMENT_BYTES: u64 = 64 << 20;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            dedup_window_ms: DEFAULT_DEDUP_WINDOW_MS,
            verify_on_open: true,
            log_two_phase_commit: true,
            log_store: LogKind::default(),
            cache_bytes: DEFAULT_CACHE_BYTES,
            wal_segment_bytes: DEFAULT_WAL_SEGMENT_BYTES,
        }
    }
}

/// Opens (creating if needed) the log and state machine stores in `dir`.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StorageError> {
    open_with(dir, &StoreOptions::default())
}

/// Like [`open`], with explicit options.
///
/// Besides opening both stores, this reconciles them: when the newest
/// snapshot file is ahead of the state (an install interrupted between
/// publishing the file and replacing the state, or a state database that
/// redb rolled back), the state is restored from it; and the state must not
/// be behind the log's purge point, since the entries in between are gone.
pub fn open_with(
    dir: &Path,
    opts: &StoreOptions,
) -> Result<(LogStore, StateMachineStore), StorageError> {
    create_private_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    let state = dir.join(STATE_FILE);
    create_database_file(&state).map_err(|e| StorageError::io(&state, e))?;
    let log = LogStore::open_in(dir, opts)?;
    let sm = StateMachineStore::open(dir, opts)?;
    reconcile(&log, &sm)?;
    Ok((log, sm))
}

fn reconcile(log: &LogStore, sm: &StateMachineStore) -> Result<(), StorageError> {
    if let Some((meta, path)) = sm.current_snapshot_file() {
        let index = meta.last_log_id.map_or(0, |l| l.index);
        if index > sm.applied_index() {
            tracing::warn!(
                file = %path.display(),
                snapshot_index = index,
                applied_index = sm.applied_index(),
                "the newest snapshot is ahead of the state; restoring the state from it"
            );
            sm.restore_file(&path)?;
            if let Some(last) = meta.last_log_id {
                if log.align_with_snapshot(last)? {
                    tracing::warn!(
                        file = %log.path().display(),
                        "the log diverged from the snapshot's history; it was reset to start \
                         after the snapshot"
                    );
                }
            }
        }
    }
    let purged = log.log_state()?.last_purged_log_id.map_or(0, |l| l.index);
    if sm.applied_index() < purged {
        return Err(StorageError::corrupt(
            sm.path(),
            format!(
                "the state is at index {} but the log was purged up to {purged} and no \
                 snapshot covers the gap",
                sm.applied_index()
            ),
        ));
    }
    Ok(())
}

/// Creates `dir` (and missing parents) as 0700 whatever the umask: the
/// databases hold object names and sealed data. An existing directory is
/// left as it is (the node checks it at start).
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates a new, initialised, empty redb database at `path` (0600 whatever
/// the umask) unless one exists. It is built under a temporary name and
/// renamed into place, so a crash during the very first start never leaves
/// a half-initialised file that could not be opened again ("not a redb
/// database"): the database is there whole, or not at all.
pub(crate) fn create_database_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path.exists() {
        return Ok(());
    }
    let tmp = path.with_extension("redb.init");
    let _ = std::fs::remove_file(&tmp);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    drop(file);
    redb::Database::create(&tmp).map_err(std::io::Error::other)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
