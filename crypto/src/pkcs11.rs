//! [`HsmProvider`] over a PKCS#11 module (`cryptoki`), tested against SoftHSM2.
//!
//! The device holds one token object, the cluster key-wrapping key (KEK,
//! AES-256, label [`KEK_LABEL`]). `*-HSM` keys are generated or imported as
//! extractable *session* objects, wrapped under the KEK with
//! `CKM_AES_KEY_WRAP_PAD`, and destroyed; only the wrapped blob leaves the
//! device. To use a key, the blob is unwrapped again as a non-extractable
//! session object and cached by the blob's SHA-256.
//!
//! # Host-side work and emulation (what the host does instead of the device)
//! - `RS256/384/512`: the caller sends a digest; the host prepends the DER
//!   `DigestInfo` header and the device signs with raw `CKM_RSA_PKCS`. This
//!   is exactly RSASSA-PKCS1-v1_5; no hashing on the host.
//! - `PS256/384/512`: `CKM_RSA_PKCS_PSS` on the caller's digest with
//!   hash/MGF1 parameters and salt length = digest length. Native.
//! - `ES256/384/512/256K`: SoftHSM2 has no `CKM_ECDSA_SHA*`; since the caller
//!   sends the digest, raw `CKM_ECDSA` on it is the standard construction.
//!   The device returns `r || s` (field-size each), which is Key Vault's form.
//! - `RSA-OAEP`: native `CKM_RSA_PKCS_OAEP` with SHA-1/MGF1-SHA-1.
//! - `RSA-OAEP-256` on devices without OAEP-SHA256: raw RSA inside the
//!   device, constant-time OAEP decoding on the host. Native
//!   `CKM_RSA_PKCS_OAEP` with SHA-256/MGF1-SHA-256 is used when the device
//!   accepts those parameters (probed at open). SoftHSM2 2.6 accepts SHA-1
//!   only; then the device performs RSADP with `CKM_RSA_X_509` (the private
//!   key never leaves it; RFC 8017 §7.1.2 step 2) and the host performs the
//!   EME-OAEP decoding (step 3; SHA-256, MGF1-SHA-256, empty label) in
//!   constant time, wiping the encoded message, with one uniform
//!   [`CryptoError::DecryptFailed`] for every failure (see `oaep.rs`).
//! - `RSA1_5` decrypt: native `CKM_RSA_PKCS`. Padding failures are reported
//!   as a plain decryption failure; RSA1_5 remains Bleichenbacher-prone by
//!   design of the algorithm, prefer OAEP.
//! - `A*KW` / `CKM_AES_KEY_WRAP(_PAD)` wrapKey: the key bytes to wrap become a
//!   transient generic-secret session object that the device wraps with
//!   `C_WrapKey`; unwrapKey does `C_UnwrapKey` into a transient extractable
//!   generic secret whose value is read back (it is the caller's plaintext)
//!   and the object destroyed. SoftHSM2 does not offer key wrap via
//!   `C_Encrypt`.
//! - `CKM_AES_KEY_WRAP_PAD` wrapKey on devices whose `C_WrapKey` zero-pads
//!   the value before RFC 5649 wrapping (SoftHSM2 2.6.1: the AIV's length
//!   indicator then holds the padded length and unwrap returns trailing
//!   zeros; probed at open): RFC 5649 wrapping on the host over the
//!   device's single-block AES (`CKM_AES_ECB` with the key inside the
//!   device; see `kwp.rs`). Unwrap stays native (it is correct). Values
//!   that are a multiple of 8 bytes, and so A*KW/`CKM_AES_KEY_WRAP` and
//!   the oct-HSM keys under the KEK, are not affected. RSA and EC private
//!   keys wrapped under the KEK (PKCS#8 DER of any length) keep the
//!   device's encoding: the DER is self-delimiting, so the zero padding
//!   the device adds is ignored when it parses the key on unwrap.
//! - RSA encrypt/wrap and all verify operations use only the public key and
//!   are done in software by the keys engine.
//!
//! # KEK extractability
//! The KEK is `CKA_SENSITIVE` (its value can never be read) but must be
//! `CKA_EXTRACTABLE` so the ceremony can wrap it for another device.
//! `CKA_WRAP_WITH_TRUSTED` would restrict that to `CKA_TRUSTED` wrapping
//! keys, but only the token's Security Officer may set `CKA_TRUSTED`, and a
//! node holds only the user PIN; so the ceremony instead only ever wraps the
//! KEK under an RSA-3072 transport key that the receiving device generated
//! (non-extractable, destroyed after the import), under the root token.

