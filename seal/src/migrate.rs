//! Seal migration: Shamir → pkcs11 (a quorum of unseal shares) and
//! pkcs11 → Shamir (a quorum of recovery shares).
//!
//! The root key, the keyring and the shares stay: only how nodes open the
//! root key changes. To pkcs11, the root key is wrapped by the device and
//! the unseal shares become recovery shares; back to Shamir, the device
//! record is dropped and the recovery shares unseal again. Nothing stored
//! is re-encrypted, so every secret is kept.
//!
//! Like a rekey, the ceremony runs on one node and holds its progress in
//! memory; the caller writes the [`MigrationCommit`] through Raft.

use coffer_crypto::seal_device::SealDevice;
use serde::Serialize;

use super::auto::wrap_for_device;
use super::quorum::{new_nonce, ShareQuorum};
use super::shamir::Share;
use super::{open_root_key, SealConfig, SealError, SealType, StoredSeal};

/// Progress of a migration as reported to custodians. Never holds a share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MigrationStatus {
    /// A migration is in progress on this node.
    pub started: bool,
    /// Nonce of the ceremony; every submission must carry it.
    pub nonce: Option<String>,
    /// The seal type migrated to.
    pub target: Option<SealType>,
    /// Shares submitted so far.
    pub progress: u8,
    /// Shares needed (the current threshold).
    pub required: u8,
}

/// The records to write, valid only while `sys/root-key` is still at
/// `root_revision` (a concurrent rekey or migration wins otherwise).
#[derive(Clone)]
pub struct MigrationCommit {
    /// The configuration with the new seal type (same shares).
    pub config: SealConfig,
    /// The root key record, unchanged (rewritten so its revision moves and
    /// a rekey started before the migration cannot commit after it).
    pub root_key_record: Vec<u8>,
    /// The device record to store (to pkcs11), or `None` to delete it (to Shamir).
    pub device_record: Option<Vec<u8>>,
    /// Revision of `sys/root-key` the quorum opened.
    pub root_revision: u64,
}

impl std::fmt::Debug for MigrationCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationCommit")
            .field("config", &self.config)
            .field("device_record", &self.device_record.as_ref().map(Vec::len))
            .field("root_revision", &self.root_revision)
            .finish()
    }
}

/// What one submission led to.
#[derive(Debug)]
pub enum MigrationStep {
    /// Below the threshold.
    Progress(MigrationStatus),
    /// Quorum reached: write the commit.
    Done(MigrationCommit),
}

/// A migration in progress.
pub struct Migration {
    target: SealType,
    nonce: String,
    quorum: ShareQuorum,
}

impl Migration {
    /// Starts a migration of a seal currently of type `current` to `target`.
    pub fn new(target: SealType, current: &SealConfig) -> Result<Self, SealError> {
        if current.seal_type == target {
            return Err(SealError::Ceremony(format!(
                "the seal is already of type {}",
                target.as_str()
            )));
        }
        Ok(Self {
            target,
            nonce: new_nonce(),
            quorum: ShareQuorum::new(),
        })
    }

    /// The ceremony's nonce.
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The seal type migrated to.
    pub fn target(&self) -> SealType {
        self.target
    }

    /// Progress, given the current seal configuration.
    pub fn status(&self, current: &SealConfig) -> MigrationStatus {
        MigrationStatus {
            started: true,
            nonce: Some(self.nonce.clone()),
            target: Some(self.target),
            progress: self.quorum.progress(),
            required: current.threshold,
        }
    }

