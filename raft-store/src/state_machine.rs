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
use crate::tables::{
    decode, durable_write, encode, lazy_write, DEDUP, DEDUP_BY_TIME, KV, SM_META, SNAPSHOT,
};
use crate::{Node, NodeId, Response, TypeConfig, Versioned};

/// Default time a request id is remembered for deduplication: one hour.
pub const DEFAULT_DEDUP_WINDOW_MS: u64 = 60 * 60 * 1000;

/// Last applied log id and the last applied membership.
pub type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, Node>);

/// Applied entries after which an apply batch is committed durably anyway,
/// bounding how much a restart re-applies from the log.
const DURABLE_APPLY_EVERY: u64 = 1024;

struct Inner {
    db: Database,
    /// Mirrors the stored last applied index so readers need no transaction.
    applied: AtomicU64,
    /// Last applied index known to be on disk.
    durable_applied: AtomicU64,
    dedup_window_ms: u64,
}

impl Drop for Inner {
    // A clean close persists the lazily committed applies, so a normal
    // restart re-applies nothing.
    fn drop(&mut self) {
        let flush = durable_write(&self.db).and_then(|t| Ok(t.commit()?));
        if let Err(e) = flush {
            tracing::warn!(error = %e, "state machine flush on close failed");
        }
    }
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
            durable_applied: AtomicU64::new(applied.map_or(0, |l| l.index)),
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
    pub fn applied_state_sync(&self) -> Result<AppliedState, StorageError> {
        read_applied(&self.inner.db.begin_read()?)
    }

    fn apply_entries(
        &self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<Response>, StorageError> {
        let last = entries.last().map(|e| e.log_id.index);
        // Applies are committed without fsync: every applied entry is in the
        // durable Raft log, and after a crash the state machine comes back at
        // its last durable commit (redb never exposes a partial one) and
        // openraft re-applies the committed entries after it. Snapshots are
        // written durably, and the log is only purged behind a snapshot, so
        // the entries to re-apply are always still there.
        let durable_from = self.inner.durable_applied.load(Ordering::Acquire);
        let durable = last.is_some_and(|l| l.saturating_sub(durable_from) >= DURABLE_APPLY_EVERY);
        let txn = if durable {
            durable_write(&self.inner.db)?
        } else {
            lazy_write(&self.inner.db)?
        };
        let responses = apply_batch(&txn, entries, self.inner.dedup_window_ms)?;
        txn.commit()?;
        if let Some(last) = last {
            self.inner.applied.store(last, Ordering::Release);
            if durable {
                self.inner.durable_applied.store(last, Ordering::Release);
            }
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

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload, Membership};

    use redb::ReadableTableMetadata;

    use super::*;
    use crate::{Compare, Mutation, Request, Txn};

    fn store(window_ms: u64) -> (tempfile::TempDir, StateMachineStore) {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachineStore::open(&dir.path().join("state.redb"), window_ms).unwrap();
        (dir, sm)
    }

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn normal(index: u64, req: Request) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(req),
        }
    }

    fn put(key: &str, value: &str) -> Mutation {
        Mutation::Put {
            key: key.into(),
            value: value.into(),
        }
    }

    fn req(
        id: Option<&str>,
        time_ms: u64,
        compare: Vec<Compare>,
        mutations: Vec<Mutation>,
    ) -> Request {
        Request {
            request_id: id.map(str::to_owned),
            time_ms,
            txn: Txn {
                compare,
                mutations,
                result: b"done".to_vec(),
            },
        }
    }

    fn rev(key: &str, revision: u64) -> Compare {
        Compare::Revision {
            key: key.into(),
            revision,
        }
    }

    fn apply_one(sm: &StateMachineStore, index: u64, r: Request) -> Response {
        sm.apply_entries(vec![normal(index, r)]).unwrap().remove(0)
    }

    fn value(sm: &StateMachineStore, key: &str) -> Option<(u64, Vec<u8>)> {
        sm.get(key.as_bytes())
            .unwrap()
            .map(|v| (v.revision, v.value))
    }

