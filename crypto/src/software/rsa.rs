//! RSA with aws-lc-rs: generation, import, digest signing (PKCS#1 v1.5 and
//! PSS with salt = hash length), verification, OAEP and PKCS#1 v1.5
//! encryption.

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeyPair, KeyPairComponents, KeySize, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    Pkcs1PrivateDecryptingKey, Pkcs1PublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
    PublicKeyComponents, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature::{self, KeyPair as _, RsaEncoding, RsaParameters};
use zeroize::Zeroizing;

use crate::{CryptoError, EncAlg, PublicKey, SignAlg};

/// The only public exponent aws-lc-rs generates (F4).
pub const F4: u32 = 65_537;

/// Generates a key; returns PKCS#8 DER and the public half.
pub fn generate(
    bits: u32,
    public_exponent: u32,
) -> Result<(Zeroizing<Vec<u8>>, PublicKey), CryptoError> {
    if public_exponent != F4 {
        return Err(CryptoError::BadInput(format!(
            "public exponent {public_exponent} is not supported: only 65537 is"
        )));
    }
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        _ => {
            return Err(CryptoError::BadInput(format!(
                "RSA key size {bits} is not supported: use 2048, 3072 or 4096"
            )))
        }
    };
    let kp = KeyPair::generate(size).map_err(|_| internal("RSA key generation failed"))?;
    finish(&kp)
}

/// Imports JWK components (big-endian); returns PKCS#8 DER, public half, bits.
#[allow(clippy::too_many_arguments, clippy::similar_names)]
pub fn import(
    n: &[u8],
    e: &[u8],
    d: &[u8],
    p: &[u8],
    q: &[u8],
    dp: &[u8],
    dq: &[u8],
    qi: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, PublicKey, u32), CryptoError> {
    let comps = KeyPairComponents {
        public_key: PublicKeyComponents {
            n: strip(n),
            e: strip(e),
        },
        d,
        p,
        q,
        dP: dp,
        dQ: dq,
        qInv: qi,
    };
    let kp = KeyPair::from_components(&comps).map_err(|_| {
        CryptoError::BadInput("the RSA key components are invalid or inconsistent".into())
    })?;
    let bits = (kp.public_modulus_len() * 8) as u32;
    if !(2048..=4096).contains(&bits) {
        return Err(CryptoError::BadInput(format!(
            "RSA key size {bits} is not supported: 2048 to 4096 bits"
        )));
    }
    let (der, public) = finish(&kp)?;
    Ok((der, public, bits))
}

/// Imports PKCS#8 DER; returns it re-encoded, the public half and bits.
pub fn import_pkcs8(der: &[u8]) -> Result<(Zeroizing<Vec<u8>>, PublicKey, u32), CryptoError> {
    let kp = KeyPair::from_pkcs8(der)
        .map_err(|_| CryptoError::BadInput("not a valid PKCS#8 RSA key".into()))?;
    let bits = (kp.public_modulus_len() * 8) as u32;
    if !(2048..=4096).contains(&bits) {
        return Err(CryptoError::BadInput(format!(
            "RSA key size {bits} is not supported: 2048 to 4096 bits"
        )));
    }
    let (der, public) = finish(&kp)?;
    Ok((der, public, bits))
}

fn finish(kp: &KeyPair) -> Result<(Zeroizing<Vec<u8>>, PublicKey), CryptoError> {
    let der = kp
        .as_der()
        .map_err(|_| internal("RSA key serialisation failed"))?;
    let public = kp.public_key();
    Ok((
        Zeroizing::new(der.as_ref().to_vec()),
        PublicKey::Rsa {
            n: public.modulus().big_endian_without_leading_zero().to_vec(),
            e: public.exponent().big_endian_without_leading_zero().to_vec(),
        },
    ))
}

fn encoding(
    alg: SignAlg,
) -> Option<(
    &'static dyn RsaEncoding,
    &'static RsaParameters,
    &'static digest::Algorithm,
)> {
    Some(match alg {
        SignAlg::RS256 => (
            &signature::RSA_PKCS1_SHA256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
            &digest::SHA256,
        ),
        SignAlg::RS384 => (
            &signature::RSA_PKCS1_SHA384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
            &digest::SHA384,
        ),
        SignAlg::RS512 => (
            &signature::RSA_PKCS1_SHA512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
            &digest::SHA512,
        ),
        SignAlg::PS256 => (
            &signature::RSA_PSS_SHA256,
            &signature::RSA_PSS_2048_8192_SHA256,
            &digest::SHA256,
        ),
        SignAlg::PS384 => (
            &signature::RSA_PSS_SHA384,
            &signature::RSA_PSS_2048_8192_SHA384,
            &digest::SHA384,
        ),
        SignAlg::PS512 => (
            &signature::RSA_PSS_SHA512,
            &signature::RSA_PSS_2048_8192_SHA512,
            &digest::SHA512,
        ),
        _ => return None,
    })
}

/// Whether `alg` is an RSA signature algorithm.
pub fn is_sign_alg(alg: SignAlg) -> bool {
    encoding(alg).is_some()
}

/// Parses (and validates) stored PKCS#8 for signing.
pub fn signing_key(pkcs8: &[u8]) -> Result<KeyPair, CryptoError> {
    KeyPair::from_pkcs8(pkcs8).map_err(|_| internal("stored RSA key is unreadable"))
}

/// Parses (and validates) stored PKCS#8 for decryption.
pub fn decrypting_key(pkcs8: &[u8]) -> Result<PrivateDecryptingKey, CryptoError> {
    PrivateDecryptingKey::from_pkcs8(pkcs8).map_err(|_| internal("stored RSA key is unreadable"))
}

