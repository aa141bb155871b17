//! An in-memory store for tests and fuzzing: [`MemKv`], a plain key/value
//! [`RawStore`], under the same barrier layer as the cluster
//! ([`MemStore`] = [`BarrierStore`]`<MemKv>` with a random keyring).
//!
//! It honours the contract the engines rely on: revisions, compare-and-set,
//! request-id deduplication and sealed blobs. Fault switches let tests
//! simulate a sealed node (at the barrier, as on a cluster node), a write whose answer was lost and a lagging
//! replica (reads see an older snapshot until the next read fence). Not
//! durable, not replicated, and not in the shipped binary (only under the
//! `test-util` feature).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::barrier_store::{BarrierStore, FixedBarrier};
use super::store::{Compare, Mutation, Outcome, RawStore, StoreError, Txn, Versioned};
use coffer_seal::{Barrier, Keyring};

type Data = BTreeMap<Vec<u8>, (u64, Vec<u8>)>;

/// The stored data at one moment (see [`MemKv::lag_behind`]).
#[derive(Clone, Default)]
pub struct Snapshot(Data);

#[derive(Clone, Default)]
struct State {
    data: Data,
    /// What reads see while the simulated replica lags (`None`: current).
    view: Option<Data>,
    revision: u64,
    /// request id → (succeeded, revision, result)
    seen: HashMap<String, (bool, u64, Vec<u8>)>,
}

/// The in-memory key/value store below the barrier. See the module docs.
pub struct MemKv {
    state: Mutex<State>,
    remember_failed: bool,
    lose_answers: AtomicUsize,
    commits: AtomicUsize,
    fences: AtomicUsize,
}

impl Default for MemKv {
    fn default() -> Self {
        Self::new()
    }
}