    #[test]
    fn cas_applies_only_when_revisions_match() {
        let (_d, sm) = store(DEFAULT_DEDUP_WINDOW_MS);
        let r = apply_one(&sm, 1, req(None, 0, vec![rev("a", 0)], vec![put("a", "1")]));
        assert!(r.succeeded);
        assert_eq!((r.revision, r.result.as_slice()), (1, &b"done"[..]));
        assert_eq!(value(&sm, "a"), Some((1, b"1".to_vec())));

        // Stale revision: nothing changes, empty result.
        let r = apply_one(
            &sm,
            2,
            req(
                None,
                0,
                vec![rev("a", 0)],
                vec![put("a", "2"), put("b", "x")],
            ),
        );
        assert!(!r.succeeded);
        assert_eq!((r.revision, r.result.len()), (2, 0));
        assert_eq!(value(&sm, "a"), Some((1, b"1".to_vec())));
        assert_eq!(value(&sm, "b"), None);

        let r = apply_one(
            &sm,
            3,
            req(None, 0, vec![rev("a", 1), rev("b", 0)], vec![put("a", "3")]),
        );
        assert!(r.succeeded);
        assert_eq!(value(&sm, "a"), Some((3, b"3".to_vec())));
        assert_eq!(sm.applied_index(), 3);
    }

    #[test]
    fn duplicate_request_replays_first_response_and_changes_nothing() {
        let (_d, sm) = store(DEFAULT_DEDUP_WINDOW_MS);
        let first = apply_one(&sm, 1, req(Some("id1"), 1000, vec![], vec![put("k", "v1")]));
        assert!(first.succeeded && !first.deduplicated);

        let again = apply_one(&sm, 2, req(Some("id1"), 2000, vec![], vec![put("k", "v2")]));
        assert!(again.deduplicated);
        assert_eq!(
            (again.succeeded, again.revision, again.result),
            (true, 1, b"done".to_vec())
        );
        assert_eq!(value(&sm, "k"), Some((1, b"v1".to_vec())));

        // A failed outcome is remembered too.
        let failed = apply_one(
            &sm,
            3,
            req(Some("id2"), 3000, vec![rev("k", 99)], vec![put("k", "x")]),
        );
        assert!(!failed.succeeded);
        let replay = apply_one(
            &sm,
            4,
            req(Some("id2"), 3000, vec![rev("k", 1)], vec![put("k", "x")]),
        );
        assert!(replay.deduplicated && !replay.succeeded);
        assert_eq!(replay.revision, 3);
        assert_eq!(value(&sm, "k"), Some((1, b"v1".to_vec())));
        assert_eq!(sm.applied_index(), 4);
    }

    #[test]
    fn request_ids_expire_after_the_window() {
        let (_d, sm) = store(1000);
        apply_one(
            &sm,
            1,
            req(Some("old"), 10_000, vec![], vec![put("k", "v1")]),
        );
        // Within the window: deduplicated.
        let r = apply_one(
            &sm,
            2,
            req(Some("old"), 11_000, vec![], vec![put("k", "v2")]),
        );
        assert!(r.deduplicated);
        // Past the window the id is forgotten and the request applies again.
        let r = apply_one(
            &sm,
            3,
            req(Some("old"), 11_001, vec![], vec![put("k", "v3")]),
        );
        assert!(!r.deduplicated && r.succeeded);
        assert_eq!(value(&sm, "k"), Some((3, b"v3".to_vec())));
        let txn = sm.inner.db.begin_read().unwrap();
        assert_eq!(txn.open_table(DEDUP).unwrap().len().unwrap(), 1);
        assert_eq!(txn.open_table(DEDUP_BY_TIME).unwrap().len().unwrap(), 1);
    }

