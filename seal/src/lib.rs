//! Seal: Shamir-split unseal key, root key, keyring and the AES-256-GCM-SIV barrier.
//!
//! Key hierarchy: unseal secret (64 bytes, Shamir-split, see [`shamir`]) →
//! KEK (HKDF-SHA256) → root key (`sys/root-key`, see [`keyring`]) → keyring of
//! data keys by term (`sys/keyring`) → [`Barrier`] encrypting every stored value.
//!
//! Each node holds one [`SealManager`]: it is sealed at start, collects shares
//! until the threshold, then holds the barrier and the root key (for keyring
//! rotation) until sealed again.

#![forbid(unsafe_code)]

pub mod auto;
pub mod barrier;
pub mod generate_root;
pub mod keyring;
pub mod migrate;
pub mod pgp;
pub mod quorum;
pub mod rekey;
pub mod shamir;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use barrier::Barrier;
pub use keyring::Keyring;

use keyring::{generate_key, unwrap_root_key, wrap_root_key, SecretKey};
use quorum::ShareQuorum;
use shamir::{derive_kek, Share};

/// Storage key of the JSON [`SealConfig`] (raw, not barrier-encrypted).
pub const SEAL_CONFIG_KEY: &[u8] = b"sys/seal-config";
/// Storage key of the root key record (raw).
pub const ROOT_KEY_KEY: &[u8] = b"sys/root-key";
/// Storage key of the keyring record (raw).
pub const KEYRING_KEY: &[u8] = b"sys/keyring";

/// Errors of the seal. Messages never contain key material or share text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The node is sealed; data cannot be read or written.
    #[error("the node is sealed; submit unseal key shares to unseal it")]
    Sealed,
    /// A submitted share is malformed (not hex, wrong length, bad index).
    #[error("invalid unseal key share: {0}")]
    InvalidShare(String),
    /// The collected shares do not reconstruct this cluster's unseal key.
    #[error("the submitted shares do not reconstruct the unseal key: wrong or mixed share set; progress has been reset")]
    WrongShares,
    /// The seal has never been initialised.
    #[error("the seal is not initialised")]
    NotInitialized,
    /// Ciphertext names a keyring term this node's keyring does not have.
    #[error("ciphertext uses keyring term {0}, which is not in this node's keyring")]
    UnknownTerm(u32),
    /// Ciphertext or a seal record failed to decode or authenticate.
    #[error("corrupt or unauthenticated data: {0}")]
    Corrupt(String),
    /// A rekey or generate-root step does not fit the ceremony in progress
    /// (wrong nonce, wrong phase, unusable OTP or key).
    #[error("{0}")]
    Ceremony(String),
    /// Share count / threshold outside `1 <= threshold <= shares <= 255`.
    #[error("invalid seal configuration: {0}")]
    InvalidConfig(String),
    /// The seal device (PKCS#11) is missing, refuses the PIN, lacks the
    /// seal key, or cannot open the root key record.
    #[error("the seal device cannot open the root key: {0}")]
    Device(String),
    /// Shares were submitted to unseal a cluster whose nodes unseal from a
    /// device: its shares are recovery shares.
    #[error("this cluster uses the pkcs11 seal: nodes unseal themselves from the device; recovery shares authorise rekey, generate-root and seal migration but cannot unseal")]
    RecoveryOnly,
}

/// How a node opens the root key when it unseals: from a quorum of
/// custodians' shares, or by itself from a device-held key (then the shares
/// are *recovery* shares, for rekey, generate-root and seal migration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealType {
    /// Shamir-split unseal key; custodians unseal every node.
    #[default]
    Shamir,
    /// Root key wrapped by an AES-256 key inside a PKCS#11 device.
    Pkcs11,
}

impl SealType {
    /// The name used in configs, API bodies and snapshot headers.
    pub fn as_str(self) -> &'static str {
        match self {
            SealType::Shamir => "shamir",
            SealType::Pkcs11 => "pkcs11",
        }
    }
}

