//! Auto-join (`retry_join`): a node with an empty data dir asks the cluster
//! to add it, with no operator step — what compose and Kubernetes need.
//!
//! Two things authenticate the request: the TLS client certificate (issued
//! by the cluster CA, checked by the gRPC server for every call) and the
//! join token, a shared secret every member and joiner is configured with.
//! A member compares digests of the token in constant time. The leader then
//! adds the node as a learner and promotes it to voter once it caught up
//! ([`super::membership`]); a follower answers with the leader's address and
//! the joiner asks there.

use std::net::SocketAddr;
use std::time::Duration;

use raft_store::{Node, NodeId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::transport::Endpoint;

use super::forward::{AdminRequest, AdminResult, ForwardError, RaftHandle};
use super::network::{host_of, Peers};
use super::{membership, pb, ADMIN_TIMEOUT};
use crate::tls::grpc_client_tls;

/// What a joining node sends.
#[derive(Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The shared join token.
    pub token: String,
    /// The joining node's Raft id.
    pub node_id: NodeId,
    /// Its advertised addresses.
    pub node: Node,
}

impl Drop for JoinRequest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

/// The digest of a configured join token; members keep only this.
#[derive(Clone)]
pub struct JoinToken([u8; 32]);

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinToken(<redacted>)")
    }
}

impl JoinToken {
    /// Digests `token`.
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(Self::new(presented).0.ct_eq(&self.0))
    }
}

/// The member side: checks the token, then adds the node if this member
/// leads, or names the leader.
pub async fn answer(
    raft: &RaftHandle,
    sm: &raft_store::StateMachineStore,
    expected: Option<&JoinToken>,
    req: JoinRequest,
) -> AdminResult {
    let Some(expected) = expected else {
        return Err(ForwardError::Refused(
            "this cluster does not accept auto-join: its members have no join token configured"
                .into(),
        ));
    };
    if !expected.matches(&req.token) {
        // Logged here, on the member, where an operator looks for intruders;
        // the token itself is never logged.
        tracing::warn!(
            node_id = req.node_id,
            "refused a join request: wrong join token"
        );
        return Err(ForwardError::Refused("join token refused".into()));
    }
    let metrics = raft.metrics().borrow().clone();
    // A node id names one member for good: a second node claiming it (a
    // copied config) would take over its place in the membership.
    if let Some(known) = metrics
        .membership_config
        .membership()
        .get_node(&req.node_id)
    {
        if *known != req.node {
            return Err(ForwardError::Refused(format!(
                "node id {} is already a member at {}; give the new node an unused node_id",
                req.node_id, known.cluster_addr
            )));
        }
    }
    if metrics.current_leader != Some(metrics.id) {
        let leader_node = metrics
            .current_leader
            .and_then(|l| metrics.membership_config.membership().get_node(&l).cloned());
        return Err(ForwardError::ForwardToLeader {
            leader_id: metrics.current_leader,
            leader_node,
        });
    }
    tracing::info!(node_id = req.node_id, "auto-join: adding node");
    membership::leader_admin(
        raft,
        sm,
        AdminRequest::Join {
            id: req.node_id,
            node: req.node.clone(),
        },
    )
    .await
}

/// First and longest pause between join rounds.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Deadline of one attempt to reach a member (a join itself may take up to
/// [`ADMIN_TIMEOUT`] while the new node catches up).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why one join attempt failed.
#[derive(Debug)]
enum Attempt {
    /// Try the leader at this address next.
    Leader(String),
    /// Refused for good by this member (wrong token, or none configured).
    Refused(String),
    /// Unreachable, no leader yet, timed out: try elsewhere or later.
    Retry(String),
}

