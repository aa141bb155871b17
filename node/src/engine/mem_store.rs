//! An in-memory [`Store`] for tests and single-process development.
//!
//! It honours the contract the engines rely on: revisions, compare-and-set,
//! request-id deduplication and sealed blobs (AES-256-GCM-SIV under a random
//! per-instance key). Fault switches let tests simulate a sealed node, a
//! write whose answer was lost and a lagging replica (reads see an older
//! snapshot until the next read fence). Not durable, not replicated: never
//! use it to hold real secrets.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use async_trait::async_trait;
use rand::RngCore;
use zeroize::Zeroizing;

use super::store::{Compare, Entry, Mutation, Outcome, Store, StoreError, Txn};

type Data = BTreeMap<Vec<u8>, (u64, Vec<u8>)>;

/// The stored data at one moment (see [`MemStore::lag_behind`]).
#[derive(Clone, Default)]
pub struct Snapshot(Data);

#[derive(Default)]
struct State {
    data: Data,
    /// What reads see while the simulated replica lags (`None`: current).
    view: Option<Data>,
    revision: u64,
    /// request id → (succeeded, revision, result)
    seen: HashMap<String, (bool, u64, Vec<u8>)>,
}

/// In-memory store. See the module docs.
pub struct MemStore {
    state: Mutex<State>,
    cipher: Aes256GcmSiv,
    sealed: AtomicBool,
    remember_failed: bool,
    lose_answers: AtomicUsize,
    commits: AtomicUsize,
    fences: AtomicUsize,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// An empty store that remembers only applied request ids.
    pub fn new() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        Self {
            state: Mutex::new(State::default()),
            cipher: Aes256GcmSiv::new(aes_gcm_siv::Key::<Aes256GcmSiv>::from_slice(key.as_ref())),
            sealed: AtomicBool::new(false),
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

    /// Makes every call fail with [`StoreError::Sealed`] (or stop failing).
    pub fn set_sealed(&self, sealed: bool) {
        self.sealed.store(sealed, Ordering::SeqCst);
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
    /// [`Store::read_fence`]. Commits still apply to (and compare against)
    /// the current data, as a Raft leader would.
    pub fn lag_behind(&self, snapshot: Snapshot) {
        self.lock().view = Some(snapshot.0);
    }

    /// Every key currently stored, in order (for assertions).
    pub fn keys(&self) -> Vec<Vec<u8>> {
        self.lock().data.keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread must not wedge the others.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_unsealed(&self) -> Result<(), StoreError> {
        if self.sealed.load(Ordering::SeqCst) {
            Err(StoreError::Sealed)
        } else {
            Ok(())
        }
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
impl Store for MemStore {
    async fn read_fence(&self) -> Result<(), StoreError> {
        self.check_unsealed()?;
        self.fences.fetch_add(1, Ordering::SeqCst);
        self.lock().view = None;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.check_unsealed()?;
        let st = self.lock();
        Ok(st.visible().get(key).map(|(revision, v)| Entry {
            revision: *revision,
            value: Zeroizing::new(v.clone()),
        }))
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        self.check_unsealed()?;
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
                    Entry {
                        revision: *revision,
                        value: Zeroizing::new(v.clone()),
                    },
                )
            })
            .collect())
    }

    async fn commit(&self, request_id: Option<&str>, txn: Txn) -> Result<Outcome, StoreError> {
        self.check_unsealed()?;
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
        Ok(outcome)
    }

    fn seal_blob(&self, purpose: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.check_unsealed()?;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose,
                },
            )
            .map_err(|_| StoreError::Internal("blob encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn open_blob(&self, purpose: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.check_unsealed()?;
        if blob.len() < 12 {
            return Err(StoreError::Corrupt("blob too short".into()));
        }
        let (nonce, ct) = blob.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: purpose,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| StoreError::Corrupt("blob does not authenticate".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
