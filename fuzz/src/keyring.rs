//! The fixed test keyring of the fuzz harness: backup blobs made in one run
//! (seeds) open in every later run, and keyring records can be made from
//! arbitrary plaintext for the keyring parser. The store itself is the
//! engine's in-memory store under the real barrier layer (see `app.rs`).

use std::sync::{Arc, OnceLock};

use coffer::seal::keyring::seal_keyring_record;
use coffer::seal::{Barrier, Keyring};

/// Root key of the fixed test keyring (never used outside fuzzing).
pub const TEST_ROOT_KEY: [u8; 32] = [0x5a; 32];
/// The one data key of the fixed test keyring (term 1).
pub const TEST_DATA_KEY: [u8; 32] = [0xc3; 32];

/// A `keyring_record` holding `plain` under [`TEST_ROOT_KEY`] (the record
/// layout is Coffer's own, from `seal::keyring`).
pub fn test_keyring_record(plain: &[u8]) -> Vec<u8> {
    seal_keyring_record(&TEST_ROOT_KEY, plain).expect("sealing a small keyring record")
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
            .expect("the fixed test keyring record no longer parses: update fuzz/src/keyring.rs");
        Arc::new(Barrier::new(keyring))
    })
    .clone()
}
