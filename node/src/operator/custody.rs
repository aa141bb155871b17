//! Custody ceremonies on this node: shares delivered to OpenPGP keys at
//! init, rekey (with verification), generate-root and root token
//! revocation. The ceremonies' progress is in memory on the node the
//! custodians talk to; what they produce (new seal records, token records)
//! is written through Raft, so it holds on every node.
//!
//! Every step is logged as an `event` without any share, token or key.

use std::sync::{Mutex, MutexGuard, PoisonError};

use raft_store::{Compare, Mutation, Txn};
use serde::Serialize;
use zeroize::Zeroizing;

use super::{
    new_token, now_ms, put, token_key, InitResult, Operator, OperatorError, TokenRecord,
    TOKEN_PREFIX,
};
use crate::engine::store::StoreError;
use crate::seal::generate_root::{
    parse_otp, Delivery, GenerateRoot, GenerateRootStatus, GenerateRootStep,
};
use crate::seal::pgp::{parse_keys, CustodianKey};
use crate::seal::rekey::{
    encrypt_shares, NewShares, Rekey, RekeyCommit, RekeyRequest, RekeyStatus, RekeyStep,
};
use crate::seal::{SealConfig, SealError, ROOT_KEY_KEY, SEAL_CONFIG_KEY};

/// `origin` of the initial root token's record.
pub const ORIGIN_INIT: &str = "init";
/// `origin` of a token made by generate-root.
pub const ORIGIN_GENERATE_ROOT: &str = "generate-root";

/// OpenPGP keys for `init`: one per share, in share order, and one for the
/// root token. Empty: everything in clear (the operator distributes it).
#[derive(Debug, Clone, Default)]
pub struct InitDelivery {
    /// Armored (or base64 binary) public keys, one per share.
    pub pgp_keys: Vec<String>,
    /// Public key for the initial root token.
    pub root_token_pgp_key: Option<String>,
}

pub(super) struct ParsedDelivery {
    pub(super) shares: Vec<CustodianKey>,
    token: Option<CustodianKey>,
}

pub(super) struct Delivered {
    /// The root token in clear, for its record; never returned when a key was given.
    pub(super) token: Zeroizing<String>,
    pub(super) result: InitResult,
}

impl InitDelivery {
    pub(super) fn parse(&self, shares: u8) -> Result<ParsedDelivery, OperatorError> {
        let share_keys = if self.pgp_keys.is_empty() {
            Vec::new()
        } else {
            parse_keys(&self.pgp_keys, shares).map_err(OperatorError::BadRequest)?
        };
        let token = self
            .root_token_pgp_key
            .as_deref()
            .map(CustodianKey::parse)
            .transpose()
            .map_err(|e| OperatorError::BadRequest(format!("root token key: {e}")))?;
        Ok(ParsedDelivery {
            shares: share_keys,
            token,
        })
    }
}

impl ParsedDelivery {
    pub(super) fn deliver(
        &self,
        shares: Vec<Zeroizing<String>>,
        token: Zeroizing<String>,
    ) -> Result<Delivered, OperatorError> {
        let shares = encrypt_shares(shares, &self.shares)?;
        let root_token = match &self.token {
            Some(key) => Zeroizing::new(
                key.encrypt(token.as_bytes())
                    .map_err(|e| OperatorError::BadRequest(e.to_string()))?,
            ),
            None => token.clone(),
        };
        Ok(Delivered {
            token,
            result: InitResult {
                shares,
                root_token,
                pgp_fingerprints: fingerprints(&self.shares),
                root_token_pgp_fingerprint: self.token.as_ref().map(|k| k.fingerprint().into()),
            },
        })
    }
}

fn fingerprints(keys: &[CustodianKey]) -> Vec<String> {
    keys.iter().map(|k| k.fingerprint().to_string()).collect()
}