/// Signs a digest (its length is checked by the caller).
pub fn sign(kp: &KeyPair, alg: SignAlg, digest_bytes: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (enc, _, dalg) = encoding(alg).ok_or_else(|| mismatch(alg, "RSA"))?;
    let digest = import_digest(digest_bytes, dalg)?;
    let mut sig = vec![0u8; kp.public_modulus_len()];
    kp.sign_digest(enc, &digest, &mut sig)
        .map_err(|_| internal("RSA signing failed"))?;
    Ok(sig)
}

/// Verifies a signature over a digest.
pub fn verify(
    n: &[u8],
    e: &[u8],
    alg: SignAlg,
    digest_bytes: &[u8],
    sig: &[u8],
) -> Result<bool, CryptoError> {
    let (_, params, dalg) = encoding(alg).ok_or_else(|| mismatch(alg, "RSA"))?;
    let digest = import_digest(digest_bytes, dalg)?;
    let comps = PublicKeyComponents {
        n: strip(n),
        e: strip(e),
    };
    let parsed = comps
        .to_parsed_public_key(params)
        .map_err(|_| internal("RSA public key is invalid"))?;
    Ok(parsed.verify_digest_sig(&digest, sig).is_ok())
}

fn import_digest(bytes: &[u8], alg: &'static digest::Algorithm) -> Result<Digest, CryptoError> {
    Digest::import_less_safe(bytes, alg).map_err(|_| {
        CryptoError::BadInput(format!(
            "the digest must be {} bytes for this algorithm",
            alg.output_len()
        ))
    })
}

/// Whether `alg` is an RSA encryption algorithm.
pub fn is_enc_alg(alg: EncAlg) -> bool {
    matches!(alg, EncAlg::RsaOaep | EncAlg::RsaOaep256 | EncAlg::Rsa15)
}

/// Encrypts with the public key.
pub fn encrypt(n: &[u8], e: &[u8], alg: EncAlg, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let comps = PublicKeyComponents {
        n: strip(n),
        e: strip(e),
    };
    let key: PublicEncryptingKey = comps
        .try_into()
        .map_err(|_| internal("RSA public key is invalid"))?;
    let too_long =
        || CryptoError::BadInput("the plaintext is too long for this key and algorithm".into());
    match alg {
        EncAlg::RsaOaep | EncAlg::RsaOaep256 => {
            let oalg = if alg == EncAlg::RsaOaep {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            let k =
                OaepPublicEncryptingKey::new(key).map_err(|_| internal("RSA key setup failed"))?;
            if plaintext.len() > k.max_plaintext_size(oalg) {
                return Err(too_long());
            }
            let mut out = vec![0u8; k.ciphertext_size()];
            let len = k
                .encrypt(oalg, plaintext, &mut out, None)
                .map_err(|_| too_long())?
                .len();
            out.truncate(len);
            Ok(out)
        }
        EncAlg::Rsa15 => {
            let k =
                Pkcs1PublicEncryptingKey::new(key).map_err(|_| internal("RSA key setup failed"))?;
            if plaintext.len() > k.max_plaintext_size() {
                return Err(too_long());
            }
            let mut out = vec![0u8; k.ciphertext_size()];
            let len = k
                .encrypt(plaintext, &mut out)
                .map_err(|_| too_long())?
                .len();
            out.truncate(len);
            Ok(out)
        }
        _ => Err(mismatch_enc(alg, "RSA")),
    }
}

/// Decrypts with the private key.
pub fn decrypt(
    key: &PrivateDecryptingKey,
    alg: EncAlg,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    // A clone shares the parsed key (a reference count), not a re-parse.
    let key = key.clone();
    if ciphertext.len() != key.key_size_bytes() {
        return Err(CryptoError::BadInput(format!(
            "the ciphertext must be {} bytes for this key",
            key.key_size_bytes()
        )));
    }
    let mut out = Zeroizing::new(vec![0u8; key.key_size_bytes()]);
    let len = match alg {
        EncAlg::RsaOaep | EncAlg::RsaOaep256 => {
            let oalg = if alg == EncAlg::RsaOaep {
                &OAEP_SHA1_MGF1SHA1
            } else {
                &OAEP_SHA256_MGF1SHA256
            };
            let k =
                OaepPrivateDecryptingKey::new(key).map_err(|_| internal("RSA key setup failed"))?;
            k.decrypt(oalg, ciphertext, &mut out, None)
                .map_err(|_| CryptoError::DecryptFailed)?
                .len()
        }
        EncAlg::Rsa15 => {
            let k = Pkcs1PrivateDecryptingKey::new(key)
                .map_err(|_| internal("RSA key setup failed"))?;
            k.decrypt(ciphertext, &mut out)
                .map_err(|_| CryptoError::DecryptFailed)?
                .len()
        }
        _ => return Err(mismatch_enc(alg, "RSA")),
    };
    out.truncate(len);
    Ok(out)
}

fn strip(b: &[u8]) -> &[u8] {
    let zeros = b.iter().take_while(|&&x| x == 0).count();
    &b[zeros.min(b.len().saturating_sub(1))..]
}

fn internal(m: &str) -> CryptoError {
    CryptoError::Internal(m.into())
}

fn mismatch(alg: SignAlg, kty: &str) -> CryptoError {
    CryptoError::AlgorithmMismatch {
        alg: format!("{alg:?}"),
        kty: kty.into(),
    }
}

fn mismatch_enc(alg: EncAlg, kty: &str) -> CryptoError {
    CryptoError::AlgorithmMismatch {
        alg: crate::software::enc_alg_name(alg).into(),
        kty: kty.into(),
    }
}
