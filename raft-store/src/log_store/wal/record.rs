//! Segment file layout and the checksummed records inside it.
//!
//! A segment is `MAGIC` (8 bytes) followed by records. A record is
//!
//! ```text
//! len u32 LE | crc u32 LE | kind u8 | body (len bytes)
//! ```
//!
//! where `crc` is CRC-32 over `kind | body`. Bodies:
//! - entry: `index u64 | term u64 | node u64 | postcard(Entry)` (the log id
//!   in plain so an open rebuilds the index without decoding payloads);
//! - truncate: `from u64` (entries with index >= from are gone);
//! - committed: `postcard(Option<LogId>)`.
//!
//! All integers are little-endian. A record is whole when its header and
//! body are there and the checksum matches; the scan stops at the first one
//! that is not.

use std::path::Path;

use openraft::{CommittedLeaderId, Entry, LogId};

use crate::error::StorageError;
use crate::tables::{decode, encode};
use crate::{NodeId, TypeConfig};

/// First bytes of every segment file (name and format version).
pub(super) const MAGIC: &[u8; 8] = b"CofWAL\x00\x01";
/// Bytes before a record's body.
pub(super) const HEADER: usize = 9;
/// The largest body a record may have; a larger length is damage (or a torn
/// header), never a record.
const MAX_BODY: usize = 1 << 30;

const KIND_ENTRY: u8 = 1;
const KIND_TRUNCATE: u8 = 2;
const KIND_COMMITTED: u8 = 3;

/// What a whole record says, as found by [`scan`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Record {
    /// An entry with `log_id`, whose record is `len` bytes at `offset`.
    Entry {
        log_id: LogId<NodeId>,
        offset: u64,
        len: u32,
    },
    /// Entries with index >= `from` are gone.
    Truncate { from: u64 },
    /// The committed id saved last.
    Committed(Option<LogId<NodeId>>),
}

/// Appends the record of `entry` to `buf`; returns its length.
pub(super) fn put_entry(buf: &mut Vec<u8>, entry: &Entry<TypeConfig>) -> Result<u32, StorageError> {
    let id = entry.log_id;
    let mut body = Vec::with_capacity(24 + 64);
    body.extend_from_slice(&id.index.to_le_bytes());
    body.extend_from_slice(&id.leader_id.term.to_le_bytes());
    body.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    postcard::to_io(entry, &mut body).map_err(StorageError::from)?;
    Ok(put(buf, KIND_ENTRY, &body))
}

/// Appends a truncation record to `buf`.
pub(super) fn put_truncate(buf: &mut Vec<u8>, from: u64) {
    put(buf, KIND_TRUNCATE, &from.to_le_bytes());
}

/// Appends a committed-id record to `buf`.
pub(super) fn put_committed(
    buf: &mut Vec<u8>,
    committed: &Option<LogId<NodeId>>,
) -> Result<(), StorageError> {
    put(buf, KIND_COMMITTED, &encode(committed)?);
    Ok(())
}

fn put(buf: &mut Vec<u8>, kind: u8, body: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[kind]);
    crc.update(body);
    // Bodies are far below 4 GiB (entries are bounded by the request size).
    let len = body.len() as u32;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc.finalize().to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(body);
    HEADER as u32 + len
}

/// What [`scan`] found in one segment.
#[derive(Debug)]
pub(super) struct Scan {
    /// The whole records, in order.
    pub records: Vec<Record>,
    /// Where the whole records end (0: no valid header).
    pub end: u64,
    /// Why the bytes after `end` are not a clean end, when they are not
    /// (a clean end is the end of the file or zeros: preallocated space).
    pub torn: Option<String>,
}

/// Reads the records of one segment's bytes, in order, up to the first
/// one that is not whole.
pub(super) fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan {
        records: Vec::new(),
        end: 0,
        torn: None,
    };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        scan.torn = Some("the segment header is missing or not a Coffer WAL header".into());
        return scan;
    }
    let mut at = MAGIC.len();
    while at < bytes.len() {
        match parse(bytes, at) {
            Ok((record, len)) => {
                scan.records.push(record);
                at += len;
            }
            Err(reason) => {
                if bytes[at..].iter().any(|b| *b != 0) {
                    scan.torn = Some(reason);
                }
                break;
            }
        }
    }
    scan.end = at as u64;
    scan
}

