//! Rekey: a quorum of the current shares replaces the unseal key (new
//! secret, new shares, possibly a new count and threshold); the root key
//! and the keyring stay, so nothing stored is re-encrypted.
//!
//! The ceremony runs on one node (custodians point at the same node) and
//! holds its progress in memory only; what it produces — the new seal
//! configuration and root key record — is written through Raft by the
//! caller, so every node unseals with the new shares from then on.
//!
//! With `verify`, the new shares are handed out first but the old ones stay
//! valid until a quorum of the *new* holders has submitted theirs back: a
//! mistyped or lost new share cannot lock the cluster out.

use serde::Serialize;
use zeroize::Zeroizing;

use super::pgp::CustodianKey;
use super::quorum::{new_nonce, ShareQuorum};
use super::shamir::Share;
use super::{new_unseal_key, open_root_key, SealConfig, SealError, StoredSeal};

/// What `rekey init` asks for.
#[derive(Debug, Clone)]
pub struct RekeyRequest {
    /// The new share count and threshold.
    pub config: SealConfig,
    /// One key per new share, in share order (empty: shares in clear).
    pub pgp_keys: Vec<CustodianKey>,
    /// Require the new holders to prove their shares before the switch.
    pub verify: bool,
}

/// Progress of a rekey as reported to custodians. Never holds a share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RekeyStatus {
    /// A rekey is in progress on this node.
    pub started: bool,
    /// Nonce of the ceremony; every submission must carry it.
    pub nonce: Option<String>,
    /// Current shares submitted so far.
    pub progress: u8,
    /// Current shares needed (the current threshold).
    pub required: u8,
    /// The new share count.
    pub n: u8,
    /// The new threshold.
    pub t: u8,
    /// Whether the new holders must verify their shares.
    pub verification_required: bool,
    /// Set once the new shares were handed out and await verification.
    pub verification_nonce: Option<String>,
    /// New shares verified so far.
    pub verification_progress: u8,
    /// Fingerprints of the keys the new shares are encrypted to, in order.
    pub pgp_fingerprints: Vec<String>,
}

/// The new shares, to give out exactly once.
pub struct NewShares {
    /// Share texts, or armored OpenPGP messages when keys were given.
    pub keys: Vec<Zeroizing<String>>,
    /// Fingerprints of those keys, in order (empty without keys).
    pub pgp_fingerprints: Vec<String>,
    /// With verification: the nonce the new holders submit with.
    pub verification_nonce: Option<String>,
}

/// New seal records to write, valid only while the root key record is
/// still at `root_revision` (compare-and-swap against a concurrent rekey).
#[derive(Debug, Clone)]
pub struct RekeyCommit {
    /// New configuration and root key record (the keyring is untouched).
    pub stored: StoredSeal,
    /// Revision of `sys/root-key` the old quorum opened.
    pub root_revision: u64,
}

impl std::fmt::Debug for NewShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewShares")
            .field("keys", &format_args!("<{} redacted>", self.keys.len()))
            .field("pgp_fingerprints", &self.pgp_fingerprints)
            .field("verification_nonce", &self.verification_nonce)
            .finish()
    }
}

/// What one submission led to.
#[derive(Debug)]
pub enum RekeyStep {
    /// Below the threshold.
    Progress(RekeyStatus),
    /// Quorum reached without verification: write `commit`, then hand out `shares`.
    Done(RekeyCommit, NewShares),
    /// Quorum reached with verification: hand out `shares`; nothing changes yet.
    AwaitVerification(NewShares),
    /// A quorum of new shares came back: write `commit`.
    Verified(RekeyCommit),
}

/// A rekey in progress.
pub struct Rekey {
    request: RekeyRequest,
    /// Fixed for the ceremony (a failed quorum starts the count over, not
    /// the ceremony).
    nonce: String,
    quorum: ShareQuorum,
    pending: Option<Pending>,
}

struct Pending {
    commit: RekeyCommit,
    nonce: String,
    verify: ShareQuorum,
}

impl Rekey {
    /// Starts a ceremony for `request`.
    pub fn new(request: RekeyRequest) -> Result<Self, SealError> {
        request.config.validate()?;
        if !request.pgp_keys.is_empty()
            && request.pgp_keys.len() != usize::from(request.config.shares)
        {
            return Err(SealError::Ceremony(format!(
                "{} OpenPGP keys for {} shares",
                request.pgp_keys.len(),
                request.config.shares
            )));
        }
        Ok(Self {
            request,
            nonce: new_nonce(),
            quorum: ShareQuorum::new(),
            pending: None,
        })
    }

    /// The ceremony's nonce.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Progress, given the current seal configuration.
    pub fn status(&self, current: &SealConfig) -> RekeyStatus {
        RekeyStatus {
            started: true,
            nonce: Some(self.nonce.clone()),
            progress: self.quorum.progress(),
            required: current.threshold,
            n: self.request.config.shares,
            t: self.request.config.threshold,
            verification_required: self.request.verify,
            verification_nonce: self.pending.as_ref().map(|p| p.nonce.clone()),
            verification_progress: self.pending.as_ref().map_or(0, |p| p.verify.progress()),
            pgp_fingerprints: self
                .request
                .pgp_keys
                .iter()
                .map(|k| k.fingerprint().to_string())
                .collect(),
        }
    }

