//! Key material behind one interface, wherever it lives (as rustls's
//! `SigningKey` or Vault's managed keys hide the provider).
//!
//! [`KeyMaterial`] is the stored form of a key version (software key inside
//! the barrier, or an HSM key wrapped under the cluster KEK); [`KeyHandle`]
//! is what the keys engine operates on: sign, verify, encrypt, decrypt,
//! wrap, unwrap and the public JWK. [`LoadedKey`] is the software handle,
//! [`HsmHandle`] the device one. The engine picks the tier once, where it
//! turns a stored version into a handle, and never again per operation.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::hsm::{self, operation, HsmKey, HsmProvider};
use super::software::{self, LoadedKey, SoftwareKey};
use super::{
    Ciphertext, CryptoError, EncAlg, KeySpec, KeyType, PrivateKey, PublicKey, SignAlg, SymParams,
};

/// A key that can be used: the one interface of both tiers. Calls may
/// block (RSA math, PKCS#11): run those off the async threads
/// ([`KeyHandle::may_block`] says which).
pub trait KeyHandle: Send + Sync {
    /// The public half (`Oct` for symmetric keys), rendered as the JWK.
    fn public(&self) -> &PublicKey;

    /// Signs a digest (RS*, PS*, ES*); the digest length must match the
    /// algorithm (checked once, by the implementation).
    fn sign(&self, alg: SignAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError>;

    /// Verifies a signature over a digest: public-key math, in software for
    /// every tier.
    fn verify(&self, alg: SignAlg, digest: &[u8], signature: &[u8]) -> Result<bool, CryptoError> {
        software::verify(self.public(), alg, digest, signature)
    }

    /// Encrypts (RSA-OAEP, RSA-OAEP-256, RSA1_5, A*GCM, A*CBC, A*CBCPAD) or
    /// wraps (A*KW, CKM_AES_KEY_WRAP(_PAD)).
    fn encrypt(
        &self,
        alg: EncAlg,
        plaintext: &[u8],
        params: &SymParams,
    ) -> Result<Ciphertext, CryptoError>;

    /// Decrypts or unwraps (the inverse of [`KeyHandle::encrypt`]).
    fn decrypt(
        &self,
        alg: EncAlg,
        ciphertext: &[u8],
        params: &SymParams,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError>;

    /// Wraps a key (RSA algorithms, A*KW, CKM_AES_KEY_WRAP(_PAD)).
    fn wrap(&self, alg: EncAlg, key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(self.encrypt(alg, key, &SymParams::default())?.value)
    }

    /// Unwraps a key wrapped by [`KeyHandle::wrap`].
    fn unwrap(&self, alg: EncAlg, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.decrypt(alg, wrapped, &SymParams::default())
    }

    /// Whether an operation with this key can take long enough to stall an
    /// async worker (RSA private-key math, a device round trip): callers run
    /// those on a blocking pool and the others where they are, since the
    /// hop to another thread costs more than a P-256 signature or an AES
    /// operation.
    fn may_block(&self) -> bool {
        true
    }
}

impl KeyHandle for LoadedKey {
    fn public(&self) -> &PublicKey {
        &self.key().public
    }

    fn sign(&self, alg: SignAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        LoadedKey::sign(self, alg, digest)
    }

    fn encrypt(
        &self,
        alg: EncAlg,
        plaintext: &[u8],
        params: &SymParams,
    ) -> Result<Ciphertext, CryptoError> {
        LoadedKey::encrypt(self, alg, plaintext, params)
    }

    fn decrypt(
        &self,
        alg: EncAlg,
        ciphertext: &[u8],
        params: &SymParams,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        LoadedKey::decrypt(self, alg, ciphertext, params)
    }

    /// AES keys and P-256 (tens of microseconds) run inline; RSA private
    /// operations (hundreds of microseconds to milliseconds) and the larger
    /// curves do not.
    fn may_block(&self) -> bool {
        let key = self.key();
        !(key.kty == KeyType::Oct || (key.kty == KeyType::Ec && key.bits <= 256))
    }
}

/// An HSM key with the device of this node (if it has one). Private and
/// secret-key operations run inside the device; public-key operations
/// (verify, RSA encrypt and wrap) run in software and need no device.
pub struct HsmHandle {
    device: Option<Arc<dyn HsmProvider>>,
    key: HsmKey,
}

impl HsmHandle {
    /// `key` used through `device` (`None`: this node has no HSM).
    pub fn new(device: Option<Arc<dyn HsmProvider>>, key: HsmKey) -> Self {
        Self { device, key }
    }

    fn device(&self) -> Result<&dyn HsmProvider, CryptoError> {
        self.device
            .as_deref()
            .ok_or_else(|| CryptoError::HsmUnavailable("no HSM is configured on this node".into()))
    }

    /// Encrypt or wrap, recorded as HSM `operation` when the device does it.
    fn encrypt_as(
        &self,
        operation: &'static str,
        alg: EncAlg,
        plaintext: &[u8],
        params: &SymParams,
    ) -> Result<Ciphertext, CryptoError> {
        software::check_enc(self.key.kty, self.key.bits, alg)?;
        if software::sym_key_bits(alg).is_none() {
            // RSA encryption is public-key math: software, no device.
            return Ok(Ciphertext {
                value: software::public_encrypt(&self.key.public, alg, plaintext)?,
                iv: None,
                tag: None,
            });
        }
        hsm::observed(operation, || {
            self.device()?.encrypt(&self.key, alg, plaintext, params)
        })
    }

    /// Decrypt or unwrap inside the device, recorded as HSM `operation`.
    fn decrypt_as(
        &self,
        operation: &'static str,
        alg: EncAlg,
        ciphertext: &[u8],
        params: &SymParams,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        software::check_enc(self.key.kty, self.key.bits, alg)?;
        hsm::observed(operation, || {
            self.device()?.decrypt(&self.key, alg, ciphertext, params)
        })
    }
}

/// The one place HSM keys are used: each device call is timed and its
/// failures counted here (`hsm::observed`), not at the call sites.
impl KeyHandle for HsmHandle {
    fn public(&self) -> &PublicKey {
        &self.key.public
    }

    fn sign(&self, alg: SignAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        // Checked before the device is asked, so a bad request is refused
        // the same way on a node whose device is down.
        software::check_sign(&self.key.public, alg, digest)?;
        hsm::observed(operation::SIGN, || {
            self.device()?.sign(&self.key, alg, digest)
        })
    }

    fn encrypt(
        &self,
        alg: EncAlg,
        plaintext: &[u8],
        params: &SymParams,
    ) -> Result<Ciphertext, CryptoError> {
        self.encrypt_as(operation::ENCRYPT, alg, plaintext, params)
    }

    fn decrypt(
        &self,
        alg: EncAlg,
        ciphertext: &[u8],
        params: &SymParams,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.decrypt_as(operation::DECRYPT, alg, ciphertext, params)
    }

    fn wrap(&self, alg: EncAlg, key: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(self
            .encrypt_as(operation::WRAP, alg, key, &SymParams::default())?
            .value)
    }

    fn unwrap(&self, alg: EncAlg, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.decrypt_as(operation::UNWRAP, alg, wrapped, &SymParams::default())
    }
}

/// Where a version's key material lives (its stored form).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyMaterial {
    /// Software key (private material inside the barrier).
    Software(SoftwareKey),
    /// HSM key, wrapped under the cluster KEK.
    Hsm(HsmKey),
}

impl KeyMaterial {
    /// New material of `spec`: inside `device` when given, else in software.
    pub fn generate(
        spec: &KeySpec,
        device: Option<&dyn HsmProvider>,
    ) -> Result<KeyMaterial, CryptoError> {
        Ok(match device {
            Some(device) => KeyMaterial::Hsm(hsm::observed(operation::GENERATE, || {
                device.generate(spec)
            })?),
            None => KeyMaterial::Software(software::generate(spec)?),
        })
    }

