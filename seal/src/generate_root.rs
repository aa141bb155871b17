//! Generate-root: the break-glass path. When custodians agree (a quorum of
//! unseal shares), a new root token is created — without anyone holding an
//! existing one. The token is never returned in clear: it is either XORed
//! with a one-time pad that only the initiator holds (Vault's OTP flow) or
//! encrypted to one OpenPGP key.
//!
//! The ceremony runs on one node, in memory; the token record it creates is
//! written through Raft by the caller, so every node accepts the token.

use base64::Engine as _;
use serde::Serialize;
use zeroize::Zeroizing;

use super::pgp::CustodianKey;
use super::quorum::{new_nonce, ShareQuorum};
use super::shamir::Share;
use super::{open_root_key, SealError, StoredSeal};

/// Length in bytes of every token the cluster issues (`cft.` + 43
/// base64url characters of 32 random bytes); an OTP has exactly this length.
pub const TOKEN_LEN: usize = 47;

/// How the new token is protected on its way out.
#[derive(Clone)]
pub enum Delivery {
    /// XOR with this pad (kept by the initiator).
    Otp(Zeroizing<Vec<u8>>),
    /// Encrypted to this key.
    Pgp(Box<CustodianKey>),
}

/// Progress as reported to custodians.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GenerateRootStatus {
    /// A ceremony is in progress on this node.
    pub started: bool,
    /// Its nonce; every submission carries it.
    pub nonce: Option<String>,
    /// Shares submitted.
    pub progress: u8,
    /// Shares needed.
    pub required: u8,
    /// The policy of the token being generated (`root`).
    pub policy: String,
    /// Fingerprint of the PGP key the token goes to, if any.
    pub pgp_fingerprint: Option<String>,
}

/// A generate-root ceremony in progress.
pub struct GenerateRoot {
    delivery: Delivery,
    policy: String,
    /// Fixed for the ceremony (a failed quorum starts the count over).
    nonce: String,
    quorum: ShareQuorum,
}

/// What one submission led to.
#[derive(Debug)]
pub enum GenerateRootStep {
    /// Below the threshold.
    Progress(GenerateRootStatus),
    /// A quorum agreed: the caller creates a token with this policy and
    /// hands out [`GenerateRoot::encode`] of it.
    Authorised,
}

impl GenerateRoot {
    /// Starts a ceremony for a token of `policy`.
    pub fn new(delivery: Delivery, policy: &str) -> Self {
        Self {
            delivery,
            policy: policy.to_string(),
            nonce: new_nonce(),
            quorum: ShareQuorum::new(),
        }
    }

    /// The ceremony's nonce.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The policy the token will carry.
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// Progress given the seal records.
    pub fn status(&self, stored: &StoredSeal) -> GenerateRootStatus {
        GenerateRootStatus {
            started: true,
            nonce: Some(self.nonce.clone()),
            progress: self.quorum.progress(),
            required: stored.config.threshold,
            policy: self.policy.clone(),
            pgp_fingerprint: match &self.delivery {
                Delivery::Pgp(k) => Some(k.fingerprint().to_string()),
                Delivery::Otp(_) => None,
            },
        }
    }

    /// Adds one unseal share.
    pub fn submit(
        &mut self,
        nonce: &str,
        share: &str,
        stored: &StoredSeal,
    ) -> Result<GenerateRootStep, SealError> {
        if self.nonce != nonce.trim() {
            return Err(SealError::Ceremony(
                "the nonce does not match the ceremony in progress on this node".into(),
            ));
        }
        let share = Share::parse(share)?;
        let opened = match self.quorum.add(share, stored.config.threshold)? {
            None => return Ok(GenerateRootStep::Progress(self.status(stored))),
            Some(shares) => open_root_key(shares, stored),
        };
        self.quorum.reset();
        opened?;
        Ok(GenerateRootStep::Authorised)
    }

    /// The token as it may leave the node.
    pub fn encode(&self, token: &str) -> Result<String, SealError> {
        match &self.delivery {
            Delivery::Otp(pad) => xor_otp(token.as_bytes(), pad)
                .map(|x| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*x)),
            Delivery::Pgp(key) => key
                .encrypt(token.as_bytes())
                .map_err(|e| SealError::Ceremony(e.to_string())),
        }
    }
}

