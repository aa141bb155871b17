//! Raft network over gRPC: one lazily connected, mutually authenticated
//! channel per peer address, shared by Raft replication and forwarding.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

use super::snapshot_pace::SnapshotTransfers;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use super::identity::{IdentityFile, CLUSTER_ID_HEADER};
use super::{pb, RaftTuning};
use crate::tls::{grpc_client_tls, TlsMaterial};

/// Time allowed to establish TCP + TLS to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 PING period on peer connections, and how long a PING may go
/// unanswered before the connection is dropped and redialled. Every Raft
/// RPC to a peer shares one TCP connection; after a partition its unacked
/// bytes wait for TCP's exponential retransmission backoff (an 8 s cut left
/// `rto:6656 backoff:5`, the follower heard from the leader again 5.4 s
/// after the heal). RPC deadlines cancel the calls but keep the connection;
/// an unanswered PING replaces it, so a healed peer is reached within
/// about these two periods plus one connect.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// First pause before openraft retries an unreachable peer; short so a
/// restarted node is picked up again quickly. Doubles per failure.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between attempts to reach a peer that stays down: bounds
/// how long a restarted node waits to be contacted, and how often the
/// leader pays for a doomed attempt (a snapshot transfer start, a log line).
const UNREACHABLE_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// One warning per peer per this interval while it stays unreachable.
const UNREACHABLE_LOG_EVERY: Duration = Duration::from_secs(30);

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
    /// The message exceeded the peer's size limit.
    #[error("peer {addr} refused an oversized message: {msg}")]
    TooLarge {
        /// Peer address.
        addr: String,
        /// What the peer said.
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
    identity: Arc<IdentityFile>,
    max_message_bytes: usize,
    /// Per peer: since when it is unreachable, when that was last logged,
    /// failures since. Shared by every [`Network`] to the peer: openraft
    /// builds a new one for each leadership check (every read-index round),
    /// so state kept per `Network` logged one warning per read.
    outages: Arc<Mutex<HashMap<NodeId, Outage>>>,
    /// Snapshot transfers to peers under way (they pace snapshot builds).
    transfers: SnapshotTransfers,
    /// Set when a member refuses this node for belonging to another
    /// cluster (a promoted DR site; see `cluster::dr`).
    superseded: Option<Arc<super::dr::Superseded>>,
}

/// A peer that does not answer: since when, when that was last logged, and
/// how many failed calls were not logged since.
struct Outage {
    since: Instant,
    logged: Instant,
    suppressed: u64,
}

impl Peers {
    /// A cache that dials peers with `tls`, sends this node's cluster id
    /// with every call and accepts replies up to the configured size.
    pub fn new(tls: TlsMaterial, identity: Arc<IdentityFile>, tuning: &RaftTuning) -> Self {
        Self {
            tls: Arc::new(tls),
            channels: Arc::default(),
            identity,
            max_message_bytes: tuning.max_message_bytes,
            outages: Arc::default(),
            transfers: SnapshotTransfers::default(),
            superseded: None,
        }
    }

    /// Records refusals by members that moved to another cluster in `s`.
    pub fn with_superseded(mut self, s: Arc<super::dr::Superseded>) -> Self {
        self.superseded = Some(s);
        self
    }

    /// Snapshot transfers from this node to its peers.
    pub fn snapshot_transfers(&self) -> SnapshotTransfers {
        self.transfers.clone()
    }

    /// A request carrying `msg`, this node's cluster id and a deadline.
    pub fn request<M>(&self, msg: M, timeout: Option<Duration>) -> tonic::Request<M> {
        let mut request = tonic::Request::new(msg);
        if let Some(t) = timeout {
            request.set_timeout(t);
        }
        if let Some(id) = self.identity.cluster_id() {
            if let Ok(v) = id.parse() {
                request.metadata_mut().insert(CLUSTER_ID_HEADER, v);
            }
        }
        request
    }

    /// This node's certificates (the cluster CA and its client identity).
    pub fn tls(&self) -> &TlsMaterial {
        &self.tls
    }

