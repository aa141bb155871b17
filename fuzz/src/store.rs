//! The engines' [`Store`] for fuzzing: data in a [`MemStore`], backup blobs
//! sealed and opened by the real [`Barrier`] under a fixed keyring, and a
//! recorded setup that every fuzz iteration replays into a fresh store (so
//! iterations do not pile up state and each run starts from the same data).

use std::sync::{Arc, Mutex, OnceLock};

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use async_trait::async_trait;
use coffer::engine::mem_store::MemStore;
use coffer::engine::store::{Entry, Outcome, Store, StoreError, Txn};
use coffer::seal::keyring::KEYRING_AAD;
use coffer::seal::{Barrier, Keyring, SealError};
use zeroize::Zeroizing;

/// Root key of the fixed test keyring (never used outside fuzzing).
pub const TEST_ROOT_KEY: [u8; 32] = [0x5a; 32];
/// The one data key of the fixed test keyring (term 1).
pub const TEST_DATA_KEY: [u8; 32] = [0xc3; 32];

/// A `keyring_record` holding [`TEST_DATA_KEY`] at term 1, sealed under
/// [`TEST_ROOT_KEY`]. Built here from the documented record layout
/// (`version 1 | nonce | AES-256-GCM-SIV(root, postcard keyring, "coffer/keyring")`)
/// because Coffer only ever makes keyrings with random keys; the keyring
/// parser itself then validates it.
pub fn test_keyring_record(plain: &[u8]) -> Vec<u8> {
    let cipher = Aes256GcmSiv::new_from_slice(&TEST_ROOT_KEY).expect("32-byte key");
    let nonce = [7u8; 12];
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: KEYRING_AAD,
            },
        )
        .expect("AES-GCM-SIV seal of a small record");
    let mut out = vec![1u8];
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Postcard form of the fixed keyring: format 1, active term 1, one key
/// (varints below 128 are one byte; the key array has no length prefix).
pub fn test_keyring_plain() -> Vec<u8> {
    let mut plain = vec![1u8, 1, 1, 1];
    plain.extend_from_slice(&TEST_DATA_KEY);
    plain
}

/// The barrier over the fixed test keyring, as the node builds it after
/// unseal (through [`Keyring::decrypt`]).
pub fn test_barrier() -> Arc<Barrier> {
    static B: OnceLock<Arc<Barrier>> = OnceLock::new();
    B.get_or_init(|| {
        let record = test_keyring_record(&test_keyring_plain());
        let keyring = Keyring::decrypt(&TEST_ROOT_KEY, &record)
            .expect("the fixed test keyring record no longer parses: update fuzz/src/store.rs");
        Arc::new(Barrier::new(keyring))
    })
    .clone()
}

/// One recorded commit of the setup.
type Recorded = (Option<String>, Txn);

/// See the module docs.
pub struct FuzzStore {
    data: MemStore,
    barrier: Arc<Barrier>,
    recording: Mutex<Option<Vec<Recorded>>>,
}

impl FuzzStore {
    /// An empty store that records its commits (for [`FuzzStore::replay`]).
    pub fn recording() -> Self {
        Self {
            data: MemStore::new(),
            barrier: test_barrier(),
            recording: Mutex::new(Some(Vec::new())),
        }
    }

    /// Stops recording and returns what was committed so far.
    pub fn take_log(&self) -> Vec<Recorded> {
        self.lock().take().unwrap_or_default()
    }

    /// A fresh store holding exactly what `log` committed.
    pub async fn replay(log: &[Recorded]) -> Self {
        let store = Self {
            data: MemStore::new(),
            barrier: test_barrier(),
            recording: Mutex::new(None),
        };
        for (id, txn) in log {
            let out = store
                .data
                .commit(id.as_deref(), txn.clone())
                .await
                .expect("replaying the setup into a MemStore");
            assert!(out.succeeded, "setup replay diverged");
        }
        store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<Recorded>>> {
        self.recording.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The cluster store's mapping of seal errors (`cluster/store.rs`).
fn seal_err(e: SealError) -> StoreError {
    match e {
        SealError::Sealed => StoreError::Sealed,
        SealError::NotInitialized => StoreError::NotInitialized,
        other => StoreError::Corrupt(other.to_string()),
    }
}

#[async_trait]
impl Store for FuzzStore {
    async fn read_fence(&self) -> Result<(), StoreError> {
        self.data.read_fence().await
    }

    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.data.get(key)
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        self.data.scan(prefix, start_after, limit)
    }

    async fn commit(&self, request_id: Option<&str>, txn: Txn) -> Result<Outcome, StoreError> {
        if let Some(log) = self.lock().as_mut() {
            log.push((request_id.map(str::to_owned), txn.clone()));
        }
        self.data.commit(request_id, txn).await
    }

    /// As `ClusterStore::seal_blob`: the barrier with the purpose as AAD.
    fn seal_blob(&self, purpose: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(self.barrier.encrypt(purpose, plaintext))
    }

    /// As `ClusterStore::open_blob` (without the keyring reload, which
    /// needs a cluster node: an unknown term stays an error).
    fn open_blob(&self, purpose: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.barrier.decrypt(purpose, blob).map_err(seal_err)
    }
}
