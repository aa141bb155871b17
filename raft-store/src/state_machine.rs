//! The replicated key/value state machine, stored in `state.redb`, and its
//! snapshots, stored as files in `snapshots/`.

use std::fs::{self, File, OpenOptions};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle};
use sha2::{Digest, Sha256};

use crate::apply::{apply_batch, DedupRecord};
use crate::digest::{DigestRing, StateDigest, StateSum};
use crate::error::{blocking, raft_err, RaftStorageError, RateLimit, StorageError};
use crate::snapshot::{
    copy_to_new, read_applied, restore_from, verify_snapshot_file, write_from_state, SnapshotDir,
    SnapshotHeader, SnapshotSummary,
};
use crate::tables::{
    decode, decode_ref, durable_write, encode, get_meta, lazy_write, open_db, table_names, DEDUP,
    DEDUP_BY_TIME, KEY_DIGEST, KV, LEGACY_SNAPSHOT, SM_META,
};
use crate::{
    Node, NodeId, Response, StoreOptions, TypeConfig, Versioned, SNAPSHOT_DIR, STATE_FILE,
};

/// Default time a request id is remembered for deduplication: one hour.
pub const DEFAULT_DEDUP_WINDOW_MS: u64 = 60 * 60 * 1000;

/// Last applied log id and the last applied membership.
pub type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, Node>);

/// Applied entries after which an apply batch is committed durably anyway,
/// bounding how much a restart re-applies from the log.
const DURABLE_APPLY_EVERY: u64 = 1024;

struct Inner {
    db: Database,
    /// `state.redb`, for error messages.
    path: PathBuf,
    snapshots: SnapshotDir,
    /// Mirrors the stored last applied index so readers need no transaction.
    applied: AtomicU64,
    /// Last applied index known to be on disk.
    durable_applied: AtomicU64,
    /// Bytes of the entries applied since the store was opened (by
    /// [`crate::entry_bytes`]): the snapshot pace compares the log written
    /// since the last snapshot with the snapshot's size.
    applied_bytes: AtomicU64,
    dedup_window_ms: u64,
    /// The KV digest as of the last commit, and its recent history.
    digest: Mutex<DigestState>,
    /// Temporary files handed out by `begin_receiving_snapshot`.
    receiving: Mutex<Vec<PathBuf>>,
    /// Test hook called while a snapshot is being written, with the number
    /// of key/value records written so far.
    #[cfg(test)]
    build_hook: Mutex<Option<BuildHook>>,
}

/// See `Inner::build_hook`.
#[cfg(test)]
type BuildHook = Box<dyn FnMut(u64) + Send>;

struct DigestState {
    applied: u64,
    sum: StateSum,
    ring: DigestRing,
}

impl Drop for Inner {
    // A clean close persists the lazily committed applies, so a normal
    // restart re-applies nothing.
    fn drop(&mut self) {
        let flush = durable_write(&self.db).and_then(|t| Ok(t.commit()?));
        if let Err(e) = flush {
            tracing::warn!(error = %e.at(&self.path), "state machine flush on close failed");
        }
    }
}

/// One error line per minute for refused snapshots.
static REFUSED_SNAPSHOT_LOG: RateLimit = RateLimit::new(std::time::Duration::from_secs(60));

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The newest snapshot, opened by [`StateMachineStore::open_current_snapshot`].
#[derive(Debug)]
pub struct OpenSnapshot {
    /// What it covers.
    pub meta: SnapshotMeta<NodeId, Node>,
    /// Where it was published (it may since have been pruned).
    pub path: PathBuf,
    /// A handle that stays readable after the file is pruned.
    pub file: File,
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
    /// Opens (creating if needed) `state.redb` and `snapshots/` in `dir`.
    ///
    /// With `opts.verify_on_open` (the default) redb verifies every page
    /// checksum, the whole KV table is re-hashed and compared with the
    /// stored digest, the request-id tables are cross-checked, and the
    /// newest snapshot file is verified; any failure is
    /// [`StorageError::Corrupt`] naming the file. This does not depend on
    /// how the node last stopped.
    pub fn open(dir: &Path, opts: &StoreOptions) -> Result<Self, StorageError> {
        let path = dir.join(STATE_FILE);
        Self::open_inner(dir, &path, opts).map_err(|e| e.at(&path))
    }

