//! The HTTPS API listener: accepting connections and serving them, under
//! the caps and timeouts of `[limits]` ([`LimitsConfig`]).
//!
//! - The accept loop never spins: when the process runs out of file
//!   descriptors or memory it waits (10 ms, doubling to 1 s) and logs once
//!   per interval how often that happened.
//! - Each connection takes a [`slots::Slot`] for its whole life: at most
//!   `max_connections` per listener (lowered to what the open-files limit
//!   allows after `reserved_fds`) and `max_connections_per_ip` per client
//!   address (lowered in the same proportion). A connection over either cap is accepted and closed at once,
//!   so the kernel's backlog does not fill and a client fails over fast.
//! - A connection has `tls_handshake_timeout_secs` for its handshake,
//!   `header_read_timeout_secs` for each request head (the first one counted
//!   from the handshake), and is closed after `idle_timeout_secs` without a
//!   request; request bodies must keep `min_body_bytes_per_sec`
//!   ([`body::MinRateBody`]).

pub mod body;
mod conn;
pub mod slots;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustix::io::Errno;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use tokio::net::TcpListener;

use crate::config::LimitsConfig;
use crate::log_every;

pub use body::{is_body_too_slow, BodyTooSlow};

/// Interval of the rate-limited warnings of this module.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Serves HTTPS on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: LimitsConfig,
    shutdown: impl Future<Output = ()>,
) {
    let caps = ConnectionCaps::new(&limits, open_files_limit());
    tracing::info!(
        max_connections = caps.max_connections,
        max_connections_per_ip = caps.max_per_ip,
        open_files_limit = %OpenFilesLimit::show(caps.open_files),
        "API connection limits"
    );
    if caps.max_connections < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            used = caps.max_connections,
            "max_connections lowered to fit the open-files limit; raise the limit (LimitNOFILE=) to allow more"
        );
    }
    let slots = slots::Slots::new(caps.max_connections, caps.max_per_ip);
    let shared = Arc::new(conn::Shared::new(tls, router, limits));
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff.succeeded();
                match slots.acquire(peer.ip()) {
                    Ok(slot) => {
                        tokio::spawn(conn::serve(shared.clone(), tcp, peer, slot));
                    }
                    Err(refused) => {
                        // Dropping the stream closes it before any TLS byte.
                        drop(tcp);
                        log_every!(LOG_INTERVAL, warn, %peer, reason = %refused, "connection refused");
                    }
                }
            }
            Err(e) => {
                let Some(delay) = backoff.failed(&e) else {
                    tracing::debug!(error = %e, "accept failed for one connection");
                    continue;
                };
                log_every!(
                    LOG_INTERVAL,
                    warn,
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    open_connections = slots.open(),
                    "accept failed; backing off"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut shutdown => return,
                }
            }
        }
    }
}

/// The caps in force: the configured ones, within the open-files limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConnectionCaps {
    max_connections: usize,
    max_per_ip: usize,
    open_files: Option<u64>,
}

impl ConnectionCaps {
    fn new(limits: &LimitsConfig, open_files: Option<u64>) -> Self {
        let fd_budget = open_files
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .map(|n| n.saturating_sub(limits.reserved_fds).max(1))
            .unwrap_or(usize::MAX);
        let max_connections = limits.max_connections.min(fd_budget);
        // A cap lowered for the descriptors lowers the per-address cap in
        // proportion: one address must not get every slot that is left.
        let max_per_ip = if max_connections < limits.max_connections {
            let scaled = limits.max_connections_per_ip as u128 * max_connections as u128
                / limits.max_connections as u128;
            usize::try_from(scaled).unwrap_or(usize::MAX).max(1)
        } else {
            limits.max_connections_per_ip
        };
        Self {
            max_connections,
            max_per_ip: max_per_ip.min(max_connections),
            open_files,
        }
    }
}