    /// The largest message either side accepts.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
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
                    .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                    .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                    .keep_alive_while_idle(true)
            })
            .map_err(|e| unreachable_err(addr, &e.to_string()))
    }

    /// Sends `msg` through `call` with a deadline and decodes the
    /// postcard-encoded reply. `call` gets a channel whose clients must be
    /// built with [`Peers::limit`].
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
        let request = self.request(msg, timeout);
        let pending = call(self.channel(addr)?, request);
        // tonic starts the gRPC deadline once a connection is ready. Setting
        // one up to a peer that accepts but never answers (a stopped
        // process: the kernel completes the TCP handshake, the TLS handshake
        // has no deadline) would wait for as long as the peer stays stopped,
        // so the deadline covers the whole call. Like an expired gRPC
        // deadline, this is not a reason to back off.
        let reply = match timeout {
            Some(t) => match tokio::time::timeout(t, pending).await {
                Ok(reply) => reply,
                Err(_) => {
                    return Err(RpcFailure::Protocol {
                        addr: addr.to_string(),
                        msg: format!("no answer within {t:?} (connection setup included)"),
                    })
                }
            },
            None => pending.await,
        };
        let reply = reply.map_err(|s| status_failure(addr, &s))?;
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
    let msg = format!("{:?}: {}", s.code(), s.message());
    match s.code() {
        // No connection (refused, reset, TLS failure): back off.
        Code::Unavailable | Code::Unknown => unreachable_err(addr, &msg),
        // Connected but slow (a busy peer, a large batch): not a reason to
        // stay away from it — the next heartbeat retries.
        Code::DeadlineExceeded | Code::Cancelled => RpcFailure::Protocol {
            addr: addr.to_string(),
            msg,
        },
        // The receiver's message limit is below ours (configs differ):
        // the sender must split. (ResourceExhausted also stands for an h2
        // GOAWAY such as "too many reset streams": not a size problem.)
        Code::ResourceExhausted if s.message().contains("length too large") => {
            RpcFailure::TooLarge {
                addr: addr.to_string(),
                msg,
            }
        }
        _ => RpcFailure::Protocol {
            addr: addr.to_string(),
            msg,
        },
    }
}

/// Applies the configured message limits to a generated gRPC client.
macro_rules! limited {
    ($client:expr, $max_bytes:expr) => {
        $client
            .max_decoding_message_size($max_bytes)
            .max_encoding_message_size($max_bytes)
    };
}
pub(crate) use limited;

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
            budget: AppendBudget::new(self.peers.max_message_bytes() / 2),
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
    /// How many bytes one AppendEntries to this peer may carry.
    budget: AppendBudget,
}

/// The byte size of AppendEntries batches to one peer, adapted to how fast
/// the peer takes them. openraft gives every AppendEntries one heartbeat
/// interval to complete (encode, TLS, the follower's decode and fsync) and
/// retries a batch that missed it from scratch: a budget that is too large
/// for the link or the follower's disk means no batch ever lands. So the
/// budget halves when a batch misses its deadline and doubles when a cut
/// batch lands well within it, between a floor and half the message limit.
#[derive(Debug)]
struct AppendBudget {
    bytes: usize,
    max: usize,
}

impl AppendBudget {
    /// Start: small enough to land in a heartbeat interval on slow disks.
    const INITIAL: usize = 512 * 1024;
    /// Never below this (a batch always carries at least one entry anyway).
    const FLOOR: usize = 32 * 1024;

    fn new(max: usize) -> Self {
        Self {
            bytes: Self::INITIAL.min(max),
            max,
        }
    }

    /// A batch cut to the budget landed after `took` of its `ttl`.
    fn landed(&mut self, took: Duration, ttl: Duration) {
        if took < ttl / 4 {
            self.bytes = (self.bytes * 2).min(self.max);
        }
    }

    /// A batch missed its deadline.
    fn missed(&mut self) {
        self.bytes = (self.bytes / 2).max(Self::FLOOR);
    }
}

type RemoteResult<T, E> = Result<T, RaftError<NodeId, E>>;

