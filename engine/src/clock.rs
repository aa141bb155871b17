//! The wall clock: the one `now_ms`/`now_secs` of the node, and an injected
//! clock for the engines so tests control time.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Returns the current time in Unix seconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Wall clock in Unix milliseconds (0 before 1970: a broken clock must not
/// panic a request).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Wall clock in Unix seconds (0 before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(now_secs)
}
