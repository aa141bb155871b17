//! The pkcs11 seal on this node: sealing a new cluster with the device at
//! init, unsealing from the device, and the seal migration ceremony
//! (Shamir ↔ pkcs11, authorised by a quorum of shares). The device calls
//! block, so they run on the blocking pool.
//!
//! Every step is logged as an `event` without any share or key.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use raft_store::{Compare, Mutation, Txn};

use super::custody::{cancel, lock};
use super::{put, Operator, OperatorError};
use crate::engine::store::StoreError;
use crate::seal::auto::SEAL_WRAPPED_ROOT_KEY_KEY;
use crate::seal::migrate::{Migration, MigrationCommit, MigrationStatus, MigrationStep};
use crate::seal::{InitMaterial, SealError, SealStatus, SealType, ROOT_KEY_KEY, SEAL_CONFIG_KEY};

/// Runs a blocking device call off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, OperatorError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OperatorError::Store(StoreError::Internal(format!("device call: {e}"))))
}

impl Operator {
    /// At init: with `[seal] type = "pkcs11"`, wraps the new root key with
    /// the device (the shares become recovery shares) and returns the
    /// device record to write; with Shamir, nothing.
    pub(super) async fn seal_init_with_device(
        &self,
        mut material: InitMaterial,
    ) -> Result<(InitMaterial, Option<Vec<u8>>), OperatorError> {
        if self.seal_type != SealType::Pkcs11 {
            return Ok((material, None));
        }
        let device = self.seal_device.clone().ok_or_else(no_device)?;
        let (material, record) = blocking(move || {
            let record = material.into_pkcs11(device.as_ref());
            (material, record)
        })
        .await?;
        Ok((material, Some(record?)))
    }

    /// Unseals this node from its device when the replicated seal is of
    /// type pkcs11 and the node is sealed (and not sealed on purpose).
    /// Returns whether the node is unsealed afterwards. A failure is kept
    /// as the reason seal status and health report.
    pub async fn auto_unseal(&self) -> Result<bool, OperatorError> {
        if !self.seal.is_sealed() {
            return Ok(true);
        }
        if self.sealed_on_purpose.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let stored = match self.stored_seal() {
            Ok(stored) => stored,
            Err(OperatorError::NotInitialized) => return Ok(false),
            Err(e) => return Err(e),
        };
        if stored.config.seal_type != SealType::Pkcs11 {
            // E.g. migrated back to Shamir: a device failure is no longer why.
            self.seal.set_sealed_reason(None);
            return Ok(false);
        }
        let Some(device) = self.seal_device.clone() else {
            let reason = "the cluster uses the pkcs11 seal but this node has no [seal] \
                          type = \"pkcs11\" with an [hsm] device configured";
            self.seal.set_sealed_reason(Some(reason.into()));
            return Err(OperatorError::Seal(SealError::Device(reason.into())));
        };
        let record = self
            .node
            .get_raw(SEAL_WRAPPED_ROOT_KEY_KEY)?
            .ok_or_else(|| {
                let reason = "the pkcs11 seal's device record has not reached this node";
                self.seal.set_sealed_reason(Some(reason.into()));
                OperatorError::Seal(SealError::Device(reason.into()))
            })?
            .value;
        let seal = Arc::clone(&self.seal);
        let status: SealStatus =
            blocking(move || seal.auto_unseal(device.as_ref(), &stored, &record)).await??;
        if !status.sealed {
            tracing::info!(
                event = "seal.auto_unsealed",
                "unsealed from the seal device"
            );
        }
        Ok(!status.sealed)
    }

    /// Starts a seal migration to `target` on this node.
    pub fn migrate_init(&self, target: SealType) -> Result<MigrationStatus, OperatorError> {
        let current = self.stored_seal()?;
        if target == SealType::Pkcs11 && self.seal_device.is_none() {
            return Err(no_device());
        }
        let mut slot = lock(&self.ceremonies.migration);
        if slot.is_some() {
            return Err(OperatorError::BadRequest(
                "a seal migration is already in progress on this node; cancel it first".into(),
            ));
        }
        let migration = Migration::new(target, &current.config)?;
        let status = migration.status(&current.config);
        tracing::info!(
            event = "seal_migration.started",
            from = current.config.seal_type.as_str(),
            to = target.as_str(),
            "seal migration started"
        );
        *slot = Some(migration);
        Ok(status)
    }