    #[test]
    fn delete_prefix_removes_only_matching_keys() {
        let (_d, sm) = store(DEFAULT_DEDUP_WINDOW_MS);
        let puts = ["s/a/1", "s/a/2", "s/ab", "s/b/1", "s/"]
            .map(|k| put(k, "v"))
            .to_vec();
        apply_one(&sm, 1, req(None, 0, vec![], puts));
        let del = vec![
            Mutation::DeletePrefix {
                prefix: b"s/a/".to_vec(),
            },
            Mutation::Delete {
                key: b"s/".to_vec(),
            },
        ];
        apply_one(&sm, 2, req(None, 0, vec![], del));
        let keys: Vec<_> = sm
            .scan_prefix(b"", None, 100)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"s/ab".to_vec(), b"s/b/1".to_vec()]);
    }

    #[test]
    fn scan_prefix_pages_with_start_after() {
        let (_d, sm) = store(DEFAULT_DEDUP_WINDOW_MS);
        let mut puts: Vec<_> = (0..7).map(|i| put(&format!("p/{i}"), "v")).collect();
        puts.extend([put("o", "v"), put("q", "v")]);
        apply_one(&sm, 1, req(None, 0, vec![], puts));
        let mut seen = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let page = sm.scan_prefix(b"p/", cursor.as_deref(), 3).unwrap();
            assert!(page.len() <= 3);
            let Some((last, _)) = page.last() else { break };
            cursor = Some(last.clone());
            seen.extend(page.into_iter().map(|(k, _)| String::from_utf8(k).unwrap()));
        }
        let expected: Vec<_> = (0..7).map(|i| format!("p/{i}")).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn snapshot_roundtrip_preserves_state_and_dedup() {
        let (_d1, a) = store(DEFAULT_DEDUP_WINDOW_MS);
        let (_d2, b) = store(DEFAULT_DEDUP_WINDOW_MS);
        let members = Membership::new(vec![[1u64, 2].into()], None);
        let entries = vec![
            Entry {
                log_id: log_id(1),
                payload: EntryPayload::Membership(members),
            },
            normal(
                2,
                req(Some("x"), 5, vec![], vec![put("k1", "v1"), put("k2", "v2")]),
            ),
        ];
        a.apply_entries(entries).unwrap();
        // State on b that the snapshot must replace.
        b.apply_entries(vec![normal(
            1,
            req(None, 0, vec![], vec![put("zz", "gone")]),
        )])
        .unwrap();

        let snap = a.build().unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(2)));
        b.install(&snap.meta, snap.snapshot.into_inner()).unwrap();

        assert_eq!(a.digest().unwrap(), b.digest().unwrap());
        assert_eq!(b.get(b"zz").unwrap(), None);
        assert_eq!(b.applied_index(), 2);
        assert_eq!(
            a.applied_state_sync().unwrap(),
            b.applied_state_sync().unwrap()
        );
        let current = b.current_snapshot().unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);
        // The dedup memory came along: a retry on b is answered from it.
        let r = apply_one(&b, 3, req(Some("x"), 6, vec![], vec![put("k1", "other")]));
        assert!(r.deduplicated);
        assert_eq!(r.revision, 2);
    }

    #[test]
    fn digest_changes_with_content() {
        let (_d, sm) = store(DEFAULT_DEDUP_WINDOW_MS);
        let empty = sm.digest().unwrap();
        apply_one(&sm, 1, req(None, 0, vec![], vec![put("k", "v")]));
        assert_ne!(sm.digest().unwrap(), empty);
        assert_eq!(sm.digest().unwrap().len(), 64);
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let sm = StateMachineStore::open(&path, DEFAULT_DEDUP_WINDOW_MS).unwrap();
            apply_one(&sm, 5, req(Some("r"), 1, vec![], vec![put("k", "v")]));
        }
        let sm = StateMachineStore::open(&path, DEFAULT_DEDUP_WINDOW_MS).unwrap();
        assert_eq!(sm.applied_index(), 5);
        assert_eq!(value(&sm, "k"), Some((5, b"v".to_vec())));
        assert!(apply_one(&sm, 6, req(Some("r"), 2, vec![], vec![])).deduplicated);
    }
}
