//! Deterministic application of log entries inside one redb write transaction.

use openraft::{Entry, EntryPayload, LogId, StoredMembership};
use redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::digest::StateSum;
use crate::error::StorageError;
use crate::tables::{
    decode, decode_ref, encode, DEDUP, DEDUP_BY_TIME, KEY_DIGEST, KEY_LAST_APPLIED, KEY_MEMBERSHIP,
    KV, SM_META,
};
use crate::{Compare, Mutation, NodeId, Request, Response, Txn, TypeConfig, Versioned};

/// What is remembered about an applied request id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DedupRecord {
    /// `time_ms` of the entry that first carried the id.
    pub time_ms: u64,
    /// The response that entry produced.
    pub response: Response,
}

/// The tables `apply` touches, opened once per batch, and the running digest
/// of the KV table.
struct Tables<'t> {
    kv: Table<'t, &'static [u8], &'static [u8]>,
    dedup: Table<'t, &'static str, &'static [u8]>,
    by_time: Table<'t, (u64, &'static str), ()>,
    sum: StateSum,
}

/// What applying a batch produced.
pub(crate) struct Applied {
    /// One response per entry.
    pub responses: Vec<Response>,
    /// The KV digest after each entry, by log index.
    pub digests: Vec<(u64, StateSum)>,
    /// The KV digest after the batch (stored in the same transaction).
    pub sum: StateSum,
}

/// Applies `entries` in order on top of a state whose KV digest is `sum`,
/// and records the last applied id, the membership and the new digest.
pub(crate) fn apply_batch(
    txn: &WriteTransaction,
    entries: Vec<Entry<TypeConfig>>,
    dedup_window_ms: u64,
    sum: StateSum,
) -> Result<Applied, StorageError> {
    let mut t = Tables {
        kv: txn.open_table(KV)?,
        dedup: txn.open_table(DEDUP)?,
        by_time: txn.open_table(DEDUP_BY_TIME)?,
        sum,
    };
    let mut meta = txn.open_table(SM_META)?;
    let mut last: Option<LogId<NodeId>> = None;
    let mut responses = Vec::with_capacity(entries.len());
    let mut digests = Vec::with_capacity(entries.len());
    for entry in entries {
        let index = entry.log_id.index;
        let response = match entry.payload {
            EntryPayload::Normal(req) => apply_request(&mut t, index, req, dedup_window_ms)?,
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m);
                meta.insert(KEY_MEMBERSHIP, encode(&stored)?.as_slice())?;
                meta_response(index)
            }
            EntryPayload::Blank => meta_response(index),
        };
        last = Some(entry.log_id);
        responses.push(response);
        digests.push((index, t.sum));
    }
    if let Some(last) = last {
        meta.insert(KEY_LAST_APPLIED, encode(&Some(last))?.as_slice())?;
        meta.insert(KEY_DIGEST, encode(&t.sum)?.as_slice())?;
    }
    Ok(Applied {
        responses,
        digests,
        sum: t.sum,
    })
}

fn meta_response(index: u64) -> Response {
    Response {
        revision: index,
        ..Response::default()
    }
}

fn apply_request(
    t: &mut Tables<'_>,
    index: u64,
    req: Request,
    window_ms: u64,
) -> Result<Response, StorageError> {
    let req = match split_batch(req) {
        Ok(requests) => return apply_batch_entry(t, index, requests, window_ms),
        Err(req) => req,
    };
    evict_expired(t, req.time_ms.saturating_sub(window_ms))?;
    if let Some(id) = &req.request_id {
        if let Some(rec) = t.dedup.get(id.as_str())? {
            let rec: DedupRecord = decode(rec.value())?;
            return Ok(Response {
                deduplicated: true,
                ..rec.response
            });
        }
    }
    let response = apply_txn(&mut t.kv, &mut t.sum, index, req.txn)?;
    if let Some(id) = &req.request_id {
        remember(t, id, req.time_ms, &response)?;
    }
    Ok(response)
}

/// The requests of a [`Mutation::Batch`] entry (one built by
/// [`crate::Batch::into_request`]: the batch alone, no comparison, no id),
/// or the request back when it is not one.
fn split_batch(mut req: Request) -> Result<Vec<Request>, Request> {
    let alone =
        req.txn.compare.is_empty() && req.request_id.is_none() && req.txn.mutations.len() == 1;
    match req.txn.mutations.pop() {
        Some(Mutation::Batch { requests }) if alone => Ok(requests),
        other => {
            req.txn.mutations.extend(other);
            Err(req)
        }
    }
}

/// Applies each request of a batch entry as if it were an entry of its own
/// at `index`; the entry's response carries theirs. A batch nested in a
/// batch is refused (`succeeded: false`) and changes nothing.
fn apply_batch_entry(
    t: &mut Tables<'_>,
    index: u64,
    requests: Vec<Request>,
    window_ms: u64,
) -> Result<Response, StorageError> {
    let mut responses = Vec::with_capacity(requests.len());
    for req in requests {
        let response = match split_batch(req) {
            Ok(_nested) => Response {
                revision: index,
                ..Response::default()
            },
            Err(req) => apply_request(t, index, req, window_ms)?,
        };
        responses.push(response);
    }
    Ok(Response {
        succeeded: true,
        revision: index,
        result: encode(&responses)?,
        deduplicated: false,
    })
}

/// Forgets every request id first seen before `threshold_ms`. Runs inside
/// apply with the entry's own time so all replicas evict identically.
fn evict_expired(t: &mut Tables<'_>, threshold_ms: u64) -> Result<(), StorageError> {
    loop {
        let (time, id) = match t.by_time.first()? {
            Some((k, _)) if k.value().0 < threshold_ms => (k.value().0, k.value().1.to_owned()),
            _ => return Ok(()),
        };
        t.by_time.remove((time, id.as_str()))?;
        t.dedup.remove(id.as_str())?;
    }
}

