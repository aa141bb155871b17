//! Compare-and-set commits with bounded retry and request-id deduplication.
//!
//! Every attempt of one logical write reuses the caller's request id, so a
//! write that was applied but whose answer was lost is replayed, not applied
//! twice. If the store remembers *failed* attempts under an id too (it answers
//! a later attempt with `deduplicated && !succeeded`), the loop moves on to a
//! derived id (`{id}#1`, `{id}#2`, …). The sequence is deterministic, so a
//! client retry walks the same ids and finds the one that applied.

use super::error::EngineError;
use super::store::{Compare, Outcome, Store, Txn};

/// How many times a write re-reads and retries after losing a race.
pub const MAX_ATTEMPTS: usize = 16;

/// The request ids one logical write may use, in order.
#[derive(Debug)]
pub struct RequestIds<'a> {
    base: Option<&'a str>,
    generation: u32,
}

impl<'a> RequestIds<'a> {
    /// Ids derived from the caller's request id (none: no deduplication).
    pub fn new(base: Option<&'a str>) -> Self {
        Self {
            base,
            generation: 0,
        }
    }

    /// The id to use for the next commit.
    pub fn current(&self) -> Option<String> {
        self.base.map(|b| match self.generation {
            0 => b.to_owned(),
            g => format!("{b}#{g}"),
        })
    }

    /// Records a failed outcome; a remembered failure retires the current id.
    pub fn after_failure(&mut self, outcome: &Outcome) {
        if outcome.deduplicated && !outcome.succeeded {
            self.generation += 1;
        }
    }
}

/// Commits `txn`. `Ok(Some(outcome))` when it (or an earlier attempt under the
/// same id) applied, `Ok(None)` when a comparison failed and the caller must
/// re-read and retry.
pub async fn try_commit(
    store: &dyn Store,
    ids: &mut RequestIds<'_>,
    txn: Txn,
) -> Result<Option<Outcome>, EngineError> {
    let outcome = store.commit(ids.current().as_deref(), txn).await?;
    if outcome.succeeded {
        return Ok(Some(outcome));
    }
    ids.after_failure(&outcome);
    Ok(None)
}

/// When planning a write failed on the current state (e.g. "not found"), the
/// write may already have been applied by an earlier attempt with the same
/// request id whose answer was lost. Asks the store with a transaction that
/// can never apply: a remembered success is returned, otherwise `None`.
pub async fn replay_if_applied(
    store: &dyn Store,
    request_id: Option<&str>,
) -> Result<Option<Outcome>, EngineError> {
    let mut ids = RequestIds::new(request_id);
    if request_id.is_none() {
        return Ok(None);
    }
    for _ in 0..MAX_ATTEMPTS {
        let never = Txn {
            compare: vec![Compare::Revision {
                key: b"\0coffer/never".to_vec(),
                revision: u64::MAX,
            }],
            mutations: Vec::new(),
            result: Vec::new(),
        };
        let outcome = store.commit(ids.current().as_deref(), never).await?;
        if outcome.succeeded && outcome.deduplicated {
            return Ok(Some(outcome));
        }
        if !outcome.deduplicated {
            return Ok(None);
        }
        ids.after_failure(&outcome);
    }
    Ok(None)
}

/// Serialises a record or transaction result.
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value).map_err(|e| json_error(&e))
}

/// Parses a stored record or transaction result.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, EngineError> {
    serde_json::from_slice(bytes).map_err(|e| json_error(&e))
}

/// serde_json messages may quote the offending value (a secret); keep only
/// the category and position.
fn json_error(e: &serde_json::Error) -> EngineError {
    EngineError::Corrupt(format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    ))
}
