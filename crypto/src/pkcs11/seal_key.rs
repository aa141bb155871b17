//! The auto-unseal key: an AES-256 token object that is sensitive and
//! *not* extractable (unlike the cluster KEK, it never moves between
//! devices by Coffer's hand), used with `CKM_AES_GCM` inside the device to
//! wrap the cluster's root key. Every node of a PKCS#11-sealed cluster must
//! reach the same key: one network HSM (or HSM cluster) for all nodes, or,
//! with SoftHSM2, one token directory copied to every node before start.

use std::sync::Arc;

use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use rand::RngCore;
use zeroize::Zeroizing;

use super::pool::OpError;
use super::{classify, Pkcs11Hsm};
use crate::hsm::{self, operation};
use crate::seal_device::SealDevice;
use crate::CryptoError;

/// GCM IV length (the NIST-recommended 96 bits).
const IV_LEN: usize = 12;
/// GCM tag length in bytes.
const TAG_LEN: usize = 16;

/// The seal key named `label` in the node's PKCS#11 device.
pub struct Pkcs11SealKey {
    hsm: Arc<Pkcs11Hsm>,
    label: String,
}

impl Pkcs11SealKey {
    /// The key `label` in `hsm` (looked up on each use: an auto-unseal is
    /// rare, and a key created after start is then found).
    pub fn new(hsm: Arc<Pkcs11Hsm>, label: impl Into<String>) -> Self {
        Self {
            hsm,
            label: label.into(),
        }
    }

    /// Creates the key in the device (AES-256, token object, sensitive,
    /// never extractable, encrypt/decrypt only). Returns `false` when a key
    /// of this label already exists (it is left as it is).
    pub fn create(&self) -> Result<bool, CryptoError> {
        let open = self.hsm.open_device()?;
        open.device
            .with_session(|s| {
                if find(s, &self.label)?.is_some() {
                    return Ok(false);
                }
                let template = vec![
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(CkKeyType::AES),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Label(self.label.as_bytes().to_vec()),
                    Attribute::ValueLen(32.into()),
                ];
                s.generate_key(&Mechanism::AesKeyGen, &template)?;
                Ok(true)
            })
            .map_err(classify)
    }

    /// Whether the key can be read back out of the device (it must not):
    /// `CKA_EXTRACTABLE` and `CKA_SENSITIVE` as the device reports them.
    pub fn attributes(&self) -> Result<SealKeyAttributes, CryptoError> {
        self.with_key(|s, key| {
            let attrs = s.get_attributes(
                key,
                &[
                    cryptoki::object::AttributeType::Extractable,
                    cryptoki::object::AttributeType::Sensitive,
                ],
            )?;
            let mut out = SealKeyAttributes::default();
            for a in attrs {
                match a {
                    Attribute::Extractable(v) => out.extractable = v,
                    Attribute::Sensitive(v) => out.sensitive = v,
                    _ => {}
                }
            }
            Ok(out)
        })
    }

    fn with_key<T>(
        &self,
        mut f: impl FnMut(&Session, ObjectHandle) -> Result<T, OpError>,
    ) -> Result<T, CryptoError> {
        let open = self.hsm.open_device()?;
        open.device
            .with_session(|s| {
                let key = find(s, &self.label)?.ok_or_else(|| {
                    OpError::Crypto(CryptoError::HsmUnavailable(format!(
                        "token {:?} holds no seal key labelled {:?}; create it with \
                         `coffer operator seal-key create`",
                        self.hsm.token_label, self.label
                    )))
                })?;
                f(s, key)
            })
            .map_err(classify)
    }
}

/// What the device says about the seal key's protection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealKeyAttributes {
    /// `CKA_EXTRACTABLE`: the key could be wrapped out of the device.
    pub extractable: bool,
    /// `CKA_SENSITIVE`: the key's value cannot be read in clear.
    pub sensitive: bool,
}

fn find(s: &Session, label: &str) -> Result<Option<ObjectHandle>, OpError> {
    let found = s.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(OpError::Crypto(CryptoError::HsmUnavailable(format!(
            "more than one seal key labelled {label:?} in this device"
        )))),
    }
}

impl SealDevice for Pkcs11SealKey {
    fn describe(&self) -> String {
        format!("token {:?}, key {:?}", self.hsm.token_label, self.label)
    }

    fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut iv = [0u8; IV_LEN];
        rand::rng().fill_bytes(&mut iv);
        let body = hsm::observed(operation::SEAL_WRAP, || {
            self.with_key(|s, key| {
                let mut iv = iv;
                let gcm = GcmParams::new(&mut iv, aad, 128.into())?;
                Ok(s.encrypt(&Mechanism::AesGcm(gcm), key, plaintext)?)
            })
        })?;
        let mut out = Vec::with_capacity(IV_LEN + body.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn decrypt(&self, aad: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if wrapped.len() < IV_LEN + TAG_LEN {
            return Err(CryptoError::DecryptFailed);
        }
        let (iv, body) = wrapped.split_at(IV_LEN);
        hsm::observed(operation::SEAL_UNWRAP, || {
            self.unwrap_with_seal_key(aad, iv, body)
        })
    }
}

impl Pkcs11SealKey {
    /// The device half of [`SealDevice::decrypt`].
    fn unwrap_with_seal_key(
        &self,
        aad: &[u8],
        iv: &[u8],
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.with_key(|s, key| {
            let mut iv: [u8; IV_LEN] = iv
                .try_into()
                .map_err(|_| OpError::Crypto(CryptoError::DecryptFailed))?;
            let gcm = GcmParams::new(&mut iv, aad, 128.into())?;
            Ok(Zeroizing::new(s.decrypt(
                &Mechanism::AesGcm(gcm),
                key,
                body,
            )?))
        })
        // SoftHSM2 reports a failed GCM tag check as CKR_GENERAL_ERROR; as
        // for the oct-HSM keys (`ops.rs`), any such failure of the decrypt
        // itself is a decryption failure. A missing device, token or key
        // stays `HsmUnavailable`.
        .map_err(|e| match e {
            CryptoError::Internal(_) | CryptoError::BadInput(_) => CryptoError::DecryptFailed,
            other => other,
        })
    }
}