mod cache;
mod ceremony;
mod keygen;
mod kwp;
mod mechanisms;
mod oaep;
mod ops;
mod pool;
mod seal_key;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use zeroize::{Zeroize, Zeroizing};

use self::cache::{blob_id, SessionKeyCache};
use self::keygen::*;
use self::mechanisms::Capabilities;
use self::ops::*;
use self::pool::{describe, Device, OpError};
use super::hsm::{HsmAdmin, HsmConfig, HsmKey, HsmProvider, HsmStatus};
use super::{
    refuse_caller_gcm_iv, Ciphertext, CryptoError, Curve, EncAlg, KeySpec, KeyType, PrivateKey,
    PublicKey, SignAlg, SymParams,
};

pub use self::ceremony::{KekExport, KekInfo, OaepHash, TransportKey};
pub use self::seal_key::{Pkcs11SealKey, SealKeyAttributes};

/// Label of the cluster key-wrapping key in every device.
pub const KEK_LABEL: &str = "coffer-cluster-kek";

/// A PKCS#11 device attached to this node, possibly unavailable.
pub struct Pkcs11Hsm {
    token_label: String,
    state: Result<Open, String>,
}

/// A device that opened and logged in.
struct Open {
    device: Device,
    caps: Capabilities,
    cache: SessionKeyCache,
    /// The KEK's object handle, once found: a token object's handle stays
    /// valid across sessions, and looking it up (`C_FindObjects`) costs
    /// SoftHSM2 a read of its token directory on every operation.
    kek: Mutex<Option<ObjectHandle>>,
    /// KEK lookups made for operations (not for `status`).
    kek_lookups: AtomicU64,
}

impl Open {
    fn kek_slot(&self) -> std::sync::MutexGuard<'_, Option<ObjectHandle>> {
        // A plain `Option` of a `Copy` handle cannot be left half-written.
        self.kek.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets the cached KEK handle (after the KEK was created or imported,
    /// or when the device rejects it).
    fn forget_kek(&self) {
        *self.kek_slot() = None;
    }
}

impl Pkcs11Hsm {
    /// Opens the module named by `cfg`, finds the token by label, logs in and
    /// detects mechanisms. Never fails: a missing module or token, or a
    /// refused PIN, yields a provider whose `status()` says why and whose
    /// operations return [`CryptoError::HsmUnavailable`].
    pub fn open(cfg: &HsmConfig) -> Self {
        let state = read_pin(cfg).and_then(|pin| {
            let device = Device::open(&cfg.module, &cfg.token_label, pin, cfg.max_sessions)?;
            let mut caps = Capabilities::detect(&device.ctx, device.slot);
            caps.oaep_sha256 = probe_oaep_sha256(&device);
            caps.kwp_wrap_exact = probe_kwp_wrap(&device);
            Ok(Open {
                device,
                caps,
                cache: SessionKeyCache::new(cfg.key_cache),
                kek: Mutex::new(None),
                kek_lookups: AtomicU64::new(0),
            })
        });
        if let Err(e) = &state {
            tracing::warn!(token = %cfg.token_label, error = %e, "HSM unavailable");
        }
        Self {
            token_label: cfg.token_label.clone(),
            state,
        }
    }

    fn open_device(&self) -> Result<&Open, CryptoError> {
        self.state
            .as_ref()
            .map_err(|e| CryptoError::HsmUnavailable(e.clone()))
    }

