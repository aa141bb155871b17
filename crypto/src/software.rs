//! Software keys: generated, stored and used with aws-lc-rs.
//!
//! Private material is kept as PKCS#8 DER (RSA, EC) or raw bytes (oct) in
//! `Zeroizing` buffers; the keys engine stores it only inside the barrier.
//! Operations take digests (sign/verify) exactly as Key Vault does.

mod aes;
mod ec;
mod rsa;

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use super::{
    Ciphertext, CryptoError, Curve, EncAlg, KeySpec, KeyType, PrivateKey, PublicKey, SignAlg,
    SymParams,
};

pub use ec::curve_name;

/// A software key with its private material.
#[derive(Clone, Serialize, Deserialize)]
pub struct SoftwareKey {
    /// `RSA`, `EC` or `oct`.
    pub kty: KeyType,
    /// PKCS#8 DER (RSA, EC) or the raw AES key (oct).
    #[serde(serialize_with = "ser_secret", deserialize_with = "de_secret")]
    material: Zeroizing<Vec<u8>>,
    /// Public half.
    pub public: PublicKey,
    /// RSA modulus bits, curve bits or AES key bits.
    pub bits: u32,
}

impl std::fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareKey")
            .field("kty", &self.kty)
            .field("bits", &self.bits)
            .field("material", &"<redacted>")
            .finish()
    }
}

fn ser_secret<S: Serializer>(v: &Zeroizing<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&Zeroizing::new(URL_SAFE_NO_PAD.encode(v.as_slice())))
}

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<Vec<u8>>, D::Error> {
    let s = Zeroizing::new(String::deserialize(d)?);
    URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| serde::de::Error::custom("invalid key material encoding"))
}

/// Generates a software key.
pub fn generate(spec: &KeySpec) -> Result<SoftwareKey, CryptoError> {
    match *spec {
        KeySpec::Rsa {
            bits,
            public_exponent,
        } => {
            let (material, public) = rsa::generate(bits, public_exponent)?;
            Ok(SoftwareKey {
                kty: KeyType::Rsa,
                material,
                public,
                bits,
            })
        }
        KeySpec::Ec { curve } => {
            let (material, public) = ec::generate(curve)?;
            Ok(SoftwareKey {
                kty: KeyType::Ec,
                material,
                public,
                bits: ec::bits(curve),
            })
        }
        KeySpec::Oct { bits } => Ok(SoftwareKey {
            kty: KeyType::Oct,
            material: aes::generate(bits)?,
            public: PublicKey::Oct,
            bits,
        }),
    }
}

/// Imports private material as a software key.
pub fn import(key: &PrivateKey) -> Result<SoftwareKey, CryptoError> {
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
            let (material, public, bits) = rsa::import(n, e, d, p, q, dp, dq, qi)?;
            Ok(SoftwareKey {
                kty: KeyType::Rsa,
                material,
                public,
                bits,
            })
        }
        PrivateKey::Ec { curve, d, x, y } => {
            let (material, public) = ec::import(*curve, d, x, y)?;
            Ok(SoftwareKey {
                kty: KeyType::Ec,
                material,
                public,
                bits: ec::bits(*curve),
            })
        }
        PrivateKey::Oct { k } => {
            let bits = (k.len() * 8) as u32;
            if !matches!(bits, 128 | 192 | 256) {
                return Err(CryptoError::BadInput(format!(
                    "oct key size {bits} is not supported: use 128, 192 or 256"
                )));
            }
            Ok(SoftwareKey {
                kty: KeyType::Oct,
                material: k.clone(),
                public: PublicKey::Oct,
                bits,
            })
        }
    }
}

/// Imports a PKCS#8 (DER) RSA or EC private key as a software key: the
/// key of an imported certificate arrives this way (PFX or PEM), never as
/// JWK components.
pub fn import_pkcs8(der: &[u8]) -> Result<SoftwareKey, CryptoError> {
    if let Ok((material, public, bits)) = rsa::import_pkcs8(der) {
        return Ok(SoftwareKey {
            kty: KeyType::Rsa,
            material,
            public,
            bits,
        });
    }
    for curve in [Curve::P256, Curve::P384, Curve::P521, Curve::P256K] {
        if let Ok((material, public)) = ec::import_pkcs8(curve, der) {
            return Ok(SoftwareKey {
                kty: KeyType::Ec,
                material,
                public,
                bits: ec::bits(curve),
            });
        }
    }
    Err(CryptoError::BadInput(
        "the private key is not a supported PKCS#8 RSA or EC key".into(),
    ))
}