    fn open_inner(dir: &Path, path: &Path, opts: &StoreOptions) -> Result<Self, StorageError> {
        // Durable commits of the state are two-phase (they are rare: every
        // 1024 applies, snapshots, close), so an older commit is never the
        // expected outcome of a crash; the Raft log would re-apply what it
        // lacks, but silent rollbacks would hide a failing disk.
        let mut db = open_db(path, opts)?.check(path)?;
        let names = table_names(&db)?;
        let has = |t: &str| names.iter().any(|n| n == t);
        let had_legacy_snapshot = has(LEGACY_SNAPSHOT.name());
        let complete = [
            SM_META.name(),
            KV.name(),
            DEDUP.name(),
            DEDUP_BY_TIME.name(),
        ]
        .iter()
        .all(|t| has(t));
        if !complete || had_legacy_snapshot {
            let txn = durable_write(&db)?;
            txn.open_table(SM_META)?;
            txn.open_table(KV)?;
            txn.open_table(DEDUP)?;
            txn.open_table(DEDUP_BY_TIME)?;
            txn.delete_table(LEGACY_SNAPSHOT)?;
            txn.commit()?;
        }
        if had_legacy_snapshot {
            // The old blob snapshot made the file large; give the space back.
            tracing::info!(file = %path.display(), "dropped the old in-database snapshot; compacting");
            while db.compact()? {}
        }

        let rtxn = db.begin_read()?;
        let (applied, _) = read_applied(&rtxn)?;
        let stored: Option<StateSum> = get_meta(&rtxn.open_table(SM_META)?, KEY_DIGEST)?;
        drop(rtxn);
        let sum = match stored {
            Some(stored) if !opts.verify_on_open => stored,
            Some(stored) => {
                let computed = scan_state(&db, path)?;
                if computed != stored {
                    return Err(StorageError::corrupt(
                        path,
                        format!(
                            "the key/value table does not match its stored digest ({} entries \
                             found, {} recorded)",
                            computed.entries(),
                            stored.entries()
                        ),
                    ));
                }
                computed
            }
            None => {
                // Written by a version without the digest: compute it once.
                let computed = scan_state(&db, path)?;
                let txn = durable_write(&db)?;
                txn.open_table(SM_META)?
                    .insert(KEY_DIGEST, encode(&computed)?.as_slice())?;
                txn.commit()?;
                computed
            }
        };
        let snapshots = SnapshotDir::open(&dir.join(SNAPSHOT_DIR), opts.verify_on_open)?;
        let applied = applied.map_or(0, |l| l.index);
        let mut ring = DigestRing::default();
        ring.reset(applied, sum);
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                path: path.to_path_buf(),
                snapshots,
                applied: AtomicU64::new(applied),
                durable_applied: AtomicU64::new(applied),
                applied_bytes: AtomicU64::new(0),
                dedup_window_ms: opts.dedup_window_ms,
                digest: Mutex::new(DigestState { applied, sum, ring }),
                receiving: Mutex::new(Vec::new()),
                #[cfg(test)]
                build_hook: Mutex::new(None),
            }),
        })
    }

    /// `state.redb`.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The value stored at `key` and the revision that wrote it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StorageError> {
        let read = || -> Result<_, StorageError> {
            let txn = self.inner.db.begin_read()?;
            let kv = txn.open_table(KV)?;
            let value = kv.get(key)?;
            value
                .map(|v| decode_ref(v.value()).map(|r| r.to_owned()))
                .transpose()
        };
        read().map_err(|e| e.at(&self.inner.path))
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
        let scan = || -> Result<_, StorageError> {
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
                out.push((k.value().to_vec(), decode_ref(v.value())?.to_owned()));
            }
            Ok(out)
        };
        scan().map_err(|e| e.at(&self.inner.path))
    }

    /// Index of the last applied log entry (0 before anything was applied).
    pub fn applied_index(&self) -> u64 {
        self.inner.applied.load(Ordering::Acquire)
    }

    /// The state's digest at the last applied index, from memory (O(1)).
    /// Equal on replicas that applied the same log up to the same index.
    pub fn digest(&self) -> StateDigest {
        let d = lock(&self.inner.digest);
        StateDigest::new(d.applied, &d.sum)
    }

    /// The digest right after `index` was applied, if it is among the last
    /// [`crate::DIGEST_RING`] applied entries (or is the index the store
    /// opened at or installed a snapshot at).
    pub fn digest_at(&self, index: u64) -> Option<StateDigest> {
        let d = lock(&self.inner.digest);
        d.ring.at(index).map(|s| StateDigest::new(index, &s))
    }

    /// Hex SHA-256 over every key/value pair in key order (a full scan).
    /// Kept for tools that compare replicas by it; [`Self::digest`] is the
    /// cheap, incrementally maintained one.
    pub fn ordered_digest(&self) -> Result<String, StorageError> {
        let scan = || -> Result<_, StorageError> {
            let txn = self.inner.db.begin_read()?;
            let mut hasher = Sha256::new();
            for item in txn.open_table(KV)?.iter()? {
                let (k, v) = item?;
                let v = decode_ref(v.value())?;
                // Length prefixes keep (key, value) boundaries unambiguous.
                hasher.update((k.value().len() as u64).to_be_bytes());
                hasher.update(k.value());
                hasher.update(v.revision.to_be_bytes());
                hasher.update((v.value.len() as u64).to_be_bytes());
                hasher.update(v.value);
            }
            Ok(hex::encode(hasher.finalize()))
        };
        scan().map_err(|e| e.at(&self.inner.path))
    }

    /// Last applied log id and membership as stored.
    pub fn applied_state_sync(&self) -> Result<AppliedState, StorageError> {
        let read = || -> Result<_, StorageError> { read_applied(&self.inner.db.begin_read()?) };
        read().map_err(|e| e.at(&self.inner.path))
    }

    /// The newest snapshot file and what it covers. The file is pruned when
    /// a newer snapshot is published; to read it, use
    /// [`StateMachineStore::open_current_snapshot`].
    pub fn current_snapshot_file(&self) -> Option<(SnapshotMeta<NodeId, Node>, PathBuf)> {
        self.inner.snapshots.current().map(|p| (p.meta, p.path))
    }

    /// The newest snapshot, opened while no publish can prune it: what it
    /// covers, its path and a handle that stays readable after a newer
    /// snapshot removes the file (streaming it to a member that repairs
    /// itself, or copying it into a backup).
    pub fn open_current_snapshot(&self) -> Result<Option<OpenSnapshot>, StorageError> {
        self.inner.snapshots.with_current(|current| {
            let Some(p) = current else { return Ok(None) };
            let file = File::open(&p.path).map_err(|e| StorageError::io(&p.path, e))?;
            Ok(Some(OpenSnapshot {
                meta: p.meta.clone(),
                path: p.path.clone(),
                file,
            }))
        })
    }

    /// Bytes of the entries this store applied since it was opened
    /// (estimated by [`crate::entry_bytes`], without encoding them).
    pub fn applied_bytes(&self) -> u64 {
        self.inner.applied_bytes.load(Ordering::Relaxed)
    }

    /// The snapshot directory.
    pub fn snapshot_dir(&self) -> &Path {
        self.inner.snapshots.dir()
    }

    fn apply_entries(
        &self,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Result<Vec<Response>, StorageError> {
        let last = entries.last().map(|e| e.log_id.index);
        let bytes: usize = entries.iter().map(crate::entry_bytes).sum();
        // Applies are committed without fsync: every applied entry is in the
        // durable Raft log, and after a crash the state machine comes back at
        // its last durable commit (redb never exposes a partial one) and
        // openraft re-applies the committed entries after it. The log is only
        // purged behind a durable snapshot file, and the open restores the
        // state from a snapshot ahead of it, so whatever is missing after a
        // crash is in the snapshot or still in the log.
        let durable_from = self.inner.durable_applied.load(Ordering::Acquire);
        let durable = last.is_some_and(|l| l.saturating_sub(durable_from) >= DURABLE_APPLY_EVERY);
        let txn = if durable {
            durable_write(&self.inner.db)?
        } else {
            lazy_write(&self.inner.db)?
        };
        // Applies run one at a time (openraft's state machine worker), so
        // the digest read here is the one the last commit stored.
        let start = lock(&self.inner.digest).sum;
        let applied = apply_batch(&txn, entries, self.inner.dedup_window_ms, start)?;
        txn.commit()?;
        if let Some(last) = last {
            {
                let mut d = lock(&self.inner.digest);
                d.sum = applied.sum;
                d.applied = last;
                for (index, sum) in applied.digests {
                    d.ring.push(index, sum);
                }
            }
            self.inner.applied.store(last, Ordering::Release);
            self.inner
                .applied_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
            if durable {
                self.inner.durable_applied.store(last, Ordering::Release);
            }
        }
        Ok(applied.responses)
    }

    /// Streams the state as of one read transaction into a new snapshot
    /// file; applies continue meanwhile (redb readers do not block writers).
    fn build(&self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let txn = self.inner.db.begin_read()?;
        let (last_log_id, last_membership) = read_applied(&txn)?;
        let stored: Option<StateSum> = get_meta(&txn.open_table(SM_META)?, KEY_DIGEST)?;
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id: snapshot_id(last_log_id),
        };
        let header = SnapshotHeader {
            meta: meta.clone(),
            created_unix_ms: unix_ms(),
            cluster_id: None,
            node_id: None,
        };
        let tmp = self.inner.snapshots.temp_path("build");
        let written = write_from_state(&txn, &tmp, &header, |_n| {
            #[cfg(test)]
            if let Some(hook) = lock(&self.inner.build_hook).as_mut() {
                hook(_n);
            }
        });
        drop(txn);
        let written = match written {
            Ok(sum) => sum,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        if stored.is_some_and(|s| s != written) {
            let _ = fs::remove_file(&tmp);
            return Err(StorageError::corrupt(
                &self.inner.path,
                format!(
                    "while building a snapshot at index {}: the key/value table does not \
                     match its stored digest",
                    last_log_id.map_or(0, |l| l.index)
                ),
            ));
        }
        // openraft purges the log behind this snapshot once it is reported.
        // The state it covers may still be only lazily committed, but the
        // file is durable once published, and after a crash the open
        // restores the state from a snapshot that is ahead of it (see
        // `crate::open_with`), so no durable commit — which would make
        // applies wait for its fsync — is needed here.
        let (published, file) = self.inner.snapshots.publish(&tmp, &meta)?;
        tracing::info!(
            file = %published.path.display(),
            index = last_log_id.map_or(0, |l| l.index),
            "snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }

    /// A new temporary file for a snapshot being received.
    fn begin_receiving(&self) -> Result<File, StorageError> {
        let path = self.inner.snapshots.temp_path("recv");
        // openraft streams one snapshot at a time; an earlier reception
        // that was never installed is abandoned.
        self.inner.snapshots.remove_stale_receptions(&path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, e))?;
        *lock(&self.inner.receiving) = vec![path];
        Ok(file)
    }

    /// The path of `file` when it is one of our reception temporaries.
    fn reception_path(&self, file: &File) -> Option<PathBuf> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let md = file.metadata().ok()?;
            let mut receiving = lock(&self.inner.receiving);
            let pos = receiving.iter().position(|p| {
                fs::metadata(p).is_ok_and(|m| m.dev() == md.dev() && m.ino() == md.ino())
            })?;
            Some(receiving.remove(pos))
        }
        #[cfg(not(unix))]
        {
            let _ = file;
            None
        }
    }

    /// Installs a received snapshot: verifies the file completely (format,
    /// records, digest, checksum) and that it covers what the leader
    /// announced, then publishes it and restores the state from it. A bad
    /// file is refused and nothing changes.
    fn install(
        &self,
        meta: &SnapshotMeta<NodeId, Node>,
        mut file: File,
    ) -> Result<SnapshotSummary, StorageError> {
        let tmp = match self.reception_path(&file) {
            Some(path) => {
                file.sync_all().map_err(|e| StorageError::io(&path, e))?;
                path
            }
            None => {
                // Not a file we handed out (openraft's test suite passes the
                // sender's own file): take a private copy.
                let path = self.inner.snapshots.temp_path("recv");
                copy_to_new(&mut file, &path)?;
                path
            }
        };
        drop(file);
        let summary = match verify_snapshot_file(&tmp) {
            Ok(s) => s,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                // A leader may send the same bad file again and again.
                if let Some(held_back) = REFUSED_SNAPSHOT_LOG.allow() {
                    tracing::error!(error = %e, held_back, "refused a received snapshot");
                }
                return Err(e);
            }
        };
        let covers = &summary.header.meta;
        if covers.last_log_id != meta.last_log_id || covers.last_membership != meta.last_membership
        {
            let _ = fs::remove_file(&tmp);
            return Err(StorageError::bad_snapshot(
                &tmp,
                format!(
                    "the file covers log id {:?}, the leader announced {:?}",
                    covers.last_log_id, meta.last_log_id
                ),
            ));
        }
        // Published before the state is replaced: if the process dies in
        // between, the next open finds a verified snapshot newer than the
        // state and finishes the install (see `crate::open_with`).
        let (published, file) = self.inner.snapshots.publish(&tmp, covers)?;
        self.restore_open(file, &published.path)
    }

    /// Replaces the whole state with the snapshot at `path` in one durable
    /// transaction, streaming from the file; the checksum is checked again
    /// on the way, and a failure aborts the transaction.
    pub(crate) fn restore_file(&self, path: &Path) -> Result<SnapshotSummary, StorageError> {
        let file = File::open(path).map_err(|e| StorageError::io(path, e))?;
        self.restore_open(file, path)
    }

    /// [`Self::restore_file`] from `file`, already open (`path` names it in
    /// messages; it may have been pruned since).
    fn restore_open(&self, file: File, path: &Path) -> Result<SnapshotSummary, StorageError> {
        let txn = durable_write(&self.inner.db).map_err(|e| e.at(&self.inner.path))?;
        let (summary, sum) = restore_from(&txn, file, path).map_err(|e| e.at(&self.inner.path))?;
        txn.commit()
            .map_err(|e| StorageError::from(e).at(&self.inner.path))?;
        let index = summary.index();
        {
            let mut d = lock(&self.inner.digest);
            d.applied = index;
            d.sum = sum;
            d.ring.reset(index, sum);
        }
        self.inner.applied.store(index, Ordering::Release);
        self.inner.durable_applied.store(index, Ordering::Release);
        tracing::info!(file = %path.display(), index, "state restored from snapshot");
        Ok(summary)
    }

    fn current_snapshot(&self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.open_current_snapshot()?.map(|open| Snapshot {
            meta: open.meta,
            snapshot: Box::new(tokio::fs::File::from_std(open.file)),
        }))
    }
}