    /// Runs `f` on a pooled session with the KEK's handle.
    fn with_kek<T>(
        &self,
        mut f: impl FnMut(&Open, &Session, ObjectHandle) -> Result<T, OpError>,
    ) -> Result<T, CryptoError> {
        let open = self.open_device()?;
        open.device
            .with_session(|s| {
                with_cached_kek(
                    &open.kek,
                    || {
                        open.kek_lookups.fetch_add(1, Ordering::Relaxed);
                        find_kek(s)
                    },
                    |kek| f(open, s, kek),
                )
            })
            .map_err(classify)
    }

    /// Runs `f` with `key` unwrapped (cached) into the device. A cached
    /// handle the device no longer knows is unwrapped again once.
    fn with_key<T>(
        &self,
        key: &HsmKey,
        mut f: impl FnMut(&Session, ObjectHandle) -> Result<T, OpError>,
    ) -> Result<T, CryptoError> {
        let id = blob_id(&key.wrapped);
        self.with_kek(|open, s, kek| {
            let handle = match open.cache.get(&id) {
                Some(h) => h,
                None => cache_unwrapped(open, s, kek, key)?,
            };
            match f(s, handle) {
                Err(e) if is_stale_handle(&e) => {
                    open.cache.remove(&id);
                    let handle = cache_unwrapped(open, s, kek, key)?;
                    f(s, handle)
                }
                other => other,
            }
        })
    }

    /// Sessions the pool may open (the device's limit or the config cap).
    pub fn max_sessions(&self) -> usize {
        self.state.as_ref().map_or(0, |o| o.device.max_sessions())
    }

    /// Unwrapped keys currently cached as session objects.
    pub fn cached_keys(&self) -> usize {
        self.state.as_ref().map_or(0, |o| o.cache.len())
    }

    /// How often operations had to look the KEK up in the device (its
    /// handle is cached between them).
    pub fn kek_lookups(&self) -> u64 {
        self.state
            .as_ref()
            .map_or(0, |o| o.kek_lookups.load(Ordering::Relaxed))
    }
}

/// Where a PIN named by `pin_env` is looked up. The binary takes secret
/// variables out of its environment at start (and scrubs them from
/// `/proc/PID/environ`), so it installs its own lookup with
/// [`set_env_secret_source`]; without one, the environment is read.
static ENV_SECRET_SOURCE: std::sync::OnceLock<EnvSecretSource> = std::sync::OnceLock::new();

/// Looks up a secret environment variable by name.
pub type EnvSecretSource = fn(&str) -> Option<Zeroizing<String>>;

/// Installs the lookup of secret environment variables (once per process;
/// later calls are ignored).
pub fn set_env_secret_source(source: EnvSecretSource) {
    let _ = ENV_SECRET_SOURCE.set(source);
}

fn env_secret(var: &str) -> Option<Zeroizing<String>> {
    match ENV_SECRET_SOURCE.get() {
        Some(source) => source(var),
        None => std::env::var(var).ok().map(Zeroizing::new),
    }
}

fn read_pin(cfg: &HsmConfig) -> Result<Zeroizing<String>, String> {
    let mut pin = match (&cfg.pin_file, &cfg.pin_env) {
        (Some(path), _) => Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the HSM PIN file {}: {e}", path.display()))?,
        ),
        (None, Some(var)) => env_secret(var)
            .ok_or_else(|| format!("the HSM PIN variable {var} is not set (or not valid UTF-8)"))?,
        (None, None) => return Err("[hsm] names no PIN source".into()),
    };
    let trimmed = pin.trim_end_matches(['\r', '\n']).len();
    pin.truncate(trimmed);
    if pin.is_empty() {
        return Err("the HSM PIN is empty".into());
    }
    if !Path::new(&cfg.module).exists() {
        return Err(format!(
            "PKCS#11 module {} does not exist",
            cfg.module.display()
        ));
    }
    Ok(pin)
}

fn no_kek() -> OpError {
    OpError::Crypto(CryptoError::HsmUnavailable(format!(
        "this device holds no cluster KEK ({KEK_LABEL}); run the KEK ceremony"
    )))
}

