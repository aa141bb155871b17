//! Failed sign-in accounting with exponential backoff, per principal.
//!
//! After [`FREE_FAILURES`] consecutive failures every further failure locks
//! the principal for twice as long as the previous one (30 s, 60 s, …, at
//! most 15 min). A success clears the record. The record lives beside the
//! principal (`idn/lock/{object_id}`) so that counting failures never races
//! with edits of the principal itself; it is replicated, so a lockout holds
//! on every node.

use serde::{Deserialize, Serialize};

use super::principals::Kind;
use super::{put, rev};
use super::{IdentityEngine, IdentityError};
use crate::cas::{decode, encode, write, Plan};
use crate::store::{Mutation, Txn};

/// Failures allowed before the first lockout.
pub const FREE_FAILURES: u32 = 5;
/// First lockout, seconds.
const BASE_LOCK_SECS: u64 = 30;
/// Longest lockout, seconds.
const MAX_LOCK_SECS: u64 = 15 * 60;

/// Consecutive failures of one principal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    /// Failures since the last success.
    pub failures: u32,
    /// Refused until this Unix second (0: not locked).
    pub locked_until: u64,
}

impl LockState {
    /// Lock duration after `failures` consecutive failures.
    fn lock_secs(failures: u32) -> u64 {
        if failures < FREE_FAILURES {
            return 0;
        }
        let doublings = (failures - FREE_FAILURES).min(16);
        (BASE_LOCK_SECS << doublings).min(MAX_LOCK_SECS)
    }
}

/// `idn/lock/{object_id}`.
pub(crate) fn lock_key(object_id: &str) -> Vec<u8> {
    format!("idn/lock/{object_id}").into_bytes()
}

impl IdentityEngine {
    /// The principal's lockout state from local state.
    pub fn lock_state(&self, object_id: &str) -> Result<LockState, IdentityError> {
        match self.store.get(&lock_key(object_id))? {
            Some(e) => Ok(decode(&e.value)?),
            None => Ok(LockState::default()),
        }
    }

    /// `LockedOut` while the principal is locked.
    pub fn check_not_locked(&self, object_id: &str) -> Result<(), IdentityError> {
        let state = self.lock_state(object_id)?;
        if state.locked_until > self.now() {
            return Err(IdentityError::LockedOut {
                until: state.locked_until,
            });
        }
        Ok(())
    }

    /// Counts one failure (and locks when past the free ones).
    pub async fn record_failure(&self, object_id: &str) -> Result<LockState, IdentityError> {
        let key = lock_key(object_id);
        let state: LockState = write(self.store.as_ref(), None, || {
            let (mut state, revision) = match self.store.get(&key)? {
                Some(e) => (decode::<LockState>(&e.value)?, e.revision),
                None => (LockState::default(), 0),
            };
            state.failures = state.failures.saturating_add(1);
            let secs = LockState::lock_secs(state.failures);
            if secs > 0 {
                state.locked_until = self.now() + secs;
            }
            let bytes = encode(&state)?;
            Ok(Plan::Commit(Txn {
                compare: vec![rev(key.clone(), revision)],
                mutations: vec![put(key.clone(), bytes.clone())],
                result: bytes,
            }))
        })
        .await?;
        if state.locked_until > 0 {
            tracing::warn!(
                object_id,
                failures = state.failures,
                "sign-in failures: principal locked out"
            );
        }
        Ok(state)
    }

    /// Clears the failure count after a success (writes only when there
    /// was one).
    pub async fn record_success(&self, object_id: &str) -> Result<(), IdentityError> {
        let key = lock_key(object_id);
        if self.store.get(&key)?.is_none() {
            return Ok(());
        }
        write::<(), _>(self.store.as_ref(), None, || {
            match self.store.get(&key)? {
                None => Ok(Plan::Answer(())),
                Some(e) => Ok(Plan::Commit(Txn {
                    compare: vec![rev(key.clone(), e.revision)],
                    mutations: vec![Mutation::Delete { key: key.clone() }],
                    result: b"null".to_vec(),
                })),
            }
        })
        .await?;
        Ok(())
    }

    /// Lifts a principal's lockout (operator action, password reset).
    pub async fn clear_lockout(&self, kind: Kind, name_or_id: &str) -> Result<(), IdentityError> {
        let p = self.find(kind, name_or_id).await?;
        self.record_success(&p.object_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::LockState;

    #[test]
    fn backoff_doubles_after_the_free_failures_and_is_capped() {
        assert_eq!(LockState::lock_secs(4), 0);
        assert_eq!(LockState::lock_secs(5), 30);
        assert_eq!(LockState::lock_secs(6), 60);
        assert_eq!(LockState::lock_secs(7), 120);
        assert_eq!(LockState::lock_secs(40), 15 * 60);
    }
}
