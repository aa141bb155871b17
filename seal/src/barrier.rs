//! The barrier: AES-256-GCM-SIV encryption of every stored value under the
//! keyring's active data key.
//!
//! Ciphertext layout: `term (4 bytes, big endian) | nonce (12) | ciphertext + tag (16)`.
//! The associated data is supplied by the caller (the storage key), so a value
//! cannot be moved to another key without failing authentication.

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Key, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::keyring::{Keyring, KEY_LEN};
use super::SealError;

/// Length of the random AES-GCM-SIV nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the AES-GCM-SIV authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of the big-endian term prefix of barrier ciphertext.
pub const TERM_LEN: usize = 4;

/// Encrypts `plaintext` under `key` with a fresh random nonce; returns `nonce | ct+tag`.
///
/// Fails only for inputs beyond the AES-GCM-SIV limits (2^36 bytes).
pub(crate) fn aead_seal(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let cipher = Aes256GcmSiv::new(Key::<Aes256GcmSiv>::from_slice(key));
    let mut nonce = [0u8; NONCE_LEN];
    // GCM-SIV is nonce-misuse resistant, so a CSPRNG nonce per message is ample.
    rand::rng().fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::Corrupt("input exceeds the AES-GCM-SIV size limit".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts `nonce | ct+tag` produced by [`aead_seal`].
pub(crate) fn aead_open(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if data.len() < NONCE_LEN + TAG_LEN {
        return Err(SealError::Corrupt("ciphertext is too short".into()));
    }
    let (nonce, ct) = data.split_at(NONCE_LEN);
    let cipher = Aes256GcmSiv::new(Key::<Aes256GcmSiv>::from_slice(key));
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| {
            SealError::Corrupt(
                "authentication failed (wrong key or associated data, or tampered ciphertext)"
                    .into(),
            )
        })
}

/// Encrypts and decrypts stored values with the data keys of a [`Keyring`].
///
/// A `Barrier` is immutable: a keyring change (rotation replicated through Raft)
/// produces a new `Barrier`. Key bytes are zeroized when the last `Arc` drops.
pub struct Barrier {
    keyring: Keyring,
}

impl Barrier {
    /// Wraps a decrypted keyring.
    pub fn new(keyring: Keyring) -> Self {
        Self { keyring }
    }

    /// Encrypts `plaintext` under the active term; `aad` is the storage key.
    ///
    /// Output: `term (4, BE) | nonce (12) | ciphertext + tag`. Fails only
    /// for input beyond the AES-GCM-SIV limit of 2^36 bytes (no request can
    /// reach it; the write path reports it as a write too large).
    pub fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let term = self.keyring.active_term();
        let body = aead_seal(self.keyring.active_key(), aad, plaintext)?;
        let mut out = Vec::with_capacity(TERM_LEN + body.len());
        out.extend_from_slice(&term.to_be_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decrypts barrier ciphertext; `aad` must be the storage key used to encrypt.
    ///
    /// Errors: [`SealError::UnknownTerm`] if the term is not in this keyring
    /// (the caller should reload the keyring and retry), [`SealError::Corrupt`]
    /// for short, tampered or misattributed ciphertext.
    pub fn decrypt(&self, aad: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if ct.len() < TERM_LEN + NONCE_LEN + TAG_LEN {
            return Err(SealError::Corrupt("barrier ciphertext is too short".into()));
        }
        let (term_bytes, body) = ct.split_at(TERM_LEN);
        let mut term = [0u8; TERM_LEN];
        term.copy_from_slice(term_bytes);
        let term = u32::from_be_bytes(term);
        let key = self.keyring.key(term).ok_or(SealError::UnknownTerm(term))?;
        aead_open(key, aad, body)
    }

    /// The term new values are encrypted under.
    pub fn active_term(&self) -> u32 {
        self.keyring.active_term()
    }

    /// All terms this barrier can decrypt, ascending.
    pub fn terms(&self) -> Vec<u32> {
        self.keyring.terms()
    }

    pub(crate) fn keyring(&self) -> &Keyring {
        &self.keyring
    }
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("keyring", &self.keyring)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn barrier() -> Barrier {
        Barrier::new(Keyring::generate())
    }

    #[test]
    fn roundtrip_uses_active_term_layout() {
        let b = barrier();
        let ct = b.encrypt(b"vault/a", b"hello").unwrap();
        assert_eq!(&ct[..4], &b.active_term().to_be_bytes());
        assert_eq!(ct.len(), TERM_LEN + NONCE_LEN + 5 + TAG_LEN);
        assert_eq!(&b.decrypt(b"vault/a", &ct).unwrap()[..], b"hello");
    }

    #[test]
    fn nonces_are_fresh_per_encryption() {
        let b = barrier();
        let a = b.encrypt(b"k", b"same").unwrap();
        let c = b.encrypt(b"k", b"same").unwrap();
        assert_ne!(
            a, c,
            "identical plaintexts must not give identical ciphertext"
        );
    }

    #[test]
    fn aad_mismatch_fails() {
        let b = barrier();
        let ct = b.encrypt(b"s/v/one", b"secret").unwrap();
        assert!(matches!(
            b.decrypt(b"s/v/two", &ct),
            Err(SealError::Corrupt(_))
        ));
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let b = barrier();
        let mut ct = b.encrypt(b"k", b"secret value").unwrap();
        let last = ct.len() - 1;
        ct[last] ^= 0x01;
        assert!(matches!(b.decrypt(b"k", &ct), Err(SealError::Corrupt(_))));
        let mut ct = b.encrypt(b"k", b"secret value").unwrap();
        ct[TERM_LEN + NONCE_LEN] ^= 0x80;
        assert!(matches!(b.decrypt(b"k", &ct), Err(SealError::Corrupt(_))));
    }

    #[test]
    fn short_input_is_corrupt() {
        let b = barrier();
        for len in [0, 3, 4, TERM_LEN + NONCE_LEN + TAG_LEN - 1] {
            let mut data = vec![0u8; len];
            if len >= 4 {
                data[..4].copy_from_slice(&b.active_term().to_be_bytes());
            }
            assert!(matches!(b.decrypt(b"k", &data), Err(SealError::Corrupt(_))));
        }
    }

    #[test]
    fn unknown_term_is_reported() {
        let b = barrier();
        let mut ct = b.encrypt(b"k", b"v").unwrap();
        ct[..4].copy_from_slice(&99u32.to_be_bytes());
        assert_eq!(
            b.decrypt(b"k", &ct).unwrap_err(),
            SealError::UnknownTerm(99)
        );
    }

    #[test]
    fn rotation_keeps_old_terms_and_uses_new_term() {
        let old = barrier();
        let old_ct = old.encrypt(b"k", b"before rotation").unwrap();
        let new = Barrier::new(old.keyring().rotated());
        assert_eq!(new.active_term(), old.active_term() + 1);
        assert_eq!(new.terms(), vec![old.active_term(), new.active_term()]);
        assert_eq!(&new.decrypt(b"k", &old_ct).unwrap()[..], b"before rotation");
        let new_ct = new.encrypt(b"k", b"after rotation").unwrap();
        assert_eq!(&new_ct[..4], &new.active_term().to_be_bytes());
        assert_eq!(&new.decrypt(b"k", &new_ct).unwrap()[..], b"after rotation");
        // The old barrier does not know the new term: the caller must reload.
        assert_eq!(
            old.decrypt(b"k", &new_ct).unwrap_err(),
            SealError::UnknownTerm(new.active_term())
        );
    }

    #[test]
    fn debug_does_not_print_key_bytes() {
        let b = barrier();
        let key = *b.keyring().active_key();
        let dbg = format!("{b:?} {b:#?}");
        assert!(!crate::debug_leaks(&dbg, &key));
        assert!(dbg.contains("redacted"));
    }
}
