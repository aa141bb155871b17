//! Auto-unseal: the root key wrapped by a device-held key (the pkcs11
//! seal), so a node unseals itself at start with no custodian.
//!
//! The device record `sys/seal-wrapped-root-key` is
//! `version (1) | SealDevice::encrypt(AAD "coffer/seal-device-root-key", root key)`.
//! The root key record `sys/root-key` stays wrapped under the KEK of the
//! (recovery) shares as with the Shamir seal, so rekey, generate-root and a
//! migration back to Shamir prove a quorum exactly as before.

use std::sync::Arc;

use coffer_crypto::seal_device::SealDevice;
use coffer_crypto::CryptoError;
use zeroize::Zeroizing;

use super::keyring::{SecretKey, KEY_LEN};
use super::shamir::ct_eq;
use super::{Barrier, InitMaterial, Keyring, SealError, SealManager, SealStatus, SealType};
use super::{StoredSeal, Unsealed};

/// Storage key of the device record (raw; present only with the pkcs11 seal).
pub const SEAL_WRAPPED_ROOT_KEY_KEY: &[u8] = b"sys/seal-wrapped-root-key";
/// Associated data binding the device record to its purpose.
const DEVICE_AAD: &[u8] = b"coffer/seal-device-root-key";
/// Format version of the device record.
const DEVICE_RECORD_VERSION: u8 = 1;

/// A device failure as the seal reports it (the device's messages never
/// hold key material or the PIN).
pub(crate) fn device_error(e: CryptoError) -> SealError {
    match e {
        CryptoError::DecryptFailed => SealError::Device(
            "the device's seal key does not open the root key record (another key of the \
             same label, or a damaged record)"
                .into(),
        ),
        other => SealError::Device(other.to_string()),
    }
}

/// Wraps `root_key` with the device and proves the device gives it back
/// before anyone relies on the record.
pub(crate) fn wrap_for_device(
    device: &dyn SealDevice,
    root_key: &SecretKey,
) -> Result<Vec<u8>, SealError> {
    let body = device
        .encrypt(DEVICE_AAD, &root_key[..])
        .map_err(device_error)?;
    let mut record = Vec::with_capacity(1 + body.len());
    record.push(DEVICE_RECORD_VERSION);
    record.extend_from_slice(&body);
    let back = unwrap_from_device(device, &record)?;
    if !ct_eq(&back[..], &root_key[..]) {
        return Err(SealError::Device(
            "the device returned a different root key than it wrapped".into(),
        ));
    }
    Ok(record)
}

/// Opens the device record into the root key.
pub(crate) fn unwrap_from_device(
    device: &dyn SealDevice,
    record: &[u8],
) -> Result<SecretKey, SealError> {
    let body = match record.split_first() {
        Some((&DEVICE_RECORD_VERSION, body)) => body,
        Some((v, _)) => {
            return Err(SealError::Corrupt(format!(
                "unsupported device record version {v}"
            )))
        }
        None => return Err(SealError::Corrupt("empty device record".into())),
    };
    let plain = device.decrypt(DEVICE_AAD, body).map_err(device_error)?;
    if plain.len() != KEY_LEN {
        return Err(SealError::Corrupt(
            "the device record holds a key of the wrong length".into(),
        ));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&plain);
    Ok(key)
}

impl InitMaterial {
    /// Turns a fresh seal into a pkcs11 one: the shares become recovery
    /// shares and the root key is wrapped by `device`. Returns the device
    /// record to store next to the others.
    pub fn into_pkcs11(&mut self, device: &dyn SealDevice) -> Result<Vec<u8>, SealError> {
        let record = wrap_for_device(device, &self.root_key)?;
        self.stored.config.seal_type = SealType::Pkcs11;
        Ok(record)
    }
}

impl SealManager {
    /// Unseals from the device: `record` (the device record) → root key →
    /// keyring. A failure leaves the node sealed and is kept as the reason
    /// [`SealManager::status`] reports. Unsealed already: a no-op.
    pub fn auto_unseal(
        &self,
        device: &dyn SealDevice,
        stored: &StoredSeal,
        record: &[u8],
    ) -> Result<SealStatus, SealError> {
        stored.config.validate()?;
        if !self.is_sealed() {
            return Ok(self.status(Some(&stored.config)));
        }
        let opened = open_with_device(device, stored, record);
        let mut st = self.lock();
        match opened {
            Ok(unsealed) => {
                if st.unsealed.is_none() {
                    st.progress.reset();
                    st.unsealed = Some(unsealed);
                }
                st.reason = None;
            }
            Err(e) => {
                st.reason = Some(format!("auto-unseal ({}): {e}", device.describe()));
                return Err(e);
            }
        }
        Ok(st.status(Some(&stored.config)))
    }

