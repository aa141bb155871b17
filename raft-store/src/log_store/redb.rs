//! The redb backend: log, vote and committed id in `log.redb`, one durable
//! redb transaction per group commit (see `group`).

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::LogState;
use openraft::{Entry, LogId, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableHandle};

use super::group::{Flusher, Group};
use crate::error::StorageError;
use crate::tables::{
    decode, durable_write, durable_write_with, encode, get_meta, lazy_write, open_db, table_names,
    KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, LOGS, LOG_META,
};
use crate::{NodeId, StoreOptions, TypeConfig};

/// Durable Raft log storage on redb. Cheap to clone; clones share the
/// database and the flusher, which stops when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct RedbLog {
    shared: Arc<Shared>,
    _flusher: Arc<Flusher>,
}

struct Shared {
    db: Database,
    /// Whether appends commit in two phases (`StoreOptions`).
    two_phase: bool,
    group: Arc<Group>,
}

impl RedbLog {
    /// Opens (creating if needed) the log database at `path`. With
    /// `opts.verify_on_open` redb checks every page checksum first, whatever
    /// the last shutdown was; a damaged log is [`StorageError::Corrupt`].
    pub(crate) fn open(path: &Path, opts: &StoreOptions) -> Result<Self, StorageError> {
        Self::open_inner(path, opts).map_err(|e| e.at(path))
    }

    fn open_inner(path: &Path, opts: &StoreOptions) -> Result<Self, StorageError> {
        // A log that went back to an older commit could lack acknowledged
        // entries or the last vote, which could break Raft's guarantees.
        let db = open_db(path, opts)?.check(path)?;
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
        let group = Arc::new(Group::new(path));
        let shared = Arc::new(Shared {
            db,
            two_phase: opts.log_two_phase_commit,
            group: group.clone(),
        });
        let (writer, closer) = (shared.clone(), shared.clone());
        let flusher = Flusher::start(
            group,
            move |batch| append_batch(&writer, batch.values()),
            // Persist a lazily written committed id, so a clean close
            // leaves nothing for the next open to recover.
            move || {
                if closer.group.failed().is_none() {
                    if let Err(e) = durable_write(&closer.db).and_then(|t| Ok(t.commit()?)) {
                        tracing::warn!(
                            error = %e.at(closer.group.path()),
                            "raft log flush on close failed"
                        );
                    }
                }
            },
        )?;
        Ok(Self {
            shared,
            _flusher: Arc::new(flusher),
        })
    }

    fn db(&self) -> &Database {
        &self.shared.db
    }

    /// The group commit queue and fail-stop state.
    pub(crate) fn group(&self) -> &Group {
        &self.shared.group
    }

    fn path(&self) -> &Path {
        self.group().path()
    }

    /// Current vote, if one was ever saved.
    pub(crate) fn vote(&self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(KEY_VOTE)
    }

    /// The committed id last saved.
    pub(crate) fn committed(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        let committed: Option<Option<LogId<NodeId>>> = self.read_meta(KEY_COMMITTED)?;
        Ok(committed.flatten())
    }

    /// Last purged log id and last log id (the purged id when the log is empty).
    pub(crate) fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError> {
        self.log_state_inner().map_err(|e| e.at(self.path()))
    }

    fn log_state_inner(&self) -> Result<LogState<TypeConfig>, StorageError> {
        // Queued entries are newer than stored ones; look at them first.
        let queued = self.group().last_queued();
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

    /// Entries whose index lies in `bounds`, in order.
    pub(crate) fn entries(
        &self,
        bounds: (Bound<u64>, Bound<u64>),
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        self.entries_inner(bounds).map_err(|e| e.at(self.path()))
    }

    fn entries_inner(
        &self,
        bounds: (Bound<u64>, Bound<u64>),
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let queued = self.group().queued(bounds);
        let txn = self.db().begin_read()?;
        let logs = txn.open_table(LOGS)?;
        let mut out = std::collections::BTreeMap::new();
        for item in logs.range::<u64>(bounds)? {
            let (k, v) = item?;
            out.insert(k.value(), decode::<Entry<TypeConfig>>(v.value())?);
        }
        out.extend(queued);
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

    /// Saves the vote durably.
    pub(crate) fn save_vote(&self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.group().write(|| {
            let txn = durable_write(self.db())?;
            txn.open_table(LOG_META)?
                .insert(KEY_VOTE, encode(vote)?.as_slice())?;
            txn.commit()?;
            Ok(())
        })
    }

    /// The committed id is an optimisation (openraft re-learns it from the
    /// leader), so it is written without an fsync; the next durable commit
    /// of this database persists it along.
    pub(crate) fn save_committed(
        &self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        self.group().write(|| {
            let txn = lazy_write(self.db())?;
            txn.open_table(LOG_META)?
                .insert(KEY_COMMITTED, encode(&committed)?.as_slice())?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Appends one entry durably, outside openraft (offline tools only).
    pub(crate) fn append_offline(&self, entry: &Entry<TypeConfig>) -> Result<(), StorageError> {
        let _io = self.group().lock_io();
        self.group().write(|| append_batch(&self.shared, [entry]))
    }

    /// Removes entries with index >= `index`.
    pub(crate) fn truncate_from(&self, index: u64) -> Result<(), StorageError> {
        let _io = self.group().lock_io();
        self.group().retain_queued(|k| k < index);
        self.group().write(|| {
            let txn = durable_write(self.db())?;
            txn.open_table(LOGS)?.retain_in(index.., |_, _| false)?;
            txn.commit()?;
            Ok(())
        })
    }

    /// Records `log_id` as purged and removes entries up to and including it.
    pub(crate) fn purge_upto(&self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let _io = self.group().lock_io();
        self.group().retain_queued(|k| k > log_id.index);
        self.group().write(|| {
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

    /// Drops the whole log and records `last` as purged (see
    /// `LogStore::align_with_snapshot`).
    pub(crate) fn reset_to(&self, last: LogId<NodeId>) -> Result<(), StorageError> {
        let _io = self.group().lock_io();
        self.group().retain_queued(|_| false);
        self.group().write(|| {
            let txn = durable_write(self.db())?;
            txn.open_table(LOGS)?.retain(|_, _| false)?;
            txn.open_table(LOG_META)?
                .insert(KEY_LAST_PURGED, encode(&last)?.as_slice())?;
            txn.commit()?;
            Ok(())
        })
    }
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