impl MemKv {
    /// An empty store that remembers only applied request ids.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            remember_failed: false,
            lose_answers: AtomicUsize::new(0),
            commits: AtomicUsize::new(0),
            fences: AtomicUsize::new(0),
        }
    }

    /// An empty store that also remembers request ids of transactions whose
    /// comparison failed (the stricter of the two dedup behaviours).
    pub fn remembering_failures() -> Self {
        Self {
            remember_failed: true,
            ..Self::new()
        }
    }

    /// The next `n` commits are applied but answered with
    /// [`StoreError::Unavailable`], like a leader that crashed after commit.
    pub fn lose_next_answers(&self, n: usize) {
        self.lose_answers.store(n, Ordering::SeqCst);
    }

    /// How many commits were submitted so far.
    pub fn commit_count(&self) -> usize {
        self.commits.load(Ordering::SeqCst)
    }

    /// How many read fences were requested so far.
    pub fn fence_count(&self) -> usize {
        self.fences.load(Ordering::SeqCst)
    }

    /// The data as it is now, to replay later as a lagging view.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.lock().data.clone())
    }

    /// Simulates a replica that has not yet applied the latest writes:
    /// `get` and `scan` answer from `snapshot` until the next
    /// [`RawStore::read_fence`] or answered commit. Commits still apply to
    /// (and compare against) the current data, as a Raft leader would.
    pub fn lag_behind(&self, snapshot: Snapshot) {
        self.lock().view = Some(snapshot.0);
    }

    /// Every key currently stored, in order (for assertions).
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.lock().data.keys().cloned().collect()
    }

    /// A separate store holding a copy of everything this one holds (data,
    /// revisions and remembered request ids): a fixture built once and
    /// reused fresh by every test or fuzz iteration.
    pub fn fork(&self) -> Self {
        Self {
            state: Mutex::new(self.lock().clone()),
            remember_failed: self.remember_failed,
            ..Self::new()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread must not wedge the others.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply(&self, request_id: Option<&str>, txn: Txn) -> Outcome {
        let mut st = self.lock();
        if let Some((succeeded, revision, result)) = request_id.and_then(|id| st.seen.get(id)) {
            return Outcome {
                succeeded: *succeeded,
                revision: *revision,
                result: Zeroizing::new(result.clone()),
                deduplicated: true,
            };
        }
        st.revision += 1;
        let revision = st.revision;
        let holds = txn.compare.iter().all(|c| match c {
            Compare::Revision { key, revision } => {
                st.data.get(key).map(|(r, _)| *r).unwrap_or(0) == *revision
            }
        });
        if holds {
            for m in txn.mutations {
                match m {
                    Mutation::Put { key, value } => {
                        st.data.insert(key, (revision, value));
                    }
                    Mutation::Delete { key } => {
                        st.data.remove(&key);
                    }
                    Mutation::DeletePrefix { prefix } => {
                        st.data.retain(|k, _| !k.starts_with(&prefix));
                    }
                    // Live restore is a cluster operation (raft-store); the
                    // engines never stage one.
                    Mutation::RestoreStaged { prefix } => {
                        st.data.retain(|k, _| !k.starts_with(&prefix));
                    }
                    // Batches are built by the cluster's proposer from
                    // whole requests, never inside an engine transaction.
                    Mutation::Batch { .. } => {}
                }
            }
        }
        let result = if holds { txn.result } else { Vec::new() };
        if let Some(id) = request_id {
            if holds || self.remember_failed {
                st.seen
                    .insert(id.to_owned(), (holds, revision, result.clone()));
            }
        }
        Outcome {
            succeeded: holds,
            revision,
            result: Zeroizing::new(result),
            deduplicated: false,
        }
    }
}

impl State {
    /// The data reads see: the lagging view if one is set.
    fn visible(&self) -> &Data {
        self.view.as_ref().unwrap_or(&self.data)
    }
}

#[async_trait]
impl RawStore for MemKv {
    async fn read_fence(&self) -> Result<(), StoreError> {
        self.fences.fetch_add(1, Ordering::SeqCst);
        self.lock().view = None;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StoreError> {
        let st = self.lock();
        Ok(st.visible().get(key).map(|(revision, v)| Versioned {
            revision: *revision,
            value: v.clone(),
        }))
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        let st = self.lock();
        let lower = match start_after {
            Some(s) if s >= prefix => std::ops::Bound::Excluded(s.to_vec()),
            _ => std::ops::Bound::Included(prefix.to_vec()),
        };
        Ok(st
            .visible()
            .range((lower, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, (revision, v))| {
                (
                    k.clone(),
                    Versioned {
                        revision: *revision,
                        value: v.clone(),
                    },
                )
            })
            .collect())
    }

    async fn commit(&self, request_id: Option<&str>, txn: Txn) -> Result<Outcome, StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        // Yield so concurrent writers interleave between read and commit.
        tokio::task::yield_now().await;
        let outcome = self.apply(request_id, txn);
        let lost = self
            .lose_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lost {
            return Err(StoreError::Unavailable("answer lost (test fault)".into()));
        }
        // An answered commit has been applied here, and so has everything
        // before it: the store's contract, which a lagging replica keeps
        // by waiting for its apply.
        self.lock().view = None;
        Ok(outcome)
    }
}

/// The engines' in-memory store: [`MemKv`] under the barrier layer.
pub type MemStore = BarrierStore<MemKv, FixedBarrier>;

impl Default for MemStore {
    fn default() -> Self {
        Self::new_in_memory(MemKv::new())
    }
}

impl MemStore {
    /// An empty store (random keyring) that remembers only applied request ids.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that also remembers request ids of transactions whose
    /// comparison failed (the stricter of the two dedup behaviours).
    pub fn remembering_failures() -> Self {
        Self::new_in_memory(MemKv::remembering_failures())
    }

    /// An empty store encrypting with `barrier` (a fixed keyring, so blobs
    /// made in one process open in another: fuzz seeds).
    pub fn with_barrier(barrier: Arc<Barrier>) -> Self {
        BarrierStore::over(MemKv::new(), Arc::new(FixedBarrier::new(barrier)))
    }

    fn new_in_memory(kv: MemKv) -> Self {
        let barrier = Arc::new(Barrier::new(Keyring::generate()));
        BarrierStore::over(kv, Arc::new(FixedBarrier::new(barrier)))
    }

    /// A copy of this store (same data, same keyring, its own seal
    /// switch); see [`MemKv::fork`].
    pub fn fork(&self) -> Self {
        let barrier = FixedBarrier::new(Arc::clone(self.barrier_source().fixed()));
        BarrierStore::over(self.raw().fork(), Arc::new(barrier))
    }

    /// Simulates a sealed node (or ends that): the barrier is gone, so
    /// reads, writes and blobs fail with [`StoreError::Sealed`], as on a
    /// sealed cluster node; read fences still pass.
    pub fn set_sealed(&self, sealed: bool) {
        self.barrier_source().set_sealed(sealed);
    }

    /// See [`MemKv::lose_next_answers`].
    pub fn lose_next_answers(&self, n: usize) {
        self.raw().lose_next_answers(n);
    }

    /// See [`MemKv::commit_count`].
    pub fn commit_count(&self) -> usize {
        self.raw().commit_count()
    }

    /// See [`MemKv::fence_count`].
    pub fn fence_count(&self) -> usize {
        self.raw().fence_count()
    }

    /// See [`MemKv::snapshot`].
    pub fn snapshot(&self) -> Snapshot {
        self.raw().snapshot()
    }

    /// See [`MemKv::lag_behind`].
    pub fn lag_behind(&self, snapshot: Snapshot) {
        self.raw().lag_behind(snapshot);
    }

    /// See [`MemKv::keys`].
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.raw().keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn put(key: &[u8], value: &[u8]) -> Mutation {
        Mutation::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    #[tokio::test]
    async fn cas_applies_only_when_revision_matches() {
        let s = MemStore::new();
        let txn = |rev| Txn {
            compare: vec![Compare::Revision {
                key: b"k".to_vec(),
                revision: rev,
            }],
            mutations: vec![put(b"k", b"v")],
            result: b"r".to_vec(),
        };
        let first = s.commit(None, txn(0)).await.unwrap();
        assert!(first.succeeded);
        assert!(!s.commit(None, txn(0)).await.unwrap().succeeded);
        assert!(s.commit(None, txn(first.revision)).await.unwrap().succeeded);
    }

    #[tokio::test]
    async fn retried_request_id_replays_first_result() {
        let s = MemStore::new();
        let txn = |v: &[u8]| Txn {
            compare: vec![],
            mutations: vec![put(b"k", v)],
            result: v.to_vec(),
        };
        s.commit(Some("id"), txn(b"one")).await.unwrap();
        let again = s.commit(Some("id"), txn(b"two")).await.unwrap();
        assert!(again.deduplicated);
        assert_eq!(again.result.as_slice(), b"one");
        assert_eq!(s.get(b"k").unwrap().unwrap().value.as_slice(), b"one");
    }

    #[tokio::test]
    async fn blobs_open_only_with_same_purpose() {
        let s = MemStore::new();
        let blob = s.seal_blob(b"p", b"hello").unwrap();
        assert_eq!(s.open_blob(b"p", &blob).unwrap().as_slice(), b"hello");
        assert!(s.open_blob(b"q", &blob).is_err());
        assert!(s.open_blob(b"p", b"junk").is_err());
    }
}
