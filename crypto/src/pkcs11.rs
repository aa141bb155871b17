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
mod kwp;
mod mechanisms;
mod oaep;
mod pool;

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
use self::mechanisms::Capabilities;
use self::pool::{describe, Device, OpError};
use super::hsm::{HsmAdmin, HsmConfig, HsmKey, HsmProvider, HsmStatus};
use super::{
    refuse_caller_gcm_iv, Ciphertext, CryptoError, Curve, EncAlg, KeySpec, KeyType, PrivateKey,
    PublicKey, SignAlg, SymParams,
};

pub use self::ceremony::{KekExport, KekInfo, OaepHash, TransportKey};

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

fn read_pin(cfg: &HsmConfig) -> Result<Zeroizing<String>, String> {
    let mut pin =
        match (&cfg.pin_file, &cfg.pin_env) {
            (Some(path), _) => Zeroizing::new(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the HSM PIN file {}: {e}", path.display()))?,
            ),
            (None, Some(var)) => Zeroizing::new(std::env::var(var).map_err(|_| {
                format!("the HSM PIN variable {var} is not set (or not valid UTF-8)")
            })?),
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

/// Attributes every freshly generated or imported key carries: a session
/// object, sensitive, extractable only so it can be wrapped under the KEK.
fn transient_private() -> Vec<Attribute> {
    vec![
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
    ]
}

fn generate_rsa(
    s: &Session,
    kek: ObjectHandle,
    bits: u32,
    public_exponent: u32,
) -> Result<HsmKey, OpError> {
    if ![2048, 3072, 4096].contains(&bits) {
        return Err(bad_input(format!("RSA key size {bits} is not 2048, 3072 or 4096")).into());
    }
    if public_exponent < 3 || public_exponent.is_multiple_of(2) {
        return Err(bad_input(format!("public exponent {public_exponent} is invalid")).into());
    }
    let e = minimal_be(public_exponent);
    let mut private_t = transient_private();
    private_t.extend([
        Attribute::Sign(true),
        Attribute::Decrypt(true),
        Attribute::Unwrap(true),
    ]);
    let (public, private) = s.generate_key_pair(
        &Mechanism::RsaPkcsKeyPairGen,
        &[
            Attribute::Token(false),
            Attribute::ModulusBits(u64::from(bits).into()),
            Attribute::PublicExponent(e),
            Attribute::Verify(true),
            Attribute::Encrypt(true),
        ],
        &private_t,
    )?;
    let read = read_rsa_public(s, public);
    let wrapped = wrap_and_destroy(s, kek, private, Some(public))?;
    Ok(HsmKey {
        kty: KeyType::RsaHsm,
        wrapped,
        public: read?,
        bits,
    })
}

fn read_rsa_public(s: &Session, public: ObjectHandle) -> Result<PublicKey, OpError> {
    let attrs = s.get_attributes(
        public,
        &[AttributeType::Modulus, AttributeType::PublicExponent],
    )?;
    let (mut n, mut e) = (None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            _ => {}
        }
    }
    match (n, e) {
        (Some(n), Some(e)) => Ok(PublicKey::Rsa { n, e }),
        _ => Err(internal("device returned no RSA public key").into()),
    }
}

fn generate_ec(s: &Session, kek: ObjectHandle, curve: Curve) -> Result<HsmKey, OpError> {
    let mut private_t = transient_private();
    private_t.push(Attribute::Sign(true));
    let (public, private) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(false),
                Attribute::EcParams(mechanisms::curve_params(curve).to_vec()),
                Attribute::Verify(true),
            ],
            &private_t,
        )
        .map_err(|e| curve_error(e, curve))?;
    let point = s.get_attributes(public, &[AttributeType::EcPoint]);
    let wrapped = wrap_and_destroy(s, kek, private, Some(public))?;
    let (x, y) = point?
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => mechanisms::parse_ec_point(&p, curve),
            _ => None,
        })
        .ok_or_else(|| internal("device returned no usable EC point"))?;
    Ok(HsmKey {
        kty: KeyType::EcHsm,
        wrapped,
        public: PublicKey::Ec { curve, x, y },
        bits: mechanisms::curve_bits(curve),
    })
}

