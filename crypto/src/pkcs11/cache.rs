//! Unwrapped keys kept as session objects, keyed by the SHA-256 of their
//! wrapped blob, so a hot key is unwrapped once rather than per operation.
//! Bounded: the oldest entry is evicted (and its object destroyed by the
//! caller) when the cache is full.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use cryptoki::object::ObjectHandle;
use sha2::{Digest, Sha256};

/// Cache key: SHA-256 of a wrapped blob.
pub(crate) type BlobId = [u8; 32];

/// The id of a wrapped blob.
pub(crate) fn blob_id(wrapped: &[u8]) -> BlobId {
    Sha256::digest(wrapped).into()
}

/// Bounded map from blob id to session-object handle.
pub(crate) struct SessionKeyCache {
    capacity: usize,
    inner: Mutex<(HashMap<BlobId, ObjectHandle>, VecDeque<BlobId>)>,
}

impl SessionKeyCache {
    /// A cache holding at most `capacity` handles.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The cached handle for `id`.
    pub(crate) fn get(&self, id: &BlobId) -> Option<ObjectHandle> {
        self.inner.lock().ok()?.0.get(id).copied()
    }

    /// Caches `handle`; returns the handles that fell out (to destroy). If
    /// another thread cached `id` meanwhile, the new handle is returned for
    /// destruction and the cached one kept.
    pub(crate) fn insert(
        &self,
        id: BlobId,
        handle: ObjectHandle,
    ) -> (ObjectHandle, Vec<ObjectHandle>) {
        let Ok(mut guard) = self.inner.lock() else {
            return (handle, Vec::new());
        };
        let (map, order) = &mut *guard;
        if let Some(existing) = map.get(&id) {
            return (*existing, vec![handle]);
        }
        let mut evicted = Vec::new();
        while map.len() >= self.capacity {
            let Some(old) = order.pop_front() else { break };
            if let Some(h) = map.remove(&old) {
                evicted.push(h);
            }
        }
        map.insert(id, handle);
        order.push_back(id);
        (handle, evicted)
    }

    /// Forgets `id` (its handle turned out to be invalid).
    pub(crate) fn remove(&self, id: &BlobId) {
        if let Ok(mut guard) = self.inner.lock() {
            let (map, order) = &mut *guard;
            if map.remove(id).is_some() {
                order.retain(|x| x != id);
            }
        }
    }

    /// Number of cached handles.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().map(|g| g.0.len()).unwrap_or(0)
    }
}
