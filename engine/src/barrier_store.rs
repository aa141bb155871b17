//! The barrier as a store layer: [`BarrierStore`] encrypts every value
//! (and every transaction result) on its way into a [`RawStore`] and
//! decrypts it on the way out, so the engines above see plaintext and every
//! store below (the replicated cluster store, the in-memory test store)
//! holds ciphertext only. Written once; no store carries its own AES code.
//!
//! The associated data of a value is its storage key, so a value cannot be
//! moved to another key; a transaction result uses [`TXN_RESULT_AAD`] and a
//! blob (backup) its purpose label.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::store::{Entry, Mutation, Outcome, RawStore, Store, StoreError, Txn, Versioned};
use coffer_seal::{Barrier, SealError, SealManager, KEYRING_KEY};

/// AAD of a transaction's `result` (values use their storage key).
pub const TXN_RESULT_AAD: &[u8] = b"coffer/txn-result";

/// Where the barrier comes from: the node's seal (absent while sealed), or
/// a fixed one (tests, fuzzing).
pub trait BarrierSource: Send + Sync + 'static {
    /// The current barrier; [`StoreError::Sealed`] while there is none.
    fn barrier(&self) -> Result<Arc<Barrier>, StoreError>;

    /// Replaces the keyring from its stored record (a keyring rotation
    /// replicated after unseal added a term this node has not loaded).
    fn reload_keyring(&self, record: &[u8]) -> Result<(), SealError>;
}

impl BarrierSource for SealManager {
    fn barrier(&self) -> Result<Arc<Barrier>, StoreError> {
        SealManager::barrier(self).ok_or(StoreError::Sealed)
    }

    fn reload_keyring(&self, record: &[u8]) -> Result<(), SealError> {
        SealManager::reload_keyring(self, record)
    }
}

/// A barrier that never changes (tests, fuzzing); it can be switched off
/// to simulate a sealed node.
#[derive(Debug)]
pub struct FixedBarrier {
    barrier: Arc<Barrier>,
    sealed: AtomicBool,
}

impl FixedBarrier {
    /// An unsealed source of `barrier`.
    pub fn new(barrier: Arc<Barrier>) -> Self {
        Self {
            barrier,
            sealed: AtomicBool::new(false),
        }
    }

    /// The barrier, sealed or not.
    pub fn fixed(&self) -> &Arc<Barrier> {
        &self.barrier
    }

    /// Seals (no barrier: [`StoreError::Sealed`]) or unseals.
    pub fn set_sealed(&self, sealed: bool) {
        self.sealed.store(sealed, Ordering::SeqCst);
    }
}

impl BarrierSource for FixedBarrier {
    fn barrier(&self) -> Result<Arc<Barrier>, StoreError> {
        if self.sealed.load(Ordering::SeqCst) {
            return Err(StoreError::Sealed);
        }
        Ok(Arc::clone(&self.barrier))
    }

    fn reload_keyring(&self, _record: &[u8]) -> Result<(), SealError> {
        Err(SealError::Corrupt(
            "a fixed barrier has no other keyring".into(),
        ))
    }
}

/// The engines' [`Store`]: barrier encryption over a [`RawStore`], with
/// the barrier of `S` (the node's seal, or a fixed one).
pub struct BarrierStore<R, S: ?Sized = dyn BarrierSource> {
    raw: R,
    keys: Arc<S>,
}

impl<R: RawStore, S: BarrierSource + ?Sized> BarrierStore<R, S> {
    /// Encrypts into `raw` with the barrier of `keys`.
    pub fn over(raw: R, keys: Arc<S>) -> Self {
        Self { raw, keys }
    }

    /// The store below the barrier.
    pub fn raw(&self) -> &R {
        &self.raw
    }

    /// The source of the barrier.
    pub fn barrier_source(&self) -> &Arc<S> {
        &self.keys
    }

