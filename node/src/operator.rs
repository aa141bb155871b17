//! Operator actions on a node: initialise the cluster, unseal and seal this
//! node, report health, verify tokens. Free of HTTP; `api::sys` renders it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use raft_store::{Compare, Mutation, Request, Txn};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cluster::{ClusterNode, RaftStatus};
use crate::crypto::seal_device::SealDevice;
use crate::engine::clock::now_ms;
use crate::engine::registry::Engines;
use crate::engine::store::{Store, StoreError};
use crate::engine::vaults::VaultsEngine;
use crate::seal::auto::SEAL_WRAPPED_ROOT_KEY_KEY;
use crate::seal::{
    self, SealConfig, SealError, SealManager, SealStatus, SealType, StoredSeal, KEYRING_KEY,
    ROOT_KEY_KEY, SEAL_CONFIG_KEY,
};

pub mod custody;
pub mod dr;
pub mod migrate;
pub mod restore;

pub use custody::{InitDelivery, RootTokenInfo};

const TOKEN_PREFIX: &str = "sys/token/";

/// Why an operator action failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// `init` on an initialised cluster.
    #[error("the vault is already initialized")]
    AlreadyInitialized,
    /// The seal records have not reached this node (or init never ran).
    #[error("the vault is not initialized (or its seal configuration has not replicated to this node yet)")]
    NotInitialized,
    /// Bad arguments.
    #[error("{0}")]
    BadRequest(String),
    /// The seal refused (wrong shares, malformed share, …).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// Storage or cluster failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The authorisation presented was refused (a wrong DR operation token).
    #[error("{0}")]
    Forbidden(String),
}

/// What `init` hands out, exactly once.
pub struct InitResult {
    /// Unseal key shares, one per custodian (armored OpenPGP messages when
    /// keys were given).
    pub shares: Vec<Zeroizing<String>>,
    /// The initial root token (an armored OpenPGP message when a key was given).
    pub root_token: Zeroizing<String>,
    /// Fingerprints of the keys the shares are encrypted to, in order.
    pub pgp_fingerprints: Vec<String>,
    /// Fingerprint of the key the root token is encrypted to.
    pub root_token_pgp_fingerprint: Option<String>,
}

/// A stored token record (the token itself is only kept as a SHA-256 hash).
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Policy name; `root` grants everything.
    pub policy: String,
    /// Unix seconds.
    pub created: u64,
    /// How the token came to be: `init` (the initial root token; records
    /// written before this field existed are that one) or `generate-root`.
    #[serde(default = "origin_init")]
    pub origin: String,
}

fn origin_init() -> String {
    custody::ORIGIN_INIT.to_string()
}

/// Health as load balancers and operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// The cluster has been initialised.
    pub initialized: bool,
    /// This node is sealed.
    pub sealed: bool,
    /// This node is not the leader.
    pub standby: bool,
    /// This node's id.
    pub node_id: u64,
    /// The current leader, if known.
    pub leader_id: Option<u64>,
    /// Current Raft term.
    pub term: u64,
    /// Highest log index known committed.
    pub commit_index: u64,
    /// Highest log index applied on this node.
    pub applied_index: u64,
    /// Last log index covered by this node's snapshot (0: none yet).
    pub snapshot_index: u64,
    /// Coffer version.
    pub version: &'static str,
    /// The cluster this node belongs to, once known.
    pub cluster_id: Option<String>,
    /// Why this node is unfit to serve (empty when healthy): a stopped Raft
    /// core, failed storage, no leader contact, lag beyond the limit.
    pub problems: Vec<String>,
    /// How the cluster unseals (`shamir` or `pkcs11`; `None` before init).
    pub seal_type: Option<SealType>,
    /// Why this sealed node has not unsealed itself from its device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal_reason: Option<String>,
    /// The automated snapshots this node took as leader (absent: none ran
    /// here). A failure shows here, not as a problem: the node still serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<crate::cluster::snapshot_file::AutoSnapshotStatus>,
}

