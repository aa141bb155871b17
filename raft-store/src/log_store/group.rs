//! Group commit and fail-stop, shared by both log backends.
//!
//! `append` only queues entries in memory (where readers see them at once);
//! a flusher thread hands everything queued since its last round to the
//! backend's durable write (one fsync), then acknowledges every append that
//! was queued before the round started. Under load one fsync thus covers
//! many client writes, while openraft keeps processing during the fsync.
//!
//! Both durations are recorded here, once for both backends:
//! `coffer_raft_log_append_duration_seconds` from each `append` to its
//! acknowledgement (queueing and the group's write), and
//! `coffer_raft_log_fsync_duration_seconds` for each group's durable write
//! itself (the redb commit, or the WAL write and fdatasync).
//!
//! The first failed write stops the log: it is recorded once, every pending
//! and later write fails with it, and the node reports it in its health (a
//! log that lost a write cannot promise anything after it).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use openraft::storage::LogFlushed;
use openraft::{Entry, LogId};

use crate::error::{ErrorKind, StorageError};
use crate::{NodeId, TypeConfig};

/// Histogram of the time from `append` to its acknowledgement (durable).
pub const APPEND_SECONDS: &str = "coffer_raft_log_append_duration_seconds";
/// Histogram of one group commit's durable write (commit or fdatasync).
pub const FSYNC_SECONDS: &str = "coffer_raft_log_fsync_duration_seconds";

/// Entries by index.
pub(crate) type Batch = BTreeMap<u64, Entry<TypeConfig>>;

/// Locks a mutex; a panic elsewhere must not wedge the log.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The queue of appended entries not yet known to be on disk, the write
/// lock, and the fail-stop state of one log.
pub(crate) struct Group {
    /// The log's file or directory, for error messages.
    path: PathBuf,
    /// The first write failure; once set, every write fails.
    failure: Mutex<Option<Failure>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Held while log entries are written, truncated or purged, so a
    /// truncation can never be undone by a batch written after it.
    /// Lock order: `io` before `queue`.
    io: Mutex<()>,
}

#[derive(Default)]
struct Queue {
    entries: Batch,
    /// The batch the flusher is writing (still readable from here).
    flushing: Option<Arc<Batch>>,
    /// Acknowledgements, with when their `append` was queued.
    callbacks: Vec<(Instant, LogFlushed<TypeConfig>)>,
    closed: bool,
}

/// A write failure that stopped the log.
#[derive(Clone)]
struct Failure {
    cause: String,
    kind: ErrorKind,
}

impl Group {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            failure: Mutex::new(None),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            io: Mutex::new(()),
        }
    }

    /// The log's file or directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The first write failure as one line, if the log stopped.
    pub(crate) fn failure(&self) -> Option<String> {
        lock(&self.failure).as_ref().map(|f| f.cause.clone())
    }

    /// The stored first failure as an error.
    pub(crate) fn failed(&self) -> Option<StorageError> {
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
    pub(crate) fn fail(&self, e: StorageError) -> StorageError {
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

    /// Runs a write unless the log already failed, and stops the log when
    /// this write fails.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce() -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if let Some(e) = self.failed() {
            return Err(e);
        }
        f().map_err(|e| self.fail(e.at(&self.path)))
    }

    /// Queues entries and their acknowledgement for the flusher.
    pub(crate) fn push(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
        callback: LogFlushed<TypeConfig>,
    ) {
        let mut q = lock(&self.queue);
        q.entries
            .extend(entries.into_iter().map(|e| (e.log_id.index, e)));
        q.callbacks.push((Instant::now(), callback));
        drop(q);
        self.wake.notify_one();
    }

    /// The newest queued (not yet durable) log id.
    pub(crate) fn last_queued(&self) -> Option<LogId<NodeId>> {
        let q = lock(&self.queue);
        q.entries
            .values()
            .next_back()
            .or_else(|| q.flushing.as_ref().and_then(|f| f.values().next_back()))
            .map(|e| e.log_id)
    }

    /// Queued entries in `bounds`. Take this before reading the durable
    /// store: an entry leaves the queue only after it is stored, so it is
    /// seen in one or the other.
    pub(crate) fn queued(&self, bounds: (Bound<u64>, Bound<u64>)) -> Batch {
        let q = lock(&self.queue);
        let mut m: Batch = q
            .flushing
            .iter()
            .flat_map(|f| f.range(bounds))
            .map(|(k, e)| (*k, e.clone()))
            .collect();
        m.extend(q.entries.range(bounds).map(|(k, e)| (*k, e.clone())));
        m
    }

    /// Takes the write lock (truncation, purge, offline writes).
    pub(crate) fn lock_io(&self) -> MutexGuard<'_, ()> {
        lock(&self.io)
    }

    /// Drops queued entries whose index fails `keep`. Call with the write
    /// lock held.
    pub(crate) fn retain_queued(&self, mut keep: impl FnMut(u64) -> bool) {
        lock(&self.queue).entries.retain(|k, _| keep(*k));
    }
}

/// Owns the flusher thread; dropping it drains the queue, joins the thread
/// and runs the backend's close step.
pub(crate) struct Flusher {
    group: Arc<Group>,
    thread: Mutex<Option<JoinHandle<()>>>,
    on_close: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Flusher {
    /// Starts the flusher: `write` makes one batch durable (one fsync);
    /// `on_close` runs once after the last round, at drop.
    pub(crate) fn start(
        group: Arc<Group>,
        mut write: impl FnMut(&Batch) -> Result<(), StorageError> + Send + 'static,
        on_close: impl FnOnce() + Send + 'static,
    ) -> Result<Self, StorageError> {
        let worker = group.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop(&worker, &mut write))
            .map_err(|e| StorageError::io(group.path(), e))?;
        Ok(Self {
            group,
            thread: Mutex::new(Some(thread)),
            on_close: Mutex::new(Some(Box::new(on_close))),
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        lock(&self.group.queue).closed = true;
        self.group.wake.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        if let Some(close) = lock(&self.on_close).take() {
            close();
        }
    }
}

/// Writes queued entries in one durable write per round, then acknowledges
/// every append queued before the round started.
fn flush_loop(group: &Group, write: &mut dyn FnMut(&Batch) -> Result<(), StorageError>) {
    loop {
        {
            let mut q = lock(&group.queue);
            while q.callbacks.is_empty() && q.entries.is_empty() && !q.closed {
                q = group
                    .wake
                    .wait(q)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if q.closed && q.callbacks.is_empty() && q.entries.is_empty() {
                return;
            }
        }
        let io = lock(&group.io);
        let (batch, callbacks) = {
            let mut q = lock(&group.queue);
            let batch = Arc::new(std::mem::take(&mut q.entries));
            q.flushing = Some(batch.clone());
            (batch, std::mem::take(&mut q.callbacks))
        };
        // After a failure nothing more is written: every pending and later
        // append fails with the first error (logged once, in `fail`).
        let started = Instant::now();
        let res = group.write(|| write(batch.as_ref()));
        if res.is_ok() {
            metrics::histogram!(FSYNC_SECONDS).record(started.elapsed().as_secs_f64());
        }
        lock(&group.queue).flushing = None;
        drop(io);
        let append = metrics::histogram!(APPEND_SECONDS);
        for (queued, cb) in callbacks {
            match &res {
                Ok(()) => {
                    append.record(queued.elapsed().as_secs_f64());
                    cb.log_io_completed(Ok(()));
                }
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
