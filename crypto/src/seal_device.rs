//! The device side of an auto-unseal: an AES-256 key that never leaves a
//! device wraps the cluster's root key, so a node can unseal itself at
//! start. The seal (coffer-seal, free of unsafe code) sees the device only
//! through [`SealDevice`]; the PKCS#11 implementation is
//! [`crate::pkcs11::Pkcs11SealKey`].

use zeroize::Zeroizing;

use super::CryptoError;

/// Default label of the seal key in the device (`[seal] key_label`).
pub const DEFAULT_SEAL_KEY_LABEL: &str = "coffer-seal-key";

/// A device-held AES-256 key that encrypts and decrypts small secrets (the
/// root key) inside the device. Calls block (PKCS#11 is synchronous): call
/// them from `spawn_blocking` on an async runtime.
pub trait SealDevice: Send + Sync {
    /// Where the key is, for messages (`token "x", key "y"`); never the PIN.
    fn describe(&self) -> String;
    /// AES-256-GCM inside the device under a fresh random IV, binding `aad`.
    /// Returns `iv (12) | ciphertext | tag (16)`.
    fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// Reverses [`Self::encrypt`]; a wrong key, `aad` or tampered input is
    /// [`CryptoError::DecryptFailed`]; a missing device, token, key or a
    /// refused PIN is [`CryptoError::HsmUnavailable`] saying which.
    fn decrypt(&self, aad: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
}
