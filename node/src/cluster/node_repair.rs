//! [`ClusterNode`]'s repair from the leader: fetch a snapshot, stage it,
//! restart to install it (by hand or with `auto_repair`).

use std::time::Duration;

use super::super::{integrity, ClusterError};
use super::ClusterNode;

impl ClusterNode {
    /// Fetches a snapshot from the leader into the data dir's `repair/`
    /// and asks the server to restart, which installs it before Raft starts.
    pub async fn repair_from_leader(&self) -> Result<String, ClusterError> {
        let leader = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let leader = m.current_leader.filter(|l| *l != self.id);
            leader.and_then(|l| m.membership_config.membership().get_node(&l).cloned())
        };
        let Some(leader) = leader else {
            return Err(ClusterError::Unavailable(
                "no other member is known to lead; repair needs a healthy leader".into(),
            ));
        };
        let min = integrity::purge_point(&self.log);
        let staged =
            integrity::fetch_snapshot(&self.peers, &leader.cluster_addr, min, &self.data_dir)
                .await?;
        self.restart.notify_one();
        Ok(format!(
            "snapshot from {} staged at {}; the node restarts to install it",
            leader.cluster_addr,
            staged.display()
        ))
    }

    /// Resolves when the node must restart (a repair was staged).
    pub async fn restart_requested(&self) {
        self.restart.notified().await;
    }

    /// With `auto_repair`: once this node's state is found damaged, fetch a
    /// snapshot from the leader (retrying) and ask for a restart.
    pub async fn auto_repair(&self) {
        if !self.tuning.auto_repair {
            return std::future::pending().await;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if self.flag.corrupt().is_none() {
                continue;
            }
            match self.repair_from_leader().await {
                Ok(done) => {
                    tracing::warn!(%done, "automatic repair");
                    return;
                }
                Err(e) => crate::log_every!(
                    Duration::from_secs(60),
                    warn,
                    error = %e,
                    "automatic repair not possible yet; retrying"
                ),
            }
        }
    }
}
