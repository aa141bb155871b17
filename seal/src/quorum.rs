//! Collecting a quorum of shares, one custodian at a time: the progress of
//! an unseal, a rekey, a rekey verification or a generate-root. One place
//! decides what counts as progress (distinct shares of one set) and when an
//! attempt starts over (a new nonce).

use rand::RngCore;

use super::shamir::Share;
use super::SealError;

/// Shares submitted so far in one attempt, identified by a nonce.
pub struct ShareQuorum {
    shares: Vec<Share>,
    nonce: String,
}

/// A fresh random nonce (hex of 16 bytes).
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl Default for ShareQuorum {
    fn default() -> Self {
        Self::new()
    }
}

impl ShareQuorum {
    /// An empty attempt with a new nonce.
    pub fn new() -> Self {
        Self {
            shares: Vec::new(),
            nonce: new_nonce(),
        }
    }

    /// The attempt's nonce; changes whenever progress is discarded.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Distinct shares collected.
    pub fn progress(&self) -> u8 {
        u8::try_from(self.shares.len()).unwrap_or(u8::MAX)
    }

    /// Drops (and thereby zeroizes) the shares; starts a new attempt.
    pub fn reset(&mut self) {
        self.shares.clear();
        self.nonce = new_nonce();
    }

    /// Adds `share`. Returns the collected shares once `threshold` distinct
    /// ones are in (the caller then tries them and resets). A share already
    /// submitted is not counted again. A share of another set than the first
    /// one resets the attempt: [`SealError::WrongShares`].
    pub fn add(&mut self, share: Share, threshold: u8) -> Result<Option<&[Share]>, SealError> {
        if !self.shares.contains(&share) {
            if self
                .shares
                .first()
                .is_some_and(|first| !first.same_set(&share))
            {
                self.reset();
                return Err(SealError::WrongShares);
            }
            self.shares.push(share);
        }
        Ok((self.shares.len() >= usize::from(threshold)).then_some(&self.shares[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::super::shamir::split_new_secret;
    use super::*;

    #[test]
    fn counts_distinct_shares_until_the_threshold() {
        let (_, shares) = split_new_secret(5, 3).unwrap();
        let mut q = ShareQuorum::new();
        assert!(q.add(shares[0].clone(), 3).unwrap().is_none());
        assert!(q.add(shares[0].clone(), 3).unwrap().is_none());
        assert_eq!(q.progress(), 1);
        assert!(q.add(shares[3].clone(), 3).unwrap().is_none());
        let full = q.add(shares[1].clone(), 3).unwrap().unwrap();
        assert_eq!(full.len(), 3);
    }

    #[test]
    fn a_share_of_another_set_resets_with_a_new_nonce() {
        let (_, a) = split_new_secret(3, 2).unwrap();
        let (_, b) = split_new_secret(3, 2).unwrap();
        let mut q = ShareQuorum::new();
        q.add(a[0].clone(), 2).unwrap();
        let nonce = q.nonce().to_string();
        assert_eq!(q.add(b[1].clone(), 2).unwrap_err(), SealError::WrongShares);
        assert_eq!(q.progress(), 0);
        assert_ne!(q.nonce(), nonce);
    }
}
