//! AES with aws-lc-rs: GCM (12-byte IV, 16-byte tag), CBC without padding,
//! CBC with PKCS#7 padding, key wrap (RFC 3394) and key wrap with padding
//! (RFC 5649).
//!
//! aws-lc-rs's `key_wrap` covers AES-128 and AES-256 only; for AES-192 the
//! two RFC algorithms run here over single-block AES-ECB, with the
//! integrity check compared in constant time.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_192_GCM, AES_256_GCM};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, PaddedBlockDecryptingKey,
    PaddedBlockEncryptingKey, UnboundCipherKey, AES_128, AES_192, AES_256,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::key_wrap::{self, AesKek, KeyWrap, KeyWrapPadded};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::{refuse_caller_gcm_iv, Ciphertext, CryptoError, SymParams};

/// GCM nonce length.
pub const GCM_IV_LEN: usize = 12;
/// GCM tag length.
pub const GCM_TAG_LEN: usize = 16;
/// CBC IV length.
pub const CBC_IV_LEN: usize = 16;

/// Generates a key of `bits` (128, 192, 256).
pub fn generate(bits: u32) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if !matches!(bits, 128 | 192 | 256) {
        return Err(CryptoError::BadInput(format!(
            "oct key size {bits} is not supported: use 128, 192 or 256"
        )));
    }
    random(bits as usize / 8).map(Zeroizing::new)
}

/// `n` random bytes from the system CSPRNG.
pub fn random(n: usize) -> Result<Vec<u8>, CryptoError> {
    let mut out = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| internal("random generation failed"))?;
    Ok(out)
}

fn gcm_alg(key: &[u8]) -> Result<&'static aws_lc_rs::aead::Algorithm, CryptoError> {
    match key.len() {
        16 => Ok(&AES_128_GCM),
        24 => Ok(&AES_192_GCM),
        32 => Ok(&AES_256_GCM),
        _ => Err(internal("bad AES key length")),
    }
}

/// AES-GCM encryption under a freshly generated random IV (a caller's IV
/// is refused: see [`refuse_caller_gcm_iv`]).
pub fn gcm_encrypt(
    key: &[u8],
    plaintext: &[u8],
    params: &SymParams,
) -> Result<Ciphertext, CryptoError> {
    refuse_caller_gcm_iv(params)?;
    let iv = random(GCM_IV_LEN)?;
    let k = LessSafeKey::new(
        UnboundKey::new(gcm_alg(key)?, key).map_err(|_| internal("AES key setup failed"))?,
    );
    let nonce = Nonce::try_assume_unique_for_key(&iv).map_err(|_| internal("bad nonce"))?;
    let mut buf = plaintext.to_vec();
    let tag = k
        .seal_in_place_separate_tag(
            nonce,
            Aad::from(params.aad.as_deref().unwrap_or_default()),
            &mut buf,
        )
        .map_err(|_| internal("AES-GCM encryption failed"))?;
    Ok(Ciphertext {
        value: buf,
        iv: Some(iv),
        tag: Some(tag.as_ref().to_vec()),
    })
}