/// The ceremonies in progress on this node (at most one of each kind).
#[derive(Default)]
pub(super) struct Ceremonies {
    rekey: Mutex<Option<Rekey>>,
    generate_root: Mutex<Option<GenerateRoot>>,
    /// A seal migration (see `operator::migrate`).
    pub(super) migration: Mutex<Option<crate::seal::migrate::Migration>>,
    /// Digests of the DR operation tokens generated on this node (see
    /// `operator::dr`); kept in memory only, used once.
    pub(super) dr_tokens: Mutex<Vec<[u8; 32]>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single assignment or a method that leaves the
    // ceremony consistent, so a poisoned lock is usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Answer to one rekey submission.
pub struct RekeyAnswer {
    /// Progress after the submission.
    pub status: RekeyStatus,
    /// The new shares are active (written through Raft).
    pub complete: bool,
    /// The new shares, handed out once (empty until the quorum is reached).
    pub keys: Vec<Zeroizing<String>>,
}

/// Answer to one generate-root submission.
pub struct GenerateRootAnswer {
    /// Progress after the submission.
    pub status: GenerateRootStatus,
    /// The new token, OTP-encoded or PGP-encrypted, once the quorum is reached.
    pub encoded_token: Option<String>,
}

/// A root token as listed to operators: its accessor (the hash under which
/// it is stored; it cannot be turned back into the token), never the token.
#[derive(Debug, Clone, Serialize)]
pub struct RootTokenInfo {
    /// SHA-256 hex of the token.
    pub accessor: String,
    /// Policy (`root`).
    pub policy: String,
    /// `init` or `generate-root`.
    pub origin: String,
    /// Unix seconds.
    pub created: u64,
}

impl Operator {
    /// Starts a rekey on this node.
    pub fn rekey_init(
        &self,
        config: SealConfig,
        pgp_keys: &[String],
        verify: bool,
    ) -> Result<RekeyStatus, OperatorError> {
        let current = self.stored_seal()?;
        let pgp_keys = if pgp_keys.is_empty() {
            Vec::new()
        } else {
            parse_keys(pgp_keys, config.shares).map_err(OperatorError::BadRequest)?
        };
        let mut slot = lock(&self.ceremonies.rekey);
        if slot.is_some() {
            return Err(OperatorError::BadRequest(
                "a rekey is already in progress on this node; cancel it first".into(),
            ));
        }
        let rekey = Rekey::new(RekeyRequest {
            config,
            pgp_keys,
            verify,
        })?;
        let status = rekey.status(&current.config);
        tracing::info!(
            event = "rekey.started",
            shares = config.shares,
            threshold = config.threshold,
            verify,
            pgp = !status.pgp_fingerprints.is_empty(),
            "rekey started"
        );
        *slot = Some(rekey);
        Ok(status)
    }

    /// Progress of the rekey on this node.
    pub fn rekey_status(&self) -> Result<RekeyStatus, OperatorError> {
        let current = self.stored_seal()?;
        Ok(lock(&self.ceremonies.rekey)
            .as_ref()
            .map(|r| r.status(&current.config))
            .unwrap_or_default())
    }

    /// Cancels the rekey in progress (the nonce proves the caller knows which).
    pub fn rekey_cancel(&self, nonce: &str) -> Result<(), OperatorError> {
        cancel(&self.ceremonies.rekey, nonce, Rekey::nonce, "rekey")
    }