fn remember(
    t: &mut Tables<'_>,
    id: &str,
    time_ms: u64,
    response: &Response,
) -> Result<(), StorageError> {
    let rec = DedupRecord {
        time_ms,
        response: response.clone(),
    };
    t.dedup.insert(id, encode(&rec)?.as_slice())?;
    t.by_time.insert((time_ms, id), ())?;
    Ok(())
}

/// Evaluates the comparisons and, when all hold, applies the mutations.
fn apply_txn(
    kv: &mut Table<&'static [u8], &'static [u8]>,
    sum: &mut StateSum,
    index: u64,
    txn: Txn,
) -> Result<Response, StorageError> {
    for c in &txn.compare {
        if !compare_holds(kv, c)? {
            return Ok(Response {
                succeeded: false,
                revision: index,
                result: Vec::new(),
                deduplicated: false,
            });
        }
    }
    let mut succeeded = true;
    for m in txn.mutations {
        succeeded &= apply_mutation(kv, sum, index, m)?;
    }
    Ok(Response {
        succeeded,
        revision: index,
        result: txn.result,
        deduplicated: false,
    })
}

fn compare_holds(
    kv: &Table<&'static [u8], &'static [u8]>,
    c: &Compare,
) -> Result<bool, StorageError> {
    let Compare::Revision { key, revision } = c;
    let current = match kv.get(key.as_slice())? {
        Some(v) => decode_ref(v.value())?.revision,
        None => 0,
    };
    Ok(current == *revision)
}

/// Applies one mutation and moves the digest along: the replaced or removed
/// entry (as redb hands it back) is subtracted, the new one added. False
/// when a staged restore was refused.
fn apply_mutation(
    kv: &mut Table<&'static [u8], &'static [u8]>,
    sum: &mut StateSum,
    index: u64,
    m: Mutation,
) -> Result<bool, StorageError> {
    match m {
        Mutation::Put { key, value } => {
            let v = Versioned {
                revision: index,
                value,
            };
            if let Some(old) = kv.insert(key.as_slice(), encode(&v)?.as_slice())? {
                let old = decode_ref(old.value())?;
                sum.sub(&key, old.revision, old.value);
            }
            sum.add(&key, v.revision, &v.value);
        }
        Mutation::Delete { key } => {
            if let Some(old) = kv.remove(key.as_slice())? {
                let old = decode_ref(old.value())?;
                sum.sub(&key, old.revision, old.value);
            }
        }
        Mutation::DeletePrefix { prefix } => delete_prefix(kv, sum, &prefix)?,
        Mutation::RestoreStaged { prefix } => return restore_staged(kv, sum, index, &prefix),
        // Only whole entries are batches (`apply_request`); one among other
        // mutations is not applied.
        Mutation::Batch { .. } => return Ok(false),
    }
    Ok(true)
}

fn delete_prefix(
    kv: &mut Table<&'static [u8], &'static [u8]>,
    sum: &mut StateSum,
    prefix: &[u8],
) -> Result<(), StorageError> {
    for key in keys_with_prefix(kv, prefix)? {
        if let Some(old) = kv.remove(key.as_slice())? {
            let old = decode_ref(old.value())?;
            sum.sub(&key, old.revision, old.value);
        }
    }
    Ok(())
}

/// [`Mutation::RestoreStaged`]. The staged file is verified completely
/// (structure, digest, checksum) before anything is removed; every replica
/// holds the same chunks, so every replica decides the same.
fn restore_staged(
    kv: &mut Table<&'static [u8], &'static [u8]>,
    sum: &mut StateSum,
    index: u64,
    prefix: &[u8],
) -> Result<bool, StorageError> {
    let mut file = Vec::new();
    for item in kv.range::<&[u8]>(prefix..)? {
        let (k, v) = item?;
        if !k.value().starts_with(prefix) {
            break;
        }
        file.extend_from_slice(decode_ref(v.value())?.value);
    }
    let label = std::path::Path::new("<staged restore>");
    let restored = match crate::snapshot::read_snapshot(file.as_slice(), label, |_| Ok(())) {
        Ok((_, restored)) => restored,
        Err(e) => {
            tracing::error!(index, error = %e, "staged restore refused; the state is unchanged");
            delete_prefix(kv, sum, prefix)?;
            return Ok(false);
        }
    };
    kv.retain(|_, _| false)?;
    let mut enc = Vec::new();
    crate::snapshot::read_snapshot(file.as_slice(), label, |item| {
        if let crate::snapshot::Item::Kv {
            key,
            revision,
            value,
        } = item
        {
            enc.clear();
            enc = postcard::to_extend(
                &crate::tables::VersionedRef { revision, value },
                std::mem::take(&mut enc),
            )?;
            kv.insert(key, enc.as_slice())?;
        }
        Ok(())
    })?;
    *sum = restored;
    tracing::warn!(
        index,
        bytes = file.len(),
        "state replaced by a staged snapshot (live restore)"
    );
    Ok(true)
}

fn keys_with_prefix(
    kv: &Table<&'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> Result<Vec<Vec<u8>>, StorageError> {
    let mut keys = Vec::new();
    for item in kv.range::<&[u8]>(prefix..)? {
        let (k, _) = item?;
        if !k.value().starts_with(prefix) {
            break;
        }
        keys.push(k.value().to_vec());
    }
    Ok(keys)
}
