//! The Raft log, vote and committed id, stored in `log.redb`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, Table};

use crate::error::{blocking, raft_err, RaftStorageError, StorageError};
use crate::tables::{
    decode, durable_write, encode, get_meta, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, LOGS,
    LOG_META,
};
use crate::{NodeId, TypeConfig};

/// Durable Raft log storage on redb. Cheap to clone; clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
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
        Ok(Self { db: Arc::new(db) })
    }

    /// Current vote, if one was ever saved.
    pub fn vote(&self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(KEY_VOTE)
    }

    /// Last purged log id and last log id (the purged id when the log is empty).
    pub fn log_state(&self) -> Result<LogState<TypeConfig>, StorageError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(LOG_META)?;
        let last_purged: Option<LogId<NodeId>> = get_meta(&meta, KEY_LAST_PURGED)?;
        let logs = txn.open_table(LOGS)?;
        let last_log_id = match logs.last()? {
            Some((_, v)) => Some(decode::<Entry<TypeConfig>>(v.value())?.log_id),
            None => last_purged,
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
        let txn = self.db.begin_read()?;
        let logs = txn.open_table(LOGS)?;
        let mut out = Vec::new();
        for item in logs.range::<u64>(bounds)? {
            let (_, v) = item?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read()?;
        get_meta(&txn.open_table(LOG_META)?, key)
    }

    fn write_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        let txn = durable_write(&self.db)?;
        txn.open_table(LOG_META)?
            .insert(key, encode(value)?.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Writes a batch in one durable transaction, refusing to leave a hole.
    /// Re-writing existing indexes is allowed: openraft's suite does it.
    fn append_batch(&self, entries: Vec<Entry<TypeConfig>>) -> Result<(), StorageError> {
        let txn = durable_write(&self.db)?;
        {
            let meta = txn.open_table(LOG_META)?;
            let last_purged: Option<LogId<NodeId>> = get_meta(&meta, KEY_LAST_PURGED)?;
            let mut logs = txn.open_table(LOGS)?;
            let mut next = next_index(&logs, last_purged)?;
            for entry in &entries {
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
        let txn = durable_write(&self.db)?;
        txn.open_table(LOGS)?.retain_in(index.., |_, _| false)?;
        txn.commit()?;
        Ok(())
    }

    /// Records `log_id` as purged and removes entries up to and including it.
    fn purge_upto(&self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let txn = durable_write(&self.db)?;
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
        blocking(move || this.write_meta(KEY_COMMITTED, &committed))
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
        let entries: Vec<_> = entries.into_iter().collect();
        let this = self.clone();
        let res = blocking(move || this.append_batch(entries)).await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e.into_raft(ErrorSubject::Logs, ErrorVerb::Write))
            }
        }
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
