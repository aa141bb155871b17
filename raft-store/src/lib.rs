//! Durable openraft storage for Coffer on redb.
//!
//! [`open`] returns the two halves openraft's storage-v2 API needs: a
//! [`LogStore`] (log, vote, committed id in `log.redb`) and a
//! [`StateMachineStore`] (key/value data, request-id dedup, snapshots in
//! `state.redb`). Log appends are group-committed: one durable redb commit
//! (fsync) covers every append queued while the previous one was written.

mod apply;
pub mod error;
pub mod log_store;
mod snapshot;
pub mod state_machine;
mod tables;
pub mod types;

use std::path::Path;

pub use error::StorageError;
pub use log_store::LogStore;
pub use state_machine::{AppliedState, StateMachineStore, DEFAULT_DEDUP_WINDOW_MS};
pub use types::*;

/// File name of the log database inside the data directory.
pub const LOG_FILE: &str = "log.redb";
/// File name of the state machine database inside the data directory.
pub const STATE_FILE: &str = "state.redb";

/// Tunables for [`open_with`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long (in entry `time_ms`) an applied request id is remembered.
    pub dedup_window_ms: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            dedup_window_ms: DEFAULT_DEDUP_WINDOW_MS,
        }
    }
}

/// Opens (creating if needed) the log and state machine stores in `dir`.
pub fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StorageError> {
    open_with(dir, &StoreOptions::default())
}

/// Like [`open`], with explicit options.
pub fn open_with(
    dir: &Path,
    opts: &StoreOptions,
) -> Result<(LogStore, StateMachineStore), StorageError> {
    create_private_dir(dir)?;
    for file in [LOG_FILE, STATE_FILE] {
        create_private_file(&dir.join(file))?;
    }
    let log = LogStore::open(&dir.join(LOG_FILE))?;
    let sm = StateMachineStore::open(&dir.join(STATE_FILE), opts.dedup_window_ms)?;
    Ok((log, sm))
}

/// Creates `dir` (and missing parents) as 0700 whatever the umask: the
/// databases hold object names and sealed data. An existing directory is
/// left as it is (the node checks it at start).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
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

/// Creates an empty 0600 file for redb to initialise, unless it exists, so
/// the database is never readable by others, whatever the umask (redb
/// itself creates files with the umask's mode).
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file.set_permissions(std::fs::Permissions::from_mode(0o600)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