    /// Decrypts `ct`; a ciphertext from a keyring term this node has not
    /// loaded yet triggers one reload of `sys/keyring` and a retry.
    fn decrypt(&self, aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        match self.keys.barrier()?.decrypt(aad, ct) {
            Err(SealError::UnknownTerm(_)) => {
                self.reload_keyring()?;
                self.keys.barrier()?.decrypt(aad, ct).map_err(seal_err)
            }
            other => other.map_err(seal_err),
        }
    }

    fn reload_keyring(&self) -> Result<(), StoreError> {
        let record = self
            .raw
            .get(KEYRING_KEY)?
            .ok_or_else(|| StoreError::Corrupt("keyring record missing".into()))?;
        self.keys.reload_keyring(&record.value).map_err(seal_err)
    }

    /// A stored value, decrypted. One that fails authentication was altered
    /// where it is stored, so the store below is told (the cluster then
    /// stops serving from this node). Blobs from clients, such as backups,
    /// are opened by [`Store::open_blob`] and only refused.
    fn entry(&self, key: &[u8], v: Versioned) -> Result<Entry, StoreError> {
        let value = self.decrypt(key, &v.value).inspect_err(|e| {
            if let StoreError::Corrupt(detail) = e {
                self.raw.stored_value_damaged(&format!(
                    "a stored value failed authentication ({detail})"
                ));
            }
        })?;
        Ok(Entry {
            revision: v.revision,
            value,
        })
    }

    fn encrypt_txn(&self, mut txn: Txn) -> Result<Txn, StoreError> {
        let barrier = self.keys.barrier()?;
        for m in &mut txn.mutations {
            if let Mutation::Put { key, value } = m {
                // Wipe the plaintext as it is replaced by its ciphertext.
                let plain = Zeroizing::new(std::mem::take(value));
                *value = encrypt(&barrier, key, &plain)?;
            }
        }
        let result = Zeroizing::new(std::mem::take(&mut txn.result));
        txn.result = encrypt(&barrier, TXN_RESULT_AAD, &result)?;
        Ok(txn)
    }
}

/// Barrier encryption; its only failure is input beyond the AES-GCM-SIV
/// limit, which is a write too large to store.
fn encrypt(barrier: &Barrier, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
    barrier
        .encrypt(aad, plain)
        .map_err(|e| StoreError::TooLarge(e.to_string()))
}

/// Seal errors as the engines see them: anything but "sealed" or "not
/// initialised" means the ciphertext does not open.
pub fn seal_err(e: SealError) -> StoreError {
    match e {
        SealError::Sealed => StoreError::Sealed,
        SealError::NotInitialized => StoreError::NotInitialized,
        other => StoreError::Corrupt(other.to_string()),
    }
}

#[async_trait]
impl<R: RawStore, S: BarrierSource + ?Sized> Store for BarrierStore<R, S> {
    async fn read_fence(&self) -> Result<(), StoreError> {
        self.raw.read_fence().await
    }

    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.keys.barrier()?;
        self.raw.get(key)?.map(|v| self.entry(key, v)).transpose()
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        self.keys.barrier()?;
        self.raw
            .scan(prefix, start_after, limit)?
            .into_iter()
            .map(|(k, v)| {
                let e = self.entry(&k, v)?;
                Ok((k, e))
            })
            .collect()
    }

    async fn commit(&self, request_id: Option<&str>, txn: Txn) -> Result<Outcome, StoreError> {
        let txn = self.encrypt_txn(txn)?;
        let mut out = self.raw.commit(request_id, txn).await?;
        if !out.result.is_empty() {
            out.result = self.decrypt(TXN_RESULT_AAD, &out.result)?;
        }
        Ok(out)
    }

    fn seal_blob(&self, purpose: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let barrier = self.keys.barrier()?;
        encrypt(&barrier, purpose, plaintext)
    }

    fn open_blob(&self, purpose: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.decrypt(purpose, blob)
    }
}
