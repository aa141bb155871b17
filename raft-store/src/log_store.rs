//! The Raft log, vote and committed id, stored in `log.redb`.
//!
//! Appends are group-committed: `append` only queues the entries in memory
//! (where readers see them at once) and a flusher thread writes everything
//! queued since its last write in one durable redb transaction, then
//! acknowledges every queued append. Under load one fsync thus covers many
//! client writes, while openraft keeps processing requests during the fsync.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableHandle};

use crate::error::{blocking, raft_err, ErrorKind, RaftStorageError, StorageError};
use crate::tables::{
    decode, durable_write, durable_write_with, encode, get_meta, lazy_write, open_db, table_names,
    KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, LOGS, LOG_META,
};
use crate::{NodeId, StoreOptions, TypeConfig};

/// Durable Raft log storage on redb. Cheap to clone; clones share the
/// database and the flusher, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    _flusher: Arc<Flusher>,
}

struct Shared {
    db: Database,
    /// Whether appends commit in two phases (`StoreOptions`).
    two_phase: bool,
    /// `log.redb`, for error messages.
    path: PathBuf,
    /// The first write failure; once set, every write fails (fail-stop: a
    /// log that lost a write cannot promise anything after it).
    failure: Mutex<Option<Failure>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Held while log entries are written, truncated or purged, so a
    /// truncation can never be undone by a batch written after it.
    /// Lock order: `io` before `queue`.
    io: Mutex<()>,
}

/// Appended entries not yet known to be on disk, and their acknowledgements.
#[derive(Default)]
struct Queue {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    /// The batch the flusher is writing (still readable from here).
    flushing: Option<Arc<BTreeMap<u64, Entry<TypeConfig>>>>,
    callbacks: Vec<LogFlushed<TypeConfig>>,
    closed: bool,
}

/// A write failure that stopped the log.
#[derive(Clone)]
struct Failure {
    cause: String,
    kind: ErrorKind,
}

/// Owns the flusher thread; dropping the last handle drains and joins it.
struct Flusher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.wake.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        // Persist a lazily written committed id, so a clean close leaves
        // nothing for the next open to recover.
        if self.shared.failed().is_none() {
            if let Err(e) = durable_write(&self.shared.db).and_then(|t| Ok(t.commit()?)) {
                tracing::warn!(error = %e.at(&self.shared.path), "raft log flush on close failed");
            }
        }
    }
}

