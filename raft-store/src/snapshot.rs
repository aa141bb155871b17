//! Snapshot encoding: a consistent dump of the state machine tables.

use openraft::{LogId, SnapshotMeta, StoredMembership};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::apply::DedupRecord;
use crate::error::StorageError;
use crate::state_machine::AppliedState;
use crate::tables::{
    decode, encode, get_meta, DEDUP, DEDUP_BY_TIME, KEY_LAST_APPLIED, KEY_MEMBERSHIP,
    KEY_SNAP_DATA, KEY_SNAP_META, KV, SM_META, SNAPSHOT,
};
use crate::{Node, NodeId, Versioned};

/// A stored snapshot: its meta and its encoded [`SnapshotPayload`].
pub(crate) type StoredSnapshot = (SnapshotMeta<NodeId, Node>, Vec<u8>);

/// Everything a replica needs to continue from a snapshot. Encoded with postcard.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct SnapshotPayload {
    pub last_applied: Option<LogId<NodeId>>,
    pub last_membership: StoredMembership<NodeId, Node>,
    pub kv: Vec<(Vec<u8>, Versioned)>,
    pub dedup: Vec<(String, DedupRecord)>,
}

/// Reads last applied id and membership within `txn`.
pub(crate) fn read_applied(txn: &ReadTransaction) -> Result<AppliedState, StorageError> {
    let meta = txn.open_table(SM_META)?;
    let applied: Option<Option<LogId<NodeId>>> = get_meta(&meta, KEY_LAST_APPLIED)?;
    let membership = get_meta(&meta, KEY_MEMBERSHIP)?.unwrap_or_default();
    Ok((applied.flatten(), membership))
}

/// Dumps the state machine as of `txn` (one read transaction = consistent).
pub(crate) fn dump(txn: &ReadTransaction) -> Result<SnapshotPayload, StorageError> {
    let (last_applied, last_membership) = read_applied(txn)?;
    let mut kv = Vec::new();
    for item in txn.open_table(KV)?.iter()? {
        let (k, v) = item?;
        kv.push((k.value().to_vec(), decode(v.value())?));
    }
    let mut dedup = Vec::new();
    for item in txn.open_table(DEDUP)?.iter()? {
        let (k, v) = item?;
        dedup.push((k.value().to_owned(), decode(v.value())?));
    }
    Ok(SnapshotPayload {
        last_applied,
        last_membership,
        kv,
        dedup,
    })
}

/// Replaces all state machine tables with `payload` inside `txn`.
pub(crate) fn restore(
    txn: &WriteTransaction,
    payload: &SnapshotPayload,
) -> Result<(), StorageError> {
    txn.delete_table(KV)?;
    txn.delete_table(DEDUP)?;
    txn.delete_table(DEDUP_BY_TIME)?;
    let mut kv = txn.open_table(KV)?;
    for (k, v) in &payload.kv {
        kv.insert(k.as_slice(), encode(v)?.as_slice())?;
    }
    let mut dedup = txn.open_table(DEDUP)?;
    let mut by_time = txn.open_table(DEDUP_BY_TIME)?;
    for (id, rec) in &payload.dedup {
        dedup.insert(id.as_str(), encode(rec)?.as_slice())?;
        by_time.insert((rec.time_ms, id.as_str()), ())?;
    }
    let mut meta = txn.open_table(SM_META)?;
    meta.insert(KEY_LAST_APPLIED, encode(&payload.last_applied)?.as_slice())?;
    meta.insert(KEY_MEMBERSHIP, encode(&payload.last_membership)?.as_slice())?;
    Ok(())
}

/// Stores `data` as the current snapshot inside `txn`.
pub(crate) fn save_current(
    txn: &WriteTransaction,
    meta: &SnapshotMeta<NodeId, Node>,
    data: &[u8],
) -> Result<(), StorageError> {
    let mut table = txn.open_table(SNAPSHOT)?;
    table.insert(KEY_SNAP_META, encode(meta)?.as_slice())?;
    table.insert(KEY_SNAP_DATA, data)?;
    Ok(())
}

/// The current snapshot's meta and data, if one was built or installed.
pub(crate) fn load_current(txn: &ReadTransaction) -> Result<Option<StoredSnapshot>, StorageError> {
    let table = txn.open_table(SNAPSHOT)?;
    let Some(meta) = get_meta(&table, KEY_SNAP_META)? else {
        return Ok(None);
    };
    let data = match table.get(KEY_SNAP_DATA)? {
        Some(v) => v.value().to_vec(),
        None => return Err(StorageError::Corrupt("snapshot meta without data".into())),
    };
    Ok(Some((meta, data)))
}