/// Operator actions against this node.
pub struct Operator {
    node: Arc<ClusterNode>,
    seal: Arc<SealManager>,
    store: Arc<dyn Store>,
    vaults: Arc<VaultsEngine>,
    /// Every engine, for what they clear when the node seals.
    engines: Engines,
    default_vault: String,
    /// Rekey and generate-root ceremonies in progress on this node.
    ceremonies: custody::Ceremonies,
    /// `[seal] type` of this node: how `init` seals a new cluster.
    seal_type: SealType,
    /// The seal key in this node's device (`[seal] type = "pkcs11"`).
    seal_device: Option<Arc<dyn SealDevice>>,
    /// An operator sealed this node: it does not unseal itself again
    /// until it restarts.
    sealed_on_purpose: AtomicBool,
}

impl Operator {
    /// Wires the operator to the node's cluster, seal and engines.
    pub fn new(
        node: Arc<ClusterNode>,
        seal: Arc<SealManager>,
        store: Arc<dyn Store>,
        vaults: Arc<VaultsEngine>,
        engines: Engines,
        default_vault: String,
    ) -> Self {
        Self {
            node,
            seal,
            store,
            vaults,
            engines,
            default_vault,
            ceremonies: custody::Ceremonies::default(),
            seal_type: SealType::Shamir,
            seal_device: None,
            sealed_on_purpose: AtomicBool::new(false),
        }
    }

    /// This node's `[seal]`: its type and, for pkcs11, the device key.
    pub fn with_seal_device(
        mut self,
        seal_type: SealType,
        device: Option<Arc<dyn SealDevice>>,
    ) -> Self {
        self.seal_type = seal_type;
        self.seal_device = device;
        self
    }

    /// The node's Raft handle (membership, status).
    pub fn node(&self) -> &Arc<ClusterNode> {
        &self.node
    }

    /// Whether the seal records are present on this node.
    pub fn is_initialized(&self) -> Result<bool, OperatorError> {
        Ok(self.node.get_raw(SEAL_CONFIG_KEY)?.is_some())
    }

    /// Creates the root key, keyring and unseal shares, replicates the seal
    /// records, unseals this node and creates the default vault. The shares
    /// and the root token come back in clear.
    pub async fn init(&self, shares: u8, threshold: u8) -> Result<InitResult, OperatorError> {
        self.init_delivered(shares, threshold, &InitDelivery::default())
            .await
    }

    /// [`Self::init`], with each share (and the root token) encrypted to its
    /// holder's OpenPGP key when `delivery` names keys. The keys are checked
    /// before anything is created.
    pub async fn init_delivered(
        &self,
        shares: u8,
        threshold: u8,
        delivery: &InitDelivery,
    ) -> Result<InitResult, OperatorError> {
        if shares == 0 || threshold == 0 || threshold > shares {
            return Err(OperatorError::BadRequest(
                "secret_shares and secret_threshold must satisfy 1 <= threshold <= shares <= 255"
                    .into(),
            ));
        }
        let keys = delivery.parse(shares)?;
        self.node.read_fence().await?;
        if self.is_initialized()? {
            return Err(OperatorError::AlreadyInitialized);
        }
        let material = seal::initialize(shares, threshold)?;
        // With the pkcs11 seal the root key is wrapped by the device (and
        // read back) before anything is written; the shares are recovery shares.
        let (material, device_record) = self.seal_init_with_device(material).await?;
        // Encrypt before anything is written: a failure leaves no cluster
        // whose shares nobody received.
        let delivered = keys.deliver(material.shares.clone(), new_token())?;
        let mut txn = init_txn(&material.stored, &material.barrier, &delivered.token)?;
        if let Some(record) = device_record {
            txn.mutations.push(put(SEAL_WRAPPED_ROOT_KEY_KEY, record));
        }
        if !self.propose_raw(txn).await? {
            return Err(OperatorError::AlreadyInitialized);
        }
        self.seal.unseal_with(&material);
        tracing::info!(
            event = "seal.initialized",
            seal_type = material.stored.config.seal_type.as_str(),
            shares,
            threshold,
            pgp = !keys.shares.is_empty(),
            "cluster initialised"
        );
        self.vaults
            .create(&self.default_vault, None)
            .await
            .map_err(|e| {
                OperatorError::BadRequest(format!("creating the default vault failed: {e}"))
            })?;
        Ok(delivered.result)
    }