    /// Imported private material: into `device` when given, else software.
    pub fn import(
        key: &PrivateKey,
        device: Option<&dyn HsmProvider>,
    ) -> Result<KeyMaterial, CryptoError> {
        Ok(match device {
            Some(device) => {
                KeyMaterial::Hsm(hsm::observed(operation::IMPORT, || device.import(key))?)
            }
            None => KeyMaterial::Software(software::import(key)?),
        })
    }

    /// Key type as made (`RSA`, `EC-HSM`, …).
    pub fn kty(&self) -> KeyType {
        match self {
            KeyMaterial::Software(k) => k.kty,
            KeyMaterial::Hsm(k) => k.kty,
        }
    }

    /// Public half.
    pub fn public(&self) -> &PublicKey {
        match self {
            KeyMaterial::Software(k) => &k.public,
            KeyMaterial::Hsm(k) => &k.public,
        }
    }

    /// Key size in bits.
    pub fn bits(&self) -> u32 {
        match self {
            KeyMaterial::Software(k) => k.bits,
            KeyMaterial::Hsm(k) => k.bits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Curve;

    fn hsm_ec_key() -> (SoftwareKey, HsmKey) {
        let soft = software::generate(&KeySpec::Ec { curve: Curve::P256 }).unwrap();
        let hsm = HsmKey {
            kty: KeyType::EcHsm,
            wrapped: Vec::new(),
            public: soft.public.clone(),
            bits: soft.bits,
        };
        (soft, hsm)
    }

    #[test]
    fn an_hsm_key_without_a_device_verifies_but_does_not_sign() {
        let (soft, hsm) = hsm_ec_key();
        let handle = HsmHandle::new(None, hsm);
        let digest = [7u8; 32];
        let sig = soft.sign(SignAlg::ES256, &digest).unwrap();
        assert!(handle.verify(SignAlg::ES256, &digest, &sig).unwrap());
        assert!(matches!(
            handle.sign(SignAlg::ES256, &digest),
            Err(CryptoError::HsmUnavailable(_))
        ));
    }

    #[test]
    fn a_bad_digest_is_refused_before_the_device_is_asked() {
        let (_, hsm) = hsm_ec_key();
        let handle = HsmHandle::new(None, hsm);
        assert!(matches!(
            handle.sign(SignAlg::ES256, &[0u8; 20]),
            Err(CryptoError::BadInput(_))
        ));
    }

    #[test]
    fn software_handles_sign_what_they_verify() {
        let (soft, _) = hsm_ec_key();
        let handle: Arc<dyn KeyHandle> = Arc::new(LoadedKey::new(soft));
        let digest = [9u8; 32];
        let sig = handle.sign(SignAlg::ES256, &digest).unwrap();
        assert!(handle.verify(SignAlg::ES256, &digest, &sig).unwrap());
        assert!(!handle.verify(SignAlg::ES256, &[8u8; 32], &sig).unwrap());
    }

    #[test]
    fn only_rsa_larger_curves_and_devices_leave_the_async_workers() {
        let loaded = |spec| LoadedKey::new(software::generate(&spec).unwrap());
        assert!(!loaded(KeySpec::Ec { curve: Curve::P256 }).may_block());
        assert!(!loaded(KeySpec::Oct { bits: 256 }).may_block());
        assert!(loaded(KeySpec::Ec { curve: Curve::P384 }).may_block());
        assert!(loaded(KeySpec::Rsa {
            bits: 2048,
            public_exponent: 65537
        })
        .may_block());
        let (_, hsm) = hsm_ec_key();
        assert!(HsmHandle::new(None, hsm).may_block());
    }
}
