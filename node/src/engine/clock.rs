//! Injected wall clock, so tests control time.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Returns the current time in Unix seconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}
