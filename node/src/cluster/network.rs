//! Raft network over gRPC: one lazily connected, mutually authenticated
//! channel per peer address, shared by Raft replication and forwarding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use raft_store::{Node, NodeId, TypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::pb;
use crate::tls::{grpc_client_tls, TlsMaterial};

/// Time allowed to establish TCP + TLS to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before openraft retries an unreachable peer; short so a restarted
/// node is picked up again quickly.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(200);

/// Failure of one RPC to a peer.
#[derive(Debug, thiserror::Error)]
pub enum RpcFailure {
    /// The peer could not be reached (connect, TLS or transport failure).
    #[error("peer {addr} unreachable: {msg}")]
    Unreachable {
        /// Peer address.
        addr: String,
        /// What went wrong.
        msg: String,
    },
    /// The peer answered with something that is not a valid reply.
    #[error("peer {addr}: {msg}")]
    Protocol {
        /// Peer address.
        addr: String,
        /// What went wrong.
        msg: String,
    },
}

/// Channels to peers, keyed by cluster address (a node id can move).
#[derive(Clone)]
pub struct Peers {
    tls: Arc<TlsMaterial>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Peers {
    /// A cache that dials peers with `tls`.
    pub fn new(tls: TlsMaterial) -> Self {
        Self {
            tls: Arc::new(tls),
            channels: Arc::default(),
        }
    }

    /// The cached channel to `addr`, created (not yet connected) on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, RpcFailure> {
        let mut map = self
            .channels
            .lock()
            .map_err(|_| unreachable_err(addr, "channel cache poisoned"))?;
        if let Some(ch) = map.get(addr) {
            return Ok(ch.clone());
        }
        let ch = self.endpoint(addr)?.connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint, RpcFailure> {
        let host = host_of(addr);
        Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|e| e.tls_config(grpc_client_tls(&self.tls, host)))
            .map(|e| {
                e.connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_while_idle(true)
            })
            .map_err(|e| unreachable_err(addr, &e.to_string()))
    }

    /// Sends `msg` through `call` with a deadline and decodes the
    /// postcard-encoded reply.
    pub async fn call<M, Resp, F, Fut>(
        &self,
        addr: &str,
        msg: M,
        timeout: Option<Duration>,
        call: F,
    ) -> Result<Resp, RpcFailure>
    where
        Resp: DeserializeOwned,
        F: FnOnce(Channel, tonic::Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<pb::Blob>, tonic::Status>>,
    {
        let mut request = tonic::Request::new(msg);
        if let Some(t) = timeout {
            request.set_timeout(t);
        }
        let reply = call(self.channel(addr)?, request)
            .await
            .map_err(|s| status_failure(addr, &s))?;
        postcard::from_bytes(&reply.into_inner().data).map_err(|e| RpcFailure::Protocol {
            addr: addr.to_string(),
            msg: format!("decode: {e}"),
        })
    }
}

/// Postcard-encodes `v` into a [`pb::Blob`].
pub fn blob<T: Serialize>(addr: &str, v: &T) -> Result<pb::Blob, RpcFailure> {
    postcard::to_allocvec(v)
        .map(|data| pb::Blob { data })
        .map_err(|e| RpcFailure::Protocol {
            addr: addr.to_string(),
            msg: format!("encode: {e}"),
        })
}

/// The host part of `host:port` (brackets stripped from IPv6 literals), as
/// checked against the peer certificate's SANs.
pub fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn unreachable_err(addr: &str, msg: &str) -> RpcFailure {
    RpcFailure::Unreachable {
        addr: addr.to_string(),
        msg: msg.to_string(),
    }
}

fn status_failure(addr: &str, s: &tonic::Status) -> RpcFailure {
    use tonic::Code;
    match s.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            unreachable_err(addr, &format!("{:?}: {}", s.code(), s.message()))
        }
        _ => RpcFailure::Protocol {
            addr: addr.to_string(),
            msg: format!("{:?}: {}", s.code(), s.message()),
        },
    }
}

/// Builds per-peer [`Network`]s for openraft.
#[derive(Clone)]
pub struct NetworkFactory {
    peers: Peers,
}

impl NetworkFactory {
    /// Raft networking over the shared channel cache.
    pub fn new(peers: Peers) -> Self {
        Self { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        Network {
            peers: self.peers.clone(),
            target,
            addr: node.cluster_addr.clone(),
        }
    }
}

/// Raft RPCs to one peer.
pub struct Network {
    peers: Peers,
    target: NodeId,
    addr: String,
}

type RemoteResult<T, E> = Result<T, RaftError<NodeId, E>>;

impl Network {
    async fn send<Req, Resp, E, F, Fut>(
        &self,
        req: &Req,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(Channel, tonic::Request<pb::Blob>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<pb::Blob>, tonic::Status>>,
    {
        let to_rpc = |f: RpcFailure| match f {
            RpcFailure::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&f)),
            RpcFailure::Protocol { .. } => RPCError::Network(NetworkError::new(&f)),
        };
        let msg = blob(&self.addr, req).map_err(to_rpc)?;
        let reply: RemoteResult<Resp, E> = self
            .peers
            .call(&self.addr, msg, Some(option.hard_ttl()), call)
            .await
            .map_err(to_rpc)?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Network {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.send(&rpc, &option, |ch, r| async move {
            pb::raft_client::RaftClient::new(ch).append_entries(r).await
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.send(&rpc, &option, |ch, r| async move {
            pb::raft_client::RaftClient::new(ch)
                .install_snapshot(r)
                .await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.send(&rpc, &option, |ch, r| async move {
            pb::raft_client::RaftClient::new(ch).vote(r).await
        })
        .await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_is_extracted_for_sni_and_san_checks() {
        assert_eq!(host_of("127.0.0.1:8454"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8454"), "::1");
        assert_eq!(host_of("node1.example:8454"), "node1.example");
    }
}