    /// Submits one current share to the rekey. Once the quorum is in, the
    /// new shares are returned (and, without verification, activated).
    pub async fn rekey_update(
        &self,
        nonce: &str,
        share: &str,
    ) -> Result<RekeyAnswer, OperatorError> {
        self.node.read_fence().await?;
        let (stored, revision) = self.stored_seal_revision()?;
        let step = {
            let mut slot = lock(&self.ceremonies.rekey);
            let rekey = slot
                .as_mut()
                .ok_or_else(|| OperatorError::BadRequest("no rekey is in progress".into()))?;
            let step = rekey.submit(nonce, share, &stored, revision);
            if let Err(SealError::WrongShares) = &step {
                tracing::warn!(event = "rekey.wrong_shares", "rekey: shares refused");
            }
            let step = step?;
            if matches!(step, RekeyStep::Done(..)) {
                *slot = None;
            }
            step
        };
        match step {
            RekeyStep::Progress(status) => Ok(progress(status)),
            RekeyStep::Done(commit, shares) => {
                self.commit_rekey(&commit).await?;
                Ok(issued(shares, &commit.stored.config, true))
            }
            RekeyStep::AwaitVerification(shares) => {
                tracing::info!(
                    event = "rekey.shares_issued",
                    "rekey: new shares issued, awaiting verification; the old shares stay valid"
                );
                let status = self.rekey_status()?;
                Ok(RekeyAnswer {
                    status,
                    complete: false,
                    keys: shares.keys,
                })
            }
            RekeyStep::Verified(_) => Err(OperatorError::BadRequest(
                "unexpected verification step".into(),
            )),
        }
    }

    /// Submits one *new* share during verification; the new shares become
    /// the only valid ones once a quorum of them came back.
    pub async fn rekey_verify(
        &self,
        nonce: &str,
        share: &str,
    ) -> Result<RekeyAnswer, OperatorError> {
        self.node.read_fence().await?;
        let step = {
            let mut slot = lock(&self.ceremonies.rekey);
            let rekey = slot
                .as_mut()
                .ok_or_else(|| OperatorError::BadRequest("no rekey is in progress".into()))?;
            let step = rekey.verify(nonce, share)?;
            if matches!(step, RekeyStep::Verified(_)) {
                *slot = None;
            }
            step
        };
        match step {
            RekeyStep::Progress(status) => Ok(progress(status)),
            RekeyStep::Verified(commit) => {
                self.commit_rekey(&commit).await?;
                Ok(RekeyAnswer {
                    status: RekeyStatus {
                        n: commit.stored.config.shares,
                        t: commit.stored.config.threshold,
                        verification_required: true,
                        ..RekeyStatus::default()
                    },
                    complete: true,
                    keys: Vec::new(),
                })
            }
            _ => Err(OperatorError::BadRequest(
                "unexpected rekey step during verification".into(),
            )),
        }
    }

    /// Writes the new seal configuration and root key record, only if no
    /// other rekey changed the root key record since the quorum opened it.
    async fn commit_rekey(&self, commit: &RekeyCommit) -> Result<(), OperatorError> {
        let txn = Txn {
            compare: vec![Compare::Revision {
                key: ROOT_KEY_KEY.to_vec(),
                revision: commit.root_revision,
            }],
            mutations: vec![
                put(SEAL_CONFIG_KEY, commit.stored.config.to_json()?),
                put(ROOT_KEY_KEY, commit.stored.root_key_record.clone()),
            ],
            result: Vec::new(),
        };
        if !self.propose_raw(txn).await? {
            return Err(OperatorError::BadRequest(
                "the seal changed during the rekey (another rekey finished first); start again"
                    .into(),
            ));
        }
        tracing::info!(
            event = "rekey.completed",
            shares = commit.stored.config.shares,
            threshold = commit.stored.config.threshold,
            "rekey completed: the new shares are active, the old ones no longer unseal"
        );
        Ok(())
    }

