//! The HSM tier as the keys engine sees it: a PKCS#11 device attached to
//! this node, holding the cluster key-wrapping key (KEK).
//!
//! `*-HSM` keys are generated (or imported) inside the device and leave it
//! only wrapped under the cluster KEK (`CKM_AES_KEY_WRAP_PAD`); the wrapped
//! blob is what the engine replicates. To use a key, the serving node
//! unwraps the blob into its own device as a session object (cached).
//! Public-key operations (verify, RSA encrypt/wrap) need no device: the
//! engine does them in software from [`HsmKey::public`].

use std::path::PathBuf;

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

/// The public half of a receiving device's transport key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportKey {
    /// RSA modulus (big-endian).
    pub n: Vec<u8>,
    /// RSA public exponent (big-endian).
    pub e: Vec<u8>,
    /// The receiving device accepts SHA-256 OAEP parameters.
    pub oaep_sha256: bool,
}

/// Hash of the OAEP wrapping of the KEK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OaepHash {
    /// SHA-1 with MGF1-SHA-1.
    Sha1,
    /// SHA-256 with MGF1-SHA-256.
    Sha256,
}

/// The KEK wrapped for one receiving device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekExport {
    /// `C_WrapKey(CKM_RSA_PKCS_OAEP, transport public key, KEK)`.
    pub wrapped: Vec<u8>,
    /// OAEP hash used.
    pub oaep_hash: OaepHash,
}

/// What a device says about its KEK.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KekInfo {
    /// Key check value (hex), equal on every device holding the same KEK;
    /// `None` if the device could not compute it.
    pub check_value: Option<String>,
}

/// What the operator API needs of the node's device: its status and the
/// cluster KEK ceremony (create the KEK in one device, then move it to each
/// other device wrapped under a transport key made inside the receiver).
/// Calls block: call them from `spawn_blocking`.
pub trait HsmAdmin: HsmProvider {
    /// (a) Generates the cluster KEK in this device; refuses if present.
    fn create_kek(&self) -> Result<KekInfo, CryptoError>;
    /// (b) A transport key pair made inside this (receiving) device.
    fn transport_key(&self) -> Result<TransportKey, CryptoError>;
    /// (c) The KEK of this device wrapped under a receiver's transport key.
    fn export_kek(&self, transport: &TransportKey) -> Result<KekExport, CryptoError>;
    /// (d) Installs an exported KEK (and destroys the transport key).
    fn import_kek(&self, export: &KekExport) -> Result<KekInfo, CryptoError>;
}

/// `[hsm]`: the PKCS#11 device attached to this node. The PIN is never in
/// the file itself: it comes from `pin_file` or the variable `pin_env`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Label of the token to use; slots are found by label, never by index.
    pub token_label: String,
    /// File holding the user PIN (trailing newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN (e.g. `COFFER_HSM_PIN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_env: Option<String>,
    /// Upper bound on open sessions (the device's own limit applies too).
    #[serde(default = "default_hsm_max_sessions")]
    pub max_sessions: usize,
    /// How many unwrapped keys stay cached as session objects.
    #[serde(default = "default_hsm_key_cache")]
    pub key_cache: usize,
}

fn default_hsm_max_sessions() -> usize {
    16
}

fn default_hsm_key_cache() -> usize {
    1024
}

impl HsmConfig {
    /// Checks that exactly one PIN source is named and the sizes are sane.
    pub fn validate(&self) -> Result<(), String> {
        if self.pin_file.is_some() == self.pin_env.is_some() {
            return Err("[hsm] needs exactly one of pin_file or pin_env".into());
        }
        if self.token_label.is_empty() || self.token_label.len() > 32 {
            return Err("[hsm] token_label must be 1 to 32 bytes".into());
        }
        if self.max_sessions == 0 || self.key_cache == 0 {
            return Err("[hsm] max_sessions and key_cache must be at least 1".into());
        }
        Ok(())
    }
}

/// Histogram of HSM operation latency, by `operation`.
pub const OPERATION_SECONDS: &str = "coffer_hsm_operation_duration_seconds";
/// Counter of HSM operations the device failed, by `operation`.
pub const ERRORS_TOTAL: &str = "coffer_hsm_errors_total";

/// The `operation` label values of the HSM metrics: key operations inside
/// the device, making keys in it, and the auto-unseal's seal key. Verify
/// and RSA encrypt/wrap of `*-HSM` keys are public-key math in software
/// and never reach the device, so they are not HSM operations.
pub mod operation {
    /// Sign a digest.
    pub const SIGN: &str = "sign";
    /// Symmetric encryption (`oct-HSM`).
    pub const ENCRYPT: &str = "encrypt";
    /// Decryption (RSA or symmetric).
    pub const DECRYPT: &str = "decrypt";
    /// Key wrap (`oct-HSM`, A*KW).
    pub const WRAP: &str = "wrap";
    /// Key unwrap.
    pub const UNWRAP: &str = "unwrap";
    /// Generate a key inside the device.
    pub const GENERATE: &str = "generate";
    /// Import private material into the device.
    pub const IMPORT: &str = "import";
    /// The auto-unseal wrapping the root key under the seal key.
    pub const SEAL_WRAP: &str = "seal_wrap";
    /// The auto-unseal unwrapping the root key.
    pub const SEAL_UNWRAP: &str = "seal_unwrap";
    /// Every value, for pre-registering the series.
    pub const ALL: [&str; 9] = [
        SIGN,
        ENCRYPT,
        DECRYPT,
        WRAP,
        UNWRAP,
        GENERATE,
        IMPORT,
        SEAL_WRAP,
        SEAL_UNWRAP,
    ];
}

/// Runs one HSM operation `f`, recording its latency in
/// [`OPERATION_SECONDS`] and, when the device failed it, [`ERRORS_TOTAL`].
/// Callers check the request first, so the time is the device's.
pub fn observed<T>(
    operation: &'static str,
    f: impl FnOnce() -> Result<T, CryptoError>,
) -> Result<T, CryptoError> {
    let started = std::time::Instant::now();
    let res = f();
    metrics::histogram!(OPERATION_SECONDS, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = &res {
        if e.is_device_failure() {
            metrics::counter!(ERRORS_TOTAL, "operation" => operation).increment(1);
        }
    }
    res
}