/// Shamir parameters, stored raw as JSON at `sys/seal-config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealConfig {
    /// Number of shares handed out.
    pub shares: u8,
    /// Number of shares needed to unseal (recovery shares needed for a
    /// ceremony, with the pkcs11 seal).
    pub threshold: u8,
    /// How nodes unseal (records written before seal types existed are
    /// Shamir).
    #[serde(default, rename = "type")]
    pub seal_type: SealType,
}

impl SealConfig {
    /// Checks `1 <= threshold <= shares` (the upper bound 255 is the type's).
    pub fn validate(&self) -> Result<(), SealError> {
        if self.shares == 0 {
            return Err(SealError::InvalidConfig("shares must be at least 1".into()));
        }
        if self.threshold == 0 || self.threshold > self.shares {
            return Err(SealError::InvalidConfig(format!(
                "threshold must be between 1 and shares ({}), got {}",
                self.shares, self.threshold
            )));
        }
        Ok(())
    }

    /// JSON bytes for `sys/seal-config`.
    pub fn to_json(&self) -> Result<Vec<u8>, SealError> {
        serde_json::to_vec(self).map_err(|e| SealError::Corrupt(format!("seal config: {e}")))
    }

    /// Parses and validates `sys/seal-config`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SealError> {
        let config: Self = serde_json::from_slice(bytes)
            .map_err(|e| SealError::Corrupt(format!("seal config: {e}")))?;
        config.validate()?;
        Ok(config)
    }
}

/// Everything the cluster stores about the seal (all ciphertext or public).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSeal {
    /// Shamir parameters.
    pub config: SealConfig,
    /// Root key encrypted under the KEK (`sys/root-key`).
    pub root_key_record: Vec<u8>,
    /// Keyring encrypted under the root key (`sys/keyring`).
    pub keyring_record: Vec<u8>,
}

impl std::fmt::Debug for StoredSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSeal")
            .field("config", &self.config)
            .field("root_key_record_len", &self.root_key_record.len())
            .field("keyring_record_len", &self.keyring_record.len())
            .finish()
    }
}

/// Result of [`initialize`]: records to store, shares to hand out once, and
/// the ready barrier for the initialising node ([`SealManager::unseal_with`]).
pub struct InitMaterial {
    /// Records to write (raw) through Raft.
    pub stored: StoredSeal,
    /// Share texts (hex), shown to the operator once and never stored.
    pub shares: Vec<Zeroizing<String>>,
    /// Barrier over the new keyring.
    pub barrier: Arc<Barrier>,
    root_key: SecretKey,
}

impl std::fmt::Debug for InitMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitMaterial")
            .field("stored", &self.stored)
            .field("shares", &format_args!("<{} redacted>", self.shares.len()))
            .field("barrier", &self.barrier)
            .field("root_key", &"<redacted>")
            .finish()
    }
}

/// Creates a new seal: unseal secret split into `shares` shares (any
/// `threshold` reconstruct it), a random root key and a one-term keyring.
pub fn initialize(shares: u8, threshold: u8) -> Result<InitMaterial, SealError> {
    let config = SealConfig {
        shares,
        threshold,
        seal_type: SealType::Shamir,
    };
    let root_key = generate_key();
    let (shares, root_key_record) = new_unseal_key(config, &root_key)?;
    let keyring = Keyring::generate();
    let keyring_record = keyring.encrypt(&root_key)?;
    Ok(InitMaterial {
        stored: StoredSeal {
            config,
            root_key_record,
            keyring_record,
        },
        shares,
        barrier: Arc::new(Barrier::new(keyring)),
        root_key,
    })
}

/// A new unseal secret split per `config`, and `root_key` wrapped under the
/// KEK derived from it: what init creates and what a rekey replaces (the
/// root key and keyring stay). Returns the share texts and the root key
/// record.
pub(crate) fn new_unseal_key(
    config: SealConfig,
    root_key: &SecretKey,
) -> Result<(Vec<Zeroizing<String>>, Vec<u8>), SealError> {
    config.validate()?;
    let (secret, split) = shamir::split_new_secret(config.shares, config.threshold)?;
    // Prove the shares work before anyone is given them.
    let check = shamir::combine(&split[..usize::from(config.threshold)])?;
    if *check != *secret {
        return Err(SealError::Corrupt("share self-check failed".into()));
    }
    let kek = derive_kek(&secret)?;
    let root_key_record = wrap_root_key(&kek, root_key)?;
    Ok((split.iter().map(Share::to_text).collect(), root_key_record))
}