fn curve_error(e: CkError, curve: Curve) -> OpError {
    match e {
        CkError::Pkcs11(
            RvError::CurveNotSupported
            | RvError::DomainParamsInvalid
            | RvError::AttributeValueInvalid,
            _,
        ) => OpError::Crypto(CryptoError::Unsupported(format!("curve {curve:?}"))),
        other => OpError::Device(other),
    }
}

fn generate_oct(s: &Session, kek: ObjectHandle, bits: u32) -> Result<HsmKey, OpError> {
    if ![128, 192, 256].contains(&bits) {
        return Err(bad_input(format!("AES key size {bits} is not 128, 192 or 256")).into());
    }
    let mut template = transient_private();
    template.extend([
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(CkKeyType::AES),
        Attribute::ValueLen(u64::from(bits / 8).into()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
    ]);
    let key = s.generate_key(&Mechanism::AesKeyGen, &template)?;
    let wrapped = wrap_and_destroy(s, kek, key, None)?;
    Ok(HsmKey {
        kty: KeyType::OctHsm,
        wrapped,
        public: PublicKey::Oct,
        bits,
    })
}

/// Creates a transient session object from private material (the template's
/// secret values are wiped afterwards) and wraps it.
fn import_key(s: &Session, kek: ObjectHandle, key: &PrivateKey) -> Result<HsmKey, OpError> {
    let (mut template, kty, public, bits) = import_template(key)?;
    let created = s.create_object(&template);
    wipe(&mut template);
    let handle = created.map_err(|e| match e {
        CkError::Pkcs11(
            RvError::AttributeValueInvalid
            | RvError::TemplateInconsistent
            | RvError::TemplateIncomplete,
            _,
        ) => OpError::Crypto(CryptoError::BadInput(
            "the device rejected the key material".into(),
        )),
        other => OpError::Device(other),
    })?;
    let wrapped = wrap_and_destroy(s, kek, handle, None)?;
    Ok(HsmKey {
        kty,
        wrapped,
        public,
        bits,
    })
}

type ImportParts = (Vec<Attribute>, KeyType, PublicKey, u32);

fn import_template(key: &PrivateKey) -> Result<ImportParts, OpError> {
    let mut t = transient_private();
    match key {
        PrivateKey::Rsa {
            n,
            e,
            d,
            p,
            q,
            dp,
            dq,
            qi,
        } => {
            let bits = bit_length(n);
            if bits < 2048 {
                return Err(bad_input("RSA keys must be at least 2048 bits".into()).into());
            }
            t.extend([
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(CkKeyType::RSA),
                Attribute::Sign(true),
                Attribute::Decrypt(true),
                Attribute::Unwrap(true),
                Attribute::Modulus(n.clone()),
                Attribute::PublicExponent(e.clone()),
                Attribute::PrivateExponent(d.to_vec()),
                Attribute::Prime1(p.to_vec()),
                Attribute::Prime2(q.to_vec()),
                Attribute::Exponent1(dp.to_vec()),
                Attribute::Exponent2(dq.to_vec()),
                Attribute::Coefficient(qi.to_vec()),
            ]);
            let public = PublicKey::Rsa {
                n: n.clone(),
                e: e.clone(),
            };
            Ok((t, KeyType::RsaHsm, public, bits))
        }
        PrivateKey::Ec { curve, d, x, y } => {
            let size = mechanisms::curve_bytes(*curve);
            let d = mechanisms::left_pad(d, size)
                .ok_or_else(|| bad_input("EC private scalar is too long".into()))?;
            let x = mechanisms::left_pad(x, size)
                .ok_or_else(|| bad_input("EC x is too long".into()))?;
            let y = mechanisms::left_pad(y, size)
                .ok_or_else(|| bad_input("EC y is too long".into()))?;
            t.extend([
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(CkKeyType::EC),
                Attribute::Sign(true),
                Attribute::EcParams(mechanisms::curve_params(*curve).to_vec()),
                Attribute::Value(d.to_vec()),
            ]);
            let public = PublicKey::Ec {
                curve: *curve,
                x: x.to_vec(),
                y: y.to_vec(),
            };
            Ok((t, KeyType::EcHsm, public, mechanisms::curve_bits(*curve)))
        }
        PrivateKey::Oct { k } => {
            if ![16, 24, 32].contains(&k.len()) {
                return Err(bad_input("AES keys are 128, 192 or 256 bits".into()).into());
            }
            t.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(CkKeyType::AES),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Value(k.to_vec()),
            ]);
            Ok((t, KeyType::OctHsm, PublicKey::Oct, k.len() as u32 * 8))
        }
    }
}