/// Locks a mutex; a panic elsewhere must not wedge the log.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (creating if needed) the log database at `path`. With
    /// `opts.verify_on_open` redb checks every page checksum first, whatever
    /// the last shutdown was; a damaged log is [`StorageError::Corrupt`].
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Self, StorageError> {
        Self::open_inner(path, opts).map_err(|e| e.at(path))
    }

    fn open_inner(path: &Path, opts: &StoreOptions) -> Result<Self, StorageError> {
        // A log that went back to an older commit could lack acknowledged
        // entries or the last vote, which could break Raft's guarantees.
        let db = open_db(path, opts.verify_on_open)?.check(path)?;
        let names = table_names(&db)?;
        if [LOGS.name(), LOG_META.name()]
            .iter()
            .any(|t| !names.iter().any(|n| n == t))
        {
            let txn = durable_write(&db)?;
            txn.open_table(LOGS)?;
            txn.open_table(LOG_META)?;
            txn.commit()?;
        }
        let shared = Arc::new(Shared {
            db,
            two_phase: opts.log_two_phase_commit,
            path: path.to_path_buf(),
            failure: Mutex::new(None),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            io: Mutex::new(()),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop(&worker))
            .map_err(|e| StorageError::io(path, e))?;
        Ok(Self {
            _flusher: Arc::new(Flusher {
                shared: shared.clone(),
                thread: Mutex::new(Some(thread)),
            }),
            shared,
        })
    }

    fn db(&self) -> &Database {
        &self.shared.db
    }

    /// `log.redb`.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The first write failure, if the log stopped accepting writes: the
    /// file, the OS error and the remedy, as one line. The node reports it
    /// in its health and stops.
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.failure).as_ref().map(|f| f.cause.clone())
    }

    /// The first write failure as an error, if there was one.
    pub fn failure_error(&self) -> Option<StorageError> {
        self.shared.failed()
    }

    /// Current vote, if one was ever saved.
    pub fn vote(&self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(KEY_VOTE)
    }

    /// Last purged log id and last log id (the purged id when the log is empty).
    pub fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError> {
        self.log_state_inner().map_err(|e| e.at(self.path()))
    }

    fn log_state_inner(&self) -> Result<LogState<TypeConfig>, StorageError> {
        // Queued entries are newer than stored ones; look at them first.
        let queued = {
            let q = lock(&self.shared.queue);
            q.entries
                .values()
                .next_back()
                .or_else(|| q.flushing.as_ref().and_then(|f| f.values().next_back()))
                .map(|e| e.log_id)
        };
        let txn = self.db().begin_read()?;
        let meta = txn.open_table(LOG_META)?;
        let last_purged: Option<LogId<NodeId>> = get_meta(&meta, KEY_LAST_PURGED)?;
        let logs = txn.open_table(LOGS)?;
        let last_log_id = match (queued, logs.last()?) {
            (Some(q), _) => Some(q),
            (None, Some((_, v))) => Some(decode::<Entry<TypeConfig>>(v.value())?.log_id),
            (None, None) => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id,
        })
    }

    /// Entries whose index lies in `range`, in order.
    pub fn entries<R: RangeBounds<u64>>(
        &self,
        range: R,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        self.entries_inner(range).map_err(|e| e.at(self.path()))
    }

    fn entries_inner<R: RangeBounds<u64>>(
        &self,
        range: R,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        // Snapshot the queue before reading the database: an entry leaves
        // the queue only after it is stored, so it is seen in one or the other.
        let queued: Vec<Entry<TypeConfig>> = {
            let q = lock(&self.shared.queue);
            let flushing = q.flushing.iter().flat_map(|f| f.range(bounds));
            let mut m: BTreeMap<u64, &Entry<TypeConfig>> = flushing.map(|(k, e)| (*k, e)).collect();
            m.extend(q.entries.range(bounds).map(|(k, e)| (*k, e)));
            m.into_values().cloned().collect()
        };
        let txn = self.db().begin_read()?;
        let logs = txn.open_table(LOGS)?;
        let mut out = BTreeMap::new();
        for item in logs.range::<u64>(bounds)? {
            let (k, v) = item?;
            out.insert(k.value(), decode::<Entry<TypeConfig>>(v.value())?);
        }
        out.extend(queued.into_iter().map(|e| (e.log_id.index, e)));
        Ok(out.into_values().collect())
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let read = || -> Result<_, StorageError> {
            let txn = self.db().begin_read()?;
            get_meta(&txn.open_table(LOG_META)?, key)
        };
        read().map_err(|e| e.at(self.path()))
    }

    /// Runs a write unless the log already failed, and stops the log when
    /// this write fails.
    fn write<T>(&self, f: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
        if let Some(e) = self.shared.failed() {
            return Err(e);
        }
        f().map_err(|e| self.shared.fail(e.at(self.path())))
    }

    fn write_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        self.write(|| {
            let txn = durable_write(self.db())?;
            txn.open_table(LOG_META)?
                .insert(key, encode(value)?.as_slice())?;
            txn.commit()?;
            Ok(())
        })
    }

    /// The committed id is an optimisation (openraft re-learns it from the
    /// leader), so it is written without an fsync; the next durable commit
    /// of this database persists it along.
    fn write_meta_lazy<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), StorageError> {
        self.write(|| {
            let txn = lazy_write(self.db())?;
            txn.open_table(LOG_META)?
                .insert(key, encode(value)?.as_slice())?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Saves the vote durably, outside openraft (offline tools only; the
    /// node must be stopped).
    pub fn save_vote_offline(&self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote)
    }

    /// Appends one entry durably, outside openraft (offline tools only,
    /// such as the lost-quorum recovery; the node must be stopped).
    pub fn append_offline(&self, entry: &Entry<TypeConfig>) -> Result<(), StorageError> {
        Self::append_batch(&self.shared, [entry])
    }

    /// Writes a batch in one durable transaction, refusing to leave a hole.
    /// Re-writing existing indexes is allowed: openraft's suite does it.
    fn append_batch<'e>(
        shared: &Shared,
        entries: impl IntoIterator<Item = &'e Entry<TypeConfig>>,
    ) -> Result<(), StorageError> {
        let txn = durable_write_with(&shared.db, shared.two_phase)?;
        {
            let meta = txn.open_table(LOG_META)?;
            let last_purged: Option<LogId<NodeId>> = get_meta(&meta, KEY_LAST_PURGED)?;
            let mut logs = txn.open_table(LOGS)?;
            let mut next = next_index(&logs, last_purged)?;
            for entry in entries {
                let index = entry.log_id.index;
                if next.is_some_and(|n| index > n) {
                    return Err(StorageError::corrupt(
                        Path::new(""),
                        format!("append of index {index} would leave a hole (expected {next:?})"),
                    ));
                }
                logs.insert(index, encode(entry)?.as_slice())?;
                next = Some(index + 1);
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes entries with index >= `index`.
    fn truncate_from(&self, index: u64) -> Result<(), StorageError> {
        let _io = lock(&self.shared.io);
        lock(&self.shared.queue).entries.retain(|k, _| *k < index);
        self.write(|| {
            let txn = durable_write(self.db())?;
            txn.open_table(LOGS)?.retain_in(index.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Records `log_id` as purged and removes entries up to and including it.
    fn purge_upto(&self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let _io = lock(&self.shared.io);
        lock(&self.shared.queue)
            .entries
            .retain(|k, _| *k > log_id.index);
        self.write(|| {
            let txn = durable_write(self.db())?;
            {
                let mut meta = txn.open_table(LOG_META)?;
                let prev: Option<LogId<NodeId>> = get_meta(&meta, KEY_LAST_PURGED)?;
                if prev.is_some_and(|p| p.index > log_id.index) {
                    return Ok(());
                }
                meta.insert(KEY_LAST_PURGED, encode(&log_id)?.as_slice())?;
                txn.open_table(LOGS)?
                    .retain_in(..=log_id.index, |_, _| false)?;
            }
            txn.commit()?;
            Ok(())
        })
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
        let _io = lock(&self.shared.io);
        lock(&self.shared.queue).entries.clear();
        self.write(|| {
            let txn = durable_write(self.db())?;
            txn.open_table(LOGS)?.retain(|_, _| false)?;
            txn.open_table(LOG_META)?
                .insert(KEY_LAST_PURGED, encode(&last)?.as_slice())?;
            txn.commit()?;
            Ok(())
        })?;
        Ok(true)
    }
}

impl Shared {
    /// The stored first failure as an error.
    fn failed(&self) -> Option<StorageError> {
        lock(&self.failure)
            .as_ref()
            .map(|f| StorageError::LogFailed {
                file: self.path.clone(),
                cause: f.cause.clone(),
                kind: f.kind,
            })
    }

    /// Records `e` as the failure that stopped the log (the first one wins)
    /// and logs it once, at error level, with the file and the OS error.
    fn fail(&self, e: StorageError) -> StorageError {
        let mut failure = lock(&self.failure);
        if failure.is_none() {
            tracing::error!(
                file = %self.path.display(), error = %e,
                "raft log write failed; the log accepts no more writes until the node restarts"
            );
            *failure = Some(Failure {
                cause: e.to_string(),
                kind: e.kind(),
            });
        }
        e
    }
}

/// Writes queued entries in one durable transaction per round, then
/// acknowledges every append queued before the round started.
fn flush_loop(shared: &Shared) {
    loop {
        {
            let mut q = lock(&shared.queue);
            while q.callbacks.is_empty() && q.entries.is_empty() && !q.closed {
                q = shared
                    .wake
                    .wait(q)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if q.closed && q.callbacks.is_empty() && q.entries.is_empty() {
                return;
            }
        }
        let io = lock(&shared.io);
        let (batch, callbacks) = {
            let mut q = lock(&shared.queue);
            let batch = Arc::new(std::mem::take(&mut q.entries));
            q.flushing = Some(batch.clone());
            (batch, std::mem::take(&mut q.callbacks))
        };
        // After a failure nothing more is written: every pending and later
        // append fails with the first error (logged once, in `fail`).
        let res = match shared.failed() {
            Some(e) => Err(e),
            None => LogStore::append_batch(shared, batch.values())
                .map_err(|e| shared.fail(e.at(&shared.path))),
        };
        lock(&shared.queue).flushing = None;
        drop(io);
        for cb in callbacks {
            match &res {
                Ok(()) => cb.log_io_completed(Ok(())),
                Err(e) => cb.log_io_completed(Err(io_error(e))),
            }
        }
    }
}

/// openraft wants an `io::Error` from an append callback: keep the OS error
/// kind (so "no space" survives) and our full message.
fn io_error(e: &StorageError) -> std::io::Error {
    let kind = match e.kind() {
        ErrorKind::NoSpace => std::io::ErrorKind::StorageFull,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e.to_string())
}

/// Index the next appended entry must have, if the log constrains it.
fn next_index(
    logs: &Table<u64, &[u8]>,
    last_purged: Option<LogId<NodeId>>,
) -> Result<Option<u64>, StorageError> {
    if let Some((k, _)) = logs.last()? {
        return Ok(Some(k.value() + 1));
    }
    Ok(last_purged.map(|p| p.index + 1))
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
        blocking(move || this.write_meta(KEY_VOTE, &vote))
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
        let this = self.clone();
        blocking(move || this.write_meta_lazy(KEY_COMMITTED, &committed))
            .await
            .map_err(raft_err(ErrorSubject::Store, ErrorVerb::Write))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, RaftStorageError> {
        let committed: Option<Option<LogId<NodeId>>> = self
            .read_meta(KEY_COMMITTED)
            .map_err(raft_err(ErrorSubject::Store, ErrorVerb::Read))?;
        Ok(committed.flatten())
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
        if let Some(e) = self.shared.failed() {
            return Err(e.into_raft(ErrorSubject::Logs, ErrorVerb::Write));
        }
        // Queue only; the flusher persists and acknowledges (group commit).
        let mut q = lock(&self.shared.queue);
        q.entries
            .extend(entries.into_iter().map(|e| (e.log_id.index, e)));
        q.callbacks.push(callback);
        drop(q);
        self.shared.wake.notify_one();
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        let this = self.clone();
        blocking(move || this.truncate_from(log_id.index))
            .await
            .map_err(raft_err(ErrorSubject::Logs, ErrorVerb::Delete))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), RaftStorageError> {
        let this = self.clone();
        blocking(move || this.purge_upto(log_id))
            .await
            .map_err(raft_err(ErrorSubject::Logs, ErrorVerb::Delete))
    }
}