    /// Proposes a transaction of raw (not barrier-encrypted) seal records
    /// through Raft; whether its comparisons held.
    async fn propose_raw(&self, txn: Txn) -> Result<bool, OperatorError> {
        let request = Request {
            request_id: None,
            time_ms: now_ms(),
            txn,
        };
        Ok(self.node.propose(request).await?.succeeded)
    }

    /// The seal records as replicated to this node.
    fn stored_seal(&self) -> Result<StoredSeal, OperatorError> {
        self.stored_seal_revision().map(|(stored, _)| stored)
    }

    /// The seal records and the revision of the root key record (the
    /// compare-and-swap guard of a rekey).
    fn stored_seal_revision(&self) -> Result<(StoredSeal, u64), OperatorError> {
        let config = self
            .node
            .get_raw(SEAL_CONFIG_KEY)?
            .ok_or(OperatorError::NotInitialized)?;
        let config = SealConfig::from_json(&config.value)?;
        let root = self.node.get_raw(ROOT_KEY_KEY)?;
        let keyring = self.node.get_raw(KEYRING_KEY)?;
        match (root, keyring) {
            (Some(root), Some(keyring)) => Ok((
                StoredSeal {
                    config,
                    root_key_record: root.value,
                    keyring_record: keyring.value,
                },
                root.revision,
            )),
            _ => Err(OperatorError::NotInitialized),
        }
    }

    /// Adds a new keyring term through Raft: new writes use it, old terms
    /// stay for decryption. Other nodes load it when they first meet it.
    pub async fn rotate_keyring(&self) -> Result<u32, OperatorError> {
        self.node.read_fence().await?;
        let current = self
            .node
            .get_raw(KEYRING_KEY)?
            .ok_or(OperatorError::NotInitialized)?;
        self.seal.reload_keyring(&current.value)?;
        let (record, term) = self.seal.rotate_keyring()?;
        let txn = Txn {
            compare: vec![Compare::Revision {
                key: KEYRING_KEY.to_vec(),
                revision: current.revision,
            }],
            mutations: vec![put(KEYRING_KEY, record.clone())],
            result: Vec::new(),
        };
        if !self.propose_raw(txn).await? {
            return Err(OperatorError::BadRequest(
                "a concurrent keyring rotation won; retry".into(),
            ));
        }
        self.seal.reload_keyring(&record)?;
        Ok(term)
    }

    /// Seal status of this node.
    pub fn seal_status(&self) -> Result<SealStatus, OperatorError> {
        let config = match self.stored_seal() {
            Ok(stored) => Some(stored.config),
            Err(OperatorError::NotInitialized) => None,
            Err(e) => return Err(e),
        };
        Ok(self.seal.status(config.as_ref()))
    }

    /// Adds one unseal share to this node's progress.
    pub fn unseal(&self, share: &str) -> Result<SealStatus, OperatorError> {
        let stored = self.stored_seal()?;
        if !self.seal.is_sealed() {
            return Ok(self.seal.status(Some(&stored.config)));
        }
        Ok(self.seal.submit_share(share, &stored)?)
    }

    /// Discards this node's unseal progress.
    pub fn unseal_reset(&self) -> Result<SealStatus, OperatorError> {
        self.seal.reset();
        self.seal_status()
    }