/// AES-GCM decryption; `iv` and `tag` are required.
pub fn gcm_decrypt(
    key: &[u8],
    ciphertext: &[u8],
    params: &SymParams,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let iv = params
        .iv
        .as_deref()
        .filter(|i| i.len() == GCM_IV_LEN)
        .ok_or_else(|| {
            CryptoError::BadInput(format!("AES-GCM decryption needs a {GCM_IV_LEN}-byte iv"))
        })?;
    let tag = params
        .tag
        .as_deref()
        .filter(|t| t.len() == GCM_TAG_LEN)
        .ok_or_else(|| {
            CryptoError::BadInput(format!(
                "AES-GCM decryption needs a {GCM_TAG_LEN}-byte authentication tag"
            ))
        })?;
    let k = LessSafeKey::new(
        UnboundKey::new(gcm_alg(key)?, key).map_err(|_| internal("AES key setup failed"))?,
    );
    let nonce = Nonce::try_assume_unique_for_key(iv).map_err(|_| internal("bad nonce"))?;
    let mut buf = Zeroizing::new(Vec::with_capacity(ciphertext.len() + GCM_TAG_LEN));
    buf.extend_from_slice(ciphertext);
    buf.extend_from_slice(tag);
    let len = k
        .open_in_place(
            nonce,
            Aad::from(params.aad.as_deref().unwrap_or_default()),
            &mut buf,
        )
        .map_err(|_| CryptoError::DecryptFailed)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

fn cipher_key(key: &[u8]) -> Result<UnboundCipherKey, CryptoError> {
    let alg = match key.len() {
        16 => &AES_128,
        24 => &AES_192,
        32 => &AES_256,
        _ => return Err(internal("bad AES key length")),
    };
    UnboundCipherKey::new(alg, key).map_err(|_| internal("AES key setup failed"))
}

fn cbc_iv(params: &SymParams, encrypting: bool) -> Result<[u8; CBC_IV_LEN], CryptoError> {
    match &params.iv {
        Some(iv) => <[u8; CBC_IV_LEN]>::try_from(iv.as_slice()).map_err(|_| {
            CryptoError::BadInput(format!("the AES-CBC iv must be {CBC_IV_LEN} bytes"))
        }),
        None if encrypting => {
            let mut iv = [0u8; CBC_IV_LEN];
            iv.copy_from_slice(&random(CBC_IV_LEN)?);
            Ok(iv)
        }
        None => Err(CryptoError::BadInput(format!(
            "AES-CBC decryption needs a {CBC_IV_LEN}-byte iv"
        ))),
    }
}

/// AES-CBC encryption, with PKCS#7 padding when `pad`, else the input must
/// be a multiple of 16 bytes.
pub fn cbc_encrypt(
    key: &[u8],
    plaintext: &[u8],
    params: &SymParams,
    pad: bool,
) -> Result<Ciphertext, CryptoError> {
    let iv = cbc_iv(params, true)?;
    let ctx = EncryptionContext::Iv128(FixedLength::from(iv));
    let mut buf = plaintext.to_vec();
    if pad {
        let k = PaddedBlockEncryptingKey::cbc_pkcs7(cipher_key(key)?)
            .map_err(|_| internal("AES key setup failed"))?;
        k.less_safe_encrypt(&mut buf, ctx)
            .map_err(|_| internal("AES-CBC encryption failed"))?;
    } else {
        check_blocks(plaintext.len())?;
        let k =
            EncryptingKey::cbc(cipher_key(key)?).map_err(|_| internal("AES key setup failed"))?;
        k.less_safe_encrypt(&mut buf, ctx)
            .map_err(|_| internal("AES-CBC encryption failed"))?;
    }
    Ok(Ciphertext {
        value: buf,
        iv: Some(iv.to_vec()),
        tag: None,
    })
}

/// AES-CBC decryption (`pad`: strip PKCS#7 padding).
pub fn cbc_decrypt(
    key: &[u8],
    ciphertext: &[u8],
    params: &SymParams,
    pad: bool,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let iv = cbc_iv(params, false)?;
    check_blocks(ciphertext.len())?;
    if ciphertext.is_empty() {
        return Err(CryptoError::BadInput("the ciphertext is empty".into()));
    }
    let ctx = DecryptionContext::Iv128(FixedLength::from(iv));
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let len = if pad {
        let k = PaddedBlockDecryptingKey::cbc_pkcs7(cipher_key(key)?)
            .map_err(|_| internal("AES key setup failed"))?;
        k.decrypt(&mut buf, ctx)
            .map_err(|_| CryptoError::DecryptFailed)?
            .len()
    } else {
        let k =
            DecryptingKey::cbc(cipher_key(key)?).map_err(|_| internal("AES key setup failed"))?;
        k.decrypt(&mut buf, ctx)
            .map_err(|_| CryptoError::DecryptFailed)?
            .len()
    };
    buf.truncate(len);
    Ok(buf)
}

fn check_blocks(len: usize) -> Result<(), CryptoError> {
    if len.is_multiple_of(16) {
        Ok(())
    } else {
        Err(CryptoError::BadInput(
            "AES-CBC without padding needs a multiple of 16 bytes".into(),
        ))
    }
}

/// AES key wrap (RFC 3394): input a multiple of 8 bytes, at least 16.
pub fn wrap(key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if plaintext.len() < 16 || !plaintext.len().is_multiple_of(8) {
        return Err(CryptoError::BadInput(
            "AES key wrap needs a key of at least 16 bytes, a multiple of 8".into(),
        ));
    }
    let mut out = vec![0u8; plaintext.len() + 8];
    match native_kek(key)? {
        Some(kek) => {
            let n = kek
                .wrap(plaintext, &mut out)
                .map_err(|_| internal("AES key wrap failed"))?
                .len();
            out.truncate(n);
            Ok(out)
        }
        None => Ecb::new(key)?.wrap(&IV3394, plaintext),
    }
}

/// AES key unwrap (RFC 3394).
pub fn unwrap(key: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if ciphertext.len() < 24 || !ciphertext.len().is_multiple_of(8) {
        return Err(CryptoError::BadInput(
            "a wrapped key is at least 24 bytes, a multiple of 8".into(),
        ));
    }
    match native_kek(key)? {
        Some(kek) => {
            let mut out = Zeroizing::new(vec![0u8; ciphertext.len()]);
            let n = kek
                .unwrap(ciphertext, &mut out)
                .map_err(|_| CryptoError::DecryptFailed)?
                .len();
            out.truncate(n);
            Ok(out)
        }
        None => {
            let (a, r) = Ecb::new(key)?.unwrap(ciphertext)?;
            if aws_lc_rs::constant_time::verify_slices_are_equal(&a, &IV3394).is_err() {
                return Err(CryptoError::DecryptFailed);
            }
            Ok(r)
        }
    }
}

/// AES key wrap with padding (RFC 5649).
pub fn wrap_pad(key: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if plaintext.is_empty() || u32::try_from(plaintext.len()).is_err() {
        return Err(CryptoError::BadInput(
            "the key to wrap must not be empty".into(),
        ));
    }
    match native_kek(key)? {
        Some(kek) => {
            let mut out = vec![0u8; plaintext.len() + 16];
            let n = kek
                .wrap_with_padding(plaintext, &mut out)
                .map_err(|_| internal("AES key wrap failed"))?
                .len();
            out.truncate(n);
            Ok(out)
        }
        None => {
            let ecb = Ecb::new(key)?;
            let mut aiv = [0xA6, 0x59, 0x59, 0xA6, 0, 0, 0, 0];
            aiv[4..].copy_from_slice(&(plaintext.len() as u32).to_be_bytes());
            let mut padded = Zeroizing::new(plaintext.to_vec());
            padded.resize(plaintext.len().div_ceil(8) * 8, 0);
            if padded.len() == 8 {
                let mut block = [0u8; 16];
                block[..8].copy_from_slice(&aiv);
                block[8..].copy_from_slice(&padded);
                ecb.encrypt(&mut block)?;
                return Ok(block.to_vec());
            }
            ecb.wrap(&aiv, &padded)
        }
    }
}

/// AES key unwrap with padding (RFC 5649).
pub fn unwrap_pad(key: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if ciphertext.len() < 16 || !ciphertext.len().is_multiple_of(8) {
        return Err(CryptoError::BadInput(
            "a wrapped key is at least 16 bytes, a multiple of 8".into(),
        ));
    }
    if let Some(kek) = native_kek(key)? {
        let mut out = Zeroizing::new(vec![0u8; ciphertext.len()]);
        let n = kek
            .unwrap_with_padding(ciphertext, &mut out)
            .map_err(|_| CryptoError::DecryptFailed)?
            .len();
        out.truncate(n);
        return Ok(out);
    }
    let ecb = Ecb::new(key)?;
    let (a, mut p) = if ciphertext.len() == 16 {
        let mut block = Zeroizing::new([0u8; 16]);
        block.copy_from_slice(ciphertext);
        ecb.decrypt(&mut block)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&block[..8]);
        (a, Zeroizing::new(block[8..].to_vec()))
    } else {
        ecb.unwrap(ciphertext)?
    };
    let mli = u32::from_be_bytes([a[4], a[5], a[6], a[7]]) as usize;
    let prefix_ok =
        aws_lc_rs::constant_time::verify_slices_are_equal(&a[..4], &[0xA6, 0x59, 0x59, 0xA6])
            .is_ok();
    let len_ok = mli <= p.len() && mli + 8 > p.len();
    if !prefix_ok || !len_ok || p[mli..].iter().any(|&b| b != 0) {
        return Err(CryptoError::DecryptFailed);
    }
    p.truncate(mli);
    Ok(p)
}

