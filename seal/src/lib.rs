//! Seal: Shamir-split unseal key, root key, keyring and the AES-256-GCM-SIV barrier.
//!
//! Key hierarchy: unseal secret (64 bytes, Shamir-split, see [`shamir`]) →
//! KEK (HKDF-SHA256) → root key (`sys/root-key`, see [`keyring`]) → keyring of
//! data keys by term (`sys/keyring`) → [`Barrier`] encrypting every stored value.
//!
//! Each node holds one [`SealManager`]: it is sealed at start, collects shares
//! until the threshold, then holds the barrier and the root key (for keyring
//! rotation) until sealed again.
//!
//! With the pkcs11 seal ([`SealType::Pkcs11`], see [`auto`]) the root key is
//! also wrapped by a key inside a device ([`coffer_crypto::seal_device`]) and
//! nodes unseal themselves; the shares are then recovery shares, for rekey,
//! generate-root and seal migration ([`migrate`]) only.

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
mod tests;
