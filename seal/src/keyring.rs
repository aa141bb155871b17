//! Key hierarchy below the KEK: the root key and the keyring of data keys.
//!
//! - Root key: 32 random bytes, stored as `root_key_record` =
//!   `version (1) | nonce (12) | AES-256-GCM-SIV(KEK, root key, AAD "coffer/root-key")`.
//! - Keyring: data keys by term plus the active term, postcard-encoded and stored
//!   as `keyring_record` = `version (1) | nonce (12) | AES-256-GCM-SIV(root key,
//!   keyring, AAD "coffer/keyring")`.

use std::collections::BTreeMap;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::barrier::{aead_open, aead_seal};
use super::SealError;

/// Length of every AES-256 key in the hierarchy.
pub const KEY_LEN: usize = 32;
/// Associated data binding the root key record to its purpose.
pub const ROOT_KEY_AAD: &[u8] = b"coffer/root-key";
/// Associated data binding the keyring record to its purpose.
pub const KEYRING_AAD: &[u8] = b"coffer/keyring";
/// Format version prefixed to both records, so the layout can evolve.
const RECORD_VERSION: u8 = 1;
/// Version of the postcard keyring encoding inside the record.
const KEYRING_FORMAT: u8 = 1;
/// Term of the first data key; term 0 is never used.
const FIRST_TERM: u32 = 1;

/// A 32-byte AES-256 key, wiped on drop.
pub type SecretKey = Zeroizing<[u8; KEY_LEN]>;

/// Fresh random AES-256 key from the thread-local CSPRNG (seeded by the OS).
pub fn generate_key() -> SecretKey {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::rng().fill_bytes(&mut key[..]);
    key
}

/// Encrypts the root key under the KEK into a `root_key_record`.
pub fn wrap_root_key(kek: &[u8; KEY_LEN], root_key: &[u8; KEY_LEN]) -> Result<Vec<u8>, SealError> {
    seal_record(kek, ROOT_KEY_AAD, root_key)
}

/// Decrypts a `root_key_record`; any failure (wrong KEK included) is `Corrupt`.
pub fn unwrap_root_key(kek: &[u8; KEY_LEN], record: &[u8]) -> Result<SecretKey, SealError> {
    let plain = open_record(kek, ROOT_KEY_AAD, record)?;
    if plain.len() != KEY_LEN {
        return Err(SealError::Corrupt(
            "root key record has the wrong length".into(),
        ));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&plain);
    Ok(key)
}

/// A `keyring_record` holding arbitrary `plain` bytes under `root_key`, so
/// tests and the fuzzer can feed the keyring parser of [`Keyring::decrypt`]
/// (Coffer itself only seals keyrings it encoded).
#[cfg(any(test, feature = "test-util"))]
pub fn seal_keyring_record(root_key: &[u8; KEY_LEN], plain: &[u8]) -> Result<Vec<u8>, SealError> {
    seal_record(root_key, KEYRING_AAD, plain)
}