/// Parses an OTP (base64url of [`TOKEN_LEN`] bytes).
pub fn parse_otp(text: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let pad = Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| SealError::Ceremony("the OTP is not base64url".into()))?,
    );
    if pad.len() != TOKEN_LEN {
        return Err(SealError::Ceremony(format!(
            "the OTP must be {TOKEN_LEN} bytes, got {}",
            pad.len()
        )));
    }
    Ok(pad)
}

/// A fresh OTP in its text form.
pub fn new_otp() -> Zeroizing<String> {
    let pad: [u8; TOKEN_LEN] = rand::random();
    Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pad))
}

/// Recovers the token from an OTP-encoded answer (run by the initiator).
pub fn decode_otp(encoded: &str, otp: &str) -> Result<Zeroizing<String>, SealError> {
    let pad = parse_otp(otp)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim())
        .map_err(|_| SealError::Ceremony("the encoded token is not base64url".into()))?;
    let plain = xor_otp(&bytes, &pad)?;
    String::from_utf8(plain.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| SealError::Ceremony("wrong OTP for this encoded token".into()))
}

fn xor_otp(data: &[u8], pad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if data.len() != pad.len() {
        return Err(SealError::Ceremony(format!(
            "the token and the OTP differ in length ({} vs {} bytes)",
            data.len(),
            pad.len()
        )));
    }
    Ok(Zeroizing::new(
        data.iter().zip(pad).map(|(a, b)| a ^ b).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::initialize;

    const TOKEN: &str = "cft.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    #[test]
    fn a_quorum_authorises_and_the_otp_round_trips() {
        assert_eq!(TOKEN.len(), TOKEN_LEN);
        let init = initialize(5, 3).unwrap();
        let otp = new_otp();
        let mut g = GenerateRoot::new(Delivery::Otp(parse_otp(&otp).unwrap()), "root");
        let nonce = g.nonce().to_string();
        assert!(g.submit("wrong", &init.shares[0], &init.stored).is_err());
        for s in &init.shares[1..3] {
            assert!(matches!(
                g.submit(&nonce, s, &init.stored).unwrap(),
                GenerateRootStep::Progress(_)
            ));
        }
        assert!(matches!(
            g.submit(&nonce, &init.shares[4], &init.stored).unwrap(),
            GenerateRootStep::Authorised
        ));
        let encoded = g.encode(TOKEN).unwrap();
        assert!(!encoded.contains("cft."));
        assert_eq!(&*decode_otp(&encoded, &otp).unwrap(), TOKEN);
        // Another pad does not give the token back.
        assert_ne!(
            decode_otp(&encoded, &new_otp())
                .ok()
                .as_deref()
                .map(|s| s.as_str()),
            Some(TOKEN)
        );
    }

    #[test]
    fn shares_of_another_seal_are_refused() {
        let init = initialize(3, 2).unwrap();
        let other = initialize(3, 2).unwrap();
        let mut g = GenerateRoot::new(Delivery::Otp(parse_otp(&new_otp()).unwrap()), "root");
        let nonce = g.nonce().to_string();
        g.submit(&nonce, &other.shares[0], &init.stored).unwrap();
        let err = g.submit(&nonce, &other.shares[1], &init.stored);
        assert!(matches!(err, Err(SealError::WrongShares)));
        // The count starts over under the same nonce; the right shares work.
        assert_eq!(g.status(&init.stored).progress, 0);
        g.submit(&nonce, &init.shares[2], &init.stored).unwrap();
        assert!(matches!(
            g.submit(&nonce, &init.shares[0], &init.stored).unwrap(),
            GenerateRootStep::Authorised
        ));
    }

    #[test]
    fn pgp_delivery_and_bad_otps() {
        let key = CustodianKey::parse(crate::pgp::tests::PUBLIC).unwrap();
        let g = GenerateRoot::new(Delivery::Pgp(Box::new(key)), "root");
        let armored = g.encode(TOKEN).unwrap();
        assert_eq!(crate::pgp::tests::decrypt(&armored), TOKEN.as_bytes());
        assert!(parse_otp("short").is_err());
        assert!(parse_otp("!!!").is_err());
    }
}
