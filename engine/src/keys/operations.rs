//! The cryptographic operations of a key version: sign, verify, encrypt,
//! decrypt, wrap, unwrap (and random bytes), after the checks Key Vault
//! makes (enabled, permitted operation, validity window).

use std::sync::Arc;

use zeroize::Zeroizing;

use super::generate::blocking;
use super::{
    check_name_of_key, KeyOp, KeysEngine, OpOutput, MAX_PAYLOAD_BYTES, MAX_RANDOM_BYTES,
    MAX_SIGNATURE_BYTES,
};
use crate::error::{EngineError, KeyRefusal};
use crate::key_records::{KeyMaterial, KeyVersionRecord};
use crate::parsed_key_cache::{CacheId, Ticket};
use crate::view::VaultView;
use coffer_crypto::key::{HsmHandle, KeyHandle};
use coffer_crypto::software::{self, LoadedKey};
use coffer_crypto::{Ciphertext, EncAlg, SignAlg, SymParams};

/// A version ready for an operation.
struct Usable {
    name: String,
    record: KeyVersionRecord,
    /// Where the record is stored and at which revision (the cache key).
    id: CacheId,
    revision: u64,
    /// Cache generation seen before the record was read.
    ticket: Ticket,
}

impl KeysEngine {
    /// Signs a digest (RS*, PS*, ES*; the digest length must match).
    pub async fn sign(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: SignAlg,
        digest: &[u8],
    ) -> Result<OpOutput, EngineError> {
        let (u, key) = self.usable(vault, name, version, KeyOp::Sign).await?;
        let digest = digest.to_vec();
        let sig = run(key, move |key| key.sign(alg, &digest)).await?;
        Ok(output(u, Zeroizing::new(sig), None, None))
    }

