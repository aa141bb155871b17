//! Compare-and-set commits with bounded retry and request-id deduplication.
//!
//! Every attempt of one logical write reuses the caller's request id, so a
//! write that was applied but whose answer was lost is replayed, not applied
//! twice. If the store remembers *failed* attempts under an id too (it answers
//! a later attempt with `deduplicated && !succeeded`), the loop moves on to a
//! derived id (`{id}#1`, `{id}#2`, …). The sequence is deterministic, so a
//! client retry walks the same ids and finds the one that applied.
//!
//! Writes are optimistic ([`write`]): the first attempt plans from local
//! state without a read fence, because the compare-and-set is checked at
//! apply time against the latest state, so a plan built from a lagging
//! replica cannot apply. Only a lost comparison, or an answer that would be
//! derived from state alone (not found, deleted, conflict, "already
//! exists"), pays for a fence and a re-plan, so no such answer ever comes
//! from stale state.

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

/// What one attempt of a write decided from the state it read.
#[derive(Debug)]
pub enum Plan<T> {
    /// Apply this compare-and-set; its `result` is the answer.
    Commit(Txn),
    /// Answer without writing (the state already is as asked).
    Answer(T),
    /// Refuse because of the current state; a request whose earlier attempt
    /// (same request id) already applied gets that first outcome instead.
    Refuse(EngineError),
}

/// Runs one logical write: `plan` reads local state and decides; the first
/// plan is made without a read fence. A plan that commits successfully is
/// answered at once (its comparisons held against the latest state). Any
/// other decision (a lost comparison, [`Plan::Answer`], [`Plan::Refuse`] or
/// an error of `plan`) is only trusted once made after a fence: the write
/// fences and plans again first. Storage errors of `plan` return at once.
pub async fn write<T, P>(
    store: &dyn Store,
    request_id: Option<&str>,
    mut plan: P,
) -> Result<T, EngineError>
where
    T: serde::de::DeserializeOwned,
    P: FnMut() -> Result<Plan<T>, EngineError>,
{
    let mut ids = RequestIds::new(request_id);
    let mut fenced = false;
    let mut commits = 0;
    loop {
        let txn = match plan() {
            Err(e @ EngineError::Store(_)) => return Err(e),
            Ok(Plan::Commit(txn)) => txn,
            _ if !fenced => {
                store.read_fence().await?;
                fenced = true;
                continue;
            }
            Ok(Plan::Answer(answer)) => return Ok(answer),
            Ok(Plan::Refuse(err)) => return replay_or(store, request_id, err).await,
            Err(e) => return Err(e),
        };
        if let Some(out) = try_commit(store, &mut ids, txn).await? {
            return decode_result(&out.result);
        }
        commits += 1;
        if commits >= MAX_ATTEMPTS {
            return Err(EngineError::Busy);
        }
        // Lost a comparison: the local view may be behind; catch up first.
        store.read_fence().await?;
        fenced = true;
    }
}

/// `err`, unless an earlier attempt of this request already applied, in
/// which case its first result.
pub async fn replay_or<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    request_id: Option<&str>,
    err: EngineError,
) -> Result<T, EngineError> {
    match replay_if_applied(store, request_id).await? {
        Some(out) => decode_result(&out.result),
        None => Err(err),
    }
}

/// Decodes a transaction result; an empty result reads as JSON `null`.
fn decode_result<T: serde::de::DeserializeOwned>(result: &[u8]) -> Result<T, EngineError> {
    decode(if result.is_empty() { b"null" } else { result })
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
