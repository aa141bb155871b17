//! The unseal key: a 64-byte random secret split into authenticated Shamir
//! shares (`shamirsecretsharing`), and the KEK derived from it.
//!
//! Share text format: lowercase hex of the library's 113-byte share
//! (`x (1) | y (32) | secretbox of the secret (80)`), i.e. 226 hex characters.
//! Parsing accepts either case and ignores surrounding whitespace.
//!
//! The library authenticates the combined result (XSalsa20-Poly1305 under the
//! Shamir-shared key), so a wrong, tampered or mixed share set is detected and
//! never yields a wrong secret. It supports `threshold == 1` (each share then
//! carries the secret directly, still authenticated), so 1-of-1 needs no
//! special case.
//!
//! KEK derivation: HKDF-SHA256 (aws-lc-rs), salt `KEK_SALT`, info `KEK_INFO`,
//! 32 bytes of output used as the AES-256-GCM-SIV key for the root key record.

use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use rand::RngCore;
use shamirsecretsharing::{combine_shares, create_shares, DATA_SIZE, SHARE_SIZE};
use zeroize::Zeroizing;

use super::keyring::{SecretKey, KEY_LEN};
use super::SealError;

/// HKDF salt for the KEK.
pub const KEK_SALT: &[u8] = b"coffer/unseal-key";
/// HKDF info for the KEK.
pub const KEK_INFO: &[u8] = b"coffer/kek/aes-256-gcm-siv/v1";
/// Length of the shared secret (fixed by the library).
pub const SECRET_LEN: usize = DATA_SIZE;
/// Byte length of one share before hex encoding.
pub const SHARE_LEN: usize = SHARE_SIZE;
/// Bytes at the start of a share that hold the Shamir point; the rest is the
/// secretbox, identical for every share of one set.
const KEYSHARE_LEN: usize = 33;

/// The 64-byte unseal secret, wiped on drop.
pub type UnsealSecret = Zeroizing<[u8; SECRET_LEN]>;

/// One decoded share, wiped on drop. Never printed.
///
/// Equality is constant-time: shares are compared against attacker-supplied
/// input on the unauthenticated unseal endpoint.
#[derive(Clone)]
pub struct Share(Zeroizing<Vec<u8>>);

impl PartialEq for Share {
    fn eq(&self, other: &Self) -> bool {
        ct_eq(&self.0, &other.0)
    }
}

impl Eq for Share {}

/// Constant-time byte comparison (length is not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

impl Share {
    /// Parses share text (hex, 226 characters); never echoes the input in errors.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SealError::InvalidShare("the share is empty".into()));
        }
        let bytes = Zeroizing::new(
            hex::decode(text)
                .map_err(|_| SealError::InvalidShare("the share is not valid hex".into()))?,
        );
        if bytes.len() != SHARE_LEN {
            return Err(SealError::InvalidShare(format!(
                "the share must be {} hex characters, got {}",
                SHARE_LEN * 2,
                text.len()
            )));
        }
        if bytes[0] == 0 {
            // The library numbers shares from 1; x = 0 would be the secret itself.
            return Err(SealError::InvalidShare(
                "the share has an invalid index".into(),
            ));
        }
        Ok(Self(bytes))
    }

    /// Whether both shares come from the same `create_shares` call: every share
    /// of a set carries the same sealed secret after the Shamir point.
    pub fn same_set(&self, other: &Share) -> bool {
        ct_eq(&self.0[KEYSHARE_LEN..], &other.0[KEYSHARE_LEN..])
    }

    /// The share index (Shamir x coordinate), not secret.
    pub fn index(&self) -> u8 {
        self.0[0]
    }

    /// Text form given to share holders.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&*self.0))
    }
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share {{ index: {}, bytes: <redacted> }}", self.index())
    }
}

/// Generates a fresh unseal secret and splits it into `shares` shares, any
/// `threshold` of which reconstruct it.
pub fn split_new_secret(
    shares: u8,
    threshold: u8,
) -> Result<(UnsealSecret, Vec<Share>), SealError> {
    let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
    rand::rng().fill_bytes(&mut secret[..]);
    let raw = create_shares(&secret[..], shares, threshold)
        .map_err(|e| SealError::InvalidConfig(e.to_string()))?;
    let shares = raw.into_iter().map(|s| Share(Zeroizing::new(s))).collect();
    Ok((secret, shares))
}