/// How the accept loop waits after a failed `accept`.
#[derive(Debug)]
struct AcceptBackoff {
    next: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// A connection was accepted: the next failure waits the shortest time.
    fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }

    /// How long to wait after `error`: nothing when only that one connection
    /// failed (it is gone, the next one may be fine); a growing pause for
    /// anything else, above all a lack of descriptors or memory, which an
    /// immediate retry would only hit again.
    fn failed(&mut self, error: &io::Error) -> Option<Duration> {
        let per_connection = matches!(
            Errno::from_io_error(error),
            Some(Errno::CONNABORTED | Errno::CONNRESET | Errno::PROTO | Errno::PERM | Errno::INTR)
        );
        if per_connection {
            return None;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay)
    }
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

/// The soft open-files limit (`None`: unlimited or unknown).
fn open_files_limit() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

/// The open-files limit before and after [`raise_open_files_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFilesLimit {
    /// Soft limit found at start (`None`: unlimited).
    pub before: Option<u64>,
    /// Soft limit now.
    pub now: Option<u64>,
    /// Hard limit (`None`: unlimited).
    pub hard: Option<u64>,
}

impl OpenFilesLimit {
    /// A limit for the log: the number, or `unlimited`.
    pub fn show(limit: Option<u64>) -> String {
        limit.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit: every API connection
/// needs a descriptor, and the common soft default (1024) is far below what
/// `max_connections` allows.
pub fn raise_open_files_limit() -> Result<OpenFilesLimit, io::Error> {
    let found = getrlimit(Resource::Nofile);
    if found.current != found.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: found.maximum,
                maximum: found.maximum,
            },
        )
        .map_err(io::Error::from)?;
    }
    Ok(OpenFilesLimit {
        before: found.current,
        now: getrlimit(Resource::Nofile).current,
        hard: found.maximum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e.raw_os_error())
    }

    #[test]
    fn backoff_grows_to_a_second_on_exhaustion_and_resets_after_an_accept() {
        let mut backoff = AcceptBackoff::default();
        let waits: Vec<u64> = (0..9)
            .map(|i| {
                let e = [Errno::MFILE, Errno::NFILE, Errno::NOMEM, Errno::NOBUFS][i % 4];
                backoff.failed(&errno(e)).unwrap().as_millis() as u64
            })
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(
            backoff.failed(&errno(Errno::MFILE)),
            Some(Duration::from_millis(10))
        );
    }

    #[test]
    fn a_failure_of_one_connection_does_not_pause_the_loop() {
        let mut backoff = AcceptBackoff::default();
        assert_eq!(backoff.failed(&errno(Errno::CONNABORTED)), None);
        // Unknown errors never make the loop spin either.
        let other = io::Error::other("something else");
        assert_eq!(backoff.failed(&other), Some(Duration::from_millis(10)));
    }

    #[test]
    fn caps_fit_the_open_files_limit_and_keep_per_ip_below_the_total() {
        let limits = LimitsConfig::default();
        let unlimited = ConnectionCaps::new(&limits, None);
        assert_eq!(unlimited.max_connections, 4096);
        assert_eq!(unlimited.max_per_ip, 512);
        let roomy = ConnectionCaps::new(&limits, Some(1 << 20));
        assert_eq!(roomy.max_connections, 4096);
        // 256 descriptors, 128 kept: 128 connections, an eighth per address
        // as configured (512 of 4096).
        let tight = ConnectionCaps::new(&limits, Some(256));
        assert_eq!(tight.max_connections, 128);
        assert_eq!(tight.max_per_ip, 16);
        let per_ip_above_total = LimitsConfig {
            max_connections: 100,
            max_connections_per_ip: 1000,
            ..LimitsConfig::default()
        };
        let capped = ConnectionCaps::new(&per_ip_above_total, None);
        assert_eq!((capped.max_connections, capped.max_per_ip), (100, 100));
        let tiny = ConnectionCaps::new(&limits, Some(64));
        assert_eq!((tiny.max_connections, tiny.max_per_ip), (1, 1));
    }
}