    /// Progress of the seal migration on this node.
    pub fn migrate_status(&self) -> Result<MigrationStatus, OperatorError> {
        let current = self.stored_seal()?;
        Ok(lock(&self.ceremonies.migration)
            .as_ref()
            .map(|m| m.status(&current.config))
            .unwrap_or_default())
    }

    /// Cancels the seal migration in progress.
    pub fn migrate_cancel(&self, nonce: &str) -> Result<(), OperatorError> {
        cancel(
            &self.ceremonies.migration,
            nonce,
            Migration::nonce,
            "seal migration",
        )
    }

    /// Submits one share (unseal shares to pkcs11, recovery shares back to
    /// Shamir). At the quorum the new seal type is written through Raft;
    /// returns the status and whether the migration completed.
    pub async fn migrate_update(
        &self,
        nonce: &str,
        share: &str,
    ) -> Result<(MigrationStatus, bool), OperatorError> {
        self.node.read_fence().await?;
        let (stored, revision) = self.stored_seal_revision()?;
        // Taken out of the slot while the device works (blocking pool), and
        // put back unless it completed.
        let mut migration = lock(&self.ceremonies.migration)
            .take()
            .ok_or_else(|| OperatorError::BadRequest("no seal migration is in progress".into()))?;
        let device = self.seal_device.clone();
        let nonce = nonce.to_string();
        let share = zeroize::Zeroizing::new(share.to_string());
        let stored_copy = stored.clone();
        let (migration, step) = blocking(move || {
            let step = migration.submit(&nonce, &share, &stored_copy, revision, device.as_deref());
            (migration, step)
        })
        .await?;
        let step = match step {
            Ok(MigrationStep::Done(commit)) => commit,
            Ok(MigrationStep::Progress(status)) => {
                *lock(&self.ceremonies.migration) = Some(migration);
                return Ok((status, false));
            }
            Err(e) => {
                if e == SealError::WrongShares {
                    tracing::warn!(
                        event = "seal_migration.wrong_shares",
                        "seal migration: shares refused"
                    );
                }
                *lock(&self.ceremonies.migration) = Some(migration);
                return Err(e.into());
            }
        };
        self.commit_migration(&step).await?;
        let status = MigrationStatus {
            target: Some(step.config.seal_type),
            required: step.config.threshold,
            ..MigrationStatus::default()
        };
        Ok((status, true))
    }

    /// Writes the new seal type (and the device record, or its removal),
    /// only if the root key record did not change since the quorum opened it.
    async fn commit_migration(&self, commit: &MigrationCommit) -> Result<(), OperatorError> {
        let device = match &commit.device_record {
            Some(record) => put(SEAL_WRAPPED_ROOT_KEY_KEY, record.clone()),
            None => Mutation::Delete {
                key: SEAL_WRAPPED_ROOT_KEY_KEY.to_vec(),
            },
        };
        let txn = Txn {
            compare: vec![Compare::Revision {
                key: ROOT_KEY_KEY.to_vec(),
                revision: commit.root_revision,
            }],
            mutations: vec![
                put(SEAL_CONFIG_KEY, commit.config.to_json()?),
                put(ROOT_KEY_KEY, commit.root_key_record.clone()),
                device,
            ],
            result: Vec::new(),
        };
        if !self.propose_raw(txn).await? {
            return Err(OperatorError::BadRequest(
                "the seal changed during the migration (a rekey or another migration finished \
                 first); start again"
                    .into(),
            ));
        }
        tracing::warn!(
            event = "seal_migration.completed",
            seal_type = commit.config.seal_type.as_str(),
            "seal migrated to {}: {}",
            commit.config.seal_type.as_str(),
            match commit.config.seal_type {
                SealType::Pkcs11 =>
                    "nodes unseal themselves from the device; the shares are now recovery shares",
                SealType::Shamir => "nodes need a quorum of the (former recovery) shares to unseal",
            }
        );
        Ok(())
    }
}

fn no_device() -> OperatorError {
    OperatorError::BadRequest(
        "this node has no seal device: set [seal] type = \"pkcs11\" and an [hsm] section, \
         and restart it"
            .into(),
    )
}