    /// Records why this node stays sealed although it should unseal itself
    /// (e.g. no device configured); shown by [`SealManager::status`].
    pub fn set_sealed_reason(&self, reason: Option<String>) {
        let mut st = self.lock();
        if st.unsealed.is_none() {
            st.reason = reason;
        }
    }
}

fn open_with_device(
    device: &dyn SealDevice,
    stored: &StoredSeal,
    record: &[u8],
) -> Result<Unsealed, SealError> {
    if stored.config.seal_type != SealType::Pkcs11 {
        return Err(SealError::Ceremony(
            "this cluster uses the shamir seal: custodians unseal it with their shares".into(),
        ));
    }
    let root_key = unwrap_from_device(device, record)?;
    // The keyring authenticates under the root key: a wrong key is caught here.
    let keyring = Keyring::decrypt(&root_key, &stored.keyring_record)?;
    Ok(Unsealed {
        barrier: Arc::new(Barrier::new(keyring)),
        root_key,
    })
}

/// A stand-in for a PKCS#11 device in this crate's unit tests: the real
/// device (SoftHSM2) is exercised by the node's cluster tests.
#[cfg(test)]
pub(crate) mod test_device {
    use super::*;
    use crate::barrier::{aead_open, aead_seal};

    /// AES-256-GCM-SIV under a key held in memory.
    pub struct MemoryDevice {
        pub key: [u8; KEY_LEN],
        pub available: bool,
    }

    impl MemoryDevice {
        pub fn new() -> Self {
            Self {
                key: *crate::keyring::generate_key(),
                available: true,
            }
        }
    }

    impl SealDevice for MemoryDevice {
        fn describe(&self) -> String {
            "memory device".into()
        }
        fn encrypt(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
            if !self.available {
                return Err(CryptoError::HsmUnavailable("token not present".into()));
            }
            aead_seal(&self.key, aad, plaintext).map_err(|e| CryptoError::Internal(e.to_string()))
        }
        fn decrypt(&self, aad: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
            if !self.available {
                return Err(CryptoError::HsmUnavailable("token not present".into()));
            }
            aead_open(&self.key, aad, wrapped).map_err(|_| CryptoError::DecryptFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_device::MemoryDevice;
    use super::*;
    use crate::initialize;

    #[test]
    fn a_pkcs11_seal_unseals_from_the_device_and_refuses_shares() {
        let device = MemoryDevice::new();
        let mut init = initialize(5, 3).unwrap();
        let record = init.into_pkcs11(&device).unwrap();
        assert_eq!(init.stored.config.seal_type, SealType::Pkcs11);
        let ct = init.barrier.encrypt(b"k", b"v").unwrap();

        let m = SealManager::new();
        let err = m.submit_share(&init.shares[0], &init.stored).unwrap_err();
        assert_eq!(err, SealError::RecoveryOnly);
        let st = m.auto_unseal(&device, &init.stored, &record).unwrap();
        assert!(!st.sealed);
        assert_eq!(st.seal_type, SealType::Pkcs11);
        assert_eq!(&m.barrier().unwrap().decrypt(b"k", &ct).unwrap()[..], b"v");
    }

    #[test]
    fn a_missing_device_or_another_key_keeps_the_node_sealed_and_says_why() {
        let device = MemoryDevice::new();
        let mut init = initialize(3, 2).unwrap();
        let record = init.into_pkcs11(&device).unwrap();
        let m = SealManager::new();

        let mut gone = MemoryDevice::new();
        gone.available = false;
        let err = m.auto_unseal(&gone, &init.stored, &record).unwrap_err();
        assert!(matches!(err, SealError::Device(_)), "{err:?}");
        let st = m.status(Some(&init.stored.config));
        assert!(st.sealed);
        let reason = st.reason.unwrap();
        assert!(reason.contains("token not present"), "{reason}");

        let other = MemoryDevice::new();
        let err = m.auto_unseal(&other, &init.stored, &record).unwrap_err();
        assert!(err.to_string().contains("does not open"), "{err}");
        assert!(m.is_sealed());

        let mut damaged = record.clone();
        damaged[5] ^= 1;
        assert!(m.auto_unseal(&device, &init.stored, &damaged).is_err());
        assert!(m.is_sealed());

        // The right device clears the reason.
        let st = m.auto_unseal(&device, &init.stored, &record).unwrap();
        assert!(!st.sealed && st.reason.is_none());
    }
}