/// `n` bytes from the system CSPRNG.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, CryptoError> {
    aes::random(n)
}

/// Digest length an RS/PS/ES algorithm requires (`None`: HS*, not a digest
/// signature).
pub fn digest_len(alg: SignAlg) -> Option<usize> {
    use SignAlg::*;
    match alg {
        RS256 | PS256 | ES256 | ES256K => Some(32),
        RS384 | PS384 | ES384 => Some(48),
        RS512 | PS512 | ES512 => Some(64),
        HS256 | HS384 | HS512 => None,
    }
}

/// Key Vault name of an encryption algorithm.
pub fn enc_alg_name(alg: EncAlg) -> &'static str {
    use EncAlg::*;
    match alg {
        RsaOaep => "RSA-OAEP",
        RsaOaep256 => "RSA-OAEP-256",
        Rsa15 => "RSA1_5",
        A128GCM => "A128GCM",
        A192GCM => "A192GCM",
        A256GCM => "A256GCM",
        A128KW => "A128KW",
        A192KW => "A192KW",
        A256KW => "A256KW",
        A128CBC => "A128CBC",
        A192CBC => "A192CBC",
        A256CBC => "A256CBC",
        A128CBCPAD => "A128CBCPAD",
        A192CBCPAD => "A192CBCPAD",
        A256CBCPAD => "A256CBCPAD",
        CkmAesKeyWrap => "CKM_AES_KEY_WRAP",
        CkmAesKeyWrapPad => "CKM_AES_KEY_WRAP_PAD",
    }
}

/// Checks that `digest` has the length `alg` requires and `alg` suits
/// `public`'s key type (and curve).
pub fn check_sign(public: &PublicKey, alg: SignAlg, digest: &[u8]) -> Result<(), CryptoError> {
    let suits = match public {
        PublicKey::Rsa { .. } => rsa::is_sign_alg(alg),
        PublicKey::Ec { curve, .. } => ec::curve_of(alg) == Some(*curve),
        PublicKey::Oct => false,
    };
    if !suits {
        return Err(CryptoError::AlgorithmMismatch {
            alg: format!("{alg:?}"),
            kty: kty_label(public),
        });
    }
    match digest_len(alg) {
        Some(n) if n == digest.len() => Ok(()),
        Some(n) => Err(CryptoError::BadInput(format!(
            "the digest for {alg:?} must be {n} bytes, got {}",
            digest.len()
        ))),
        None => Err(CryptoError::AlgorithmMismatch {
            alg: format!("{alg:?}"),
            kty: kty_label(public),
        }),
    }
}

fn kty_label(public: &PublicKey) -> String {
    match public {
        PublicKey::Rsa { .. } => "RSA".into(),
        PublicKey::Ec { curve, .. } => format!("EC {}", curve_name(*curve)),
        PublicKey::Oct => "oct".into(),
    }
}

/// Verifies a signature over a digest with a public key (any tier).
pub fn verify(
    public: &PublicKey,
    alg: SignAlg,
    digest: &[u8],
    signature: &[u8],
) -> Result<bool, CryptoError> {
    check_sign(public, alg, digest)?;
    match public {
        PublicKey::Rsa { n, e } => rsa::verify(n, e, alg, digest, signature),
        PublicKey::Ec { curve, x, y } => ec::verify(*curve, x, y, alg, digest, signature),
        PublicKey::Oct => Err(CryptoError::AlgorithmMismatch {
            alg: format!("{alg:?}"),
            kty: "oct".into(),
        }),
    }
}

/// Encrypts with an RSA public key (any tier): RSA-OAEP, RSA-OAEP-256, RSA1_5.
pub fn public_encrypt(
    public: &PublicKey,
    alg: EncAlg,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    match public {
        PublicKey::Rsa { n, e } if rsa::is_enc_alg(alg) => rsa::encrypt(n, e, alg, plaintext),
        _ => Err(CryptoError::AlgorithmMismatch {
            alg: enc_alg_name(alg).into(),
            kty: kty_label(public),
        }),
    }
}