impl Network {
    /// One call to the peer: the decoded reply, or why there is none.
    async fn call<Resp, F, Fut>(
        &mut self,
        msg: pb::Blob,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RpcFailure>
    where
        Resp: DeserializeOwned,
        F: FnOnce(Channel, tonic::Request<pb::Blob>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<pb::Blob>, tonic::Status>>,
    {
        let result = self
            .peers
            .call(&self.addr, msg, Some(option.hard_ttl()), call)
            .await;
        self.note_reachability(&result);
        if let (Err(RpcFailure::Protocol { msg, .. }), Some(s)) = (&result, &self.peers.superseded)
        {
            if msg.contains(super::dr::FOREIGN_CLUSTER) {
                s.mark(self.target, msg);
            }
        }
        result
    }

    /// One unary `Raft` RPC: `rpc` encoded, `call` on a size-limited client,
    /// the remote Raft's answer decoded.
    #[allow(clippy::result_large_err)]
    async fn raft_call<Req, Resp, E, F, Fut>(
        &mut self,
        rpc: &Req,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(pb::raft_client::RaftClient<Channel>, tonic::Request<pb::Blob>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<pb::Blob>, tonic::Status>>,
    {
        let msg = blob(&self.addr, rpc).map_err(to_rpc_error)?;
        let max = self.peers.max_message_bytes();
        let reply = self
            .call(msg, option, move |ch, r| {
                call(limited!(pb::raft_client::RaftClient::new(ch), max), r)
            })
            .await
            .map_err(to_rpc_error)?;
        self.remote(reply)
    }

    /// The remote Raft's answer, with its error tagged as remote. (The
    /// error type is openraft's; its size is not ours to choose.)
    #[allow(clippy::result_large_err)]
    fn remote<T, E>(
        &self,
        reply: RemoteResult<T, E>,
    ) -> Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>>
    where
        E: std::error::Error,
    {
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// openraft logs every failed RPC; this says once per interval, at
    /// warning level, that a peer is down, and once when it is back.
    fn note_reachability<T>(&mut self, result: &Result<T, RpcFailure>) {
        let now = Instant::now();
        let mut outages = self.peers.outages.lock().unwrap_or_else(|e| e.into_inner());
        match (result, outages.get_mut(&self.target)) {
            (Err(e @ RpcFailure::Unreachable { .. }), None) => {
                tracing::warn!(peer = self.target, error = %e, "peer unreachable");
                let outage = Outage {
                    since: now,
                    logged: now,
                    suppressed: 0,
                };
                outages.insert(self.target, outage);
            }
            (Err(e @ RpcFailure::Unreachable { .. }), Some(outage)) => {
                outage.suppressed += 1;
                if now.duration_since(outage.logged) >= UNREACHABLE_LOG_EVERY {
                    tracing::warn!(
                        peer = self.target,
                        down_for_s = outage.since.elapsed().as_secs(),
                        failed_attempts = outage.suppressed,
                        error = %e,
                        "peer still unreachable"
                    );
                    outage.logged = now;
                    outage.suppressed = 0;
                }
            }
            (Ok(_), Some(outage)) => {
                tracing::info!(
                    peer = self.target,
                    down_for_ms = outage.since.elapsed().as_millis() as u64,
                    "peer reachable again"
                );
                outages.remove(&self.target);
            }
            _ => {}
        }
    }
}

/// Only an unreachable peer makes openraft back off; everything else is
/// retried with the next heartbeat. (openraft's own splitting on
/// `PayloadTooLarge` is not used: retried as a heartbeat it trips an
/// internal assertion; [`AppendBudget`] does the splitting instead.)
fn to_rpc_error<E: std::error::Error>(f: RpcFailure) -> RPCError<NodeId, Node, E> {
    match f {
        RpcFailure::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&f)),
        RpcFailure::TooLarge { .. } | RpcFailure::Protocol { .. } => {
            RPCError::Network(NetworkError::new(&f))
        }
    }
}

/// Encodes the longest prefix of `rpc`'s entries (at least one) whose
/// request fits `budget` bytes. Returns the message and how many entries it
/// carries.
fn fit_append(
    addr: &str,
    mut rpc: AppendEntriesRequest<TypeConfig>,
    budget: usize,
) -> Result<(pb::Blob, usize), RpcFailure> {
    // Cut by the entries' own sizes first: encoding a 6 MB batch only to
    // throw most of it away would spend the RPC's whole deadline.
    let mut bytes = 0;
    let fits = rpc
        .entries
        .iter()
        .take_while(|e| {
            bytes += super::entry_bytes(e);
            bytes <= budget
        })
        .count();
    rpc.entries.truncate(fits.max(1));
    loop {
        let msg = blob(addr, &rpc)?;
        let n = rpc.entries.len();
        if msg.data.len() <= budget || n <= 1 {
            return Ok((msg, n));
        }
        // Entries are of similar size in a batch; aim at 90 % of the budget
        // and shrink further if that still does not fit.
        let estimate = (n as u128 * budget as u128 * 9 / 10 / msg.data.len() as u128) as usize;
        rpc.entries.truncate(estimate.clamp(1, n - 1));
    }
}

impl RaftNetwork<TypeConfig> for Network {
    /// Sends as many entries as fit in one message. When the batch had to
    /// be cut, a success is reported as `PartialSuccess` up to the last entry
    /// sent, and openraft continues from there — replication is bounded by
    /// bytes, not by openraft's entry count.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let total = rpc.entries.len();
        let last_ids: Vec<_> = rpc.entries.iter().map(|e| e.log_id).collect();
        let (msg, sent) = fit_append(&self.addr, rpc, self.budget.bytes).map_err(to_rpc_error)?;
        if msg.data.len() > self.peers.max_message_bytes() {
            // One entry larger than a message: it can never be replicated.
            // Writes are bounded far below this (MAX_ENTRY_BYTES), so only a
            // bug gets here; say so loudly instead of looping silently.
            tracing::error!(
                bytes = msg.data.len(),
                limit = self.peers.max_message_bytes(),
                "a single log entry exceeds the cluster message limit"
            );
        }
        let peers = self.peers.clone();
        // Stop at openraft's soft deadline so the budget learns of a miss
        // before openraft drops this future at the hard one.
        let started = Instant::now();
        let deadline = option.soft_ttl();
        let call = self.call(msg, &option, |ch, r| async move {
            limited!(
                pb::raft_client::RaftClient::new(ch),
                peers.max_message_bytes()
            )
            .append_entries(r)
            .await
        });
        let reply: RemoteResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> =
            match tokio::time::timeout(deadline, call).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(f)) => {
                    if matches!(f, RpcFailure::TooLarge { .. }) {
                        // The peer's message limit is below ours.
                        self.budget.missed();
                    }
                    return Err(to_rpc_error(f));
                }
                Err(_) => {
                    if sent > 1 {
                        self.budget.missed();
                    }
                    let f = RpcFailure::Protocol {
                        addr: self.addr.clone(),
                        msg: format!(
                            "AppendEntries of {sent} entries missed its {deadline:?} deadline"
                        ),
                    };
                    return Err(RPCError::Network(NetworkError::new(&f)));
                }
            };
        let resp = self.remote(reply)?;
        if sent < total {
            self.budget.landed(started.elapsed(), option.hard_ttl());
        }
        match resp {
            AppendEntriesResponse::Success if sent < total => Ok(
                AppendEntriesResponse::PartialSuccess(last_ids.get(sent.wrapping_sub(1)).copied()),
            ),
            other => Ok(other),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let last_chunk = rpc.done;
        self.peers.transfers.chunk_started(self.target);
        let result = self
            .raft_call(&rpc, &option, |mut c, r| async move {
                c.install_snapshot(r).await
            })
            .await;
        self.peers
            .transfers
            .chunk_ended(self.target, result.is_ok(), last_chunk);
        result
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        self.raft_call(&rpc, &option, |mut c, r| async move { c.vote(r).await })
            .await
    }

    /// Exponential: 100 ms, 200 ms, … up to 2 s while the peer stays down.
    fn backoff(&self) -> Backoff {
        Backoff::new(backoff_delays())
    }
}

/// Pauses between attempts to reach a peer that stays down.
fn backoff_delays() -> impl Iterator<Item = Duration> + Send + 'static {
    std::iter::successors(Some(UNREACHABLE_BACKOFF), |d| {
        Some((*d * 2).min(UNREACHABLE_BACKOFF_MAX))
    })
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
