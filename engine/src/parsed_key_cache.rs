//! A bounded cache of parsed software keys for sign/decrypt.
//!
//! Parsing a stored RSA key (PKCS#8 decode, `RSA_check_key`, fresh blinding
//! in aws-lc) costs about half of an RSA-2048 signature, so the keys engine
//! keeps the parsed [`LoadedKey`] per (vault, name, version). An entry is
//! used only for the exact record it was loaded from: the version record's
//! store revision must match and its private material must be byte-equal,
//! so a rewrite under the same version id (update, purge + restore, import)
//! can never be answered with stale material. The cache only skips parsing:
//! the engine checks enabled, key_ops, nbf/exp and the read fence on every
//! call before it asks here.
//!
//! Entries hold private key material in memory, so the node clears the
//! cache when it seals. A [`Ticket`] taken before the store read makes a
//! load that raced with a seal skip its insert.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use coffer_crypto::software::{LoadedKey, SoftwareKey};

/// Entries kept by default (a few MiB of parsed keys at most).
pub const DEFAULT_CAPACITY: usize = 1024;

/// Which stored version an entry was loaded from.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheId {
    /// Normalised vault name.
    pub vault: String,
    /// Lowercase key name.
    pub name: String,
    /// Version id.
    pub version: String,
}

/// The cache generation observed before a store read; see [`ParsedKeyCache::ticket`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

/// Parsed software keys, at most `capacity`, least recently used evicted.
pub struct ParsedKeyCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every clear; loads that began before it do not insert.
    generation: u64,
    /// Logical clock for recency.
    tick: u64,
    slots: HashMap<CacheId, Slot>,
}

struct Slot {
    revision: u64,
    key: Arc<LoadedKey>,
    used: u64,
}

impl std::fmt::Debug for ParsedKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: entries hold key material.
        f.debug_struct("ParsedKeyCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl ParsedKeyCache {
    /// An empty cache of at most `capacity` entries (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Take before reading the version record from the store: a
    /// [`ParsedKeyCache::clear`] after this point makes the matching
    /// [`ParsedKeyCache::load`] not insert, so a seal that lands between the read
    /// and the insert leaves nothing behind.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().generation)
    }

    /// The parsed form of `key`, stored at `revision` under `id`: the cached
    /// one when it was loaded from this very record, else a new one (kept
    /// unless the cache was cleared since `ticket`).
    pub fn load(
        &self,
        ticket: Ticket,
        id: &CacheId,
        revision: u64,
        key: &SoftwareKey,
    ) -> Arc<LoadedKey> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(slot) = inner.slots.get_mut(id) {
            if slot.revision == revision && slot.key.loaded_from(key) {
                slot.used = tick;
                return Arc::clone(&slot.key);
            }
        }
        let loaded = Arc::new(LoadedKey::new(key.clone()));
        if self.capacity == 0 || ticket.0 != inner.generation {
            return loaded;
        }
        if !inner.slots.contains_key(id) && inner.slots.len() >= self.capacity {
            inner.evict_oldest();
        }
        inner.slots.insert(
            id.clone(),
            Slot {
                revision,
                key: Arc::clone(&loaded),
                used: tick,
            },
        );
        loaded
    }

    /// Drops every entry (the node sealed). Keys in use by in-flight
    /// operations are freed, and their material wiped, when those finish.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.slots = HashMap::new();
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map stays consistent across a panic elsewhere (no partial
        // updates), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Evicts the least recently used entry: a linear scan, only on a miss
    /// at capacity, which is cheap next to the parse that follows.
    fn evict_oldest(&mut self) {
        let oldest = self
            .slots
            .iter()
            .min_by_key(|(_, s)| s.used)
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            self.slots.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_crypto::software::generate;
    use coffer_crypto::{Curve, KeySpec, SignAlg};

    fn id(version: &str) -> CacheId {
        CacheId {
            vault: "v".into(),
            name: "k".into(),
            version: version.into(),
        }
    }

    fn ec() -> SoftwareKey {
        generate(&KeySpec::Ec { curve: Curve::P256 }).unwrap()
    }

    #[test]
    fn a_hit_returns_the_same_parsed_key() {
        let c = ParsedKeyCache::new(8);
        let k = ec();
        let a = c.load(c.ticket(), &id("1"), 5, &k);
        a.sign(SignAlg::ES256, &[7; 32]).unwrap();
        let b = c.load(c.ticket(), &id("1"), 5, &k);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_changed_record_is_reloaded() {
        let c = ParsedKeyCache::new(8);
        let (k1, k2) = (ec(), ec());
        let a = c.load(c.ticket(), &id("1"), 5, &k1);
        // Same version id and revision but other material (e.g. purge and a
        // restore of another key under the same id): never the old key.
        let b = c.load(c.ticket(), &id("1"), 5, &k2);
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(b.loaded_from(&k2) && !b.loaded_from(&k1));
        // Same material rewritten at a new revision: reloaded too.
        let d = c.load(c.ticket(), &id("1"), 6, &k2);
        assert!(!Arc::ptr_eq(&b, &d));
        assert_eq!(c.len(), 1);
        // The new key signs with its own material.
        let sig = d.sign(SignAlg::ES256, &[1; 32]).unwrap();
        assert!(k2.verify(SignAlg::ES256, &[1; 32], &sig).unwrap());
        assert!(!k1.verify(SignAlg::ES256, &[1; 32], &sig).unwrap());
    }

    #[test]
    fn clear_drops_entries_and_racing_loads() {
        let c = ParsedKeyCache::new(8);
        let k = ec();
        let before = c.ticket();
        c.load(before, &id("1"), 1, &k);
        c.clear();
        assert_eq!(c.len(), 0);
        // A load whose store read began before the clear does not insert.
        c.load(before, &id("2"), 1, &k);
        assert_eq!(c.len(), 0);
        c.load(c.ticket(), &id("2"), 1, &k);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_capacity_is_kept_by_evicting_the_least_recently_used() {
        let c = ParsedKeyCache::new(2);
        let k = ec();
        let first = c.load(c.ticket(), &id("1"), 1, &k);
        c.load(c.ticket(), &id("2"), 1, &k);
        // Touch 1 so that 2 is the oldest.
        assert!(Arc::ptr_eq(&first, &c.load(c.ticket(), &id("1"), 1, &k)));
        c.load(c.ticket(), &id("3"), 1, &k);
        assert_eq!(c.len(), 2);
        assert!(Arc::ptr_eq(&first, &c.load(c.ticket(), &id("1"), 1, &k)));
        let inner = c.lock();
        assert!(inner.slots.contains_key(&id("3")) && !inner.slots.contains_key(&id("2")));
    }

    #[test]
    fn debug_shows_no_material() {
        let c = ParsedKeyCache::new(2);
        let k = ec();
        let loaded = c.load(c.ticket(), &id("1"), 1, &k);
        let shown = format!("{c:?} {loaded:?}");
        assert!(shown.contains("len: 1") && shown.contains("<redacted>"));
        let json = serde_json::to_value(&k).unwrap();
        let material = json["material"].as_str().unwrap();
        assert!(!shown.contains(material));
    }
}