/// Seal state of one node, as reported by `/v1/sys/seal-status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealStatus {
    /// Whether the node is sealed.
    pub sealed: bool,
    /// Shares needed (0 if not initialised).
    pub threshold: u8,
    /// Shares handed out (0 if not initialised).
    pub shares: u8,
    /// Distinct shares collected so far (0 when unsealed).
    pub progress: u8,
    /// Identifies the current unseal attempt while sealed; changes on reset,
    /// on a failed attempt and on seal, so clients can notice lost progress.
    pub nonce: Option<String>,
    /// How this cluster unseals.
    pub seal_type: SealType,
    /// Why a node that should unseal itself from its device has not (the
    /// last auto-unseal failure); `None` when unsealed or not tried.
    pub reason: Option<String>,
}

/// Per-node seal state: sealed with unseal progress, or unsealed with the
/// barrier and root key. `Send + Sync`; all methods take `&self`.
pub struct SealManager {
    state: Mutex<State>,
}

struct State {
    unsealed: Option<Unsealed>,
    progress: ShareQuorum,
    /// The last auto-unseal failure (cleared on unseal).
    reason: Option<String>,
}

struct Unsealed {
    barrier: Arc<Barrier>,
    root_key: SecretKey,
}

impl State {
    fn status(&self, config: Option<&SealConfig>) -> SealStatus {
        let sealed = self.unsealed.is_none();
        SealStatus {
            sealed,
            threshold: config.map_or(0, |c| c.threshold),
            shares: config.map_or(0, |c| c.shares),
            progress: if sealed { self.progress.progress() } else { 0 },
            nonce: sealed.then(|| self.progress.nonce().to_string()),
            seal_type: config.map_or(SealType::Shamir, |c| c.seal_type),
            reason: if sealed { self.reason.clone() } else { None },
        }
    }

    fn unsealed(&self) -> Result<&Unsealed, SealError> {
        self.unsealed.as_ref().ok_or(SealError::Sealed)
    }
}

impl Default for SealManager {
    fn default() -> Self {
        Self::new()
    }
}

impl SealManager {
    /// A sealed manager with no progress.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                unsealed: None,
                progress: ShareQuorum::new(),
                reason: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No method leaves the state half-updated, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The barrier, or `None` while sealed.
    pub fn barrier(&self) -> Option<Arc<Barrier>> {
        self.lock()
            .unsealed
            .as_ref()
            .map(|u| Arc::clone(&u.barrier))
    }

    /// Whether the node is sealed.
    pub fn is_sealed(&self) -> bool {
        self.lock().unsealed.is_none()
    }

    /// Seals: drops the root key, the barrier (keys are zeroized once in-flight
    /// users release their `Arc`) and any unseal progress.
    pub fn seal(&self) {
        let mut st = self.lock();
        st.unsealed = None;
        st.progress.reset();
    }

    /// Unseals the initialising node directly with the material from [`initialize`].
    pub fn unseal_with(&self, material: &InitMaterial) {
        let mut st = self.lock();
        st.progress.reset();
        st.unsealed = Some(Unsealed {
            barrier: Arc::clone(&material.barrier),
            root_key: Zeroizing::new(*material.root_key),
        });
    }

    /// Current status; `config` is `None` when the seal is not initialised.
    pub fn status(&self, config: Option<&SealConfig>) -> SealStatus {
        self.lock().status(config)
    }

