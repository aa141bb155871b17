//! Key material for create, import and rotate: the key spec a request
//! asks for, generation in software or in the HSM, and the defaults a new
//! version gets.

use std::sync::Arc;

use super::{CreateKey, ImportKey, KeyAttributes, KeyOp, KeysEngine};
use crate::error::EngineError;
use crate::key_records::{KeyMaterial, KeyVersionRecord};
use crate::rotation::{self, RotationPolicy};
use crate::validate::check_tags;
use coffer_crypto::hsm::HsmProvider;
use coffer_crypto::{CryptoError, Curve, KeySpec, KeyType, PublicKey};

impl KeysEngine {
    /// New material of `spec`, in the HSM for `*-HSM` types.
    pub(super) async fn make_material(
        &self,
        kty: KeyType,
        spec: KeySpec,
    ) -> Result<KeyMaterial, EngineError> {
        let device = self.device_for(kty.is_hsm())?;
        blocking(move || KeyMaterial::generate(&spec, device.as_deref())).await
    }

    /// The material of an import, in the HSM when asked.
    pub(super) async fn import_material(
        &self,
        params: &ImportKey,
    ) -> Result<(KeyType, KeyMaterial), EngineError> {
        let device = self.device_for(params.hsm)?;
        let key = params.key.clone();
        let material = blocking(move || KeyMaterial::import(&key, device.as_deref())).await?;
        Ok((material.kty(), material))
    }

    /// The device to make a key in: `None` for a software key; the HSM for
    /// an HSM-tier key (503 `HsmUnavailable` on a node without one).
    fn device_for(&self, hsm_tier: bool) -> Result<Option<Arc<dyn HsmProvider>>, EngineError> {
        if !hsm_tier {
            return Ok(None);
        }
        self.hsm.clone().map(Some).ok_or_else(|| {
            EngineError::Crypto(CryptoError::HsmUnavailable(
                "no HSM is configured on this node".into(),
            ))
        })
    }
}

/// Runs blocking crypto (aws-lc-rs RSA, PKCS#11) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CryptoError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| EngineError::Crypto(CryptoError::Internal("crypto task failed".into())))?
        .map_err(EngineError::Crypto)
}

/// The operations a new key of `kty` permits by default.
pub(super) fn default_ops(kty: KeyType) -> Vec<KeyOp> {
    use KeyOp::*;
    match kty {
        KeyType::Rsa | KeyType::RsaHsm => vec![Encrypt, Decrypt, Sign, Verify, WrapKey, UnwrapKey],
        KeyType::Ec | KeyType::EcHsm => vec![Sign, Verify],
        KeyType::Oct | KeyType::OctHsm => vec![Encrypt, Decrypt, WrapKey, UnwrapKey],
    }
}

/// The key spec a create asks for (Key Vault's defaults and limits).
pub(super) fn spec_of(p: &CreateKey) -> Result<KeySpec, EngineError> {
    let bad = |m: String| Err(EngineError::BadParameter(m));
    match p.kty {
        KeyType::Rsa | KeyType::RsaHsm => {
            let bits = p.key_size.unwrap_or(2048);
            if !matches!(bits, 2048 | 3072 | 4096) {
                return bad(format!(
                    "RSA key size {bits} is not supported: use 2048, 3072 or 4096"
                ));
            }
            let e = p.public_exponent.unwrap_or(65_537);
            if e != 65_537 {
                return bad(format!(
                    "Public exponent {e} is not supported: only 65537 is"
                ));
            }
            Ok(KeySpec::Rsa {
                bits,
                public_exponent: e,
            })
        }
        KeyType::Ec | KeyType::EcHsm => Ok(KeySpec::Ec {
            curve: p.curve.unwrap_or(Curve::P256),
        }),
        KeyType::Oct | KeyType::OctHsm => {
            let bits = p.key_size.unwrap_or(256);
            if !matches!(bits, 128 | 192 | 256) {
                return bad(format!(
                    "oct key size {bits} is not supported: use 128, 192 or 256"
                ));
            }
            Ok(KeySpec::Oct { bits })
        }
    }
}

/// The spec of existing material (rotation makes a new key like it).
pub(super) fn spec_of_material(m: &KeyMaterial) -> Result<KeySpec, EngineError> {
    Ok(match m.public() {
        PublicKey::Rsa { e, .. } => {
            let e = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            KeySpec::Rsa {
                bits: m.bits(),
                public_exponent: u32::try_from(e)
                    .map_err(|_| EngineError::Corrupt("RSA exponent".into()))?,
            }
        }
        PublicKey::Ec { curve, .. } => KeySpec::Ec { curve: *curve },
        PublicKey::Oct => KeySpec::Oct { bits: m.bits() },
    })
}

/// The attributes of a rotated version: the latest one's operations and
/// tags, expiry from the policy.
pub(super) fn rotated_attributes(
    latest: &KeyVersionRecord,
    policy: Option<&RotationPolicy>,
    now: u64,
) -> KeyAttributes {
    let exp = policy
        .and_then(|p| p.attributes.expiry_time.as_deref())
        .and_then(rotation::parse_duration)
        .map(|d| (now + d) as i64);
    KeyAttributes {
        key_ops: Some(latest.key_ops.clone()),
        enabled: Some(true),
        nbf: None,
        exp,
        tags: latest.tags.clone(),
        exportable: None,
        release_policy: false,
    }
}

/// Refuses what Coffer does not support and over-long tags.
pub(super) fn check_attributes(a: &KeyAttributes) -> Result<(), EngineError> {
    if a.exportable == Some(true) || a.release_policy {
        return Err(EngineError::NotSupported(
            "exportable keys and key release policies are not supported by Coffer".into(),
        ));
    }
    check_tags(a.tags.as_ref())
}