    /// Adds one share (unseal shares to pkcs11, recovery shares to Shamir).
    /// `device` is this node's seal device (required to migrate to pkcs11:
    /// the root key is wrapped by it and read back before the commit).
    pub fn submit(
        &mut self,
        nonce: &str,
        share: &str,
        stored: &StoredSeal,
        root_revision: u64,
        device: Option<&dyn SealDevice>,
    ) -> Result<MigrationStep, SealError> {
        if self.nonce != nonce.trim() {
            return Err(SealError::Ceremony(
                "the nonce does not match the migration in progress on this node".into(),
            ));
        }
        if stored.config.seal_type == self.target {
            return Err(SealError::Ceremony(format!(
                "the seal is already of type {}",
                self.target.as_str()
            )));
        }
        let share = Share::parse(share)?;
        let root_key = match self.quorum.add(share, stored.config.threshold)? {
            None => return Ok(MigrationStep::Progress(self.status(&stored.config))),
            Some(shares) => open_root_key(shares, stored),
        };
        // The attempt is used up whatever the outcome; a failed one starts over.
        self.quorum.reset();
        let root_key = root_key?;
        let device_record = match self.target {
            SealType::Shamir => None,
            SealType::Pkcs11 => {
                let device = device.ok_or_else(|| {
                    SealError::Ceremony(
                        "this node has no seal device configured ([seal] type = \"pkcs11\"); \
                         run the migration on a node that has one"
                            .into(),
                    )
                })?;
                Some(wrap_for_device(device, &root_key)?)
            }
        };
        Ok(MigrationStep::Done(MigrationCommit {
            config: SealConfig {
                seal_type: self.target,
                ..stored.config
            },
            root_key_record: stored.root_key_record.clone(),
            device_record,
            root_revision,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auto::test_device::MemoryDevice;
    use crate::{initialize, SealManager};

    fn submit_all(
        m: &mut Migration,
        shares: &[&str],
        stored: &StoredSeal,
        device: Option<&dyn SealDevice>,
    ) -> Result<MigrationStep, SealError> {
        let nonce = m.status(&stored.config).nonce.unwrap();
        let mut last = None;
        for s in shares {
            last = Some(m.submit(&nonce, s, stored, 3, device)?);
        }
        Ok(last.unwrap())
    }

    #[test]
    fn round_trip_keeps_root_key_and_shares() {
        let device = MemoryDevice::new();
        let init = initialize(5, 3).unwrap();
        let ct = init.barrier.encrypt(b"k", b"kept").unwrap();
        let shares: Vec<&str> = init.shares.iter().map(|s| s.as_str()).collect();

        // Below the quorum nothing happens.
        let mut m = Migration::new(SealType::Pkcs11, &init.stored.config).unwrap();
        let step = submit_all(&mut m, &shares[..2], &init.stored, Some(&device)).unwrap();
        assert!(matches!(step, MigrationStep::Progress(ref s) if s.progress == 2));
        let step = submit_all(&mut m, &shares[2..3], &init.stored, Some(&device)).unwrap();
        let MigrationStep::Done(commit) = step else {
            panic!("expected a commit")
        };
        assert_eq!(commit.config.seal_type, SealType::Pkcs11);
        assert_eq!((commit.config.shares, commit.config.threshold), (5, 3));
        let pkcs11 = StoredSeal {
            config: commit.config,
            ..init.stored.clone()
        };
        let record = commit.device_record.unwrap();
        let node = SealManager::new();
        node.auto_unseal(&device, &pkcs11, &record).unwrap();
        assert_eq!(
            &node.barrier().unwrap().decrypt(b"k", &ct).unwrap()[..],
            b"kept"
        );

        // Back: the recovery shares (the same) authorise it and unseal again.
        let mut back = Migration::new(SealType::Shamir, &pkcs11.config).unwrap();
        let step = submit_all(&mut back, &shares[2..], &pkcs11, None).unwrap();
        let MigrationStep::Done(commit) = step else {
            panic!("expected a commit")
        };
        assert!(commit.device_record.is_none());
        let shamir = StoredSeal {
            config: commit.config,
            ..init.stored.clone()
        };
        let node = SealManager::new();
        for s in &shares[..3] {
            node.submit_share(s, &shamir).unwrap();
        }
        assert_eq!(
            &node.barrier().unwrap().decrypt(b"k", &ct).unwrap()[..],
            b"kept"
        );
    }

    #[test]
    fn wrong_shares_a_missing_device_or_a_bad_nonce_commit_nothing() {
        let init = initialize(3, 2).unwrap();
        let other = initialize(3, 2).unwrap();
        let mut m = Migration::new(SealType::Pkcs11, &init.stored.config).unwrap();
        let err = submit_all(
            &mut m,
            &[&other.shares[0], &other.shares[1]],
            &init.stored,
            Some(&MemoryDevice::new()),
        )
        .unwrap_err();
        assert_eq!(err, SealError::WrongShares);
        let err = submit_all(
            &mut m,
            &[&init.shares[0], &init.shares[1]],
            &init.stored,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, SealError::Ceremony(_)), "{err:?}");
        let err = m
            .submit("not-the-nonce", &init.shares[0], &init.stored, 1, None)
            .unwrap_err();
        assert!(matches!(err, SealError::Ceremony(_)));
        assert!(Migration::new(SealType::Shamir, &init.stored.config).is_err());
    }
}