    /// Adds one share (hex text). Returns the new status; unseals once
    /// `threshold` distinct shares are in. A share already submitted is not
    /// counted again; submitting while unsealed is a no-op.
    ///
    /// Errors: [`SealError::InvalidShare`] for malformed text (progress kept);
    /// [`SealError::WrongShares`] for a share of another set or a set that does
    /// not open the root key (progress reset, still sealed);
    /// [`SealError::Corrupt`]/[`SealError::InvalidConfig`] for bad stored records.
    pub fn submit_share(&self, share: &str, stored: &StoredSeal) -> Result<SealStatus, SealError> {
        stored.config.validate()?;
        if stored.config.seal_type != SealType::Shamir {
            return Err(SealError::RecoveryOnly);
        }
        let share = Share::parse(share)?;
        let mut st = self.lock();
        if st.unsealed.is_some() {
            return Ok(st.status(Some(&stored.config)));
        }
        let opened = match st.progress.add(share, stored.config.threshold)? {
            None => return Ok(st.status(Some(&stored.config))),
            Some(shares) => unlock(shares, stored),
        };
        st.progress.reset();
        st.unsealed = Some(opened?);
        Ok(st.status(Some(&stored.config)))
    }

    /// Discards unseal progress; the next status shows a new nonce.
    pub fn reset(&self) {
        let mut st = self.lock();
        if st.unsealed.is_none() {
            st.progress.reset();
        }
    }

    /// Replaces the barrier with a replicated keyring record (after a rotation
    /// was applied). A record older than the current keyring (lower active
    /// term) is ignored so a stale read cannot drop newer keys. A record that
    /// lacks or changes a key this node holds (two rotations raced) is refused
    /// with [`SealError::Corrupt`] rather than make existing values unreadable;
    /// callers should rotate with a compare-and-swap on `sys/keyring`.
    pub fn reload_keyring(&self, keyring_record: &[u8]) -> Result<(), SealError> {
        let mut st = self.lock();
        let current = st.unsealed()?;
        let keyring = Keyring::decrypt(&current.root_key, keyring_record)?;
        if keyring.active_term() < current.barrier.active_term() {
            return Ok(());
        }
        if !current.barrier.keyring().is_superseded_by(&keyring) {
            return Err(SealError::Corrupt(
                "the replicated keyring conflicts with this node's keyring (concurrent rotations?)"
                    .into(),
            ));
        }
        let barrier = Arc::new(Barrier::new(keyring));
        if let Some(u) = st.unsealed.as_mut() {
            u.barrier = barrier;
        }
        Ok(())
    }

    /// Builds the next keyring (new term, fresh key, old terms kept) and returns
    /// its encrypted record and term. The local barrier is unchanged: the caller
    /// replicates the record, and every node then calls [`Self::reload_keyring`].
    pub fn rotate_keyring(&self) -> Result<(Vec<u8>, u32), SealError> {
        let st = self.lock();
        let current = st.unsealed()?;
        let next = current.barrier.keyring().rotated();
        let record = next.encrypt(&current.root_key)?;
        Ok((record, next.active_term()))
    }
}

impl std::fmt::Debug for SealManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("SealManager")
            .field("sealed", &st.unsealed.is_none())
            .field("progress", &st.progress.progress())
            .finish()
    }
}

/// Threshold shares → secret → KEK → root key → keyring.
fn unlock(shares: &[Share], stored: &StoredSeal) -> Result<Unsealed, SealError> {
    let root_key = open_root_key(shares, stored)?;
    let keyring = Keyring::decrypt(&root_key, &stored.keyring_record)?;
    Ok(Unsealed {
        barrier: Arc::new(Barrier::new(keyring)),
        root_key,
    })
}

/// Threshold shares → secret → KEK → root key: the proof that a quorum of
/// custodians agrees, shared by unseal, rekey and generate-root.
pub(crate) fn open_root_key(shares: &[Share], stored: &StoredSeal) -> Result<SecretKey, SealError> {
    check_root_key_record(&stored.root_key_record)?;
    let secret = shamir::combine(shares)?;
    let kek = derive_kek(&secret)?;
    // The record is well-formed (checked above), so an authentication failure
    // means the KEK is wrong: a consistent share set of another seal.
    unwrap_root_key(&kek, &stored.root_key_record).map_err(|_| SealError::WrongShares)
}

