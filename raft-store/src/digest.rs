//! An order-independent digest of the key/value state, maintained inside
//! every apply transaction.
//!
//! Each entry hashes to SHA-256(len(key) | key | revision | len(value) |
//! value); the digest is the lane-wise sum (wrapping `u64` adds over four
//! big-endian lanes) of all entry hashes, plus the entry count. A sum can be
//! updated in O(1) per mutation — subtract the replaced entry, add the new
//! one — so it is exact after every applied entry, and two replicas that
//! applied the same log have the same digest whatever order their tables are
//! laid out in. It is not a cryptographic commitment to the set (sums of
//! hashes can be forged by someone who can pick many entries); it detects
//! damage and divergence, which is its job.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// How many `(index, digest)` pairs [`crate::StateMachineStore::digest_at`]
/// answers for: the last this many applied entries.
pub const DIGEST_RING: usize = 4096;

/// The digest of a key/value state: sum of entry hashes and entry count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StateSum {
    lanes: [u64; 4],
    entries: u64,
}

impl StateSum {
    /// Adds one entry.
    pub(crate) fn add(&mut self, key: &[u8], revision: u64, value: &[u8]) {
        let h = entry_lanes(key, revision, value);
        for (l, x) in self.lanes.iter_mut().zip(h) {
            *l = l.wrapping_add(x);
        }
        self.entries = self.entries.wrapping_add(1);
    }

    /// Removes one entry that was added before.
    pub(crate) fn sub(&mut self, key: &[u8], revision: u64, value: &[u8]) {
        let h = entry_lanes(key, revision, value);
        for (l, x) in self.lanes.iter_mut().zip(h) {
            *l = l.wrapping_sub(x);
        }
        self.entries = self.entries.wrapping_sub(1);
    }

    /// Number of entries.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    /// The 32 digest bytes (lanes big-endian).
    pub(crate) fn bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, l) in out.chunks_exact_mut(8).zip(self.lanes) {
            chunk.copy_from_slice(&l.to_be_bytes());
        }
        out
    }

    /// The digest bytes in lower-case hex.
    pub(crate) fn hex(&self) -> String {
        hex::encode(self.bytes())
    }
}

fn entry_lanes(key: &[u8], revision: u64, value: &[u8]) -> [u64; 4] {
    let mut h = Sha256::new();
    // Length prefixes keep (key, value) boundaries unambiguous.
    h.update((key.len() as u64).to_be_bytes());
    h.update(key);
    h.update(revision.to_be_bytes());
    h.update((value.len() as u64).to_be_bytes());
    h.update(value);
    let d = h.finalize();
    let mut lanes = [0u64; 4];
    for (l, chunk) in lanes.iter_mut().zip(d.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *l = u64::from_be_bytes(b);
    }
    lanes
}

/// The state machine's digest at an applied index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDigest {
    /// Log index of the last applied entry (0 before anything was applied).
    pub applied_index: u64,
    /// Hex of the 32-byte additive digest over every key/value entry.
    pub digest_hex: String,
    /// Number of key/value entries.
    pub entries: u64,
}

impl StateDigest {
    pub(crate) fn new(applied_index: u64, sum: &StateSum) -> Self {
        Self {
            applied_index,
            digest_hex: sum.hex(),
            entries: sum.entries(),
        }
    }
}

/// The digest after each of the last [`DIGEST_RING`] applied entries, so
/// replicas can be compared at the same applied index although each one
/// moves on at its own pace.
#[derive(Default)]
pub(crate) struct DigestRing {
    ring: VecDeque<(u64, StateSum)>,
}

impl DigestRing {
    /// Records the digest after applying `index` (indexes only grow; a
    /// smaller one means the state was replaced, e.g. by a snapshot).
    pub(crate) fn push(&mut self, index: u64, sum: StateSum) {
        if self.ring.back().is_some_and(|(i, _)| *i >= index) {
            self.ring.clear();
        }
        if self.ring.len() == DIGEST_RING {
            self.ring.pop_front();
        }
        self.ring.push_back((index, sum));
    }

    /// Forgets everything (the state was replaced).
    pub(crate) fn reset(&mut self, index: u64, sum: StateSum) {
        self.ring.clear();
        self.ring.push_back((index, sum));
    }

    /// The digest right after `index` was applied, if still remembered.
    pub(crate) fn at(&self, index: u64) -> Option<StateSum> {
        // Indexes are increasing but may skip (e.g. after a reset), so
        // search rather than compute an offset.
        let pos = self.ring.partition_point(|(i, _)| *i < index);
        match self.ring.get(pos) {
            Some((i, s)) if *i == index => Some(*s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_is_order_independent_and_reversible() {
        let mut a = StateSum::default();
        a.add(b"k1", 1, b"v1");
        a.add(b"k2", 2, b"v2");
        let mut b = StateSum::default();
        b.add(b"k2", 2, b"v2");
        b.add(b"k1", 1, b"v1");
        assert_eq!(a, b);
        assert_eq!(a.entries(), 2);
        b.sub(b"k2", 2, b"v2");
        let mut c = StateSum::default();
        c.add(b"k1", 1, b"v1");
        assert_eq!(b, c);
        // Same bytes, different split between key and value: different.
        let mut d = StateSum::default();
        d.add(b"k", 1, b"1v1");
        assert_ne!(c, d);
        // Revision matters.
        let mut e = StateSum::default();
        e.add(b"k1", 2, b"v1");
        assert_ne!(c, e);
        assert_eq!(StateSum::default().hex(), "0".repeat(64));
    }

    #[test]
    fn ring_answers_by_index_and_forgets_the_oldest() {
        let mut r = DigestRing::default();
        let mut s = StateSum::default();
        for i in 1..=(DIGEST_RING as u64 + 10) {
            s.add(&i.to_be_bytes(), i, b"v");
            r.push(i, s);
        }
        assert_eq!(r.at(10), None);
        assert_eq!(r.at(11).map(|s| s.entries()), Some(11));
        assert_eq!(r.at(DIGEST_RING as u64 + 10), Some(s));
        assert_eq!(r.at(DIGEST_RING as u64 + 11), None);
        r.reset(5, StateSum::default());
        assert_eq!(r.at(5), Some(StateSum::default()));
        assert_eq!(r.at(11), None);
    }
}
