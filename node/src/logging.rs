//! Log helpers shared by the server's layers.
//!
//! [`RateLimitedLog`] and the [`log_every!`](crate::log_every) macro keep a
//! warning that a peer can trigger at will (a refused connection, a failed
//! accept, a reset flood) to one line per interval per call site, with the
//! number of lines left out since the last one. An attacker then cannot fill
//! the disk or drown the other lines, and the operator still sees that it
//! happens and how often.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One rate-limited log site: lets a line through at most once per
/// `interval` and counts the ones it held back.
///
/// Usually declared as a `static` by [`log_every!`](crate::log_every); one
/// instance per call site, so two different warnings never hide each other.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    state: Mutex<SiteState>,
}

#[derive(Debug)]
struct SiteState {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// A site that logs at most once per `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(SiteState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// Whether to log now: `Some(n)` with the number of lines held back
    /// since the last one that went out, or `None` to stay quiet (counted).
    pub fn check(&self) -> Option<u64> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Option<u64> {
        // A panic elsewhere while holding this lock leaves two plain numbers
        // behind; they are still meaningful, so poisoning is ignored.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let due = match state.last {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= self.interval,
        };
        if due {
            state.last = Some(now);
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

/// Logs through `tracing` at most once per interval from this call site,
/// adding a `suppressed` field with the number of lines held back since the
/// previous one.
///
/// ```
/// # use std::time::Duration;
/// # let peer = "192.0.2.1";
/// coffer::log_every!(Duration::from_secs(10), warn, %peer, "connection refused");
/// ```
#[macro_export]
macro_rules! log_every {
    ($interval:expr, $level:ident, $($arg:tt)+) => {{
        static SITE: $crate::logging::RateLimitedLog =
            $crate::logging::RateLimitedLog::new($interval);
        if let Some(suppressed) = SITE.check() {
            ::tracing::$level!(suppressed, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_others() {
        let site = RateLimitedLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(site.check_at(t0), Some(0));
        for i in 1..=500 {
            assert_eq!(site.check_at(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(site.check_at(t0 + Duration::from_secs(10)), Some(500));
        assert_eq!(site.check_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(site.check_at(t0 + Duration::from_secs(25)), Some(1));
    }
}
