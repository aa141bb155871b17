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
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, Table};

use crate::error::{blocking, raft_err, RaftStorageError, StorageError};
use crate::tables::{
    decode, durable_write, encode, get_meta, lazy_write, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE,
    LOGS, LOG_META,
};
use crate::{NodeId, TypeConfig};

/// Durable Raft log storage on redb. Cheap to clone; clones share the
/// database and the flusher, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    _flusher: Arc<Flusher>,
}

struct Shared {
    db: Database,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Held while log entries are written, truncated or purged, so a
    /// truncation can never be undone by a batch written after it.
    /// Lock order: `io` before `queue`.
    io: Mutex<()>,
    /// The first failed flush: the log can no longer be trusted to persist.
    failure: Mutex<Option<String>>,
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
    /// Opens (creating if needed) the log database at `path`.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = Database::create(path)?;
        let txn = durable_write(&db)?;
        txn.open_table(LOGS)?;
        txn.open_table(LOG_META)?;
        txn.commit()?;
        let shared = Arc::new(Shared {
            db,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            io: Mutex::new(()),
            failure: Mutex::new(None),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop(&worker))?;
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

    /// The first fatal write error of this log, if any (the node reports it
    /// in its health and stops).
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone()
    }

    /// Current vote, if one was ever saved.
    pub fn vote(&self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(KEY_VOTE)
    }

    /// Last purged log id and last log id (the purged id when the log is empty).
    pub fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError> {
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
        let txn = self.db().begin_read()?;
        get_meta(&txn.open_table(LOG_META)?, key)
    }

    fn write_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        let txn = durable_write(self.db())?;
        txn.open_table(LOG_META)?
            .insert(key, encode(value)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// The committed id is an optimisation (openraft re-learns it from the
    /// leader), so it is written without an fsync; the next durable commit
    /// of this database persists it along.
    fn write_meta_lazy<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<(), StorageError> {
        let txn = lazy_write(self.db())?;
        txn.open_table(LOG_META)?
            .insert(key, encode(value)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Writes a batch in one durable transaction, refusing to leave a hole.
    /// Re-writing existing indexes is allowed: openraft's suite does it.
    fn append_batch<'e>(
        db: &Database,
        entries: impl IntoIterator<Item = &'e Entry<TypeConfig>>,
    ) -> Result<(), StorageError> {
        let txn = durable_write(db)?;
        {
            let meta = txn.open_table(LOG_META)?;
            let last_purged: Option<LogId<NodeId>> = get_meta(&meta, KEY_LAST_PURGED)?;
            let mut logs = txn.open_table(LOGS)?;
            let mut next = next_index(&logs, last_purged)?;
            for entry in entries {
                let index = entry.log_id.index;
                if next.is_some_and(|n| index > n) {
                    return Err(StorageError::Corrupt(format!(
                        "append of index {index} would leave a hole (expected {next:?})"
                    )));
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
        let txn = durable_write(self.db())?;
        txn.open_table(LOGS)?.retain_in(index.., |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    /// Records `log_id` as purged and removes entries up to and including it.
    fn purge_upto(&self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let _io = lock(&self.shared.io);
        lock(&self.shared.queue)
            .entries
            .retain(|k, _| *k > log_id.index);
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
        let res = LogStore::append_batch(&shared.db, batch.values());
        lock(&shared.queue).flushing = None;
        drop(io);
        for cb in callbacks {
            match &res {
                Ok(()) => cb.log_io_completed(Ok(())),
                Err(e) => cb.log_io_completed(Err(std::io::Error::other(e.to_string()))),
            }
        }
        if let Err(e) = res {
            let mut failure = lock(&shared.failure);
            if failure.is_none() {
                tracing::error!(error = %e, "raft log flush failed");
                *failure = Some(e.to_string());
            }
        }
    }
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
