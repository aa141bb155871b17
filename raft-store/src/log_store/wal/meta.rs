//! Small files of a WAL directory written atomically (the vote, the purge
//! point), and the lock that keeps a second process out.
//!
//! A meta file is `MAGIC | crc32 u32 LE | postcard(value)`. It is written
//! as `<name>.tmp`, fsynced, renamed over `<name>` and the directory
//! fsynced, so it is always the old value or the new one, whole: a file
//! that does not check out is damage, not a torn write.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::StorageError;
use crate::tables::{decode, encode};

const MAGIC: &[u8; 8] = b"CofMeta1";

/// Replaces `dir/name` with `value`, durably and atomically.
pub(super) fn write_atomic<T: Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
) -> Result<(), StorageError> {
    let body = encode(value)?;
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| StorageError::io(&tmp, e))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| StorageError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))?;
    sync_dir(dir)
}

/// Reads `dir/name`, `None` when it does not exist.
pub(super) fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, StorageError> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io(&path, e)),
    };
    let ok = bytes.len() >= 12
        && &bytes[..8] == MAGIC
        && crc32fast::hash(&bytes[12..]).to_le_bytes() == bytes[8..12];
    if !ok {
        return Err(StorageError::corrupt(
            &path,
            "the file fails its header or checksum (it is only ever replaced whole)",
        ));
    }
    decode(&bytes[12..]).map(Some).map_err(|e| e.at(&path))
}

/// fsyncs a directory, so creations, renames and removals in it are durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

/// Takes the exclusive lock of the WAL in `dir` (held while the returned
/// file is open): two processes appending to one log would destroy it.
pub(super) fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join("LOCK");
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(StorageError::refused(
                dir,
                "the log is in use by another process: stop the node first",
            ));
        }
        return Err(StorageError::io(&path, e));
    }
    Ok(f)
}
