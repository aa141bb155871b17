//! ECDSA with aws-lc-rs over P-256, P-384, P-521 and secp256k1. Signatures
//! are raw `r || s` (JOSE), each half the curve's field size.

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, KeyPair as _,
    UnparsedPublicKey,
};
use zeroize::Zeroizing;

use crate::{CryptoError, Curve, PublicKey, SignAlg};

struct Suite {
    signing: &'static EcdsaSigningAlgorithm,
    verifying: &'static EcdsaVerificationAlgorithm,
    digest: &'static digest::Algorithm,
    field: usize,
}

fn suite(curve: Curve) -> Suite {
    match curve {
        Curve::P256 => Suite {
            signing: &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            verifying: &signature::ECDSA_P256_SHA256_FIXED,
            digest: &digest::SHA256,
            field: 32,
        },
        Curve::P384 => Suite {
            signing: &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            verifying: &signature::ECDSA_P384_SHA384_FIXED,
            digest: &digest::SHA384,
            field: 48,
        },
        Curve::P521 => Suite {
            signing: &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
            verifying: &signature::ECDSA_P521_SHA512_FIXED,
            digest: &digest::SHA512,
            field: 66,
        },
        Curve::P256K => Suite {
            signing: &signature::ECDSA_P256K1_SHA256_FIXED_SIGNING,
            verifying: &signature::ECDSA_P256K1_SHA256_FIXED,
            digest: &digest::SHA256,
            field: 32,
        },
    }
}

/// The curve an ES* algorithm requires (`None` for other algorithms).
pub fn curve_of(alg: SignAlg) -> Option<Curve> {
    match alg {
        SignAlg::ES256 => Some(Curve::P256),
        SignAlg::ES384 => Some(Curve::P384),
        SignAlg::ES512 => Some(Curve::P521),
        SignAlg::ES256K => Some(Curve::P256K),
        _ => None,
    }
}

/// Size of the curve in bits (as Key Vault reports `key_size`-like values).
pub fn bits(curve: Curve) -> u32 {
    match curve {
        Curve::P256 | Curve::P256K => 256,
        Curve::P384 => 384,
        Curve::P521 => 521,
    }
}

/// Generates a key; returns PKCS#8 DER and the public point.
pub fn generate(curve: Curve) -> Result<(Zeroizing<Vec<u8>>, PublicKey), CryptoError> {
    let s = suite(curve);
    let kp = EcdsaKeyPair::generate(s.signing).map_err(|_| internal("EC key generation failed"))?;
    finish(&kp, curve)
}

/// Imports a private scalar with its public point.
pub fn import(
    curve: Curve,
    d: &[u8],
    x: &[u8],
    y: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, PublicKey), CryptoError> {
    let s = suite(curve);
    let bad = || {
        CryptoError::BadInput("the EC key components are invalid or do not match the curve".into())
    };
    let (x, y, d) = (
        pad(x, s.field).ok_or_else(bad)?,
        pad(y, s.field).ok_or_else(bad)?,
        Zeroizing::new(pad(d, s.field).ok_or_else(bad)?),
    );
    let mut point = Vec::with_capacity(1 + 2 * s.field);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let kp =
        EcdsaKeyPair::from_private_key_and_public_key(s.signing, &d, &point).map_err(|_| bad())?;
    finish(&kp, curve)
}

/// Imports PKCS#8 DER of a key on `curve`; returns it re-encoded and the
/// public point.
pub fn import_pkcs8(
    curve: Curve,
    der: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, PublicKey), CryptoError> {
    let kp = EcdsaKeyPair::from_pkcs8(suite(curve).signing, der)
        .map_err(|_| CryptoError::BadInput("not a valid PKCS#8 EC key on this curve".into()))?;
    finish(&kp, curve)
}

fn finish(kp: &EcdsaKeyPair, curve: Curve) -> Result<(Zeroizing<Vec<u8>>, PublicKey), CryptoError> {
    let doc = kp
        .to_pkcs8v1()
        .map_err(|_| internal("EC key serialisation failed"))?;
    let point = kp.public_key().as_ref();
    let field = (point.len().saturating_sub(1)) / 2;
    if point.first() != Some(&4) || field == 0 {
        return Err(internal("unexpected EC public key encoding"));
    }
    Ok((
        Zeroizing::new(doc.as_ref().to_vec()),
        PublicKey::Ec {
            curve,
            x: point[1..1 + field].to_vec(),
            y: point[1 + field..].to_vec(),
        },
    ))
}

/// Parses (and validates) stored PKCS#8 for signing on `curve`.
pub fn signing_key(curve: Curve, pkcs8: &[u8]) -> Result<EcdsaKeyPair, CryptoError> {
    EcdsaKeyPair::from_pkcs8(suite(curve).signing, pkcs8)
        .map_err(|_| internal("stored EC key is unreadable"))
}

/// Signs a digest; the algorithm must match the key's curve.
pub fn sign(
    kp: &EcdsaKeyPair,
    curve: Curve,
    alg: SignAlg,
    digest_bytes: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    check_alg(curve, alg)?;
    let s = suite(curve);
    let digest = import_digest(digest_bytes, s.digest)?;
    let sig = kp
        .sign_digest(&digest)
        .map_err(|_| internal("ECDSA signing failed"))?;
    Ok(sig.as_ref().to_vec())
}

/// Verifies a raw `r || s` signature over a digest.
pub fn verify(
    curve: Curve,
    x: &[u8],
    y: &[u8],
    alg: SignAlg,
    digest_bytes: &[u8],
    sig: &[u8],
) -> Result<bool, CryptoError> {
    check_alg(curve, alg)?;
    let s = suite(curve);
    let digest = import_digest(digest_bytes, s.digest)?;
    let (Some(x), Some(y)) = (pad(x, s.field), pad(y, s.field)) else {
        return Err(internal("EC public key is invalid"));
    };
    let mut point = vec![4u8];
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    Ok(UnparsedPublicKey::new(s.verifying, &point)
        .verify_digest(&digest, sig)
        .is_ok())
}

fn check_alg(curve: Curve, alg: SignAlg) -> Result<(), CryptoError> {
    if curve_of(alg) == Some(curve) {
        Ok(())
    } else {
        Err(CryptoError::AlgorithmMismatch {
            alg: format!("{alg:?}"),
            kty: format!("EC {}", curve_name(curve)),
        })
    }
}

/// JWK name of a curve.
pub fn curve_name(curve: Curve) -> &'static str {
    match curve {
        Curve::P256 => "P-256",
        Curve::P384 => "P-384",
        Curve::P521 => "P-521",
        Curve::P256K => "P-256K",
    }
}

fn import_digest(bytes: &[u8], alg: &'static digest::Algorithm) -> Result<Digest, CryptoError> {
    Digest::import_less_safe(bytes, alg).map_err(|_| {
        CryptoError::BadInput(format!(
            "the digest must be {} bytes for this algorithm",
            alg.output_len()
        ))
    })
}

/// Left-pads big-endian `b` to `len` bytes (`None` if longer).
fn pad(b: &[u8], len: usize) -> Option<Vec<u8>> {
    let zeros = b.iter().take_while(|&&x| x == 0).count();
    let b = &b[zeros..];
    if b.len() > len {
        return None;
    }
    let mut out = vec![0u8; len - b.len()];
    out.extend_from_slice(b);
    Some(out)
}

fn internal(m: &str) -> CryptoError {
    CryptoError::Internal(m.into())
}