    /// Adds one current share (`nonce` must be the ceremony's). `stored` and
    /// `root_revision` are the seal records as this node has them.
    pub fn submit(
        &mut self,
        nonce: &str,
        share: &str,
        stored: &StoredSeal,
        root_revision: u64,
    ) -> Result<RekeyStep, SealError> {
        check_nonce(&self.nonce, nonce)?;
        if self.pending.is_some() {
            return Err(SealError::Ceremony(
                "the new shares were already issued; the new holders verify them now".into(),
            ));
        }
        let share = Share::parse(share)?;
        let root_key = match self.quorum.add(share, stored.config.threshold)? {
            None => return Ok(RekeyStep::Progress(self.status(&stored.config))),
            Some(shares) => open_root_key(shares, stored),
        };
        // The attempt is used up whatever the outcome; a failed one starts over.
        self.quorum.reset();
        let root_key = root_key?;
        let (texts, root_key_record) = new_unseal_key(self.request.config, &root_key)?;
        let keys = self.deliver(texts)?;
        let commit = RekeyCommit {
            stored: StoredSeal {
                // A rekey changes the shares, never how nodes unseal.
                config: SealConfig {
                    seal_type: stored.config.seal_type,
                    ..self.request.config
                },
                root_key_record,
                keyring_record: stored.keyring_record.clone(),
            },
            root_revision,
        };
        let pgp_fingerprints = self.status(&stored.config).pgp_fingerprints;
        if !self.request.verify {
            let shares = NewShares {
                keys,
                pgp_fingerprints,
                verification_nonce: None,
            };
            return Ok(RekeyStep::Done(commit, shares));
        }
        let pending = Pending {
            commit,
            nonce: new_nonce(),
            verify: ShareQuorum::new(),
        };
        let verification_nonce = Some(pending.nonce.clone());
        self.pending = Some(pending);
        Ok(RekeyStep::AwaitVerification(NewShares {
            keys,
            pgp_fingerprints,
            verification_nonce,
        }))
    }

    /// Adds one *new* share during verification (`nonce` is the
    /// verification nonce).
    pub fn verify(&mut self, nonce: &str, share: &str) -> Result<RekeyStep, SealError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(SealError::Ceremony(
                "no new shares await verification on this node".into(),
            ));
        };
        check_nonce(&pending.nonce, nonce)?;
        let share = Share::parse(share)?;
        let threshold = pending.commit.stored.config.threshold;
        let opened = match pending.verify.add(share, threshold)? {
            None => {
                let current = pending.commit.stored.config;
                return Ok(RekeyStep::Progress(self.status(&current)));
            }
            Some(shares) => open_root_key(shares, &pending.commit.stored),
        };
        pending.verify.reset();
        opened?;
        Ok(RekeyStep::Verified(pending.commit.clone()))
    }

    /// Encrypts each share to its holder's key, when keys were given.
    fn deliver(&self, texts: Vec<Zeroizing<String>>) -> Result<Vec<Zeroizing<String>>, SealError> {
        encrypt_shares(texts, &self.request.pgp_keys)
    }
}

/// Encrypts share `i` to key `i` (no keys: the texts as they are).
pub fn encrypt_shares(
    texts: Vec<Zeroizing<String>>,
    keys: &[CustodianKey],
) -> Result<Vec<Zeroizing<String>>, SealError> {
    if keys.is_empty() {
        return Ok(texts);
    }
    texts
        .iter()
        .zip(keys)
        .map(|(text, key)| {
            key.encrypt(text.as_bytes())
                .map(Zeroizing::new)
                .map_err(|e| SealError::Ceremony(e.to_string()))
        })
        .collect()
}

