//! Loopback ports for test processes, reserved across processes.
//!
//! A port picked by binding port 0 and closing the socket is free only until
//! someone else takes it, and under `cargo nextest` dozens of test processes
//! pick ports at once: a node of one cluster then binds the port another
//! cluster's node was given, and a test talks to a stranger (seen in CI as a
//! TLS `CertificateRequired` alert from another cluster's gRPC port).
//!
//! [`free_port`] closes that race twice over:
//! - ports come from *below* the kernel's ephemeral range, so no outgoing
//!   connection and no `bind(0)` ever lands on one;
//! - each port handed out is held by an advisory lock on a file named after
//!   it (`$TMPDIR/coffer-test-ports/<port>`) until the process exits, so no
//!   other test process hands out the same port, even after a node holding
//!   it is killed and before it is restarted on it.

use std::fs::{File, OpenOptions, TryLockError};
use std::net::TcpListener;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context};

/// Locks held for the life of the process (the OS releases them at exit).
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());

/// Spreads the processes' first picks over the pool.
static CALLS: AtomicU32 = AtomicU32::new(0);

/// Ports below the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`),
/// from 10000 up; the ephemeral range's upper side when there is little room
/// below it.
fn pool() -> Range<u16> {
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if low >= 12_000 {
        10_000..low
    } else if high <= 63_000 {
        high + 1..65_535
    } else {
        // No room outside the ephemeral range: the locks still keep test
        // processes apart.
        10_000..65_535
    }
}

fn lock_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join("coffer-test-ports");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A free loopback port that no other test process will be handed while this
/// one runs. The port is not bound: the caller's server binds it.
pub fn free_port() -> anyhow::Result<u16> {
    let pool = pool();
    let size = u32::from(pool.end - pool.start);
    let dir = lock_dir()?;
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(7919));
    for step in 0..size {
        let port = pool.start + ((seed.wrapping_add(step)) % size) as u16;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
            .with_context(|| format!("opening the lock of port {port}"))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking port {port}"))
            }
        }
        // Locked by us, but something outside the tests may hold it.
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        HELD.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(file);
        return Ok(port);
    }
    bail!("no free port in {pool:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        let pool = pool();
        assert!(ports.iter().all(|p| pool.contains(p)));
        // Each is bindable (nothing else holds it).
        for p in &ports {
            TcpListener::bind(("127.0.0.1", *p)).unwrap();
        }
    }

    #[test]
    fn a_handed_out_port_stays_locked_against_other_processes() {
        let port = free_port().unwrap();
        // Another open file description conflicts like another process would.
        let other = OpenOptions::new()
            .write(true)
            .open(lock_dir().unwrap().join(port.to_string()))
            .unwrap();
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
    }
}
