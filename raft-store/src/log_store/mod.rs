//! The Raft log, vote and committed id, behind one type over two backends:
//! redb (`log.redb`, one B-tree commit per group) and a write-ahead log
//! (`log.wal/`, append-only segments, one fdatasync per group). Both share
//! the group commit and fail-stop of `group`; the openraft traits and the
//! offline helpers are implemented once, here, over either.

mod group;
mod redb;
mod wal;

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, Vote};
use serde::{Deserialize, Serialize};

pub use self::group::{APPEND_SECONDS, FSYNC_SECONDS};
use self::redb::RedbLog;
use self::wal::WalLog;
use crate::error::{blocking, raft_err, RaftStorageError, StorageError};
use crate::{NodeId, StoreOptions, TypeConfig, LOG_FILE, WAL_DIR};

/// Which log backend a new data directory gets (`[raft] log_store`). An
/// existing log is opened with the backend it was written by, whatever this
/// says (see [`LogStore::open_in`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogKind {
    /// `log.redb`: redb B-tree commits.
    Redb,
    /// `log.wal/`: append-only checksummed segment files. The default since
    /// it measured +31–35 % replicated writes over redb (README
    /// "Performance", run G); redb stays for data dirs created with it.
    #[default]
    Wal,
}

impl std::fmt::Display for LogKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Redb => "redb",
            Self::Wal => "wal",
        })
    }
}

/// Durable Raft log storage. Cheap to clone; clones share the files and the
/// flusher thread, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct LogStore {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Redb(RedbLog),
    Wal(WalLog),
}

/// Runs the same expression on whichever backend `$s` is.
macro_rules! on {
    ($s:expr, $b:ident => $e:expr) => {
        match &$s.backend {
            Backend::Redb($b) => $e,
            Backend::Wal($b) => $e,
        }
    };
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (creating if needed) the redb log database at `path`. With
    /// `opts.verify_on_open` redb checks every page checksum first, whatever
    /// the last shutdown was; a damaged log is [`StorageError::Corrupt`].
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Self, StorageError> {
        Ok(Self {
            backend: Backend::Redb(RedbLog::open(path, opts)?),
        })
    }

    /// Opens (creating if needed) the write-ahead log in directory `dir`,
    /// replaying its segments; a torn tail of the newest segment is cut
    /// back to the last whole record, other damage is
    /// [`StorageError::Corrupt`]. A second opener is refused.
    pub fn open_wal(dir: &Path, opts: &StoreOptions) -> Result<Self, StorageError> {
        Ok(Self {
            backend: Backend::Wal(WalLog::open(dir, opts)?),
        })
    }

    /// Opens the log of the data directory `data_dir`: the one already
    /// there (`log.wal/` or `log.redb`, whichever exists), else a new one of
    /// `opts.log_store`. Both at once is refused: which one holds the
    /// acknowledged entries cannot be told.
    pub fn open_in(data_dir: &Path, opts: &StoreOptions) -> Result<Self, StorageError> {
        crate::create_private_dir(data_dir).map_err(|e| StorageError::io(data_dir, e))?;
        let kind = existing_kind(data_dir)?.unwrap_or(opts.log_store);
        if kind != opts.log_store {
            tracing::warn!(
                data_dir = %data_dir.display(), configured = %opts.log_store, found = %kind,
                "the data directory holds a {kind} raft log; it keeps using it (the \
                 configured log store applies to new data directories)"
            );
        }
        let log = match kind {
            LogKind::Redb => {
                let path = data_dir.join(LOG_FILE);
                crate::create_database_file(&path).map_err(|e| StorageError::io(&path, e))?;
                Self::open(&path, opts)?
            }
            LogKind::Wal => Self::open_wal(&data_dir.join(WAL_DIR), opts)?,
        };
        tracing::info!(kind = %kind, path = %log.path().display(), "raft log opened");
        Ok(log)
    }

    /// The backend.
    pub fn kind(&self) -> LogKind {
        match self.backend {
            Backend::Redb(_) => LogKind::Redb,
            Backend::Wal(_) => LogKind::Wal,
        }
    }

    /// `log.redb`, or the `log.wal` directory.
    pub fn path(&self) -> &Path {
        on!(self, b => b.group().path())
    }

    /// The first write failure, if the log stopped accepting writes: the
    /// file, the OS error and the remedy, as one line. The node reports it
    /// in its health and stops.
    pub fn failure(&self) -> Option<String> {
        on!(self, b => b.group().failure())
    }

    /// The first write failure as an error, if there was one.
    pub fn failure_error(&self) -> Option<StorageError> {
        on!(self, b => b.group().failed())
    }

    /// Current vote, if one was ever saved.
    pub fn vote(&self) -> Result<Option<Vote<NodeId>>, StorageError> {
        match &self.backend {
            Backend::Redb(b) => b.vote(),
            Backend::Wal(b) => Ok(b.vote()),
        }
    }

    /// Last purged log id and last log id (the purged id when the log is empty).
    pub fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError> {
        match &self.backend {
            Backend::Redb(b) => b.log_state(),
            Backend::Wal(b) => Ok(b.log_state()),
        }
    }

    /// Entries whose index lies in `range`, in order.
    pub fn entries<R: RangeBounds<u64>>(
        &self,
        range: R,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        on!(self, b => b.entries(bounds))
    }

    fn committed(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        match &self.backend {
            Backend::Redb(b) => b.committed(),
            Backend::Wal(b) => Ok(b.committed()),
        }
    }

    /// Saves the vote durably, outside openraft (offline tools only; the
    /// node must be stopped).
    pub fn save_vote_offline(&self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        on!(self, b => b.save_vote(vote))
    }

    /// Appends one entry durably, outside openraft (offline tools only,
    /// such as the lost-quorum recovery; the node must be stopped).
    pub fn append_offline(&self, entry: &Entry<TypeConfig>) -> Result<(), StorageError> {
        on!(self, b => b.append_offline(entry))
    }

    /// Makes the log consistent with a state restored from a snapshot
    /// covering `last` (which is committed). When the log holds a different
    /// entry at `last.index`, this node's log diverged before that point;
    /// everything it holds past the common prefix is then uncommitted, so
    /// the whole log is dropped and `last` recorded as purged. Returns
    /// whether the log was reset. Used offline and at open only.
    pub(crate) fn align_with_snapshot(&self, last: LogId<NodeId>) -> Result<bool, StorageError> {
        let at = self.entries(last.index..=last.index)?;
        match at.first() {
            Some(e) if e.log_id != last => {}
            _ => return Ok(false),
        }
        on!(self, b => b.reset_to(last))?;
        Ok(true)
    }
}