const IV3394: [u8; 8] = [0xA6; 8];

fn native_kek(key: &[u8]) -> Result<Option<AesKek>, CryptoError> {
    let cipher = match key.len() {
        16 => &key_wrap::AES_128,
        32 => &key_wrap::AES_256,
        24 => return Ok(None),
        _ => return Err(internal("bad AES key length")),
    };
    AesKek::new(cipher, key)
        .map(Some)
        .map_err(|_| internal("AES key setup failed"))
}

/// Single-block AES (ECB) for the RFC 3394 rounds.
struct Ecb {
    enc: EncryptingKey,
    dec: DecryptingKey,
}

impl Ecb {
    fn new(key: &[u8]) -> Result<Self, CryptoError> {
        let setup = |_| internal("AES key setup failed");
        Ok(Self {
            enc: EncryptingKey::ecb(cipher_key(key)?).map_err(setup)?,
            dec: DecryptingKey::ecb(cipher_key(key)?).map_err(setup)?,
        })
    }

    fn encrypt(&self, block: &mut [u8; 16]) -> Result<(), CryptoError> {
        self.enc
            .less_safe_encrypt(block, EncryptionContext::None)
            .map(|_| ())
            .map_err(|_| internal("AES failed"))
    }

    fn decrypt(&self, block: &mut [u8; 16]) -> Result<(), CryptoError> {
        self.dec
            .decrypt(block, DecryptionContext::None)
            .map(|_| ())
            .map_err(|_| internal("AES failed"))
    }

