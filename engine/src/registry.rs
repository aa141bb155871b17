//! What the server needs from every engine, so an engine is registered in
//! one place: its periodic work (run by the leader only) and what it clears
//! when the node seals. Adding an engine is one line in the server.

use std::sync::Arc;

use async_trait::async_trait;

use super::certificates::CertificatesEngine;
use super::error::EngineError;
use super::keys::KeysEngine;
use super::secrets::SecretsEngine;

/// One unit of periodic work and what came of it.
pub type Done = (&'static str, Result<usize, EngineError>);

/// An engine as the server sees it.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Periodic work the leader runs at `now` (Unix seconds): purging
    /// expired soft-deletions, rotation policies, …; each item says what it
    /// did (for the log) and how many objects it touched.
    async fn leader_work(&self, now: u64) -> Vec<Done>;

    /// Forgets secrets held in memory; the node calls it when it seals.
    fn clear_on_seal(&self) {}
}

#[async_trait]
impl Engine for SecretsEngine {
    async fn leader_work(&self, now: u64) -> Vec<Done> {
        vec![("purged soft-deleted secrets", self.purge_expired(now).await)]
    }
}

#[async_trait]
impl Engine for KeysEngine {
    async fn leader_work(&self, now: u64) -> Vec<Done> {
        vec![
            ("purged soft-deleted keys", self.purge_expired(now).await),
            (
                "rotated keys by policy",
                self.run_rotation_policies(now).await,
            ),
        ]
    }

    fn clear_on_seal(&self) {
        self.clear_key_cache();
    }
}

#[async_trait]
impl Engine for CertificatesEngine {
    async fn leader_work(&self, now: u64) -> Vec<Done> {
        vec![
            (
                "purged soft-deleted certificates",
                self.purge_expired(now).await,
            ),
            (
                "renewed certificates by lifetime action",
                self.run_lifetime_actions(now).await,
            ),
            (
                "re-signed CRLs of Coffer issuers",
                self.refresh_crls(now).await,
            ),
        ]
    }
}

/// Every engine of the node.
#[derive(Clone, Default)]
pub struct Engines(Vec<Arc<dyn Engine>>);

impl Engines {
    /// No engines yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `engine`.
    pub fn with(mut self, engine: Arc<dyn Engine>) -> Self {
        self.0.push(engine);
        self
    }

    /// Runs every engine's leader work, in registration order.
    pub async fn leader_work(&self, now: u64) -> Vec<Done> {
        let mut done = Vec::new();
        for engine in &self.0 {
            done.extend(engine.leader_work(now).await);
        }
        done
    }

    /// Clears every engine's in-memory secrets (on seal).
    pub fn clear_on_seal(&self) {
        for engine in &self.0 {
            engine.clear_on_seal();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counting {
        ticks: AtomicUsize,
        clears: AtomicUsize,
    }

    #[async_trait]
    impl Engine for Counting {
        async fn leader_work(&self, now: u64) -> Vec<Done> {
            self.ticks.fetch_add(1, Ordering::SeqCst);
            vec![("counted", Ok(now as usize))]
        }

        fn clear_on_seal(&self) {
            self.clears.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn every_registered_engine_gets_leader_work_and_seal() {
        let a = Arc::new(Counting::default());
        let b = Arc::new(Counting::default());
        let engines = Engines::new().with(a.clone()).with(b.clone());
        let done = engines.leader_work(7).await;
        assert_eq!(done.len(), 2);
        assert!(done
            .iter()
            .all(|(what, r)| *what == "counted" && r.as_ref().ok() == Some(&7)));
        engines.clear_on_seal();
        for e in [&a, &b] {
            assert_eq!(e.ticks.load(Ordering::SeqCst), 1);
            assert_eq!(e.clears.load(Ordering::SeqCst), 1);
        }
    }
}