/// The AES key size (bits) an algorithm requires; `Some(0)`: any size
/// (CKM_*); `None`: not a symmetric algorithm.
pub fn sym_key_bits(alg: EncAlg) -> Option<u32> {
    use EncAlg::*;
    match alg {
        A128GCM | A128KW | A128CBC | A128CBCPAD => Some(128),
        A192GCM | A192KW | A192CBC | A192CBCPAD => Some(192),
        A256GCM | A256KW | A256CBC | A256CBCPAD => Some(256),
        CkmAesKeyWrap | CkmAesKeyWrapPad => Some(0),
        RsaOaep | RsaOaep256 | Rsa15 => None,
    }
}

/// Checks that `alg` applies to a key of `kty` and `bits` (tier-agnostic).
pub fn check_enc(kty: KeyType, bits: u32, alg: EncAlg) -> Result<(), CryptoError> {
    let ok = match (kty, sym_key_bits(alg)) {
        (KeyType::Rsa | KeyType::RsaHsm, None) => true,
        (KeyType::Oct | KeyType::OctHsm, Some(0)) => true,
        (KeyType::Oct | KeyType::OctHsm, Some(b)) => b == bits,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let kty = match kty {
            KeyType::Oct | KeyType::OctHsm => format!("{bits}-bit oct"),
            KeyType::Rsa | KeyType::RsaHsm => "RSA".into(),
            KeyType::Ec | KeyType::EcHsm => "EC".into(),
        };
        Err(CryptoError::AlgorithmMismatch {
            alg: enc_alg_name(alg).into(),
            kty,
        })
    }
}

impl SoftwareKey {
    /// The PKCS#8 DER of an RSA or EC key (`None` for oct): what an
    /// exportable certificate's secret carries and what signs its
    /// self-signed certificate.
    pub fn pkcs8_der(&self) -> Option<&[u8]> {
        (self.kty != KeyType::Oct).then_some(self.material.as_slice())
    }

    /// Signs a digest (RS*, PS*, ES*). Parses the private key for this one
    /// call; repeated use should go through [`LoadedKey`].
    pub fn sign(&self, alg: SignAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        LoadedKey::new(self.clone()).sign(alg, digest)
    }

    /// Verifies a signature over a digest.
    pub fn verify(
        &self,
        alg: SignAlg,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, CryptoError> {
        verify(&self.public, alg, digest, signature)
    }

    /// Encrypts or wraps: RSA (public key), AES-GCM/CBC/CBCPAD, A*KW and
    /// CKM_AES_KEY_WRAP(_PAD).
    pub fn encrypt(
        &self,
        alg: EncAlg,
        plaintext: &[u8],
        params: &SymParams,
    ) -> Result<Ciphertext, CryptoError> {
        check_enc(self.kty, self.bits, alg)?;
        use EncAlg::*;
        let plain = |value| {
            Ok(Ciphertext {
                value,
                iv: None,
                tag: None,
            })
        };
        match alg {
            RsaOaep | RsaOaep256 | Rsa15 => plain(public_encrypt(&self.public, alg, plaintext)?),
            A128GCM | A192GCM | A256GCM => aes::gcm_encrypt(&self.material, plaintext, params),
            A128CBC | A192CBC | A256CBC => {
                aes::cbc_encrypt(&self.material, plaintext, params, false)
            }
            A128CBCPAD | A192CBCPAD | A256CBCPAD => {
                aes::cbc_encrypt(&self.material, plaintext, params, true)
            }
            A128KW | A192KW | A256KW | CkmAesKeyWrap => {
                plain(aes::wrap(&self.material, plaintext)?)
            }
            CkmAesKeyWrapPad => plain(aes::wrap_pad(&self.material, plaintext)?),
        }
    }

    /// Decrypts or unwraps (the inverse of [`SoftwareKey::encrypt`]). RSA
    /// keys are parsed for this one call; repeated use should go through
    /// [`LoadedKey`].
    pub fn decrypt(
        &self,
        alg: EncAlg,
        ciphertext: &[u8],
        params: &SymParams,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        check_enc(self.kty, self.bits, alg)?;
        use EncAlg::*;
        match alg {
            RsaOaep | RsaOaep256 | Rsa15 => {
                rsa::decrypt(&rsa::decrypting_key(&self.material)?, alg, ciphertext)
            }
            A128GCM | A192GCM | A256GCM => aes::gcm_decrypt(&self.material, ciphertext, params),
            A128CBC | A192CBC | A256CBC => {
                aes::cbc_decrypt(&self.material, ciphertext, params, false)
            }
            A128CBCPAD | A192CBCPAD | A256CBCPAD => {
                aes::cbc_decrypt(&self.material, ciphertext, params, true)
            }
            A128KW | A192KW | A256KW | CkmAesKeyWrap => aes::unwrap(&self.material, ciphertext),
            CkmAesKeyWrapPad => aes::unwrap_pad(&self.material, ciphertext),
        }
    }
}

/// A software key whose private half is parsed at most once per use (sign,
/// decrypt) and then kept: parsing and validating PKCS#8, plus aws-lc's RSA
/// blinding setup for every new key object, costs about as much as an
/// RSA-2048 signature. Share it behind an `Arc` (it is `Send + Sync`; aws-lc
/// locks its blinding state internally). It only does the math: callers
/// still decide whether the key may be used.
pub struct LoadedKey {
    key: SoftwareKey,
    rsa_signing: OnceLock<aws_lc_rs::rsa::KeyPair>,
    rsa_decrypting: OnceLock<aws_lc_rs::rsa::PrivateDecryptingKey>,
    ec_signing: OnceLock<aws_lc_rs::signature::EcdsaKeyPair>,
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKey").field("key", &self.key).finish()
    }
}

