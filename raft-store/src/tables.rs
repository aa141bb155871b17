//! redb table layout and record encoding shared by the log and state machine.

use redb::{Durability, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::StorageError;

/// Log entries by index; values are postcard-encoded `Entry<TypeConfig>`.
pub(crate) const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
/// Log-side metadata: vote, committed id, last purged id.
pub(crate) const LOG_META: TableDefinition<&str, &[u8]> = TableDefinition::new("log_meta");

pub(crate) const KEY_VOTE: &str = "vote";
pub(crate) const KEY_COMMITTED: &str = "committed";
pub(crate) const KEY_LAST_PURGED: &str = "last_purged";

/// Application key/value data; values are postcard-encoded `Versioned`.
pub(crate) const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// Remembered request ids → postcard-encoded `DedupRecord`.
pub(crate) const DEDUP: TableDefinition<&str, &[u8]> = TableDefinition::new("dedup");
/// The same ids ordered by `(time_ms, request_id)` so expiry is a range scan.
pub(crate) const DEDUP_BY_TIME: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("dedup_by_time");
/// State-machine metadata: last applied log id and last membership.
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
/// The current snapshot: its meta and its data.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

pub(crate) const KEY_LAST_APPLIED: &str = "last_applied";
pub(crate) const KEY_MEMBERSHIP: &str = "last_membership";
pub(crate) const KEY_SNAP_META: &str = "meta";
pub(crate) const KEY_SNAP_DATA: &str = "data";

/// Encodes a record for storage.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    Ok(postcard::to_allocvec(value)?)
}

/// Decodes a stored record.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    Ok(postcard::from_bytes(bytes)?)
}

/// Starts a write transaction that is on disk once `commit` returns.
pub(crate) fn durable_write(db: &redb::Database) -> Result<WriteTransaction, StorageError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    Ok(txn)
}

/// Starts a write transaction without fsync: readers see it once committed,
/// but a crash may lose it until a later durable commit of the same database
/// (redb then recovers the last durable state, never a partial one).
pub(crate) fn lazy_write(db: &redb::Database) -> Result<WriteTransaction, StorageError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::None)?;
    Ok(txn)
}

/// Reads and decodes one metadata record from a `&str → bytes` table.
pub(crate) fn get_meta<T, R>(table: &R, key: &str) -> Result<Option<T>, StorageError>
where
    T: DeserializeOwned,
    R: redb::ReadableTable<&'static str, &'static [u8]>,
{
    match table.get(key)? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}