    /// Starts generate-root with an OTP (base64url) or one OpenPGP key.
    pub fn generate_root_init(
        &self,
        otp: Option<&str>,
        pgp_key: Option<&str>,
        policy: &str,
    ) -> Result<GenerateRootStatus, OperatorError> {
        let stored = self.stored_seal()?;
        let delivery = match (otp, pgp_key) {
            (Some(otp), None) => Delivery::Otp(parse_otp(otp)?),
            (None, Some(key)) => Delivery::Pgp(Box::new(
                CustodianKey::parse(key).map_err(|e| OperatorError::BadRequest(e.to_string()))?,
            )),
            _ => {
                return Err(OperatorError::BadRequest(
                    "give exactly one of \"otp\" and \"pgp_key\"".into(),
                ))
            }
        };
        let mut slot = lock(&self.ceremonies.generate_root);
        if slot.is_some() {
            return Err(OperatorError::BadRequest(
                "a generate-root is already in progress on this node; cancel it first".into(),
            ));
        }
        let ceremony = GenerateRoot::new(delivery, policy);
        let status = ceremony.status(&stored);
        tracing::info!(
            event = "generate_root.started",
            policy,
            pgp = status.pgp_fingerprint.is_some(),
            "generate-root started"
        );
        *slot = Some(ceremony);
        Ok(status)
    }

    /// Progress of generate-root on this node.
    pub fn generate_root_status(&self) -> Result<GenerateRootStatus, OperatorError> {
        let stored = self.stored_seal()?;
        Ok(lock(&self.ceremonies.generate_root)
            .as_ref()
            .map(|g| g.status(&stored))
            .unwrap_or_default())
    }

    /// Cancels generate-root (the nonce proves which).
    pub fn generate_root_cancel(&self, nonce: &str) -> Result<(), OperatorError> {
        cancel(
            &self.ceremonies.generate_root,
            nonce,
            GenerateRoot::nonce,
            "generate-root",
        )
    }

    /// Submits one unseal share; at the quorum a new token is created
    /// (replicated) and returned encoded.
    pub async fn generate_root_update(
        &self,
        nonce: &str,
        share: &str,
    ) -> Result<GenerateRootAnswer, OperatorError> {
        // A DR operation token is made where the primary may be gone: from
        // this node's own replicated seal records, kept on this node only.
        let dr_token = lock(&self.ceremonies.generate_root)
            .as_ref()
            .is_some_and(|g| g.policy() == super::dr::DR_OPERATION_POLICY);
        if !dr_token {
            self.node.read_fence().await?;
        }
        let stored = self.stored_seal()?;
        let (ceremony, status) = {
            let mut slot = lock(&self.ceremonies.generate_root);
            let g = slot.as_mut().ok_or_else(|| {
                OperatorError::BadRequest("no generate-root is in progress".into())
            })?;
            match g.submit(nonce, share, &stored) {
                Ok(GenerateRootStep::Progress(status)) => {
                    return Ok(GenerateRootAnswer {
                        status,
                        encoded_token: None,
                    })
                }
                Ok(GenerateRootStep::Authorised) => {
                    let status = g.status(&stored);
                    (slot.take(), status)
                }
                Err(e) => {
                    if e == SealError::WrongShares {
                        tracing::warn!(
                            event = "generate_root.wrong_shares",
                            "generate-root: shares refused"
                        );
                    }
                    return Err(e.into());
                }
            }
        };
        let Some(ceremony) = ceremony else {
            return Err(OperatorError::BadRequest(
                "no generate-root is in progress".into(),
            ));
        };
        let token = new_token();
        let encoded = ceremony.encode(&token)?;
        if ceremony.policy() == super::dr::DR_OPERATION_POLICY {
            self.keep_dr_token(&token);
            return Ok(GenerateRootAnswer {
                status: GenerateRootStatus {
                    started: false,
                    ..status
                },
                encoded_token: Some(encoded),
            });
        }
        let record = TokenRecord {
            policy: ceremony.policy().to_string(),
            created: now_ms() / 1000,
            origin: ORIGIN_GENERATE_ROOT.to_string(),
        };
        let value = serde_json::to_vec(&record)
            .map_err(|e| StoreError::Internal(format!("encoding token record: {e}")))?;
        let txn = Txn {
            compare: Vec::new(),
            mutations: vec![Mutation::Put {
                key: token_key(&token).into_bytes(),
                value,
            }],
            result: Vec::new(),
        };
        self.store.commit(None, txn).await?;
        tracing::info!(
            event = "generate_root.completed",
            policy = ceremony.policy(),
            accessor = %accessor_of(&token_key(&token)),
            "generate-root completed: a new token was created"
        );
        Ok(GenerateRootAnswer {
            status: GenerateRootStatus {
                started: false,
                ..status
            },
            encoded_token: Some(encoded),
        })
    }