/// Parses the record at `at`; returns it and its total length.
fn parse(bytes: &[u8], at: usize) -> Result<(Record, usize), String> {
    let rest = &bytes[at..];
    let (body, total) = checked_body(rest).map_err(|e| format!("at byte {at}: {e}"))?;
    let kind = rest[8];
    let record = match kind {
        KIND_ENTRY if body.len() >= 24 => Record::Entry {
            log_id: LogId::new(
                CommittedLeaderId::new(u64_at(body, 8), u64_at(body, 16)),
                u64_at(body, 0),
            ),
            offset: at as u64,
            len: total as u32,
        },
        KIND_TRUNCATE if body.len() == 8 => Record::Truncate {
            from: u64_at(body, 0),
        },
        KIND_COMMITTED => Record::Committed(
            decode(body).map_err(|e| format!("at byte {at}: committed record: {e}"))?,
        ),
        _ => {
            return Err(format!(
                "at byte {at}: unknown record kind {kind} of {} bytes",
                body.len()
            ))
        }
    };
    Ok((record, total))
}

/// The body of the record at the start of `rest` once its length and
/// checksum check out, and the record's total length.
fn checked_body(rest: &[u8]) -> Result<(&[u8], usize), String> {
    if rest.len() < HEADER {
        return Err(format!(
            "a record header is cut short ({} bytes)",
            rest.len()
        ));
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len > MAX_BODY {
        return Err(format!("a record claims {len} bytes"));
    }
    if rest.len() < HEADER + len {
        return Err(format!(
            "a record of {len} bytes is cut short ({} there)",
            rest.len() - HEADER
        ));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&rest[8..HEADER + len]);
    if hasher.finalize() != crc {
        return Err("a record fails its checksum".into());
    }
    Ok((&rest[HEADER..HEADER + len], HEADER + len))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes the entry records laid end to end in `bytes` (read back from a
/// segment), checking each checksum again: the file may have changed under
/// us since it was scanned.
pub(super) fn decode_entries(
    file: &Path,
    mut bytes: &[u8],
    out: &mut Vec<Entry<TypeConfig>>,
) -> Result<(), StorageError> {
    while !bytes.is_empty() {
        let (body, total) = checked_body(bytes).map_err(|e| StorageError::corrupt(file, e))?;
        if bytes[8] != KIND_ENTRY || body.len() < 24 {
            return Err(StorageError::corrupt(
                file,
                "the index points at a record that is not an entry",
            ));
        }
        let entry: Entry<TypeConfig> = decode(&body[24..]).map_err(|e| e.at(file))?;
        out.push(entry);
        bytes = &bytes[total..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;

    use super::*;

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 7), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn records_round_trip_and_a_flipped_byte_or_short_tail_stops_the_scan() {
        let mut seg = MAGIC.to_vec();
        let len = put_entry(&mut seg, &entry(5)).unwrap();
        put_truncate(&mut seg, 5);
        put_committed(&mut seg, &Some(entry(4).log_id)).unwrap();
        let found = scan(&seg);
        assert!(found.torn.is_none(), "{found:?}");
        assert_eq!(found.end, seg.len() as u64);
        assert_eq!(
            found.records,
            vec![
                Record::Entry {
                    log_id: entry(5).log_id,
                    offset: 8,
                    len
                },
                Record::Truncate { from: 5 },
                Record::Committed(Some(entry(4).log_id)),
            ]
        );
        // Zeros after the records (preallocated space) are a clean end.
        let mut padded = seg.clone();
        padded.resize(seg.len() + 4096, 0);
        let found = scan(&padded);
        assert!(found.torn.is_none(), "{found:?}");
        assert_eq!((found.end, found.records.len()), (seg.len() as u64, 3));
        let mut decoded = Vec::new();
        decode_entries(Path::new("x"), &seg[8..8 + len as usize], &mut decoded).unwrap();
        assert_eq!(decoded, vec![entry(5)]);

        // Every single flipped byte after the magic ends the scan at or
        // before the damaged record, never past it, and says so.
        for at in 8..seg.len() {
            let mut bad = seg.clone();
            bad[at] ^= 0x40;
            let found = scan(&bad);
            assert!(found.torn.is_some(), "byte {at}: {found:?}");
            assert!(found.end as usize <= at, "byte {at}: {found:?}");
            assert!(found.records.len() < 3);
        }
        // Every cut short of the end keeps exactly the whole records
        // before it, and says where they end.
        let ends = [8 + len as usize, 8 + len as usize + HEADER + 8];
        for cut in 8..seg.len() {
            let found = scan(&seg[..cut]);
            let whole = ends.iter().filter(|e| **e <= cut).count();
            assert_eq!(found.records.len(), whole, "cut at {cut}");
            assert_eq!(found.end as usize, [8, ends[0], ends[1]][whole]);
            assert_eq!(
                found.torn.is_none(),
                found.end as usize == cut,
                "cut at {cut}"
            );
        }
    }
}