/// The KEK's handle, if present.
fn find_kek(s: &Session) -> Result<Option<ObjectHandle>, OpError> {
    let found = s.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Token(true),
        Attribute::Label(KEK_LABEL.as_bytes().to_vec()),
    ])?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(OpError::Crypto(CryptoError::HsmUnavailable(format!(
            "more than one {KEK_LABEL} object in this device"
        )))),
    }
}

/// Runs `f` with the KEK handle cached in `slot`, found with `find` when
/// none is cached. A cached handle the device rejects as invalid is dropped
/// and looked up again, once; a freshly found one is not retried.
fn with_cached_kek<H: Copy, T>(
    slot: &Mutex<Option<H>>,
    mut find: impl FnMut() -> Result<Option<H>, OpError>,
    mut f: impl FnMut(H) -> Result<T, OpError>,
) -> Result<T, OpError> {
    let lock = || slot.lock().unwrap_or_else(PoisonError::into_inner);
    let mut lookup = || -> Result<H, OpError> {
        let kek = find()?.ok_or_else(no_kek)?;
        *lock() = Some(kek);
        Ok(kek)
    };
    let cached = *lock();
    let Some(kek) = cached else {
        return f(lookup()?);
    };
    match f(kek) {
        Err(e) if is_stale_kek(&e) => {
            *lock() = None;
            f(lookup()?)
        }
        other => other,
    }
}

/// Whether the device says a key handle (possibly the KEK's) is not valid.
fn is_stale_kek(e: &OpError) -> bool {
    is_stale_handle(e)
        || matches!(
            e,
            OpError::Device(CkError::Pkcs11(
                RvError::WrappingKeyHandleInvalid | RvError::UnwrappingKeyHandleInvalid,
                _
            ))
        )
}

fn is_stale_handle(e: &OpError) -> bool {
    matches!(
        e,
        OpError::Device(CkError::Pkcs11(
            RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid,
            _
        ))
    )
}

/// Maps a device error to what the engine reports.
fn classify(e: OpError) -> CryptoError {
    let ck = match e {
        OpError::Crypto(c) => return c,
        OpError::Device(ck) => ck,
    };
    let rv = match &ck {
        CkError::Pkcs11(rv, _) => *rv,
        other => return CryptoError::Internal(other.to_string()),
    };
    let text = describe(&ck);
    use RvError::*;
    match rv {
        MechanismInvalid
        | MechanismParamInvalid
        | CurveNotSupported
        | DomainParamsInvalid
        | KeySizeRange => CryptoError::Unsupported(text),
        DataLenRange | DataInvalid => CryptoError::BadInput(text),
        EncryptedDataInvalid | EncryptedDataLenRange | WrappedKeyInvalid | WrappedKeyLenRange => {
            CryptoError::DecryptFailed
        }
        UserNotLoggedIn
        | PinIncorrect
        | PinLocked
        | DeviceRemoved
        | DeviceError
        | TokenNotPresent
        | SessionHandleInvalid
        | SessionClosed
        | CryptokiNotInitialized => CryptoError::HsmUnavailable(text),
        _ => CryptoError::Internal(text),
    }
}

/// Probes `CKM_RSA_PKCS_OAEP` with SHA-256 parameters using a throwaway
/// session key pair (mechanism lists cannot express parameter support).
fn probe_oaep_sha256(device: &Device) -> bool {
    let result = device.with_session(|s| {
        let (public, private) = s.generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(false),
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Encrypt(true),
            ],
            &[
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Decrypt(true),
            ],
        )?;
        let mech = oaep(MechanismType::SHA256);
        let outcome = s
            .encrypt(&mech, public, b"coffer-probe")
            .and_then(|ct| s.decrypt(&mech, private, &ct));
        let _ = s.destroy_object(public);
        let _ = s.destroy_object(private);
        Ok(matches!(outcome, Ok(pt) if pt == b"coffer-probe"))
    });
    result.unwrap_or(false)
}

