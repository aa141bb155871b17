//! Lost quorum: `coffer operator raft recover --peers FILE`, run offline on
//! each surviving node, makes the survivors the whole membership (Vault's
//! `peers.json`). See `raft_store::recover_membership` for what it writes.

use std::collections::BTreeMap;
use std::path::Path;

use raft_store::{Node, NodeId};
use serde::Deserialize;

use super::ClusterError;
use crate::config::Config;

/// One line of the peers file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerEntry {
    node_id: NodeId,
    api_addr: String,
    cluster_addr: String,
}

/// Reads the peers file: a JSON array of `{node_id, api_addr, cluster_addr}`.
fn read_peers(path: &Path) -> Result<BTreeMap<NodeId, Node>, ClusterError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ClusterError::Invalid(format!("reading {}: {e}", path.display())))?;
    let entries: Vec<PeerEntry> = serde_json::from_slice(&bytes).map_err(|e| {
        ClusterError::Invalid(format!(
            "{} is not a peers file (a JSON array of {{\"node_id\", \"api_addr\", \"cluster_addr\"}}): {e}",
            path.display()
        ))
    })?;
    let mut members = BTreeMap::new();
    for p in entries {
        let node = Node {
            api_addr: p.api_addr,
            cluster_addr: p.cluster_addr,
        };
        if members.insert(p.node_id, node).is_some() {
            return Err(ClusterError::Invalid(format!(
                "node {} is listed twice in {}",
                p.node_id,
                path.display()
            )));
        }
    }
    Ok(members)
}

/// Rewrites the membership of the stopped node configured by `config` to
/// the peers in `peers`. The node itself must be one of them.
pub fn recover_offline(config: &Config, peers: &Path) -> Result<String, ClusterError> {
    let members = read_peers(peers)?;
    if !members.contains_key(&config.node_id) {
        return Err(ClusterError::Invalid(format!(
            "this node ({}) is not in {}: list every surviving node, this one included",
            config.node_id,
            peers.display()
        )));
    }
    let log_id = raft_store::recover_membership(&config.data_dir, &members)?;
    let ids: Vec<String> = members.keys().map(u64::to_string).collect();
    tracing::warn!(
        event = "raft.recovered",
        node_id = config.node_id,
        members = %ids.join(","),
        index = log_id.index,
        "lost-quorum recovery: the membership is now the listed survivors"
    );
    Ok(format!(
        "membership of node {} set to [{}] at log index {}. Start every listed node now. \
         Destroyed members must never rejoin with their old data dirs: wipe them and join \
         them again as new nodes.",
        config.node_id,
        ids.join(", "),
        log_id.index
    ))
}
