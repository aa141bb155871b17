//! The replicated key/value state machine, stored in `state.redb`.

use std::io::Cursor;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable};
use sha2::{Digest, Sha256};

use crate::apply::apply_batch;
use crate::error::{blocking, raft_err, RaftStorageError, StorageError};
use crate::snapshot::{dump, load_current, read_applied, restore, save_current, SnapshotPayload};
use crate::tables::{decode, durable_write, encode, DEDUP, DEDUP_BY_TIME, KV, SM_META, SNAPSHOT};
use crate::{Node, NodeId, Response, TypeConfig, Versioned};

/// Default time a request id is remembered for deduplication: one hour.
pub const DEFAULT_DEDUP_WINDOW_MS: u64 = 60 * 60 * 1000;

struct Inner {
    db: Database,
    /// Mirrors the stored last applied index so readers need no transaction.
    applied: AtomicU64,
    dedup_window_ms: u64,
}

/// Durable state machine on redb. Cheap to clone; clones share the database,
/// so the node can read while Raft applies.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("applied", &self.applied_index())
            .finish_non_exhaustive()
    }
}

impl StateMachineStore {
    /// Opens (creating if needed) the state database at `path`.
    pub fn open(path: &Path, dedup_window_ms: u64) -> Result<Self, StorageError> {
        let db = Database::create(path)?;
        let txn = durable_write(&db)?;
        for t in [SM_META, SNAPSHOT] {
            txn.open_table(t)?;
        }
        txn.open_table(KV)?;
        txn.open_table(DEDUP)?;
        txn.open_table(DEDUP_BY_TIME)?;
        txn.commit()?;
        let (applied, _) = read_applied(&db.begin_read()?)?;
        let inner = Inner {
            db,
            applied: AtomicU64::new(applied.map_or(0, |l| l.index)),
            dedup_window_ms,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The value stored at `key` and the revision that wrote it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StorageError> {
        let txn = self.inner.db.begin_read()?;
        let kv = txn.open_table(KV)?;
        let value = kv.get(key)?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// Up to `limit` entries whose key starts with `prefix`, in key order,
    /// starting after `start_after` when given (for paging).
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, StorageError> {
        let start = match start_after {
            Some(s) if s >= prefix => Bound::Excluded(s),
            _ => Bound::Included(prefix),
        };
        let txn = self.inner.db.begin_read()?;
        let kv = txn.open_table(KV)?;
        let mut out = Vec::new();
        for item in kv.range::<&[u8]>((start, Bound::Unbounded))? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_vec(), decode(v.value())?));
        }
        Ok(out)
    }

    /// Index of the last applied log entry (0 before anything was applied).
    pub fn applied_index(&self) -> u64 {
        self.inner.applied.load(Ordering::Acquire)
    }

    /// Hex SHA-256 over every key/value pair in key order, for comparing replicas.
    pub fn digest(&self) -> Result<String, StorageError> {
        let txn = self.inner.db.begin_read()?;
        let mut hasher = Sha256::new();
        for item in txn.open_table(KV)?.iter()? {
            let (k, v) = item?;
            let v: Versioned = decode(v.value())?;
            // Length prefixes keep (key, value) boundaries unambiguous.
            hasher.update((k.value().len() as u64).to_be_bytes());
            hasher.update(k.value());
            hasher.update(v.revision.to_be_bytes());
            hasher.update((v.value.len() as u64).to_be_bytes());
            hasher.update(&v.value);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Last applied log id and membership as stored.
    pub fn applied_state_sync(
        &self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), StorageError> {
        read_applied(&self.inner.db.begin_read()?)
    }

    fn apply_entries(
        &self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<Response>, StorageError> {
        let last = entries.last().map(|e| e.log_id.index);
        let txn = durable_write(&self.inner.db)?;
        let responses = apply_batch(&txn, entries, self.inner.dedup_window_ms)?;
        txn.commit()?;
        if let Some(last) = last {
            self.inner.applied.store(last, Ordering::Release);
        }
        Ok(responses)
    }

    /// Dumps the state in one read transaction and stores it as the current snapshot.
    fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let payload = dump(&self.inner.db.begin_read()?)?;
        let meta = SnapshotMeta {
            last_log_id: payload.last_applied,
            last_membership: payload.last_membership.clone(),
            snapshot_id: snapshot_id(payload.last_applied),
        };
        let data = encode(&payload)?;
        let txn = durable_write(&self.inner.db)?;
        save_current(&txn, &meta, &data)?;
        txn.commit()?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    /// Replaces the whole state with `data` in one durable transaction.
    fn install(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        data: Vec<u8>,
    ) -> Result<(), StorageError> {
        let mut payload: SnapshotPayload = decode(&data)?;
        // The meta is authoritative for what the snapshot covers.
        payload.last_applied = meta.last_log_id;
        payload.last_membership = meta.last_membership.clone();
        let txn = durable_write(&self.inner.db)?;
        restore(&txn, &payload)?;
        save_current(&txn, meta, &data)?;
        txn.commit()?;
        let index = meta.last_log_id.map_or(0, |l| l.index);
        self.inner.applied.store(index, Ordering::Release);
        Ok(())
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = load_current(&self.inner.db.begin_read()?)?;
        Ok(current.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// Unique per build: the covered log id plus the build time.
fn snapshot_id(last: Option<LogId<NodeId>>) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    match last {
        Some(l) => format!("{}-{}-{nanos}", l.leader_id, l.index),
        None => format!("--{nanos}"),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, RaftStorageError> {
        let this = self.clone();
        blocking(move || this.build())
            .await
            .map_err(raft_err(ErrorSubject::Snapshot(None), ErrorVerb::Write))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Node>), RaftStorageError> {
        self.applied_state_sync()
            .map_err(raft_err(ErrorSubject::StateMachine, ErrorVerb::Read))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, RaftStorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        let this = self.clone();
        blocking(move || this.apply_entries(entries))
            .await
            .map_err(raft_err(ErrorSubject::StateMachine, ErrorVerb::Write))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, RaftStorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), RaftStorageError> {
        let this = self.clone();
        let owned_meta = meta.clone();
        let data = snapshot.into_inner();
        blocking(move || this.install(&owned_meta, data))
            .await
            .map_err(raft_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
            ))
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, RaftStorageError> {
        self.current_snapshot()
            .map_err(raft_err(ErrorSubject::Snapshot(None), ErrorVerb::Read))
    }
}