fn check_nonce(expected: &str, given: &str) -> Result<(), SealError> {
    if expected == given.trim() {
        Ok(())
    } else {
        Err(SealError::Ceremony(
            "the nonce does not match the ceremony in progress on this node".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{initialize, SealManager};

    fn request(shares: u8, threshold: u8, verify: bool) -> RekeyRequest {
        RekeyRequest {
            config: SealConfig {
                shares,
                threshold,
                seal_type: crate::SealType::Shamir,
            },
            pgp_keys: Vec::new(),
            verify,
        }
    }

    fn unseals(stored: &StoredSeal, shares: &[&str]) -> Result<bool, SealError> {
        let m = SealManager::new();
        let mut sealed = true;
        for s in shares {
            sealed = m.submit_share(s, stored)?.sealed;
        }
        Ok(!sealed)
    }

    #[test]
    fn rekey_without_verification_replaces_the_shares_and_keeps_the_keyring() {
        let init = initialize(5, 3).unwrap();
        let mut rekey = Rekey::new(request(3, 2, false)).unwrap();
        let nonce = rekey.nonce().to_string();
        for s in &init.shares[..2] {
            assert!(matches!(
                rekey.submit(&nonce, s, &init.stored, 7).unwrap(),
                RekeyStep::Progress(_)
            ));
        }
        let RekeyStep::Done(commit, new) = rekey
            .submit(&nonce, &init.shares[4], &init.stored, 7)
            .unwrap()
        else {
            panic!("expected the new shares")
        };
        assert_eq!(commit.root_revision, 7);
        assert_eq!(new.keys.len(), 3);
        assert_eq!(commit.stored.keyring_record, init.stored.keyring_record);
        assert_eq!(
            commit.stored.config,
            SealConfig {
                shares: 3,
                threshold: 2,
                seal_type: crate::SealType::Shamir,
            }
        );
        // New shares open the new records; old ones do not.
        assert!(unseals(&commit.stored, &[&new.keys[0], &new.keys[2]]).unwrap());
        let old: Vec<&str> = init.shares[..2].iter().map(|s| s.as_str()).collect();
        assert_eq!(
            unseals(&commit.stored, &old).unwrap_err(),
            SealError::WrongShares
        );
        // Same root key: a value under the old barrier reads after the rekey.
        let ct = init.barrier.encrypt(b"k", b"v").unwrap();
        let m = SealManager::new();
        m.submit_share(&new.keys[1], &commit.stored).unwrap();
        m.submit_share(&new.keys[0], &commit.stored).unwrap();
        assert_eq!(&m.barrier().unwrap().decrypt(b"k", &ct).unwrap()[..], b"v");
    }

    #[test]
    fn verification_needs_a_quorum_of_new_shares_and_a_wrong_one_changes_nothing() {
        let init = initialize(3, 2).unwrap();
        let other = initialize(3, 2).unwrap();
        let mut rekey = Rekey::new(request(3, 2, true)).unwrap();
        let nonce = rekey.nonce().to_string();
        rekey
            .submit(&nonce, &init.shares[0], &init.stored, 1)
            .unwrap();
        let RekeyStep::AwaitVerification(new) = rekey
            .submit(&nonce, &init.shares[1], &init.stored, 1)
            .unwrap()
        else {
            panic!("expected verification")
        };
        let vnonce = new.verification_nonce.clone().unwrap();
        // Old shares cannot be submitted again; a wrong nonce is refused.
        assert!(rekey
            .submit(&nonce, &init.shares[2], &init.stored, 1)
            .is_err());
        assert!(rekey.verify("nope", &new.keys[0]).is_err());
        // A share of another set is refused and progress starts over.
        rekey.verify(&vnonce, &new.keys[0]).unwrap();
        assert_eq!(
            rekey.verify(&vnonce, &other.shares[0]).unwrap_err(),
            SealError::WrongShares
        );
        let vnonce = rekey
            .status(&init.stored.config)
            .verification_nonce
            .unwrap();
        assert!(matches!(
            rekey.verify(&vnonce, &new.keys[2]).unwrap(),
            RekeyStep::Progress(_)
        ));
        let RekeyStep::Verified(commit) = rekey.verify(&vnonce, &new.keys[1]).unwrap() else {
            panic!("expected verified")
        };
        assert!(unseals(&commit.stored, &[&new.keys[1], &new.keys[2]]).unwrap());
    }

    #[test]
    fn wrong_current_shares_reset_and_produce_nothing() {
        let init = initialize(3, 2).unwrap();
        let other = initialize(3, 2).unwrap();
        let mut rekey = Rekey::new(request(2, 2, false)).unwrap();
        let nonce = rekey.nonce().to_string();
        rekey
            .submit(&nonce, &other.shares[0], &init.stored, 1)
            .unwrap();
        let err = rekey
            .submit(&nonce, &other.shares[1], &init.stored, 1)
            .unwrap_err();
        assert_eq!(err, SealError::WrongShares);
        assert_eq!(rekey.status(&init.stored.config).progress, 0);
    }

    #[test]
    fn pgp_delivery_encrypts_each_share_to_its_holder() {
        let key = CustodianKey::parse(crate::pgp::tests::PUBLIC).unwrap();
        let init = initialize(1, 1).unwrap();
        let mut rekey = Rekey::new(RekeyRequest {
            config: SealConfig {
                shares: 2,
                threshold: 2,
                seal_type: crate::SealType::Shamir,
            },
            pgp_keys: vec![key.clone(), key],
            verify: false,
        })
        .unwrap();
        let nonce = rekey.nonce().to_string();
        let RekeyStep::Done(commit, new) = rekey
            .submit(&nonce, &init.shares[0], &init.stored, 1)
            .unwrap()
        else {
            panic!("expected the new shares")
        };
        assert_eq!(new.pgp_fingerprints.len(), 2);
        let plain: Vec<String> = new
            .keys
            .iter()
            .map(|k| String::from_utf8(crate::pgp::tests::decrypt(k)).unwrap())
            .collect();
        let refs: Vec<&str> = plain.iter().map(String::as_str).collect();
        assert!(unseals(&commit.stored, &refs).unwrap());
    }
}