/// Reconstructs the secret from `threshold` or more distinct shares.
///
/// Too few shares, shares of different sets, or tampered shares all yield
/// [`SealError::WrongShares`]; the library's authentication guarantees no
/// wrong secret is ever returned.
pub fn combine(shares: &[Share]) -> Result<UnsealSecret, SealError> {
    let raw: Vec<Vec<u8>> = shares.iter().map(|s| s.0.to_vec()).collect();
    // Wipe the temporary copies whatever the outcome.
    let raw = Zeroizing::new(raw);
    let combined = combine_shares(&raw).map_err(|_| SealError::WrongShares)?;
    let combined = Zeroizing::new(combined.ok_or(SealError::WrongShares)?);
    if combined.len() != SECRET_LEN {
        return Err(SealError::WrongShares);
    }
    let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
    secret.copy_from_slice(&combined);
    Ok(secret)
}

/// Derives the AES-256 KEK from the unseal secret (HKDF-SHA256).
pub fn derive_kek(secret: &[u8; SECRET_LEN]) -> Result<SecretKey, SealError> {
    let prk = Salt::new(HKDF_SHA256, KEK_SALT).extract(secret);
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    prk.expand(&[KEK_INFO], HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut kek[..]))
        .map_err(|_| SealError::Corrupt("KEK derivation failed".into()))?;
    Ok(kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(shares: &[Share]) -> Vec<Zeroizing<String>> {
        shares.iter().map(Share::to_text).collect()
    }

    #[test]
    fn any_threshold_subset_reconstructs() {
        let (secret, shares) = split_new_secret(5, 3).unwrap();
        for subset in [[0, 1, 2], [0, 2, 4], [4, 3, 1], [1, 2, 3]] {
            let picked: Vec<Share> = subset.iter().map(|&i| shares[i].clone()).collect();
            assert_eq!(*combine(&picked).unwrap(), *secret);
        }
    }

    #[test]
    fn too_few_shares_do_not_reconstruct() {
        let (_, shares) = split_new_secret(5, 3).unwrap();
        assert_eq!(combine(&shares[..2]).unwrap_err(), SealError::WrongShares);
    }

    #[test]
    fn mixed_sets_are_detected() {
        let (_, a) = split_new_secret(3, 2).unwrap();
        let (_, b) = split_new_secret(3, 2).unwrap();
        assert!(a[0].same_set(&a[1]));
        assert!(!a[0].same_set(&b[1]));
        let mixed = vec![a[0].clone(), b[1].clone()];
        assert_eq!(combine(&mixed).unwrap_err(), SealError::WrongShares);
    }

    #[test]
    fn one_of_one_roundtrips_and_is_authenticated() {
        let (secret, shares) = split_new_secret(1, 1).unwrap();
        assert_eq!(shares.len(), 1);
        assert_eq!(*combine(&shares).unwrap(), *secret);
        // Flip a bit in the Shamir point: authentication must reject it.
        let mut bytes = shares[0].0.to_vec();
        bytes[5] ^= 1;
        let tampered = Share(Zeroizing::new(bytes));
        assert_eq!(combine(&[tampered]).unwrap_err(), SealError::WrongShares);
    }

    #[test]
    fn share_text_roundtrip_and_validation() {
        let (_, shares) = split_new_secret(2, 2).unwrap();
        let t = texts(&shares);
        assert_eq!(t[0].len(), SHARE_LEN * 2);
        let parsed = Share::parse(&format!("  {}\n", t[0].to_uppercase())).unwrap();
        assert_eq!(parsed, shares[0]);
        for bad in [
            "",
            "zz",
            &t[0][..t[0].len() - 2],
            "00".repeat(SHARE_LEN).as_str(),
        ] {
            let err = Share::parse(bad).unwrap_err();
            assert!(matches!(err, SealError::InvalidShare(_)), "{bad:?}");
        }
    }

    #[test]
    fn invalid_parameters_are_config_errors() {
        for (n, k) in [(0, 0), (3, 0), (3, 4)] {
            assert!(matches!(
                split_new_secret(n, k),
                Err(SealError::InvalidConfig(_))
            ));
        }
        assert_eq!(split_new_secret(255, 255).unwrap().1.len(), 255);
    }

    #[test]
    fn kek_is_deterministic_and_secret_dependent() {
        let (s1, _) = split_new_secret(1, 1).unwrap();
        let (s2, _) = split_new_secret(1, 1).unwrap();
        assert_eq!(*derive_kek(&s1).unwrap(), *derive_kek(&s1).unwrap());
        assert_ne!(*derive_kek(&s1).unwrap(), *derive_kek(&s2).unwrap());
    }

    #[test]
    fn debug_redacts_share_bytes() {
        let (_, shares) = split_new_secret(2, 2).unwrap();
        let dbg = format!("{:?}", shares[0]);
        assert!(!crate::debug_leaks(&dbg, &shares[0].0[1..]));
    }
}