    /// Verifies a signature over a digest (in software, from the public key).
    pub async fn verify(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: SignAlg,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, EngineError> {
        if signature.len() > MAX_SIGNATURE_BYTES {
            return Err(EngineError::BadParameter(format!(
                "The signature is larger than {MAX_SIGNATURE_BYTES} bytes"
            )));
        }
        let (_, key) = self.usable(vault, name, version, KeyOp::Verify).await?;
        Ok(key.verify(alg, digest, signature)?)
    }

    /// Encrypts (RSA-OAEP, RSA-OAEP-256, RSA1_5, A*GCM, A*CBC, A*CBCPAD).
    pub async fn encrypt(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: EncAlg,
        plaintext: &[u8],
        params: SymParams,
    ) -> Result<OpOutput, EngineError> {
        check_alg_for(KeyOp::Encrypt, alg)?;
        self.encrypt_with(vault, name, version, KeyOp::Encrypt, alg, plaintext, params)
            .await
    }

    /// Decrypts (the algorithms of [`KeysEngine::encrypt`]).
    pub async fn decrypt(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: EncAlg,
        ciphertext: &[u8],
        params: SymParams,
    ) -> Result<OpOutput, EngineError> {
        check_alg_for(KeyOp::Decrypt, alg)?;
        self.decrypt_with(
            vault,
            name,
            version,
            KeyOp::Decrypt,
            alg,
            ciphertext,
            params,
        )
        .await
    }

    /// Wraps a key (RSA algorithms, A*KW, CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD).
    pub async fn wrap_key(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: EncAlg,
        key: &[u8],
    ) -> Result<OpOutput, EngineError> {
        check_alg_for(KeyOp::WrapKey, alg)?;
        self.encrypt_with(
            vault,
            name,
            version,
            KeyOp::WrapKey,
            alg,
            key,
            SymParams::default(),
        )
        .await
    }

    /// Unwraps a key (the algorithms of [`KeysEngine::wrap_key`]).
    pub async fn unwrap_key(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        alg: EncAlg,
        wrapped: &[u8],
    ) -> Result<OpOutput, EngineError> {
        check_alg_for(KeyOp::UnwrapKey, alg)?;
        self.decrypt_with(
            vault,
            name,
            version,
            KeyOp::UnwrapKey,
            alg,
            wrapped,
            SymParams::default(),
        )
        .await
    }

    /// `count` (1–128) random bytes.
    pub fn random_bytes(&self, count: usize) -> Result<Vec<u8>, EngineError> {
        if !(1..=MAX_RANDOM_BYTES).contains(&count) {
            return Err(EngineError::BadParameter(format!(
                "count must be between 1 and {MAX_RANDOM_BYTES}"
            )));
        }
        Ok(software::random_bytes(count)?)
    }

    #[allow(clippy::too_many_arguments)]
    /// Encrypt or wrap with the key (RSA: public-key math in software for
    /// both tiers, inside [`KeyHandle::encrypt`]).
    async fn encrypt_with(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        op: KeyOp,
        alg: EncAlg,
        input: &[u8],
        params: SymParams,
    ) -> Result<OpOutput, EngineError> {
        check_payload(input)?;
        let (u, key) = self.usable(vault, name, version, op).await?;
        let input = Zeroizing::new(input.to_vec());
        // A wrap is `KeyHandle::wrap`, so the tier can tell it from an
        // encrypt (the HSM metrics do).
        let ct = run(key, move |key| match op {
            KeyOp::WrapKey => key.wrap(alg, &input).map(|value| Ciphertext {
                value,
                iv: None,
                tag: None,
            }),
            _ => key.encrypt(alg, &input, &params),
        })
        .await?;
        Ok(output(u, Zeroizing::new(ct.value), ct.iv, ct.tag))
    }

    #[allow(clippy::too_many_arguments)]
    /// Decrypt or unwrap with the key's private or secret material.
    async fn decrypt_with(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        op: KeyOp,
        alg: EncAlg,
        input: &[u8],
        params: SymParams,
    ) -> Result<OpOutput, EngineError> {
        check_payload(input)?;
        let (u, key) = self.usable(vault, name, version, op).await?;
        let input = input.to_vec();
        let plain = run(key, move |key| match op {
            KeyOp::UnwrapKey => key.unwrap(alg, &input),
            _ => key.decrypt(alg, &input, &params),
        })
        .await?;
        Ok(output(u, plain, None, None))
    }

    /// The version an operation uses, after the enabled / key_ops /
    /// validity checks of the service, with its key.
    async fn usable(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        op: KeyOp,
    ) -> Result<(Usable, Arc<dyn KeyHandle>), EngineError> {
        let lower = check_name_of_key(name)?;
        // Before any store read: see `ParsedKeyCache::ticket`.
        let ticket = self.loaded.ticket();
        let view = VaultView::fenced(self.store(), vault).await?;
        let found = self.objects.live_version(&view, &lower, name, version)?;
        let (revision, record) = (found.revision, found.version);
        let refuse = |reason| {
            Err(EngineError::KeyForbidden {
                name: name.to_owned(),
                op: op.as_str(),
                reason,
            })
        };
        if !record.enabled {
            return refuse(KeyRefusal::Disabled);
        }
        if !record.key_ops.contains(&op) {
            return refuse(KeyRefusal::OperationNotAllowed);
        }
        if !op.ignores_validity() {
            let now = (self.clock)() as i64;
            if record.nbf.is_some_and(|nbf| now < nbf) {
                return refuse(KeyRefusal::NotYetValid);
            }
            if record.exp.is_some_and(|exp| now >= exp) {
                return refuse(KeyRefusal::Expired);
            }
        }
        let usable = Usable {
            name: found.meta.record.name,
            id: CacheId {
                vault: view.vault().to_owned(),
                name: lower,
                version: record.version.clone(),
            },
            record,
            revision,
            ticket,
        };
        let key = self.key_handle(&usable);
        Ok((usable, key))
    }

    /// The one place the tier matters: a software key is used through its
    /// parsed form (cached: only parsing is skipped, `usable` has already
    /// checked the version), an HSM key through this node's device.
    fn key_handle(&self, u: &Usable) -> Arc<dyn KeyHandle> {
        match &u.record.material {
            KeyMaterial::Software(k) => {
                self.loaded.load(u.ticket, &u.id, u.revision, k) as Arc<dyn KeyHandle>
            }
            hsm @ KeyMaterial::Hsm(_) => self.handle_of(hsm),
        }
    }

    /// A handle on `material` for a caller that has already decided the
    /// key may be used (a certificate's key signing its certificate, CSR,
    /// CRL or OCSP response): a software key parsed now, an HSM key through
    /// this node's device (its private part never leaves it).
    pub fn handle_of(&self, material: &KeyMaterial) -> Arc<dyn KeyHandle> {
        match material {
            KeyMaterial::Software(k) => Arc::new(LoadedKey::new(k.clone())),
            KeyMaterial::Hsm(k) => Arc::new(HsmHandle::new(self.hsm.clone(), k.clone())),
        }
    }
}

/// Runs `op` with `key`: on the blocking pool when the key says an
/// operation may take long ([`KeyHandle::may_block`]), else right here.
async fn run<T: Send + 'static>(
    key: Arc<dyn KeyHandle>,
    op: impl FnOnce(&dyn KeyHandle) -> Result<T, coffer_crypto::CryptoError> + Send + 'static,
) -> Result<T, EngineError> {
    if key.may_block() {
        blocking(move || op(&*key)).await
    } else {
        op(&*key).map_err(EngineError::Crypto)
    }
}

fn output(
    u: Usable,
    value: Zeroizing<Vec<u8>>,
    iv: Option<Vec<u8>>,
    tag: Option<Vec<u8>>,
) -> OpOutput {
    OpOutput {
        name: u.name,
        version: u.record.version,
        value,
        iv,
        tag,
    }
}

fn check_payload(input: &[u8]) -> Result<(), EngineError> {
    if input.len() > MAX_PAYLOAD_BYTES {
        return Err(EngineError::BadParameter(format!(
            "The value is too large: {} bytes, the limit is {MAX_PAYLOAD_BYTES}",
            input.len()
        )));
    }
    Ok(())
}

/// Which algorithms each operation accepts.
fn check_alg_for(op: KeyOp, alg: EncAlg) -> Result<(), EngineError> {
    use EncAlg::*;
    let rsa = matches!(alg, RsaOaep | RsaOaep256 | Rsa15);
    let ok = rsa
        || match op {
            KeyOp::Encrypt | KeyOp::Decrypt => matches!(
                alg,
                A128GCM
                    | A192GCM
                    | A256GCM
                    | A128CBC
                    | A192CBC
                    | A256CBC
                    | A128CBCPAD
                    | A192CBCPAD
                    | A256CBCPAD
            ),
            _ => matches!(
                alg,
                A128KW | A192KW | A256KW | CkmAesKeyWrap | CkmAesKeyWrapPad
            ),
        };
    if ok {
        Ok(())
    } else {
        Err(EngineError::BadParameter(format!(
            "Algorithm {} is not valid for the {} operation",
            software::enc_alg_name(alg),
            op.as_str()
        )))
    }
}