/// Overwrites the secret values a template carried.
fn wipe(template: &mut [Attribute]) {
    for a in template {
        match a {
            Attribute::Value(v)
            | Attribute::PrivateExponent(v)
            | Attribute::Prime1(v)
            | Attribute::Prime2(v)
            | Attribute::Exponent1(v)
            | Attribute::Exponent2(v)
            | Attribute::Coefficient(v) => v.zeroize(),
            _ => {}
        }
    }
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

/// The sign mechanism and input for `alg` on `key`, after checking the
/// digest length and key type.
fn sign_input(
    key: &HsmKey,
    alg: SignAlg,
    digest: &[u8],
) -> Result<(Mechanism<'static>, Vec<u8>), CryptoError> {
    let (hash, len) = mechanisms::sign_hash(alg).ok_or_else(|| mismatch(alg, key.kty))?;
    if digest.len() != len {
        return Err(bad_input(format!(
            "{alg:?} needs a {len}-byte digest, got {} bytes",
            digest.len()
        )));
    }
    use SignAlg::*;
    match (key.kty, alg) {
        (KeyType::RsaHsm, RS256 | RS384 | RS512) => {
            let prefix = mechanisms::digest_info_prefix(len).ok_or_else(|| internal("digest"))?;
            Ok((Mechanism::RsaPkcs, [prefix, digest].concat()))
        }
        (KeyType::RsaHsm, PS256 | PS384 | PS512) => {
            let mgf = match len {
                32 => PkcsMgfType::MGF1_SHA256,
                48 => PkcsMgfType::MGF1_SHA384,
                _ => PkcsMgfType::MGF1_SHA512,
            };
            let params = PkcsPssParams {
                hash_alg: hash,
                mgf,
                s_len: (len as u64).into(),
            };
            Ok((Mechanism::RsaPkcsPss(params), digest.to_vec()))
        }
        (KeyType::EcHsm, ES256 | ES384 | ES512 | ES256K) => {
            let want = mechanisms::sign_alg_curve(alg);
            match &key.public {
                PublicKey::Ec { curve, .. } if Some(*curve) == want => {
                    Ok((Mechanism::Ecdsa, digest.to_vec()))
                }
                _ => Err(mismatch(alg, key.kty)),
            }
        }
        _ => Err(mismatch(alg, key.kty)),
    }
}

/// AES key size an `A…` algorithm requires (None: any size).
fn aes_bits(alg: EncAlg) -> Option<u32> {
    use EncAlg::*;
    match alg {
        A128GCM | A128KW | A128CBC | A128CBCPAD => Some(128),
        A192GCM | A192KW | A192CBC | A192CBCPAD => Some(192),
        A256GCM | A256KW | A256CBC | A256CBCPAD => Some(256),
        _ => None,
    }
}

fn check_oct(key: &HsmKey, alg: EncAlg) -> Result<(), CryptoError> {
    if key.kty != KeyType::OctHsm {
        return Err(mismatch(alg, key.kty));
    }
    match aes_bits(alg) {
        Some(bits) if bits != key.bits => Err(mismatch(alg, key.kty)),
        _ => Ok(()),
    }
}

fn iv16(params: &SymParams) -> Result<[u8; 16], CryptoError> {
    params
        .iv
        .as_deref()
        .and_then(|iv| <[u8; 16]>::try_from(iv).ok())
        .ok_or_else(|| bad_input("CBC needs a 16-byte iv".into()))
}

/// Symmetric mechanisms of `C_Encrypt`/`C_Decrypt` (not key wrap).
enum SymKind {
    Gcm,
    Cbc,
    CbcPad,
    Kw(Mechanism<'static>),
}

fn sym_kind(alg: EncAlg) -> Option<SymKind> {
    use EncAlg::*;
    match alg {
        A128GCM | A192GCM | A256GCM => Some(SymKind::Gcm),
        A128CBC | A192CBC | A256CBC => Some(SymKind::Cbc),
        A128CBCPAD | A192CBCPAD | A256CBCPAD => Some(SymKind::CbcPad),
        A128KW | A192KW | A256KW | CkmAesKeyWrap => Some(SymKind::Kw(Mechanism::AesKeyWrap)),
        CkmAesKeyWrapPad => Some(SymKind::Kw(Mechanism::AesKeyWrapPad)),
        RsaOaep | RsaOaep256 | Rsa15 => None,
    }
}

/// Wraps caller-supplied key bytes with `key` (A*KW wrapKey).
fn wrap_bytes(
    s: &Session,
    key: ObjectHandle,
    mech: &Mechanism,
    bytes: &[u8],
) -> Result<Vec<u8>, OpError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(CkKeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::Value(bytes.to_vec()),
    ];
    let created = s.create_object(&template);
    wipe(&mut template);
    let obj = created?;
    let wrapped = s.wrap_key(mech, key, obj);
    let _ = s.destroy_object(obj);
    Ok(wrapped?)
}

/// Unwraps caller data with `key` (A*KW unwrapKey) and reads the bytes back.
fn unwrap_bytes(
    s: &Session,
    key: ObjectHandle,
    mech: &Mechanism,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    let obj = s.unwrap_key(
        mech,
        key,
        wrapped,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(CkKeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ],
    )?;
    let attrs = s.get_attributes(obj, &[AttributeType::Value]);
    let _ = s.destroy_object(obj);
    let value = attrs?.into_iter().find_map(|a| match a {
        Attribute::Value(v) => Some(Zeroizing::new(v)),
        _ => None,
    });
    value.ok_or_else(|| internal("device returned no unwrapped value").into())
}

impl HsmAdmin for Pkcs11Hsm {
    fn create_kek(&self) -> Result<KekInfo, CryptoError> {
        Pkcs11Hsm::create_kek(self)
    }

    fn transport_key(&self) -> Result<TransportKey, CryptoError> {
        Pkcs11Hsm::transport_key(self)
    }

    fn export_kek(&self, transport: &TransportKey) -> Result<KekExport, CryptoError> {
        Pkcs11Hsm::export_kek(self, transport)
    }

    fn import_kek(&self, export: &KekExport) -> Result<KekInfo, CryptoError> {
        Pkcs11Hsm::import_kek(self, export)
    }
}

impl HsmProvider for Pkcs11Hsm {
    fn status(&self) -> HsmStatus {
        let open = match &self.state {
            Ok(open) => open,
            Err(e) => {
                return HsmStatus {
                    available: false,
                    error: Some(e.clone()),
                    token_label: self.token_label.clone(),
                    kek_present: false,
                    notes: Vec::new(),
                }
            }
        };
        let mut notes = open.caps.notes();
        let kek = open.device.with_session(|s| {
            let found = find_kek(s)?;
            // Status looks anyway: keep the cached handle in step with it.
            *open.kek_slot() = found;
            let Some(kek) = found else {
                return Ok(None);
            };
            Ok(Some(ceremony::check_value(s, kek)))
        });
        let (kek_present, error) = match kek {
            Ok(Some(kcv)) => {
                if let Some(kcv) = kcv {
                    notes.push(format!("cluster KEK check value: {kcv}"));
                }
                (true, None)
            }
            Ok(None) => (false, None),
            Err(e) => (false, Some(classify(e).to_string())),
        };
        notes.push(format!(
            "session pool: up to {} sessions",
            open.device.max_sessions()
        ));
        HsmStatus {
            available: error.is_none(),
            error,
            token_label: self.token_label.clone(),
            kek_present,
            notes,
        }
    }

    fn generate(&self, spec: &KeySpec) -> Result<HsmKey, CryptoError> {
        self.with_kek(|_, s, kek| match spec {
            KeySpec::Rsa {
                bits,
                public_exponent,
            } => generate_rsa(s, kek, *bits, *public_exponent),
            KeySpec::Ec { curve } => generate_ec(s, kek, *curve),
            KeySpec::Oct { bits } => generate_oct(s, kek, *bits),
        })
    }

    fn import(&self, key: &PrivateKey) -> Result<HsmKey, CryptoError> {
        self.with_kek(|_, s, kek| import_key(s, kek, key))
    }

    fn sign(&self, key: &HsmKey, alg: SignAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open_device()?;
        let (mech, input) = sign_input(key, alg, digest)?;
        self.with_key(key, |s, h| Ok(s.sign(&mech, h, &input)?))
    }

    fn decrypt(
        &self,
        key: &HsmKey,
        alg: EncAlg,
        ciphertext: &[u8],
        params: &SymParams,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if key.kty == KeyType::RsaHsm {
            return self.rsa_decrypt(key, alg, ciphertext);
        }
        check_oct(key, alg)?;
        let kind = sym_kind(alg).ok_or_else(|| mismatch(alg, key.kty))?;
        let aad = params.aad.clone().unwrap_or_default();
        let input = match kind {
            SymKind::Gcm => {
                let tag = params
                    .tag
                    .as_deref()
                    .filter(|t| t.len() == 16)
                    .ok_or_else(|| bad_input("GCM decryption needs a 16-byte tag".into()))?;
                [ciphertext, tag].concat()
            }
            _ => ciphertext.to_vec(),
        };
        let iv = params.iv.clone().unwrap_or_default();
        if matches!(kind, SymKind::Gcm) && iv.is_empty() {
            return Err(bad_input("GCM decryption needs the iv".into()));
        }
        let cbc_iv = match kind {
            SymKind::Cbc | SymKind::CbcPad => Some(iv16(params)?),
            _ => None,
        };
        self.with_key(key, |s, h| {
            let out = match &kind {
                SymKind::Gcm => {
                    let mut iv = iv.clone();
                    let gcm = GcmParams::new(&mut iv, &aad, 128.into())?;
                    s.decrypt(&Mechanism::AesGcm(gcm), h, &input)?
                }
                SymKind::Cbc => {
                    s.decrypt(&Mechanism::AesCbc(cbc_iv.unwrap_or_default()), h, &input)?
                }
                SymKind::CbcPad => {
                    s.decrypt(&Mechanism::AesCbcPad(cbc_iv.unwrap_or_default()), h, &input)?
                }
                SymKind::Kw(mech) => return unwrap_bytes(s, h, mech, &input),
            };
            Ok(Zeroizing::new(out))
        })
        .map_err(|e| match e {
            CryptoError::Internal(_) | CryptoError::BadInput(_) => CryptoError::DecryptFailed,
            other => other,
        })
    }

    fn encrypt(
        &self,
        key: &HsmKey,
        alg: EncAlg,
        plaintext: &[u8],
        params: &SymParams,
    ) -> Result<Ciphertext, CryptoError> {
        if key.kty != KeyType::OctHsm {
            return Err(bad_input(
                "RSA encryption uses only the public key and is done in software".into(),
            ));
        }
        check_oct(key, alg)?;
        let kind = sym_kind(alg).ok_or_else(|| mismatch(alg, key.kty))?;
        let aad = params.aad.clone().unwrap_or_default();
        match &kind {
            SymKind::Cbc if !plaintext.len().is_multiple_of(16) => {
                return Err(bad_input(
                    "CBC without padding needs a multiple of 16 bytes".into(),
                ))
            }
            SymKind::Kw(Mechanism::AesKeyWrap)
                if !plaintext.len().is_multiple_of(8) || plaintext.len() < 16 =>
            {
                return Err(bad_input(
                    "AES key wrap needs at least 16 bytes in multiples of 8".into(),
                ))
            }
            SymKind::Kw(Mechanism::AesKeyWrapPad)
                if plaintext.is_empty() || u32::try_from(plaintext.len()).is_err() =>
            {
                return Err(bad_input(
                    "AES key wrap with padding needs 1 to 2^32-1 bytes".into(),
                ))
            }
            _ => {}
        }
        let host_kwp = {
            let caps = &self.open_device()?.caps;
            !caps.kwp_wrap_exact && caps.has(MechanismType::AES_ECB)
        };
        match &kind {
            SymKind::Kw(Mechanism::AesKeyWrapPad)
                if host_kwp && !plaintext.len().is_multiple_of(8) =>
            {
                return self.with_key(key, |s, h| {
                    let value = kwp::wrap_pad(plaintext, |block| {
                        let out = Zeroizing::new(s.encrypt(&Mechanism::AesEcb, h, block)?);
                        <[u8; 16]>::try_from(out.as_slice())
                            .map_err(|_| OpError::from(internal("AES-ECB output is not one block")))
                    })?;
                    Ok(Ciphertext {
                        value,
                        iv: None,
                        tag: None,
                    })
                });
            }
            _ => {}
        }
        let cbc_iv = match kind {
            SymKind::Cbc | SymKind::CbcPad => Some(iv16(params)?),
            SymKind::Gcm => {
                refuse_caller_gcm_iv(params)?;
                None
            }
            _ => None,
        };
        self.with_key(key, |s, h| match &kind {
            SymKind::Gcm => {
                let mut iv = s.generate_random_vec(12)?;
                let used_iv = iv.clone();
                let gcm = GcmParams::new(&mut iv, &aad, 128.into())?;
                let mut out = s.encrypt(&Mechanism::AesGcm(gcm), h, plaintext)?;
                if out.len() < 16 {
                    return Err(internal("GCM output shorter than its tag").into());
                }
                let tag = out.split_off(out.len() - 16);
                Ok(Ciphertext {
                    value: out,
                    iv: Some(used_iv),
                    tag: Some(tag),
                })
            }
            SymKind::Cbc | SymKind::CbcPad => {
                let iv = cbc_iv.unwrap_or_default();
                let mech = if matches!(kind, SymKind::Cbc) {
                    Mechanism::AesCbc(iv)
                } else {
                    Mechanism::AesCbcPad(iv)
                };
                Ok(Ciphertext {
                    value: s.encrypt(&mech, h, plaintext)?,
                    iv: Some(iv.to_vec()),
                    tag: None,
                })
            }
            SymKind::Kw(mech) => Ok(Ciphertext {
                value: wrap_bytes(s, h, mech, plaintext)?,
                iv: None,
                tag: None,
            }),
        })
    }
}

impl Pkcs11Hsm {
    fn rsa_decrypt(
        &self,
        key: &HsmKey,
        alg: EncAlg,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mech = match alg {
            EncAlg::RsaOaep => oaep(MechanismType::SHA1),
            EncAlg::RsaOaep256 => {
                let caps = &self.open_device()?.caps;
                if !caps.oaep_sha256 {
                    if caps.has(MechanismType::RSA_X_509) {
                        return self.rsa_oaep256_emulated(key, ciphertext);
                    }
                    return Err(CryptoError::Unsupported(
                        "RSA-OAEP-256 (the device has neither SHA-256 OAEP parameters \
                         nor CKM_RSA_X_509)"
                            .into(),
                    ));
                }
                oaep(MechanismType::SHA256)
            }
            EncAlg::Rsa15 => Mechanism::RsaPkcs,
            other => return Err(mismatch(other, key.kty)),
        };
        self.with_key(key, |s, h| {
            s.decrypt(&mech, h, ciphertext)
                .map(Zeroizing::new)
                .map_err(OpError::from)
        })
        .map_err(|e| match e {
            CryptoError::Internal(_) | CryptoError::BadInput(_) => CryptoError::DecryptFailed,
            other => other,
        })
    }
}

impl Pkcs11Hsm {
    /// RSA-OAEP-256 as raw RSA (`CKM_RSA_X_509`) in the device and
    /// constant-time EME-OAEP decoding on the host. Every failure, from
    /// the device or the decoder, is [`CryptoError::DecryptFailed`].
    fn rsa_oaep256_emulated(
        &self,
        key: &HsmKey,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let PublicKey::Rsa { n, .. } = &key.public else {
            return Err(mismatch(EncAlg::RsaOaep256, key.kty));
        };
        let k = (bit_length(n) as usize).div_ceil(8);
        // Public check (RFC 8017 §7.1.2 step 1b).
        if ciphertext.len() != k {
            return Err(CryptoError::DecryptFailed);
        }
        let em = self
            .with_key(key, |s, h| {
                let raw = Zeroizing::new(s.decrypt(&Mechanism::RsaX509, h, ciphertext)?);
                Ok(oaep::left_align(&raw, k)?)
            })
            .map_err(|e| match e {
                CryptoError::HsmUnavailable(_) => e,
                _ => CryptoError::DecryptFailed,
            })?;
        oaep::decode_sha256(&em)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_counts_from_the_top_set_bit() {
        assert_eq!(bit_length(&[0, 0x80, 0]), 16);
        assert_eq!(bit_length(&[0x01, 0xff]), 9);
        assert_eq!(bit_length(&[0, 0]), 0);
    }

    #[test]
    fn minimal_exponent_encoding() {
        assert_eq!(minimal_be(65537), vec![1, 0, 1]);
        assert_eq!(minimal_be(3), vec![3]);
    }

    #[test]
    fn sign_input_checks_digest_length_and_key_type() {
        let rsa = HsmKey {
            kty: KeyType::RsaHsm,
            wrapped: vec![],
            public: PublicKey::Rsa {
                n: vec![],
                e: vec![],
            },
            bits: 2048,
        };
        assert!(matches!(
            sign_input(&rsa, SignAlg::RS256, &[0; 48]),
            Err(CryptoError::BadInput(_))
        ));
        assert!(matches!(
            sign_input(&rsa, SignAlg::ES256, &[0; 32]),
            Err(CryptoError::AlgorithmMismatch { .. })
        ));
        let (_, input) = sign_input(&rsa, SignAlg::RS256, &[7; 32]).unwrap();
        assert_eq!(input.len(), 19 + 32);
        let ec = HsmKey {
            kty: KeyType::EcHsm,
            wrapped: vec![],
            public: PublicKey::Ec {
                curve: Curve::P256K,
                x: vec![],
                y: vec![],
            },
            bits: 256,
        };
        assert!(sign_input(&ec, SignAlg::ES256, &[0; 32]).is_err());
        assert!(sign_input(&ec, SignAlg::ES256K, &[0; 32]).is_ok());
    }

    fn stale() -> OpError {
        OpError::Device(CkError::Pkcs11(
            RvError::UnwrappingKeyHandleInvalid,
            cryptoki::context::Function::UnwrapKey,
        ))
    }

    #[test]
    fn the_kek_handle_is_cached_and_looked_up_again_once_when_stale() {
        let slot = Mutex::new(None);
        let finds = std::cell::Cell::new(0);
        let find = |h: u32| {
            let finds = &finds;
            move || {
                finds.set(finds.get() + 1);
                Ok(Some(h))
            }
        };
        // First use looks up; later uses reuse the handle.
        assert_eq!(with_cached_kek(&slot, find(7), Ok).unwrap(), 7);
        assert_eq!(with_cached_kek(&slot, find(7), Ok).unwrap(), 7);
        assert_eq!(finds.get(), 1);
        // The device rejects the cached handle: one fresh lookup and retry.
        let out = with_cached_kek(
            &slot,
            find(9),
            |h| if h == 7 { Err(stale()) } else { Ok(h) },
        );
        assert_eq!(out.unwrap(), 9);
        assert_eq!((finds.get(), *slot.lock().unwrap()), (2, Some(9)));
        // A freshly found handle that is rejected is not retried forever.
        *slot.lock().unwrap() = None;
        let mut calls = 0;
        let out: Result<(), _> = with_cached_kek(&slot, find(9), |_| {
            calls += 1;
            Err(stale())
        });
        assert!(out.is_err() && calls == 1);
        // Other errors keep the handle.
        let out: Result<(), _> = with_cached_kek(&slot, find(9), |_| {
            Err(OpError::Crypto(CryptoError::DecryptFailed))
        });
        assert!(out.is_err());
        assert_eq!(*slot.lock().unwrap(), Some(9));
        // No KEK in the device: nothing cached, the ceremony error.
        *slot.lock().unwrap() = None;
        let out = with_cached_kek(&slot, || Ok(None::<u32>), Ok);
        assert!(matches!(
            out,
            Err(OpError::Crypto(CryptoError::HsmUnavailable(_)))
        ));
        assert_eq!(*slot.lock().unwrap(), None);
    }

    #[test]
    fn open_with_a_missing_module_is_unavailable_not_a_panic() {
        let cfg = HsmConfig {
            module: "/nonexistent/libpkcs11.so".into(),
            token_label: "nothing".into(),
            pin_file: None,
            pin_env: Some("COFFER_TEST_PIN_UNSET_FOR_SURE".into()),
            max_sessions: 4,
            key_cache: 4,
        };
        let hsm = Pkcs11Hsm::open(&cfg);
        let status = hsm.status();
        assert!(!status.available);
        assert!(status.error.is_some());
        assert!(matches!(
            hsm.generate(&KeySpec::Oct { bits: 256 }),
            Err(CryptoError::HsmUnavailable(_))
        ));
    }
}
