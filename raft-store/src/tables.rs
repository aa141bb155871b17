//! redb table layout and record encoding shared by the log and state machine.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use redb::{Database, Durability, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

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
/// Where older versions kept the current snapshot as one blob; dropped at
/// open (snapshots are files now, see `snapshot.rs`).
pub(crate) const LEGACY_SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

pub(crate) const KEY_LAST_APPLIED: &str = "last_applied";
pub(crate) const KEY_MEMBERSHIP: &str = "last_membership";
/// The additive digest of the KV table (`StateSum`), updated in the same
/// transaction as every change to it.
pub(crate) const KEY_DIGEST: &str = "kv_digest";

/// A stored `Versioned` read without copying its value. postcard encodes a
/// `&[u8]` exactly like the `Vec<u8>` of `Versioned` (length, then bytes),
/// so either type reads what the other wrote.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VersionedRef<'a> {
    pub revision: u64,
    pub value: &'a [u8],
}

impl VersionedRef<'_> {
    /// The owned form handed to callers.
    pub(crate) fn to_owned(&self) -> crate::Versioned {
        crate::Versioned {
            revision: self.revision,
            value: self.value.to_vec(),
        }
    }
}

/// Encodes a record for storage.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    Ok(postcard::to_allocvec(value)?)
}

/// Decodes a stored record.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    Ok(postcard::from_bytes(bytes)?)
}

/// Decodes a stored `Versioned` without copying its value.
pub(crate) fn decode_ref(bytes: &[u8]) -> Result<VersionedRef<'_>, StorageError> {
    Ok(postcard::from_bytes(bytes)?)
}

/// Starts a write transaction that is on disk once `commit` returns,
/// committed in two phases (see [`durable_write_with`]).
pub(crate) fn durable_write(db: &redb::Database) -> Result<WriteTransaction, StorageError> {
    durable_write_with(db, true)
}

/// Starts a write transaction that is on disk once `commit` returns.
///
/// With `two_phase`, redb flushes the pages before it switches the commit
/// slot (two fsyncs). The newest commit then always verifies after a crash
/// or power loss, so a commit that fails its checksum at open can only be
/// damage, and is reported as such instead of being silently replaced by the
/// commit before it. Without it (one fsync), a power loss during the commit
/// can leave a torn commit that redb replaces by the previous one, which
/// the open cannot tell from damage.
pub(crate) fn durable_write_with(
    db: &redb::Database,
    two_phase: bool,
) -> Result<WriteTransaction, StorageError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    txn.set_two_phase_commit(two_phase);
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

/// A database as opened by [`open_db`].
pub(crate) struct OpenedDb {
    pub db: Database,
    /// redb found the newest commit incomplete or damaged and fell back to
    /// the one before it (possible only after an unclean shutdown, for a
    /// commit written in one phase).
    pub fell_back: bool,
    /// The explicit integrity check found damage in a file that had opened
    /// normally, and redb repaired it (possibly by falling back to an older
    /// commit, possibly only by rebuilding its free-page bookkeeping).
    pub repaired_damage: bool,
}

impl OpenedDb {
    /// Fails when redb had to repair damage or fall back to an older commit.
    /// Either way the newest durable state did not verify; whatever redb
    /// salvaged may lack acknowledged data, and with two-phase commits a
    /// crash or power loss cannot cause this, so it is damage.
    pub(crate) fn check(self, path: &Path) -> Result<Database, StorageError> {
        if self.fell_back {
            return Err(StorageError::corrupt(
                path,
                "the newest commit failed its checksum (damage, or a power loss during a \
                 commit written in one phase); redb could only restore an older one",
            ));
        }
        if self.repaired_damage {
            return Err(StorageError::corrupt(
                path,
                "redb's integrity check found damaged pages",
            ));
        }
        Ok(self.db)
    }
}

/// Names of the tables in `db`, read without a write transaction (a write
/// at every open would cost fsyncs for nothing).
pub(crate) fn table_names(db: &Database) -> Result<Vec<String>, StorageError> {
    use redb::{ReadableDatabase, TableHandle};
    let txn = db.begin_read()?;
    let names = txn.list_tables()?.map(|t| t.name().to_owned()).collect();
    Ok(names)
}

/// Opens (creating if needed) a redb database with a page cache of
/// `opts.cache_bytes`. With `opts.verify_on_open`, redb's full
/// integrity check (every page checksum of the committed trees) runs after
/// the open, whatever the last shutdown was; an unrepairable file is
/// [`StorageError::Corrupt`]. The open and the check are separate so the
/// caller can tell recovery from a crash (expected) from damage to a file
/// that was closed cleanly (not).
pub(crate) fn open_db(path: &Path, opts: &crate::StoreOptions) -> Result<OpenedDb, StorageError> {
    let verify = opts.verify_on_open;
    let fell_back = Arc::new(AtomicBool::new(false));
    let f = fell_back.clone();
    let mut builder = Database::builder();
    builder.set_cache_size(opts.cache_bytes);
    // redb repairs at open only after an unclean shutdown, and reports
    // progress 0.3 exactly when the primary commit slot failed verification
    // and it is about to fall back to the secondary one.
    builder.set_repair_callback(move |session| {
        if (session.progress() - 0.3).abs() < 1e-9 {
            f.store(true, Ordering::Relaxed);
        }
    });
    let mut db = guard(path, || builder.create(path))?;
    let repaired_damage = verify && !guard(path, || db.check_integrity())?;
    Ok(OpenedDb {
        db,
        fell_back: fell_back.load(Ordering::Relaxed),
        repaired_damage,
    })
}

/// Runs a redb open or check, mapping corruption (including a panic inside
/// redb on a damaged file, which its debug assertions may raise instead of
/// returning `Corrupted`) to [`StorageError::Corrupt`].
fn guard<T>(
    path: &Path,
    f: impl FnOnce() -> Result<T, redb::DatabaseError>,
) -> Result<T, StorageError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Corrupted(detail)))) => Err(
            StorageError::corrupt(path, format!("redb integrity check failed: {detail}")),
        ),
        Ok(Err(e)) => Err(StorageError::from(e).at(path)),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("redb panicked");
            Err(StorageError::corrupt(
                path,
                format!("redb failed while reading the file: {detail}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Versioned;

    #[test]
    fn versioned_ref_reads_and_writes_the_versioned_encoding() {
        let v = Versioned {
            revision: 300,
            value: (0..=255u8).collect(),
        };
        let bytes = encode(&v).unwrap();
        let r = decode_ref(&bytes).unwrap();
        assert_eq!((r.revision, r.value), (v.revision, v.value.as_slice()));
        assert_eq!(encode(&r).unwrap(), bytes);
    }
}
