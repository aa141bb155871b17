//! One read fence per API request.
//!
//! A linearizable read must reflect every write acknowledged before the
//! request arrived; one ReadIndex round taken after arrival gives exactly
//! that for everything the request reads afterwards, because the local state
//! machine only moves forward. A request used to fence two or three times
//! (the network check or the caller's groups, then the engine's view of the
//! vault), each a quorum round on the leader or a forwarded round on a
//! follower. Inside [`scope`], the first fence of the request is taken and
//! the later ones are answered by it. Writes are unaffected (a commit waits
//! until its entry is applied here, so the request reads its own writes),
//! and work spawned off the request (long-running operations, background
//! tasks) runs outside the scope and fences as before.

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static FENCED: Cell<bool>;
}

/// Runs `request` with its own fence record: at most one read fence is
/// taken inside it.
pub async fn scope<F: Future>(request: F) -> F::Output {
    FENCED.scope(Cell::new(false), request).await
}

/// Whether the current request has already taken its fence.
pub(crate) fn taken() -> bool {
    FENCED.try_with(Cell::get).unwrap_or(false)
}

/// Records that the current request has taken its fence (nothing outside a
/// request scope).
pub(crate) fn record() {
    let _ = FENCED.try_with(|f| f.set(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fence_counts_only_inside_its_own_request() {
        record();
        assert!(!taken(), "outside a request nothing is remembered");
        scope(async {
            assert!(!taken());
            record();
            assert!(taken());
            // A second request, even nested or concurrent, fences itself.
            scope(async { assert!(!taken()) }).await;
            // Work spawned off the request is not part of it.
            let spawned = tokio::spawn(async { taken() }).await.unwrap();
            assert!(!spawned);
        })
        .await;
        assert!(!taken());
    }
}