fn seal_record(key: &[u8; KEY_LEN], aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, SealError> {
    let body = aead_seal(key, aad, plain)?;
    let mut out = Vec::with_capacity(1 + body.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&body);
    Ok(out)
}

fn open_record(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    record: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    match record.split_first() {
        Some((&RECORD_VERSION, body)) => aead_open(key, aad, body),
        Some((v, _)) => Err(SealError::Corrupt(format!(
            "unsupported record version {v}"
        ))),
        None => Err(SealError::Corrupt("empty record".into())),
    }
}

/// Data keys by term and the active term used for new encryptions.
///
/// Old terms are kept after rotation so existing values stay readable.
pub struct Keyring {
    active: u32,
    keys: BTreeMap<u32, SecretKey>,
}

impl Keyring {
    /// A new keyring with one random key at term 1.
    pub fn generate() -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(FIRST_TERM, generate_key());
        Self {
            active: FIRST_TERM,
            keys,
        }
    }

    /// A copy of this keyring with a fresh key at `max term + 1`, made active.
    pub fn rotated(&self) -> Self {
        let next = self.keys.keys().next_back().copied().unwrap_or(0) + 1;
        let mut keys: BTreeMap<u32, SecretKey> = self
            .keys
            .iter()
            .map(|(t, k)| (*t, Zeroizing::new(**k)))
            .collect();
        keys.insert(next, generate_key());
        Self { active: next, keys }
    }

    /// The term new values are encrypted under.
    pub fn active_term(&self) -> u32 {
        self.active
    }

    /// All known terms, ascending.
    pub fn terms(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// The key of `term`, if this keyring has it.
    pub fn key(&self, term: u32) -> Option<&[u8; KEY_LEN]> {
        self.keys.get(&term).map(|k| &**k)
    }

    /// Whether every term of `self` is in `newer` with the same key, i.e.
    /// adopting `newer` cannot make any existing ciphertext unreadable.
    pub fn is_superseded_by(&self, newer: &Keyring) -> bool {
        self.keys.iter().all(|(term, key)| {
            newer
                .key(*term)
                .is_some_and(|k| super::shamir::ct_eq(&k[..], &key[..]))
        })
    }

    /// The key of the active term (always present by construction).
    pub(crate) fn active_key(&self) -> &[u8; KEY_LEN] {
        // `active` is only ever set to a term inserted in `keys` (see the
        // constructors and `decrypt`), so the lookup cannot miss.
        &self.keys[&self.active]
    }

    /// Serialises and encrypts the keyring under the root key (`keyring_record`).
    pub fn encrypt(&self, root_key: &[u8; KEY_LEN]) -> Result<Vec<u8>, SealError> {
        let wire = WireKeyring {
            format: KEYRING_FORMAT,
            active: self.active,
            keys: self
                .keys
                .iter()
                .map(|(t, k)| WireKey { term: *t, key: **k })
                .collect(),
        };
        // Serialise into a pre-sized, zeroized buffer so no reallocation leaves
        // key copies behind: format + varint(active) + varint(len) + n * (varint + key).
        let cap = 1 + 5 + 5 + wire.keys.len() * (5 + KEY_LEN);
        let mut buf = Zeroizing::new(vec![0u8; cap]);
        let used = postcard::to_slice(&wire, &mut buf[..])
            .map_err(|e| SealError::Corrupt(format!("keyring encoding failed: {e}")))?
            .len();
        seal_record(root_key, KEYRING_AAD, &buf[..used])
    }

    /// Decrypts and validates a `keyring_record` with the root key.
    pub fn decrypt(root_key: &[u8; KEY_LEN], record: &[u8]) -> Result<Self, SealError> {
        let plain = open_record(root_key, KEYRING_AAD, record)?;
        let wire: WireKeyring = postcard::from_bytes(&plain)
            .map_err(|_| SealError::Corrupt("keyring record is malformed".into()))?;
        if wire.format != KEYRING_FORMAT {
            return Err(SealError::Corrupt(format!(
                "unsupported keyring format {}",
                wire.format
            )));
        }
        let mut keys = BTreeMap::new();
        for k in &wire.keys {
            if keys.insert(k.term, Zeroizing::new(k.key)).is_some() {
                return Err(SealError::Corrupt(format!(
                    "keyring has term {} twice",
                    k.term
                )));
            }
        }
        if !keys.contains_key(&wire.active) {
            return Err(SealError::Corrupt(format!(
                "keyring lacks its active term {}",
                wire.active
            )));
        }
        Ok(Self {
            active: wire.active,
            keys,
        })
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active_term", &self.active)
            .field("terms", &self.terms())
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// On-the-wire keyring; wiped on drop because it holds raw key bytes.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct WireKeyring {
    format: u8,
    active: u32,
    keys: Vec<WireKey>,
}

#[derive(Serialize, Deserialize, Zeroize)]
struct WireKey {
    term: u32,
    key: [u8; KEY_LEN],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyring_record_roundtrip_keeps_all_terms() {
        let root = generate_key();
        let ring = Keyring::generate().rotated().rotated();
        let record = ring.encrypt(&root).unwrap();
        let back = Keyring::decrypt(&root, &record).unwrap();
        assert_eq!(back.active_term(), 3);
        assert_eq!(back.terms(), vec![1, 2, 3]);
        for t in 1..=3 {
            assert_eq!(back.key(t), ring.key(t));
        }
    }

    #[test]
    fn rotation_adds_a_fresh_key() {
        let ring = Keyring::generate();
        let next = ring.rotated();
        assert_eq!(next.active_term(), 2);
        assert_eq!(next.key(1), ring.key(1));
        assert_ne!(next.key(2), next.key(1));
    }

    #[test]
    fn superseded_only_by_a_keyring_keeping_every_key() {
        let ring = Keyring::generate();
        let next = ring.rotated();
        assert!(ring.is_superseded_by(&next));
        assert!(!next.is_superseded_by(&ring));
        // A concurrent rotation of the same keyring has a different term-2 key.
        assert!(!next.is_superseded_by(&ring.rotated()));
    }

    #[test]
    fn keyring_record_needs_the_right_root_key() {
        let ring = Keyring::generate();
        let record = ring.encrypt(&generate_key()).unwrap();
        assert!(matches!(
            Keyring::decrypt(&generate_key(), &record),
            Err(SealError::Corrupt(_))
        ));
    }

    #[test]
    fn records_are_bound_to_their_purpose() {
        // A root key record must not be accepted as a keyring record and vice versa.
        let kek = generate_key();
        let root = generate_key();
        let root_record = wrap_root_key(&kek, &root).unwrap();
        assert!(Keyring::decrypt(&kek, &root_record).is_err());
        let ring_record = Keyring::generate().encrypt(&kek).unwrap();
        assert!(unwrap_root_key(&kek, &ring_record).is_err());
        assert_eq!(*unwrap_root_key(&kek, &root_record).unwrap(), *root);
    }

    #[test]
    fn garbled_records_are_corrupt() {
        let kek = generate_key();
        let mut record = wrap_root_key(&kek, &generate_key()).unwrap();
        record[0] = 9;
        assert!(matches!(
            unwrap_root_key(&kek, &record),
            Err(SealError::Corrupt(_))
        ));
        assert!(matches!(
            unwrap_root_key(&kek, &[]),
            Err(SealError::Corrupt(_))
        ));
        assert!(matches!(
            Keyring::decrypt(&kek, &[1, 2, 3]),
            Err(SealError::Corrupt(_))
        ));
    }

    #[test]
    fn debug_redacts_keys() {
        let ring = Keyring::generate();
        let dbg = format!("{ring:?}");
        assert!(!crate::debug_leaks(&dbg, ring.key(1).unwrap()));
        assert!(dbg.contains("redacted"));
    }
}