/// The joining side: until this node is part of a cluster, asks the members
/// named in `targets` (each `host:port`; a name may resolve to several
/// addresses, each tried) to add it. Returns once a member said it was
/// added, or when it finds itself initialised (a leader reached it first).
pub async fn run(raft: RaftHandle, peers: Peers, targets: Vec<String>, request: JoinRequest) {
    let mut pause = RETRY_FIRST;
    let mut last_refusal: Option<String> = None;
    for round in 0u64.. {
        // A voter is done. A node that is only initialised keeps asking: a
        // learner whose promotion failed (the leader then removes it) would
        // otherwise wait forever; asking again is harmless (the leader's
        // add is idempotent for the same addresses).
        if is_voter(&raft, request.node_id) {
            tracing::info!("auto-join: this node is a voter");
            return;
        }
        for target in &targets {
            match try_target(&peers, target, &request).await {
                Ok(()) => {
                    tracing::info!(%target, "auto-join: added to the cluster as a voter");
                    return;
                }
                // A refusal needs a human (wrong token): said once per reason.
                Err(Attempt::Refused(m)) => {
                    if last_refusal.as_deref() != Some(m.as_str()) {
                        tracing::error!(%target, reason = %m, "auto-join refused; check join_token");
                        last_refusal = Some(m);
                    }
                }
                // Members not up yet is normal at start: said now and then.
                Err(Attempt::Retry(m) | Attempt::Leader(m)) => {
                    if round % 12 == 0 {
                        tracing::info!(%target, reason = %m, "auto-join: waiting for the cluster");
                    }
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// Whether `id` is a voter in the membership this node knows.
fn is_voter(raft: &RaftHandle, id: NodeId) -> bool {
    let metrics = raft.metrics().borrow().clone();
    metrics
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == id)
}

/// Tries every address `target` resolves to, following a leader hint once.
/// `Ok` when added; else a refusal, or why to retry.
async fn try_target(peers: &Peers, target: &str, req: &JoinRequest) -> Result<(), Attempt> {
    let host = host_of(target).to_string();
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(target).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            return Err(Attempt::Retry(format!("cannot resolve {target}: {e}")));
        }
    };
    let mut refusal = None;
    let mut retry = None;
    for addr in addrs {
        let mut next = Some((addr.to_string(), host.clone()));
        // One hop to the leader a follower named.
        for _ in 0..2 {
            let Some((at, domain)) = next.take() else {
                break;
            };
            match attempt(peers, &at, &domain, req).await {
                Ok(()) => return Ok(()),
                Err(Attempt::Leader(leader)) => {
                    let domain = host_of(&leader).to_string();
                    next = Some((leader, domain));
                }
                Err(Attempt::Refused(m)) => refusal = Some(m),
                Err(Attempt::Retry(m)) => retry = Some(format!("{at}: {m}")),
            }
        }
    }
    Err(match (refusal, retry) {
        (Some(m), _) => Attempt::Refused(m),
        (None, Some(m)) => Attempt::Retry(m),
        (None, None) => Attempt::Retry(format!("{target} resolves to no address")),
    })
}

/// One Join RPC to `addr`, whose certificate must name `domain`.
async fn attempt(
    peers: &Peers,
    addr: &str,
    domain: &str,
    req: &JoinRequest,
) -> Result<(), Attempt> {
    let retry = |m: String| Attempt::Retry(m);
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .and_then(|e| e.tls_config(grpc_client_tls(peers.tls(), domain)))
        .map_err(|e| retry(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT);
    let channel = tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect())
        .await
        .map_err(|_| retry("connect timed out".into()))?
        .map_err(|e| retry(format!("connect: {e}")))?;
    let data = postcard::to_allocvec(req).map_err(|e| retry(e.to_string()))?;
    let request = peers.request(pb::Blob { data }, Some(ADMIN_TIMEOUT));
    let mut client = pb::forward_client::ForwardClient::new(channel)
        .max_decoding_message_size(peers.max_message_bytes());
    let reply = tokio::time::timeout(ADMIN_TIMEOUT, client.join(request))
        .await
        .map_err(|_| retry("no answer in time".into()))?
        .map_err(|s| retry(format!("{:?}: {}", s.code(), s.message())))?;
    let result: AdminResult =
        postcard::from_bytes(&reply.into_inner().data).map_err(|e| retry(e.to_string()))?;
    match result {
        Ok(_) => Ok(()),
        Err(ForwardError::ForwardToLeader {
            leader_node: Some(node),
            ..
        }) => Err(Attempt::Leader(node.cluster_addr)),
        Err(ForwardError::ForwardToLeader { .. }) => Err(retry("no leader yet".into())),
        Err(ForwardError::Refused(m)) => Err(Attempt::Refused(m)),
        Err(ForwardError::Unavailable(m)) => Err(retry(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_token_matches_itself_only() {
        let token = JoinToken::new("correct-horse-battery-staple");
        assert!(token.matches("correct-horse-battery-staple"));
        assert!(!token.matches("correct-horse-battery-stapl"));
        assert!(!token.matches(""));
    }
}
