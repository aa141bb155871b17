//! EME-OAEP decoding (RFC 8017 §7.1.2, step 3) with SHA-256, MGF1-SHA-256
//! and the empty label, for devices that refuse `CKM_RSA_PKCS_OAEP` with
//! SHA-256 parameters: the device does the raw RSA decryption
//! (`CKM_RSA_X_509`, RSADP; the private key never leaves it) and the host
//! decodes the encoded message here.
//!
//! The encoded message is secret, so the decoder is constant time in the
//! way BoringSSL's `RSA_padding_check_PKCS1_OAEP_mgf1` and RustCrypto's
//! `rsa::oaep` decoders are: every check runs over the whole buffer and is
//! folded into one [`Choice`] with no early return, the position of the
//! `0x01` separator is found with conditional selects, and every failure is
//! the same [`CryptoError::DecryptFailed`]. Only the final verdict and, on
//! success, the message length (which the caller receives anyway) become
//! observable. The intermediate buffers are wiped.

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::CryptoError;

/// SHA-256 output length.
const H_LEN: usize = 32;

/// SHA-256 of the empty label.
fn empty_label_hash() -> [u8; H_LEN] {
    Sha256::digest([]).into()
}

/// XORs MGF1-SHA-256(`seed`) into `out` (RFC 8017 §B.2.1).
fn xor_mgf1(seed: &[u8], out: &mut [u8]) {
    for (counter, chunk) in out.chunks_mut(H_LEN).enumerate() {
        let mut h = Sha256::new();
        h.update(seed);
        h.update((counter as u32).to_be_bytes());
        let mask = Zeroizing::new(<[u8; H_LEN]>::from(h.finalize()));
        for (o, m) in chunk.iter_mut().zip(mask.iter()) {
            *o ^= m;
        }
    }
}

/// Decodes `em`, the `k`-byte output of RSADP for a modulus of `k` bytes,
/// and returns the message. Any malformed input is
/// [`CryptoError::DecryptFailed`], never a panic.
pub(crate) fn decode_sha256(em: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let k = em.len();
    // Public: depends only on the modulus size.
    if k < 2 * H_LEN + 2 {
        return Err(CryptoError::DecryptFailed);
    }
    let mut seed = Zeroizing::new(em[1..1 + H_LEN].to_vec());
    let mut db = Zeroizing::new(em[1 + H_LEN..].to_vec());
    xor_mgf1(&db, &mut seed);
    xor_mgf1(&seed, &mut db);

    let mut good = em[0].ct_eq(&0);
    good &= db[..H_LEN].ct_eq(&empty_label_hash());
    // PS is zero bytes up to the first 0x01; anything else before it, or
    // no 0x01 at all, is a failure. `index` ends at the 0x01's position.
    let mut looking = subtle::Choice::from(1);
    let mut index = 0u32;
    for (i, byte) in db.iter().enumerate().skip(H_LEN) {
        let is_one = byte.ct_eq(&1);
        let is_zero = byte.ct_eq(&0);
        index.conditional_assign(&(i as u32), looking & is_one);
        looking &= !is_one;
        good &= !looking | is_zero | is_one;
    }
    good &= !looking;
    if !bool::from(good) {
        return Err(CryptoError::DecryptFailed);
    }
    Ok(Zeroizing::new(db[index as usize + 1..].to_vec()))
}

/// Places the device's RSADP output right-aligned in a `k`-byte buffer
/// (a device may drop leading zero bytes of the integer).
pub(crate) fn left_align(out: &[u8], k: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if out.len() > k {
        return Err(CryptoError::DecryptFailed);
    }
    let mut em = Zeroizing::new(vec![0u8; k]);
    em[k - out.len()..].copy_from_slice(out);
    Ok(em)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EME-OAEP encoding (RFC 8017 §7.1.1 step 2), written independently
    /// of the decoder. The end-to-end tests against aws-lc-rs ciphertexts
    /// and a real device are in node/tests/hsm.rs.
    fn encode(msg: &[u8], k: usize, seed: [u8; H_LEN]) -> Vec<u8> {
        let ps = k - msg.len() - 2 * H_LEN - 2;
        let mut db = empty_label_hash().to_vec();
        db.extend(std::iter::repeat_n(0u8, ps));
        db.push(1);
        db.extend_from_slice(msg);
        let mut seed = seed.to_vec();
        xor_mgf1(&seed, &mut db);
        xor_mgf1(&db, &mut seed);
        [vec![0u8], seed, db].concat()
    }

    #[test]
    fn decodes_every_message_length_from_empty_to_maximum() {
        for k in [256usize, 384, 512] {
            let max = k - 2 * H_LEN - 2;
            for len in [0, 1, 2, 31, 32, 100, max - 1, max] {
                let msg: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
                let em = encode(&msg, k, [len as u8; H_LEN]);
                assert_eq!(decode_sha256(&em).unwrap().as_slice(), msg.as_slice());
            }
        }
    }

    #[test]
    fn every_single_bit_flip_is_a_uniform_failure() {
        let em = encode(b"short", 256, [9; H_LEN]);
        for bit in 0..em.len() * 8 {
            let mut bad = em.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            // A flip inside the message bytes themselves is undetectable by
            // OAEP alone (the ciphertext-level integrity comes from RSA:
            // flipping a ciphertext bit scrambles the whole EM); everything
            // else must fail.
            match decode_sha256(&bad) {
                Err(CryptoError::DecryptFailed) => {}
                Ok(m) => assert_ne!(m.as_slice(), b"short", "bit {bit}"),
                Err(e) => panic!("bit {bit}: {e:?}"),
            }
        }
    }

    #[test]
    fn malformed_structures_fail_the_same_way() {
        let k = 256;
        // Leading byte not zero.
        let mut em = encode(b"m", k, [1; H_LEN]);
        em[0] = 1;
        assert!(matches!(
            decode_sha256(&em),
            Err(CryptoError::DecryptFailed)
        ));
        // No 0x01 separator: all-zero PS up to the end.
        let mut db = empty_label_hash().to_vec();
        db.resize(k - H_LEN - 1, 0);
        let mut seed = vec![3u8; H_LEN];
        xor_mgf1(&seed, &mut db);
        xor_mgf1(&db, &mut seed);
        let em = [vec![0u8], seed, db].concat();
        assert!(matches!(
            decode_sha256(&em),
            Err(CryptoError::DecryptFailed)
        ));
        // Too short for SHA-256 OAEP, empty, all zero, all ones.
        for em in [vec![0u8; 65], vec![], vec![0u8; k], vec![0xffu8; k]] {
            assert!(matches!(
                decode_sha256(&em),
                Err(CryptoError::DecryptFailed)
            ));
        }
    }

    #[test]
    fn left_align_restores_dropped_leading_zeros() {
        assert_eq!(left_align(&[1, 2], 4).unwrap().as_slice(), &[0, 0, 1, 2]);
        assert!(left_align(&[1, 2, 3], 2).is_err());
    }
}
