//! The HSM tier as the keys engine sees it: a PKCS#11 device attached to
//! this node, holding the cluster key-wrapping key (KEK).
//!
//! `*-HSM` keys are generated (or imported) inside the device and leave it
//! only wrapped under the cluster KEK (`CKM_AES_KEY_WRAP_PAD`); the wrapped
//! blob is what the engine replicates. To use a key, the serving node
//! unwraps the blob into its own device as a session object (cached).
//! Public-key operations (verify, RSA encrypt/wrap) need no device: the
//! engine does them in software from [`HsmKey::public`].

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{
    Ciphertext, CryptoError, EncAlg, KeySpec, KeyType, PrivateKey, PublicKey, SignAlg, SymParams,
};

/// An HSM-tier key as stored in the replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HsmKey {
    /// `RSA-HSM`, `EC-HSM` or `oct-HSM`.
    pub kty: KeyType,
    /// The private (or secret) key wrapped under the cluster KEK.
    pub wrapped: Vec<u8>,
    /// Public half (for JWK rendering and software public-key operations).
    pub public: PublicKey,
    /// Key size in bits (RSA modulus, AES key) or the curve's size.
    pub bits: u32,
}

/// What the device reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HsmStatus {
    /// The device is open and logged in.
    pub available: bool,
    /// Why it is not, when it is not (never contains the PIN).
    pub error: Option<String>,
    /// Token label.
    pub token_label: String,
    /// The cluster KEK is present in this device.
    pub kek_present: bool,
    /// Notes on mechanisms emulated on the host (e.g. "RSA-OAEP-256: hashed
    /// on the host, CKM_RSA_PKCS_OAEP with SHA-256 params").
    pub notes: Vec<String>,
}

/// A PKCS#11 device attached to this node. Calls block (PKCS#11 is
/// synchronous): call them from `spawn_blocking`.
pub trait HsmProvider: Send + Sync {
    /// Device and KEK state.
    fn status(&self) -> HsmStatus;
    /// Generates a key inside the device and returns it wrapped.
    fn generate(&self, spec: &KeySpec) -> Result<HsmKey, CryptoError>;
    /// Imports private material into the device and returns it wrapped.
    fn import(&self, key: &PrivateKey) -> Result<HsmKey, CryptoError>;
    /// Signs a digest (RS*/PS*/ES*; the digest length matches the algorithm).
    fn sign(&self, key: &HsmKey, alg: SignAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// Decrypts (RSA-OAEP, RSA-OAEP-256, RSA1_5; AES GCM/CBC/CBCPAD) or
    /// unwraps (RSA algorithms, A*KW) inside the device.
    fn decrypt(
        &self,
        key: &HsmKey,
        alg: EncAlg,
        ciphertext: &[u8],
        params: &SymParams,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
    /// Symmetric encryption or key wrap with an `oct-HSM` key inside the device.
    fn encrypt(
        &self,
        key: &HsmKey,
        alg: EncAlg,
        plaintext: &[u8],
        params: &SymParams,
    ) -> Result<Ciphertext, CryptoError>;
}