    /// RFC 3394 §2.2.1 with initial value `iv`; `p` is n ≥ 2 blocks of 8.
    fn wrap(&self, iv: &[u8; 8], p: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let n = p.len() / 8;
        let mut a = *iv;
        let mut r = Zeroizing::new(p.to_vec());
        let mut b = Zeroizing::new([0u8; 16]);
        for j in 0..6u64 {
            for i in 0..n {
                b[..8].copy_from_slice(&a);
                b[8..].copy_from_slice(&r[i * 8..i * 8 + 8]);
                self.encrypt(&mut b)?;
                let t = (n as u64) * j + i as u64 + 1;
                a.copy_from_slice(&b[..8]);
                xor_t(&mut a, t);
                r[i * 8..i * 8 + 8].copy_from_slice(&b[8..]);
            }
        }
        let mut out = a.to_vec();
        out.extend_from_slice(&r);
        Ok(out)
    }

    /// RFC 3394 §2.2.2; returns the recovered initial value and the key.
    fn unwrap(&self, c: &[u8]) -> Result<([u8; 8], Zeroizing<Vec<u8>>), CryptoError> {
        let n = c.len() / 8 - 1;
        let mut a = [0u8; 8];
        a.copy_from_slice(&c[..8]);
        let mut r = Zeroizing::new(c[8..].to_vec());
        let mut b = Zeroizing::new([0u8; 16]);
        for j in (0..6u64).rev() {
            for i in (0..n).rev() {
                let t = (n as u64) * j + i as u64 + 1;
                xor_t(&mut a, t);
                b[..8].copy_from_slice(&a);
                b[8..].copy_from_slice(&r[i * 8..i * 8 + 8]);
                self.decrypt(&mut b)?;
                a.copy_from_slice(&b[..8]);
                r[i * 8..i * 8 + 8].copy_from_slice(&b[8..]);
            }
        }
        Ok((a, r))
    }
}

fn xor_t(a: &mut [u8; 8], t: u64) {
    for (x, y) in a.iter_mut().zip(t.to_be_bytes()) {
        *x ^= y;
    }
}

fn internal(m: &str) -> CryptoError {
    CryptoError::Internal(m.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        ::hex::decode(s).unwrap()
    }

    #[test]
    fn rfc3394_aes192_vector() {
        // RFC 3394 §4.2: 128 bits of key data with a 192-bit KEK.
        let kek = hex("000102030405060708090A0B0C0D0E0F1011121314151617");
        let data = hex("00112233445566778899AABBCCDDEEFF");
        let wrapped = wrap(&kek, &data).unwrap();
        assert_eq!(
            wrapped,
            hex("96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D")
        );
        assert_eq!(&*unwrap(&kek, &wrapped).unwrap(), &data[..]);
    }

    #[test]
    fn rfc5649_aes192_vectors() {
        // RFC 5649 §6.
        let kek = hex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
        let twenty = hex("c37b7e6492584340bed12207808941155068f738");
        let w20 = wrap_pad(&kek, &twenty).unwrap();
        assert_eq!(
            w20,
            hex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")
        );
        assert_eq!(&*unwrap_pad(&kek, &w20).unwrap(), &twenty[..]);
        let seven = hex("466f7250617369");
        let w7 = wrap_pad(&kek, &seven).unwrap();
        assert_eq!(w7, hex("afbeb0f07dfbf5419200f2ccb50bb24f"));
        assert_eq!(&*unwrap_pad(&kek, &w7).unwrap(), &seven[..]);
    }

    #[test]
    fn generic_wrap_matches_aws_lc_for_128_and_256() {
        for len in [16, 32] {
            let kek = random(len).unwrap();
            let data = random(40).unwrap();
            let native = wrap(&kek, &data).unwrap();
            let ours = Ecb::new(&kek).unwrap().wrap(&IV3394, &data).unwrap();
            assert_eq!(native, ours);
        }
    }

    #[test]
    fn tampered_wraps_fail() {
        for len in [16, 24, 32] {
            let kek = random(len).unwrap();
            let mut w = wrap(&kek, &random(32).unwrap()).unwrap();
            w[5] ^= 1;
            assert!(matches!(unwrap(&kek, &w), Err(CryptoError::DecryptFailed)));
            let mut wp = wrap_pad(&kek, &random(13).unwrap()).unwrap();
            wp[3] ^= 1;
            assert!(matches!(
                unwrap_pad(&kek, &wp),
                Err(CryptoError::DecryptFailed)
            ));
        }
    }
}