/// The backend of the log already in `data_dir`, if there is one.
fn existing_kind(data_dir: &Path) -> Result<Option<LogKind>, StorageError> {
    let redb = data_dir.join(LOG_FILE);
    let wal = data_dir.join(WAL_DIR);
    match (redb.exists(), wal.exists()) {
        (true, true) => Err(StorageError::refused(
            data_dir,
            format!(
                "both {} and {} exist; keep the one this node ran with and move the other aside",
                redb.display(),
                wal.display()
            ),
        )),
        (true, false) => Ok(Some(LogKind::Redb)),
        (false, true) => Ok(Some(LogKind::Wal)),
        (false, false) => Ok(None),
    }
}

/// Whether `data_dir` holds a Raft log of either kind.
pub fn has_log(data_dir: &Path) -> bool {
    data_dir.join(LOG_FILE).exists() || data_dir.join(WAL_DIR).exists()
}

fn range_to_owned<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, RaftStorageError> {
        self.entries(range_to_owned(&range))
            .map_err(raft_err(ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        self.log_state()
            .map_err(raft_err(ErrorSubject::Logs, ErrorVerb::Read))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), RaftStorageError> {
        let this = self.clone();
        let vote = *vote;
        blocking(move || on!(this, b => b.save_vote(&vote)))
            .await
            .map_err(raft_err(ErrorSubject::Vote, ErrorVerb::Write))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, RaftStorageError> {
        self.vote()
            .map_err(raft_err(ErrorSubject::Vote, ErrorVerb::Read))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), RaftStorageError> {
        let res = match &self.backend {
            // A lazy redb commit still takes locks and writes pages.
            Backend::Redb(b) => {
                let b = b.clone();
                blocking(move || b.save_committed(committed)).await
            }
            // Kept in memory until the next group commit: no I/O here.
            Backend::Wal(b) => b.save_committed(committed),
        };
        res.map_err(raft_err(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, RaftStorageError> {
        self.committed()
            .map_err(raft_err(ErrorSubject::Store, ErrorVerb::Read))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let group = on!(self, b => b.group());
        if let Some(e) = group.failed() {
            return Err(e.into_raft(ErrorSubject::Logs, ErrorVerb::Write));
        }
        // Queue only; the flusher persists and acknowledges (group commit).
        group.push(entries, callback);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        let this = self.clone();
        blocking(move || on!(this, b => b.truncate_from(log_id.index)))
            .await
            .map_err(raft_err(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        let this = self.clone();
        blocking(move || on!(this, b => b.purge_upto(log_id)))
            .await
            .map_err(raft_err(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