impl LoadedKey {
    /// Wraps `key`; nothing is parsed until the first operation needs it.
    pub fn new(key: SoftwareKey) -> Self {
        Self {
            key,
            rsa_signing: OnceLock::new(),
            rsa_decrypting: OnceLock::new(),
            ec_signing: OnceLock::new(),
        }
    }

    /// The stored form this was loaded from.
    pub fn key(&self) -> &SoftwareKey {
        &self.key
    }

    /// Whether this was loaded from exactly `other`'s private material (so
    /// it may stand in for it). Compared in constant time.
    pub fn loaded_from(&self, other: &SoftwareKey) -> bool {
        self.key.kty == other.kty
            && self.key.public == other.public
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                &self.key.material,
                &other.material,
            )
            .is_ok()
    }

    /// Signs a digest (RS*, PS*, ES*).
    pub fn sign(&self, alg: SignAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        check_sign(&self.key.public, alg, digest)?;
        match &self.key.public {
            PublicKey::Rsa { .. } => {
                let kp = parsed(&self.rsa_signing, || rsa::signing_key(&self.key.material))?;
                rsa::sign(kp, alg, digest)
            }
            PublicKey::Ec { curve, .. } => {
                let kp = parsed(&self.ec_signing, || {
                    ec::signing_key(*curve, &self.key.material)
                })?;
                ec::sign(kp, *curve, alg, digest)
            }
            PublicKey::Oct => Err(CryptoError::AlgorithmMismatch {
                alg: format!("{alg:?}"),
                kty: "oct".into(),
            }),
        }
    }

    /// Encrypts or wraps (see [`SoftwareKey::encrypt`]; nothing to parse).
    pub fn encrypt(
        &self,
        alg: EncAlg,
        plaintext: &[u8],
        params: &SymParams,
    ) -> Result<Ciphertext, CryptoError> {
        self.key.encrypt(alg, plaintext, params)
    }

    /// Decrypts or unwraps (see [`SoftwareKey::decrypt`]).
    pub fn decrypt(
        &self,
        alg: EncAlg,
        ciphertext: &[u8],
        params: &SymParams,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if rsa::is_enc_alg(alg) {
            check_enc(self.key.kty, self.key.bits, alg)?;
            let key = parsed(&self.rsa_decrypting, || {
                rsa::decrypting_key(&self.key.material)
            })?;
            return rsa::decrypt(key, alg, ciphertext);
        }
        self.key.decrypt(alg, ciphertext, params)
    }
}

/// The parsed form in `cell`, parsing on first use. Two threads racing on
/// first use may both parse; one result is kept, both are correct.
fn parsed<T>(
    cell: &OnceLock<T>,
    parse: impl FnOnce() -> Result<T, CryptoError>,
) -> Result<&T, CryptoError> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = parse()?;
    Ok(cell.get_or_init(|| v))
}

#[cfg(test)]
mod tests;