/// Probes whether `C_WrapKey` with `CKM_AES_KEY_WRAP_PAD` wraps a value
/// that is not a multiple of 8 bytes so that it unwraps to its exact length.
fn probe_kwp_wrap(device: &Device) -> bool {
    let result = device.with_session(|s| {
        let key = s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(CkKeyType::AES),
                Attribute::Token(false),
                Attribute::ValueLen(16.into()),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
            ],
        )?;
        let probe = b"coffer-probe!";
        let outcome = wrap_bytes(s, key, &Mechanism::AesKeyWrapPad, probe)
            .and_then(|w| unwrap_bytes(s, key, &Mechanism::AesKeyWrapPad, &w));
        let _ = s.destroy_object(key);
        Ok(matches!(outcome, Ok(v) if v.as_slice() == probe))
    });
    result.unwrap_or(false)
}

fn oaep(hash: MechanismType) -> Mechanism<'static> {
    let mgf = if hash == MechanismType::SHA256 {
        PkcsMgfType::MGF1_SHA256
    } else {
        PkcsMgfType::MGF1_SHA1
    };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
}

/// Unwraps `key` under the KEK as a non-extractable session object and caches it.
fn cache_unwrapped(
    open: &Open,
    s: &Session,
    kek: ObjectHandle,
    key: &HsmKey,
) -> Result<ObjectHandle, OpError> {
    let template = unwrap_template(key)?;
    let handle = s
        .unwrap_key(&Mechanism::AesKeyWrapPad, kek, &key.wrapped, &template)
        .map_err(|e| match e {
            CkError::Pkcs11(
                RvError::WrappedKeyInvalid
                | RvError::WrappedKeyLenRange
                | RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange,
                _,
            ) => OpError::Crypto(CryptoError::HsmUnavailable(
                "the key does not unwrap under this device's cluster KEK \
                 (was the KEK ceremony run for this node?)"
                    .into(),
            )),
            other => OpError::Device(other),
        })?;
    let id = blob_id(&key.wrapped);
    let (kept, to_destroy) = open.cache.insert(id, handle);
    for h in to_destroy {
        let _ = s.destroy_object(h);
    }
    Ok(kept)
}

fn unwrap_template(key: &HsmKey) -> Result<Vec<Attribute>, OpError> {
    let common = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
    ];
    let specific = match key.kty {
        KeyType::RsaHsm => vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(CkKeyType::RSA),
            Attribute::Sign(true),
            Attribute::Decrypt(true),
            Attribute::Unwrap(true),
        ],
        KeyType::EcHsm => vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(CkKeyType::EC),
            Attribute::Sign(true),
        ],
        KeyType::OctHsm => vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(CkKeyType::AES),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
        ],
        other => {
            return Err(OpError::Crypto(CryptoError::BadInput(format!(
                "{other:?} is not an HSM key type"
            ))))
        }
    };
    Ok(common.into_iter().chain(specific).collect())
}

/// Wraps a fresh session object under the KEK and destroys it (and its
/// public half, if any) whatever the outcome.
fn wrap_and_destroy(
    s: &Session,
    kek: ObjectHandle,
    private: ObjectHandle,
    public: Option<ObjectHandle>,
) -> Result<Vec<u8>, OpError> {
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, kek, private);
    let _ = s.destroy_object(private);
    if let Some(p) = public {
        let _ = s.destroy_object(p);
    }
    Ok(wrapped?)
}

fn bit_length(n: &[u8]) -> u32 {
    match n.iter().position(|&b| b != 0) {
        Some(i) => (n.len() - i) as u32 * 8 - n[i].leading_zeros(),
        None => 0,
    }
}

fn minimal_be(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(3);
    bytes[first..].to_vec()
}

fn bad_input(msg: String) -> CryptoError {
    CryptoError::BadInput(msg)
}

fn internal(msg: &str) -> CryptoError {
    CryptoError::Internal(msg.to_string())
}

fn mismatch(alg: impl std::fmt::Debug, kty: KeyType) -> CryptoError {
    CryptoError::AlgorithmMismatch {
        alg: format!("{alg:?}"),
        kty: format!("{kty:?}"),
    }
}

#[cfg(test)]
mod tests;