    /// Every root token's record (accessor, origin, creation), never a token.
    pub fn root_tokens(&self) -> Result<Vec<RootTokenInfo>, OperatorError> {
        let entries = self.store.scan(TOKEN_PREFIX.as_bytes(), None, 10_000)?;
        let mut out = Vec::new();
        for (key, entry) in entries {
            let record: TokenRecord = serde_json::from_slice(&entry.value)
                .map_err(|e| StoreError::Corrupt(format!("token record: {e}")))?;
            if record.policy != "root" {
                continue;
            }
            out.push(RootTokenInfo {
                accessor: accessor_of(&String::from_utf8_lossy(&key)),
                policy: record.policy,
                origin: record.origin,
                created: record.created,
            });
        }
        Ok(out)
    }

    /// Revokes root tokens: the one with `accessor`, or (without one) the
    /// initial root token. Replicated; the token is refused on every node
    /// once applied. Returns the accessors revoked.
    pub async fn revoke_root(&self, accessor: Option<&str>) -> Result<Vec<String>, OperatorError> {
        self.store.read_fence().await?;
        let targets: Vec<String> = self
            .root_tokens()?
            .into_iter()
            .filter(|t| match accessor {
                Some(a) => t.accessor.eq_ignore_ascii_case(a.trim()),
                None => t.origin == ORIGIN_INIT,
            })
            .map(|t| t.accessor)
            .collect();
        if targets.is_empty() {
            return Err(OperatorError::BadRequest(match accessor {
                Some(_) => "no root token has this accessor".into(),
                None => "the initial root token is already revoked".into(),
            }));
        }
        let txn = Txn {
            compare: Vec::new(),
            mutations: targets
                .iter()
                .map(|a| Mutation::Delete {
                    key: format!("{TOKEN_PREFIX}{a}").into_bytes(),
                })
                .collect(),
            result: Vec::new(),
        };
        self.store.commit(None, txn).await?;
        for a in &targets {
            tracing::info!(event = "root_token.revoked", accessor = %a, "root token revoked");
        }
        Ok(targets)
    }
}

/// Ends the ceremony in `slot` if `nonce` is its nonce.
pub(super) fn cancel<T>(
    slot: &Mutex<Option<T>>,
    nonce: &str,
    nonce_of: fn(&T) -> &str,
    what: &str,
) -> Result<(), OperatorError> {
    let mut slot = lock(slot);
    match slot.as_ref() {
        Some(c) if nonce_of(c) == nonce.trim() => {
            *slot = None;
            tracing::info!(
                event = "ceremony.cancelled",
                ceremony = what,
                "{what} cancelled"
            );
            Ok(())
        }
        Some(_) => Err(OperatorError::BadRequest(format!(
            "the nonce does not match the {what} in progress"
        ))),
        None => Err(OperatorError::BadRequest(format!(
            "no {what} is in progress"
        ))),
    }
}

fn accessor_of(key: &str) -> String {
    key.strip_prefix(TOKEN_PREFIX).unwrap_or(key).to_string()
}

fn progress(status: RekeyStatus) -> RekeyAnswer {
    RekeyAnswer {
        status,
        complete: false,
        keys: Vec::new(),
    }
}

fn issued(shares: NewShares, config: &SealConfig, complete: bool) -> RekeyAnswer {
    RekeyAnswer {
        status: RekeyStatus {
            n: config.shares,
            t: config.threshold,
            pgp_fingerprints: shares.pgp_fingerprints,
            verification_nonce: shares.verification_nonce,
            ..RekeyStatus::default()
        },
        complete,
        keys: shares.keys,
    }
}
