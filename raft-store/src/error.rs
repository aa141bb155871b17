//! Error type of the storage layer and its mapping onto openraft's error.
//!
//! Every variant names the file it concerns, and the display ends with what
//! an operator can do about it where there is something to do, so the line a
//! node logs on a full disk or a damaged database is enough to act on.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};

use crate::NodeId;

/// What kind of failure a [`StorageError`] is, for callers that must decide
/// (fail-stop, health report, repair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The volume holding the file is full (or a quota was reached).
    NoSpace,
    /// Any other failed I/O on the file.
    Io,
    /// Stored data failed an integrity check; the file must be repaired.
    Corrupt,
    /// A snapshot file was refused (truncated, damaged, wrong format);
    /// nothing was changed.
    BadSnapshot,
    /// An install or repair was refused because it could not be done safely;
    /// nothing was changed.
    Refused,
    /// A failure inside this process (a storage task panicked).
    Internal,
}

/// Failure of the redb-backed Raft storage.
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError {
    /// redb failed on a database file (I/O, corruption, transaction).
    Db {
        /// The database file.
        file: PathBuf,
        /// What redb reported.
        source: redb::Error,
    },
    /// A file-system operation outside redb failed (snapshot files, the
    /// data directory).
    Io {
        /// The file or directory operated on.
        file: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Stored data failed an integrity check: a checksum, a decode, or the
    /// stored digest of the state machine.
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// What did not check out.
        detail: String,
    },
    /// A snapshot file was refused before anything was changed.
    BadSnapshot {
        /// The snapshot file.
        file: PathBuf,
        /// Why it was refused.
        detail: String,
    },
    /// An install or repair could not be done safely and was not attempted.
    Refused {
        /// The file the refusal concerns.
        file: PathBuf,
        /// Why.
        detail: String,
    },
    /// The log stopped accepting writes after an earlier write failed; every
    /// later write fails with this until the node restarts.
    LogFailed {
        /// The log database.
        file: PathBuf,
        /// The first failure, as displayed when it happened.
        cause: String,
        /// The kind of the first failure.
        kind: ErrorKind,
    },
    /// A blocking storage task panicked or was cancelled.
    Task(String),
}

impl StorageError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Db { source, .. } => redb_kind(source),
            Self::Io { source, .. } => io_kind(source),
            Self::Corrupt { .. } => ErrorKind::Corrupt,
            Self::BadSnapshot { .. } => ErrorKind::BadSnapshot,
            Self::Refused { .. } => ErrorKind::Refused,
            Self::LogFailed { kind, .. } => *kind,
            Self::Task(_) => ErrorKind::Internal,
        }
    }

    /// Whether the volume holding the file is full.
    pub fn is_no_space(&self) -> bool {
        self.kind() == ErrorKind::NoSpace
    }

    /// The file the error concerns (empty for [`StorageError::Task`]).
    pub fn file(&self) -> &Path {
        match self {
            Self::Db { file, .. }
            | Self::Io { file, .. }
            | Self::Corrupt { file, .. }
            | Self::BadSnapshot { file, .. }
            | Self::Refused { file, .. }
            | Self::LogFailed { file, .. } => file,
            Self::Task(_) => Path::new(""),
        }
    }

    /// What an operator can do about it, when there is something to do.
    pub fn remedy(&self) -> Option<String> {
        let file = self.file();
        match self.kind() {
            ErrorKind::NoSpace => {
                let dir = file.parent().unwrap_or(file);
                Some(format!(
                    "free disk space on the volume holding {} and restart the node",
                    dir.display()
                ))
            }
            ErrorKind::Corrupt => Some(corrupt_remedy(file)),
            ErrorKind::BadSnapshot => Some("nothing was changed".into()),
            _ => None,
        }
    }

    /// Fills in the file when the error was raised without one (redb and
    /// postcard errors converted with `?` deep inside a store).
    pub(crate) fn at(mut self, path: &Path) -> Self {
        match &mut self {
            Self::Db { file, .. }
            | Self::Io { file, .. }
            | Self::Corrupt { file, .. }
            | Self::BadSnapshot { file, .. }
            | Self::Refused { file, .. }
            | Self::LogFailed { file, .. } => {
                if file.as_os_str().is_empty() {
                    *file = path.to_path_buf();
                }
            }
            Self::Task(_) => {}
        }
        self
    }

    /// Shorthand for an [`StorageError::Io`] on `file`.
    pub(crate) fn io(file: &Path, source: io::Error) -> Self {
        Self::Io {
            file: file.to_path_buf(),
            source,
        }
    }

    /// Shorthand for a [`StorageError::Corrupt`] on `file`.
    pub(crate) fn corrupt(file: &Path, detail: impl Into<String>) -> Self {
        Self::Corrupt {
            file: file.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// Shorthand for a [`StorageError::BadSnapshot`] on `file`.
    pub(crate) fn bad_snapshot(file: &Path, detail: impl Into<String>) -> Self {
        Self::BadSnapshot {
            file: file.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// Shorthand for a [`StorageError::Refused`] on `file`.
    pub(crate) fn refused(file: &Path, detail: impl Into<String>) -> Self {
        Self::Refused {
            file: file.to_path_buf(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file().display();
        match self {
            Self::Db { source, .. } => write!(f, "{file}: {source}")?,
            Self::Io { source, .. } => write!(f, "{file}: {source}")?,
            Self::Corrupt { detail, .. } => write!(f, "{file} is corrupt: {detail}")?,
            Self::BadSnapshot { detail, .. } => write!(f, "snapshot {file} refused: {detail}")?,
            Self::Refused { detail, .. } => write!(f, "{file}: refused: {detail}")?,
            Self::LogFailed { cause, .. } => write!(
                f,
                "{file}: the log stopped accepting writes after an earlier failure: {cause}"
            )?,
            Self::Task(msg) => write!(f, "storage task failed: {msg}")?,
        }
        // LogFailed's cause already carries the first failure's remedy.
        if !matches!(self, Self::LogFailed { .. }) {
            if let Some(remedy) = self.remedy() {
                write!(f, "; {remedy}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Db { source, .. } => Some(source),
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn corrupt_remedy(file: &Path) -> String {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let in_snapshots = file
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == crate::SNAPSHOT_DIR);
    let in_wal = file
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|d| d == crate::WAL_DIR);
    if name == crate::STATE_FILE {
        "the state database must not be served; stop the node and run \
         `coffer operator raft repair` to restore it from a verified snapshot \
         (the node's own, or the leader's)"
            .into()
    } else if name == crate::LOG_FILE || name == crate::WAL_DIR || in_wal {
        "the Raft log of this node is damaged and cannot be trusted; remove the \
         node from the cluster, clear its data directory and join it again"
            .into()
    } else if in_snapshots {
        format!(
            "move {} out of the snapshot directory and restart the node; it \
             builds a new snapshot from its state",
            file.display()
        )
    } else {
        "stop the node and repair or restore its data directory".into()
    }
}

fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::NoSpace,
        // A read past the end of the file: a length or page pointer inside
        // the database points beyond its data. That is damage (seen with
        // bit rot in redb's page metadata), not a failing device.
        io::ErrorKind::UnexpectedEof => ErrorKind::Corrupt,
        _ => ErrorKind::Io,
    }
}

fn redb_kind(e: &redb::Error) -> ErrorKind {
    match e {
        redb::Error::Io(io) => io_kind(io),
        redb::Error::Backend(b) => b.downcast_ref::<io::Error>().map_or(ErrorKind::Io, io_kind),
        redb::Error::PreviousIo => ErrorKind::Io,
        redb::Error::Corrupted(_) => ErrorKind::Corrupt,
        _ => ErrorKind::Internal,
    }
}

impl From<redb::Error> for StorageError {
    fn from(source: redb::Error) -> Self {
        Self::Db {
            file: PathBuf::new(),
            source,
        }
    }
}

/// redb splits its errors into one type per operation; funnel them all into
/// [`StorageError::Db`] so `?` works everywhere (the file is filled in at the
/// store's boundary, see [`StorageError::at`]).
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                redb::Error::from(e).into()
            }
        }
    )*};
}

from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::CompactionError
);