    /// Seals this node: key material is wiped from memory. A node with the
    /// pkcs11 seal stays sealed until it restarts.
    pub fn seal(&self) {
        self.sealed_on_purpose.store(true, Ordering::SeqCst);
        // Seal first: from here on store reads fail, so nothing repopulates
        // the key cache (see `ParsedKeyCache::ticket`).
        self.seal.seal();
        self.engines.clear_on_seal();
        if matches!(self.stored_seal(), Ok(ref st) if st.config.seal_type == SealType::Pkcs11) {
            self.seal.set_sealed_reason(Some(
                "sealed by an operator: this pkcs11-sealed node unseals itself again when it \
                 restarts"
                    .into(),
            ));
        }
    }

    /// Whether this node is sealed.
    pub fn is_sealed(&self) -> bool {
        self.seal.is_sealed()
    }

    /// Health of this node.
    pub fn health(&self) -> Result<Health, OperatorError> {
        let status: RaftStatus = self.node.status();
        let seal = self.seal_status()?;
        let initialized = self.is_initialized()?;
        Ok(Health {
            seal_type: initialized.then_some(seal.seal_type),
            seal_reason: seal.reason,
            initialized,
            sealed: self.seal.is_sealed(),
            standby: !status.is_leader,
            node_id: status.node_id,
            leader_id: status.leader_id,
            term: status.term,
            commit_index: status.commit_index,
            applied_index: status.applied_index,
            snapshot_index: status.snapshot_index,
            version: env!("CARGO_PKG_VERSION"),
            cluster_id: self.node.cluster_id(),
            problems: self.node.problems(),
            snapshots: Some(self.node.auto_snapshot_status()).filter(|s| *s != Default::default()),
        })
    }

    /// Checks a bearer token against the replicated token records.
    pub fn verify_token(&self, token: &str) -> Result<Option<TokenRecord>, OperatorError> {
        let key = token_key(token);
        let Some(entry) = self.store.get(key.as_bytes())? else {
            return Ok(None);
        };
        let record: TokenRecord = serde_json::from_slice(&entry.value)
            .map_err(|e| StoreError::Corrupt(format!("token record: {e}")))?;
        Ok(Some(record))
    }
}

/// The transaction that writes the seal records and the root token, only if
/// no other init won the race.
fn init_txn(
    stored: &StoredSeal,
    barrier: &seal::Barrier,
    root_token: &str,
) -> Result<Txn, OperatorError> {
    let config = stored.config.to_json()?;
    let record = TokenRecord {
        policy: "root".into(),
        created: now_ms() / 1000,
        origin: origin_init(),
    };
    let record = serde_json::to_vec(&record)
        .map_err(|e| StoreError::Internal(format!("encoding token record: {e}")))?;
    let token_key = token_key(root_token).into_bytes();
    let token_value = barrier
        .encrypt(&token_key, &record)
        .map_err(|e| StoreError::TooLarge(e.to_string()))?;
    Ok(Txn {
        compare: vec![Compare::Revision {
            key: SEAL_CONFIG_KEY.to_vec(),
            revision: 0,
        }],
        mutations: vec![
            put(SEAL_CONFIG_KEY, config),
            put(ROOT_KEY_KEY, stored.root_key_record.clone()),
            put(KEYRING_KEY, stored.keyring_record.clone()),
            Mutation::Put {
                key: token_key,
                value: token_value,
            },
        ],
        result: Vec::new(),
    })
}

fn put(key: &[u8], value: Vec<u8>) -> Mutation {
    Mutation::Put {
        key: key.to_vec(),
        value,
    }
}

/// Storage key of a token: only its hash is ever stored.
fn token_key(token: &str) -> String {
    format!(
        "{TOKEN_PREFIX}{}",
        hex::encode(Sha256::digest(token.as_bytes()))
    )
}

fn new_token() -> Zeroizing<String> {
    let bytes: [u8; 32] = rand::random();
    Zeroizing::new(format!(
        "cft.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}
