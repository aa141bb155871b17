//! AES key wrap with padding (RFC 5649) *wrapping* on the host over the
//! device's single-block AES (`CKM_AES_ECB` `C_Encrypt` with the key inside
//! the device), for devices whose `C_WrapKey` gets the padding wrong.
//!
//! SoftHSM2 2.6.1 zero-pads the key value to a multiple of 8 before its
//! `CKM_AES_KEY_WRAP_PAD` wrap, so the message length indicator (MLI) in the
//! AIV records the padded length and a correct RFC 5649 unwrap (the
//! device's own, or any other implementation's) returns the value with
//! trailing zero bytes. Its unwrap is correct and stays native. Wrapping
//! involves no secret-dependent checks (the input is the caller's data), so
//! no constant-time concern applies here.

use zeroize::Zeroizing;

/// Alternative initial value prefix (RFC 5649 §3).
const AIV_PREFIX: [u8; 4] = [0xa6, 0x59, 0x59, 0xa6];

/// Wraps `plaintext` (1 to 2^32-1 bytes, checked by the caller) with
/// `encrypt_block`, one AES-ECB block encryption under the wrapping key.
pub(crate) fn wrap_pad<E>(
    plaintext: &[u8],
    mut encrypt_block: impl FnMut(&[u8; 16]) -> Result<[u8; 16], E>,
) -> Result<Vec<u8>, E> {
    let mli = plaintext.len() as u32;
    let mut a = [0u8; 8];
    a[..4].copy_from_slice(&AIV_PREFIX);
    a[4..].copy_from_slice(&mli.to_be_bytes());
    let padded_len = plaintext.len().div_ceil(8) * 8;
    let mut r = Zeroizing::new(plaintext.to_vec());
    r.resize(padded_len, 0);
    let mut block = Zeroizing::new([0u8; 16]);
    if padded_len == 8 {
        // One semiblock: a single AES encryption of AIV || P (§4.1).
        block[..8].copy_from_slice(&a);
        block[8..].copy_from_slice(&r);
        return Ok(encrypt_block(&block)?.to_vec());
    }
    // Otherwise the RFC 3394 wrapping process W with the AIV (§2.2.1).
    let n = padded_len / 8;
    for j in 0..6u64 {
        for i in 0..n {
            block[..8].copy_from_slice(&a);
            block[8..].copy_from_slice(&r[i * 8..i * 8 + 8]);
            let b = Zeroizing::new(encrypt_block(&block)?);
            let t = (n as u64) * j + (i as u64) + 1;
            for (x, (bx, tx)) in a.iter_mut().zip(b[..8].iter().zip(t.to_be_bytes())) {
                *x = bx ^ tx;
            }
            r[i * 8..i * 8 + 8].copy_from_slice(&b[8..]);
        }
    }
    let mut out = a.to_vec();
    out.extend_from_slice(&r);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::cipher::{EncryptingKey, UnboundCipherKey, AES_128, AES_256};
    use aws_lc_rs::key_wrap::{self, AesKek, KeyWrapPadded as _};

    fn ecb(alg: &'static aws_lc_rs::cipher::Algorithm, key: &[u8], block: &[u8; 16]) -> [u8; 16] {
        let k = EncryptingKey::ecb(UnboundCipherKey::new(alg, key).unwrap()).unwrap();
        let mut b = *block;
        k.encrypt(&mut b).unwrap();
        b
    }

    #[test]
    fn matches_aws_lc_rs_for_every_length_class() {
        let key128 = [0x42u8; 16];
        let key256: Vec<u8> = (0..32).collect();
        for len in [1usize, 7, 8, 9, 13, 16, 17, 24, 31, 100] {
            let data: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5c).collect();
            for (alg, kek, key) in [
                (&AES_128, &key_wrap::AES_128, key128.as_slice()),
                (&AES_256, &key_wrap::AES_256, key256.as_slice()),
            ] {
                let ours = wrap_pad(&data, |b| Ok::<_, ()>(ecb(alg, key, b))).unwrap();
                let mut out = vec![0u8; len + 16];
                let theirs = AesKek::new(kek, key)
                    .unwrap()
                    .wrap_with_padding(&data, &mut out)
                    .unwrap();
                assert_eq!(ours.as_slice(), &*theirs, "len {len}");
            }
        }
    }

    #[test]
    fn rfc5649_test_vectors() {
        // RFC 5649 §6: 192-bit KEK, 20- and 7-octet keys.
        let kek = hex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
        let enc = |b: &[u8; 16]| Ok::<_, ()>(ecb(&aws_lc_rs::cipher::AES_192, &kek, b));
        let ct = wrap_pad(&hex("c37b7e6492584340bed12207808941155068f738"), enc).unwrap();
        assert_eq!(
            ct,
            hex("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")
        );
        let ct = wrap_pad(&hex("466f7250617369"), enc).unwrap();
        assert_eq!(ct, hex("afbeb0f07dfbf5419200f2ccb50bb24f"));
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