/// A stored record that does not decode is damage (everything stored was
/// encoded by this crate); encoding our own types cannot fail in practice.
impl From<postcard::Error> for StorageError {
    fn from(e: postcard::Error) -> Self {
        Self::Corrupt {
            file: PathBuf::new(),
            detail: format!("a stored record does not decode: {e}"),
        }
    }
}

/// openraft's storage error for Coffer's node id.
pub type RaftStorageError = openraft::StorageError<NodeId>;

impl StorageError {
    /// Converts into openraft's error, tagging what was being accessed.
    pub fn into_raft(self, subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> RaftStorageError {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }
}

/// Shorthand for `map_err` closures in trait implementations.
pub(crate) fn raft_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> impl FnOnce(StorageError) -> RaftStorageError {
    move |e| e.into_raft(subject, verb)
}

/// Runs blocking redb work (commits fsync) off the async runtime's workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
}

/// Lets a repeated warning through at most once per interval and counts what
/// it held back, so a failure that repeats every few milliseconds yields one
/// line per interval instead of a flood.
pub(crate) struct RateLimit {
    interval_ms: u64,
    /// Unix ms of the last line let through (0: never).
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    /// One line per `interval`.
    pub(crate) const fn new(interval: Duration) -> Self {
        Self {
            interval_ms: interval.as_millis() as u64,
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last line)` when a line may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            .max(1);
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < self.interval_ms {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            // Another thread logged this very moment.
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_space_is_recognised_and_names_the_remedy() {
        let e = StorageError::io(
            Path::new("/data/node1/log.redb"),
            io::Error::from_raw_os_error(28),
        );
        assert!(e.is_no_space());
        let msg = e.to_string();
        assert!(msg.contains("/data/node1/log.redb"), "{msg}");
        assert!(
            msg.contains("No space left on device (os error 28)"),
            "{msg}"
        );
        assert!(
            msg.contains("free disk space on the volume holding /data/node1"),
            "{msg}"
        );
        let wrapped = StorageError::from(redb::Error::Io(io::Error::from_raw_os_error(28)))
            .at(Path::new("/d/state.redb"));
        assert!(wrapped.is_no_space());
        assert!(wrapped.to_string().starts_with("/d/state.redb: "));
    }

    #[test]
    fn corrupt_state_points_at_the_repair_command() {
        let e = StorageError::corrupt(Path::new("/d/state.redb"), "digest mismatch");
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        let msg = e.to_string();
        assert!(
            msg.contains("/d/state.redb is corrupt: digest mismatch"),
            "{msg}"
        );
        assert!(msg.contains("coffer operator raft repair"), "{msg}");
    }

    #[test]
    fn rate_limit_lets_one_line_through_per_interval() {
        let r = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        assert_eq!(r.suppressed.load(Ordering::Relaxed), 2);
    }
}