/// Re-hashes the whole KV table and cross-checks the request-id tables.
fn scan_state(db: &Database, path: &Path) -> Result<StateSum, StorageError> {
    let txn = db.begin_read()?;
    let mut sum = StateSum::default();
    for item in txn.open_table(KV)?.iter()? {
        let (k, v) = item?;
        let v = decode_ref(v.value())?;
        sum.add(k.value(), v.revision, v.value);
    }
    let dedup = txn.open_table(DEDUP)?;
    let by_time = txn.open_table(DEDUP_BY_TIME)?;
    let mut n = 0u64;
    for item in dedup.iter()? {
        let (k, v) = item?;
        let rec: DedupRecord = decode(v.value())?;
        if by_time.get((rec.time_ms, k.value()))?.is_none() {
            return Err(StorageError::corrupt(
                path,
                "a remembered request id is missing from the expiry index",
            ));
        }
        n += 1;
    }
    if by_time.len()? != n {
        return Err(StorageError::corrupt(
            path,
            "the request-id expiry index does not match the request ids",
        ));
    }
    Ok(sum)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
            .map_err(|e| {
                tracing::error!(error = %e, "building a snapshot failed");
                e
            })
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
        blocking(move || {
            this.apply_entries(entries)
                .map_err(|e| e.at(&this.inner.path))
        })
        .await
        .map_err(raft_err(ErrorSubject::StateMachine, ErrorVerb::Write))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, RaftStorageError> {
        let this = self.clone();
        let file = blocking(move || this.begin_receiving())
            .await
            .map_err(raft_err(ErrorSubject::Snapshot(None), ErrorVerb::Write))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), RaftStorageError> {
        let this = self.clone();
        let owned_meta = meta.clone();
        // Waits for writes still buffered in the tokio file to finish.
        let file = snapshot.into_std().await;
        blocking(move || this.install(&owned_meta, file).map(|_| ()))
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
mod tests;