/// Structural check so a damaged record is reported as such, not as wrong shares.
fn check_root_key_record(record: &[u8]) -> Result<(), SealError> {
    let expected = 1 + barrier::NONCE_LEN + keyring::KEY_LEN + barrier::TAG_LEN;
    if record.len() != expected || record[0] != 1 {
        return Err(SealError::Corrupt("root key record is malformed".into()));
    }
    Ok(())
}

/// Whether a Debug string shows `secret` as hex or as a decimal byte list.
#[cfg(test)]
pub(crate) fn debug_leaks(dbg: &str, secret: &[u8]) -> bool {
    let head = &secret[..secret.len().min(8)];
    let hex_head = hex::encode(head);
    let dec: Vec<String> = head.iter().map(u8::to_string).collect();
    dbg.to_lowercase().contains(&hex_head)
        || dbg.contains(&dec.join(", "))
        || dbg.contains(&dec.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit_all(
        m: &SealManager,
        shares: &[&Zeroizing<String>],
        stored: &StoredSeal,
    ) -> Result<SealStatus, SealError> {
        let mut last = Err(SealError::Sealed);
        for s in shares {
            last = Ok(m.submit_share(s, stored)?);
        }
        last
    }

    #[test]
    fn init_5_of_3_unseals_with_any_three_shares() {
        let init = initialize(5, 3).unwrap();
        assert_eq!(init.shares.len(), 5);
        let ct = init.barrier.encrypt(b"s/v/name", b"top secret").unwrap();
        for pick in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
            let m = SealManager::new();
            let shares: Vec<_> = pick.iter().map(|&i| &init.shares[i]).collect();
            let st = submit_all(&m, &shares, &init.stored).unwrap();
            assert!(!st.sealed);
            assert_eq!((st.progress, st.nonce), (0, None));
            let b = m.barrier().expect("unsealed");
            assert_eq!(&b.decrypt(b"s/v/name", &ct).unwrap()[..], b"top secret");
        }
    }

    #[test]
    fn below_threshold_stays_sealed_with_progress() {
        let init = initialize(5, 3).unwrap();
        let m = SealManager::new();
        let st = submit_all(&m, &[&init.shares[0], &init.shares[3]], &init.stored).unwrap();
        assert_eq!(
            (st.sealed, st.progress, st.threshold, st.shares),
            (true, 2, 3, 5)
        );
        assert!(st.nonce.is_some());
        assert!(m.is_sealed() && m.barrier().is_none());
    }

    #[test]
    fn duplicate_share_is_not_counted_twice() {
        let init = initialize(3, 2).unwrap();
        let m = SealManager::new();
        m.submit_share(&init.shares[1], &init.stored).unwrap();
        // Same share, different spelling.
        let again = m
            .submit_share(
                &format!(" {} ", init.shares[1].to_uppercase()),
                &init.stored,
            )
            .unwrap();
        assert_eq!((again.sealed, again.progress), (true, 1));
        assert!(
            !m.submit_share(&init.shares[2], &init.stored)
                .unwrap()
                .sealed
        );
    }

    #[test]
    fn mixed_share_sets_are_rejected_and_reset() {
        let a = initialize(5, 3).unwrap();
        let b = initialize(5, 3).unwrap();
        let m = SealManager::new();
        submit_all(&m, &[&a.shares[0], &a.shares[1]], &a.stored).unwrap();
        let nonce = m.status(Some(&a.stored.config)).nonce;
        let err = m.submit_share(&b.shares[2], &a.stored).unwrap_err();
        assert_eq!(err, SealError::WrongShares);
        assert_eq!(
            err.to_string(),
            "the submitted shares do not reconstruct the unseal key: wrong or mixed share set; progress has been reset"
        );
        let st = m.status(Some(&a.stored.config));
        assert_eq!((st.sealed, st.progress), (true, 0));
        assert_ne!(st.nonce, nonce);
        // A full, consistent set of the other seal cannot open this one either.
        let err = submit_all(&m, &[&b.shares[0], &b.shares[1], &b.shares[2]], &a.stored);
        assert_eq!(err.unwrap_err(), SealError::WrongShares);
        assert!(m.is_sealed());
        assert_eq!(m.status(Some(&a.stored.config)).progress, 0);
        // Progress works normally afterwards.
        assert!(
            !submit_all(&m, &[&a.shares[2], &a.shares[3], &a.shares[4]], &a.stored)
                .unwrap()
                .sealed
        );
    }

    #[test]
    fn malformed_share_is_invalid_and_keeps_progress() {
        let init = initialize(5, 3).unwrap();
        let m = SealManager::new();
        m.submit_share(&init.shares[0], &init.stored).unwrap();
        let mut garbled = init.shares[1].to_string();
        garbled.replace_range(10..12, "zz");
        for bad in [garbled.as_str(), &init.shares[1][..100], "", "not a share"] {
            let err = m.submit_share(bad, &init.stored).unwrap_err();
            assert!(matches!(err, SealError::InvalidShare(_)), "{err:?}");
            if bad.len() > 20 {
                assert!(
                    !err.to_string().contains(&bad[..20]),
                    "error echoes the share"
                );
            }
        }
        assert_eq!(m.status(Some(&init.stored.config)).progress, 1);
    }

    #[test]
    fn one_of_one_dev_mode() {
        let init = initialize(1, 1).unwrap();
        assert_eq!(init.shares.len(), 1);
        let m = SealManager::new();
        let st = m.submit_share(&init.shares[0], &init.stored).unwrap();
        assert!(!st.sealed);
        let ct = init.barrier.encrypt(b"k", b"v").unwrap();
        assert_eq!(&m.barrier().unwrap().decrypt(b"k", &ct).unwrap()[..], b"v");

        // The key of another 1-of-1 seal is rejected, never accepted as a wrong key.
        let other = initialize(1, 1).unwrap();
        let m2 = SealManager::new();
        let err = m2.submit_share(&other.shares[0], &init.stored).unwrap_err();
        assert_eq!(err, SealError::WrongShares);
        assert!(m2.is_sealed());

        // A tampered key (still valid hex) is rejected too.
        let mut bytes = hex::decode(init.shares[0].as_str()).unwrap();
        bytes[7] ^= 0x40;
        let err = m2
            .submit_share(&hex::encode(bytes), &init.stored)
            .unwrap_err();
        assert_eq!(err, SealError::WrongShares);
        assert!(m2.is_sealed());
    }

    #[test]
    fn seal_drops_barrier_and_requires_shares_again() {
        let init = initialize(3, 2).unwrap();
        let m = SealManager::new();
        m.unseal_with(&init);
        assert!(m.barrier().is_some());
        assert_eq!(m.status(Some(&init.stored.config)).nonce, None);
        m.seal();
        assert!(m.barrier().is_none() && m.is_sealed());
        assert_eq!(m.rotate_keyring().unwrap_err(), SealError::Sealed);
        assert_eq!(
            m.reload_keyring(&init.stored.keyring_record).unwrap_err(),
            SealError::Sealed
        );
        let st = submit_all(&m, &[&init.shares[0], &init.shares[2]], &init.stored).unwrap();
        assert!(!st.sealed);
    }

    #[test]
    fn reset_clears_progress_and_changes_nonce() {
        let init = initialize(5, 3).unwrap();
        let m = SealManager::new();
        m.submit_share(&init.shares[0], &init.stored).unwrap();
        let before = m.status(Some(&init.stored.config));
        assert_eq!(before.progress, 1);
        m.reset();
        let after = m.status(Some(&init.stored.config));
        assert_eq!(after.progress, 0);
        assert!(after.nonce.is_some());
        assert_ne!(after.nonce, before.nonce);
    }

    #[test]
    fn status_without_config_reports_zero_parameters() {
        let m = SealManager::new();
        let st = m.status(None);
        assert_eq!(
            (st.sealed, st.threshold, st.shares, st.progress),
            (true, 0, 0, 0)
        );
    }

    #[test]
    fn rotation_is_applied_through_reload_on_every_node() {
        let init = initialize(3, 2).unwrap();
        let leader = SealManager::new();
        leader.unseal_with(&init);
        let follower = SealManager::new();
        submit_all(&follower, &[&init.shares[0], &init.shares[1]], &init.stored).unwrap();
        let old_ct = leader.barrier().unwrap().encrypt(b"k", b"old").unwrap();

        let (record, term) = leader.rotate_keyring().unwrap();
        assert_eq!(term, 2);
        // Not active until the replicated record is applied.
        assert_eq!(leader.barrier().unwrap().active_term(), 1);
        for node in [&leader, &follower] {
            node.reload_keyring(&record).unwrap();
            let b = node.barrier().unwrap();
            assert_eq!(b.active_term(), 2);
            assert_eq!(&b.decrypt(b"k", &old_ct).unwrap()[..], b"old");
        }
        let new_ct = follower.barrier().unwrap().encrypt(b"k", b"new").unwrap();
        assert_eq!(&new_ct[..4], &2u32.to_be_bytes());
        assert_eq!(
            &leader.barrier().unwrap().decrypt(b"k", &new_ct).unwrap()[..],
            b"new"
        );

        // Reloading the same record again is harmless.
        follower.reload_keyring(&record).unwrap();
        // A stale record does not roll the keyring back.
        follower
            .reload_keyring(&init.stored.keyring_record)
            .unwrap();
        assert_eq!(follower.barrier().unwrap().active_term(), 2);
        // A competing rotation from the old keyring (same term, other key) is refused.
        let racer = SealManager::new();
        racer.unseal_with(&init);
        let (conflicting, term) = racer.rotate_keyring().unwrap();
        assert_eq!(term, 2);
        assert!(matches!(
            follower.reload_keyring(&conflicting),
            Err(SealError::Corrupt(_))
        ));
        assert_eq!(
            &follower.barrier().unwrap().decrypt(b"k", &new_ct).unwrap()[..],
            b"new"
        );
        // A record under another root key is rejected.
        let other = initialize(1, 1).unwrap();
        assert!(matches!(
            follower.reload_keyring(&other.stored.keyring_record),
            Err(SealError::Corrupt(_))
        ));
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        for (n, k) in [(0, 0), (0, 1), (3, 0), (3, 4)] {
            assert!(
                matches!(initialize(n, k), Err(SealError::InvalidConfig(_))),
                "{n}/{k}"
            );
        }
        let bad = StoredSeal {
            config: SealConfig {
                shares: 2,
                threshold: 3,
                seal_type: SealType::Shamir,
            },
            ..initialize(1, 1).unwrap().stored
        };
        let share = initialize(1, 1).unwrap().shares[0].clone();
        assert!(matches!(
            SealManager::new().submit_share(&share, &bad),
            Err(SealError::InvalidConfig(_))
        ));
    }

    #[test]
    fn damaged_root_key_record_is_corrupt_not_wrong_shares() {
        let init = initialize(1, 1).unwrap();
        let mut stored = init.stored.clone();
        stored.root_key_record.truncate(10);
        let err = SealManager::new()
            .submit_share(&init.shares[0], &stored)
            .unwrap_err();
        assert!(matches!(err, SealError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn seal_config_json_roundtrip() {
        let c = SealConfig {
            shares: 5,
            threshold: 3,
            seal_type: SealType::Pkcs11,
        };
        let json = c.to_json().unwrap();
        assert_eq!(SealConfig::from_json(&json).unwrap(), c);
        // Records written before seal types existed are Shamir.
        let old = SealConfig::from_json(br#"{"shares":5,"threshold":3}"#).unwrap();
        assert_eq!(old.seal_type, SealType::Shamir);
        assert!(SealConfig::from_json(br#"{"shares":2,"threshold":3}"#).is_err());
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let init = initialize(3, 2).unwrap();
        let m = SealManager::new();
        m.unseal_with(&init);
        let dbg = format!("{init:?} {init:#?} {:?} {m:?}", init.barrier);
        assert!(!debug_leaks(&dbg, &init.root_key[..]));
        let data_key = init.barrier.keyring().key(1).unwrap();
        assert!(!debug_leaks(&dbg, data_key));
        for s in &init.shares {
            assert!(!dbg.contains(&s[..16]));
        }
        assert!(dbg.contains("redacted"));
    }
}
