//! [`ClusterNode`]: the node-local Raft handle with leader forwarding.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use openraft::Raft;
use raft_store::{
    LogStore, Node, NodeId, Request, Response, StateMachineStore, TypeConfig, Versioned,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::election::{Driver, LeaderContact, Timing};
use super::forward::{AdminRequest, AdminResult, ForwardError, ReadIndexResult, WriteResult};
use super::grpc::{ForwardService, RaftService};
use super::identity::IdentityFile;
use super::integrity::{self, Checker, CorruptFlag, IntegrityService};
use super::network::{blob, limited, NetworkFactory, Peers, RpcFailure};
use super::proposals::ProposalBatcher;
use super::read_index::ReadIndexBatcher;
use super::{
    membership, pb, raft_config, ClusterConfig, ClusterError, PeersInfo, RaftTuning, ADMIN_TIMEOUT,
    MAX_ATTEMPTS, MAX_ENTRY_BYTES, OP_TIMEOUT, RETRY_DELAY,
};
use crate::engine::store::StoreError;

#[path = "node_dr.rs"]
mod dr_ops;
#[path = "node_health.rs"]
mod health_ops;
#[path = "node_repair.rs"]
mod repair_ops;
pub use dr_ops::DrStatus;

/// Reset streams the cluster port tolerates before closing a connection.
const CLUSTER_MAX_PENDING_RESETS: usize = 4096;
/// How long a graceful gRPC shutdown may take before the server is aborted.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(2);

/// A running cluster member.
pub struct ClusterNode {
    /// The openraft instance.
    pub raft: Raft<TypeConfig>,
    id: NodeId,
    sm: StateMachineStore,
    log: LogStore,
    peers: Peers,
    identity: Arc<IdentityFile>,
    flag: Arc<CorruptFlag>,
    /// Set when this node's cluster was superseded by a promoted DR site.
    superseded: Arc<super::dr::Superseded>,
    data_dir: std::path::PathBuf,
    /// Outcome of the automated snapshots this node took (as leader).
    pub(crate) auto_snapshots: Mutex<super::snapshot_file::AutoSnapshotStatus>,
    restart: tokio::sync::Notify,
    contact: Arc<LeaderContact>,
    tuning: RaftTuning,
    /// The cluster CA (part of a new cluster's id).
    ca_pem: String,
    stale_reads: bool,
    reads: Arc<ReadIndexBatcher>,
    proposals: Arc<ProposalBatcher>,
    local_addr: SocketAddr,
    server: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
    elections: JoinHandle<()>,
    checker: Option<JoinHandle<()>>,
}

/// Where an operation must run.
enum Target {
    Local,
    Remote(Node),
}

impl ClusterNode {
    /// Opens the Raft storage, starts openraft and the gRPC server (mTLS).
    pub async fn start(cfg: ClusterConfig) -> Result<Arc<Self>, ClusterError> {
        let config = Arc::new(raft_config(cfg.snapshot_logs, &cfg.tuning)?);
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| {
            ClusterError::Invalid(format!("creating {}: {e}", cfg.data_dir.display()))
        })?;
        // Before any Raft state is touched: is this dir ours?
        let identity = Arc::new(IdentityFile::open(&cfg.data_dir, cfg.node_id)?);
        if let Some(done) = integrity::install_staged(&cfg.data_dir)? {
            tracing::warn!(%done, "a repair was completed at start");
        }
        if let Some(done) = super::dr::install_staged(&cfg.data_dir, cfg.node_id, &identity)? {
            tracing::warn!(%done, "a disaster-recovery promotion was installed at start");
        }
        let (log, sm) = open_storage(&cfg)?;
        let flag = Arc::new(CorruptFlag::load(&cfg.data_dir));
        let superseded = Arc::new(super::dr::Superseded::load(&cfg.data_dir));
        let peers = Peers::new(cfg.tls.clone(), identity.clone(), &cfg.tuning)
            .with_superseded(superseded.clone());
        let raft = Raft::new(
            cfg.node_id,
            config,
            NetworkFactory::new(peers.clone()),
            log.clone(),
            sm.clone(),
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let reads = ReadIndexBatcher::new(raft.clone());
        let proposals = ProposalBatcher::new(raft.clone(), cfg.tuning.proposals_in_flight);
        let contact = Arc::new(LeaderContact::default());
        let services = Services {
            integrity: IntegrityService::new(
                raft.clone(),
                sm.clone(),
                flag.clone(),
                identity.clone(),
            ),
            raft: RaftService::new(
                raft.clone(),
                contact.clone(),
                identity.clone(),
                log.clone(),
                Timing::of(&cfg.tuning),
            ),
            forward: ForwardService::new(
                raft.clone(),
                reads.clone(),
                proposals.clone(),
                identity.clone(),
                cfg.join_token.clone(),
                sm.clone(),
                superseded.clone(),
            ),
        };
        let (local_addr, server) = serve(&cfg, services).await?;
        let driver = Driver {
            raft: raft.clone(),
            contact: contact.clone(),
            log: log.clone(),
            peers: peers.clone(),
            id: cfg.node_id,
            timing: Timing::of(&cfg.tuning),
            flag: flag.clone(),
            started: Instant::now(),
        };
        let elections = tokio::spawn(driver.run());
        tokio::spawn(super::dr::finish_promotion(
            raft.clone(),
            sm.clone(),
            cfg.data_dir.clone(),
        ));
        // Both end by themselves when Raft shuts down.
        tokio::spawn(health_ops::count_leader_changes(raft.clone()));
        tokio::spawn(super::snapshot_pace::run(
            raft.clone(),
            sm.clone(),
            cfg.snapshot_logs,
            peers.snapshot_transfers(),
        ));
        let checker = (cfg.tuning.corruption_check_interval_secs > 0).then(|| {
            let checker = Checker {
                raft: raft.clone(),
                sm: sm.clone(),
                flag: flag.clone(),
                peers: peers.clone(),
                id: cfg.node_id,
            };
            tokio::spawn(checker.run(Duration::from_secs(
                cfg.tuning.corruption_check_interval_secs,
            )))
        });
        Ok(Arc::new(Self {
            raft,
            id: cfg.node_id,
            sm,
            log,
            peers,
            identity,
            flag,
            superseded,
            data_dir: cfg.data_dir.clone(),
            auto_snapshots: Mutex::default(),
            restart: tokio::sync::Notify::new(),
            contact,
            tuning: cfg.tuning,
            ca_pem: cfg.tls.ca_pem.clone(),
            stale_reads: cfg.stale_reads,
            reads,
            proposals,
            local_addr,
            server: Mutex::new(Some(server)),
            elections,
            checker,
        }))
    }

    /// The address the gRPC server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Initialises a new cluster with `members` unless this node already
    /// belongs to one. Safe to call again (on any node of the new cluster).
    pub async fn bootstrap(&self, members: BTreeMap<NodeId, Node>) -> Result<(), ClusterError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        // A new cluster gets its id here; joining nodes learn it from the
        // first RPC of its leader. Derived, not random, so that two nodes
        // told to bootstrap the same cluster agree on it.
        if self.identity.cluster_id().is_none() {
            self.identity
                .adopt(&super::identity::derive_cluster_id(&self.ca_pem, &members))?;
        }
        match self.raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ClusterError::Raft(e.to_string())),
        }
    }

    /// Auto-join: until this node belongs to a cluster, asks the members at
    /// `targets` to add it (learner, then voter), presenting `token`.
    /// Runs in the background; returns at once.
    pub fn retry_join(&self, targets: Vec<String>, token: &str, advertise: Node) {
        let request = super::join::JoinRequest {
            token: token.to_string(),
            node_id: self.id,
            node: advertise,
        };
        tokio::spawn(super::join::run(
            self.raft.clone(),
            self.peers.clone(),
            targets,
            request,
        ));
    }

    /// Replicates `req` through the leader (forwarding when this node is a
    /// follower) and returns once this node has applied it, so a read here
    /// afterwards sees the write. Retries keep the same request, whose id
    /// makes a repeated application a no-op.
    pub async fn propose(&self, req: Request) -> Result<Response, StoreError> {
        let size = super::request_bytes(&req);
        if size > MAX_ENTRY_BYTES {
            // It could never be replicated in one message; refuse it before
            // it reaches the log (where it would block replication for good).
            return Err(StoreError::TooLarge(format!(
                "a replicated transaction of {size} bytes exceeds the limit of {MAX_ENTRY_BYTES}"
            )));
        }
        if self.is_dr_replica() {
            return Err(StoreError::ReadOnly(super::dr::DR_WRITE_REFUSED.into()));
        }
        if let Some(reason) = self.superseded.reason() {
            return Err(StoreError::ReadOnly(reason));
        }
        let reply = self
            .with_leader(OP_TIMEOUT, |target| {
                let req = req.clone();
                async move {
                    match target {
                        Target::Local => self.proposals.write(req).await,
                        Target::Remote(node) => self.remote_write(&node, &req).await,
                    }
                }
            })
            .await
            .map_err(|e| match e {
                // A leader refuses a write only when its cluster is superseded.
                ForwardError::Refused(m) => StoreError::ReadOnly(m),
                other => other.into(),
            })?;
        self.wait_applied(reply.log_index).await?;
        Ok(reply.response)
    }

    /// Returns once the local state machine reflects every write committed
    /// before the call (ReadIndex through the leader).
    pub async fn read_fence(&self) -> Result<(), StoreError> {
        if self.stale_reads {
            return Ok(());
        }
        let index = self
            .with_leader(OP_TIMEOUT, |target| async move {
                match target {
                    Target::Local => self.reads.read_index().await,
                    Target::Remote(node) => self.remote_read_index(&node).await,
                }
            })
            .await?;
        self.wait_applied(index).await
    }

    /// Hex SHA-256 over the local state machine, with the applied index
    /// before and after hashing (equal when no entry was applied meanwhile),
    /// so replicas can be compared once they have applied the same log.
    pub fn digest(&self) -> Result<(String, u64, u64), StoreError> {
        let before = self.sm.applied_index();
        let digest = self
            .sm
            .ordered_digest()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok((digest, before, self.sm.applied_index()))
    }

    /// A snapshot file of this node covering every write committed before
    /// the call (ReadIndex fence, then a snapshot at or after the applied
    /// index, built if needed): what `operator snapshot save` streams. The
    /// values in it are barrier ciphertext, as in the state. The handle
    /// stays readable if a newer snapshot prunes the file meanwhile.
    pub async fn backup_snapshot(
        &self,
    ) -> Result<(std::path::PathBuf, std::fs::File), ClusterError> {
        self.read_fence()
            .await
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        let index = self.sm.applied_index();
        super::integrity::snapshot_covering(&self.raft, &self.sm, index)
            .await
            .map_err(|s| ClusterError::Unavailable(s.message().to_string()))
    }

    /// The node's data directory.
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The state's additive digest right after `index` was applied (`None`:
    /// the index is no longer among the recent ones kept), or the current
    /// one without an index. Equal on members at equal indexes, and equal to
    /// the `kv_digest` of a snapshot file at that index.
    pub fn state_digest(&self, index: Option<u64>) -> Option<raft_store::StateDigest> {
        match index {
            Some(i) => self.sm.digest_at(i),
            None => Some(self.sm.digest()),
        }
    }

    /// Reads one key from the local state machine (no fence, no decryption).
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Versioned>, StoreError> {
        self.sm.get(key).map_err(|e| self.storage_error(e))
    }

    /// A read error of the state machine; damage marks this node corrupt.
    fn storage_error(&self, e: raft_store::StorageError) -> StoreError {
        if e.kind() == raft_store::ErrorKind::Corrupt {
            self.flag.mark(&format!("reading the state failed: {e}"));
            return StoreError::Corrupt(e.to_string());
        }
        StoreError::Internal(e.to_string())
    }

    /// Why this node considers its state damaged, if it does. Such a node
    /// serves no data and never leads until it is repaired.
    pub fn corrupt(&self) -> Option<String> {
        self.flag.corrupt()
    }

    /// Records that this node's state is damaged (a value that fails the
    /// barrier's authentication, a record that does not decode).
    pub fn mark_corrupt(&self, reason: &str) {
        self.flag.mark(reason);
    }

    /// Scans the local state machine (no fence, no decryption).
    pub fn scan_raw(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Versioned)>, StoreError> {
        self.sm
            .scan_prefix(prefix, start_after, limit)
            .map_err(|e| self.storage_error(e))
    }

    /// Adds `id` as a learner and then as a voter (run on the leader).
    pub async fn join(&self, id: NodeId, node: Node) -> Result<PeersInfo, ClusterError> {
        self.admin(AdminRequest::Join { id, node }).await
    }

    /// Removes `id` from the cluster (run on the leader).
    pub async fn remove(&self, id: NodeId) -> Result<PeersInfo, ClusterError> {
        self.admin(AdminRequest::Remove { id }).await
    }

    /// The membership as this node knows it.
    pub async fn peers(&self) -> Result<PeersInfo, ClusterError> {
        Ok(membership::peers_info(&self.raft))
    }

    /// The cluster id this node belongs to, once known.
    pub fn cluster_id(&self) -> Option<String> {
        self.identity.cluster_id()
    }

    /// On the leader: milliseconds since a quorum last acknowledged it
    /// (`/metrics`); `None` on followers.
    pub fn millis_since_quorum_ack(&self) -> Option<u64> {
        self.raft.metrics().borrow().millis_since_quorum_ack
    }

    /// Stops Raft and the gRPC server.
    pub async fn shutdown(&self) {
        self.elections.abort();
        if let Some(c) = &self.checker {
            c.abort();
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        let server = self.server.lock().ok().and_then(|mut s| s.take());
        if let Some((stop, handle)) = server {
            let _ = stop.send(());
            let abort = handle.abort_handle();
            if tokio::time::timeout(SERVER_STOP_GRACE, handle)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    async fn admin(&self, req: AdminRequest) -> Result<PeersInfo, ClusterError> {
        self.with_leader(ADMIN_TIMEOUT, |target| {
            let req = req.clone();
            async move {
                match target {
                    Target::Local => membership::leader_admin(&self.raft, &self.sm, req).await,
                    Target::Remote(node) => self.remote_admin(&node, &req).await,
                }
            }
        })
        .await
        .map_err(|e| match e {
            ForwardError::Refused(m) => ClusterError::Invalid(m),
            other => ClusterError::Unavailable(other.to_string()),
        })
    }

    /// Runs `op` at the current leader, following leader hints and retrying
    /// while leadership is unknown or moving, within `timeout`.
    async fn with_leader<T, F, Fut>(&self, timeout: Duration, mut op: F) -> Result<T, ForwardError>
    where
        F: FnMut(Target) -> Fut,
        Fut: Future<Output = Result<T, ForwardError>>,
    {
        let deadline = Instant::now() + timeout;
        let mut hint: Option<(NodeId, Option<Node>)> = None;
        let mut last = ForwardError::Unavailable("no leader known".into());
        for _ in 0..MAX_ATTEMPTS {
            if let Some(target) = self.target(hint.take()) {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, op(target)).await {
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(ForwardError::ForwardToLeader {
                        leader_id,
                        leader_node,
                    })) => {
                        hint = leader_id.map(|id| (id, leader_node));
                        last = ForwardError::Unavailable("leader moved".into());
                        if hint.is_some() {
                            continue;
                        }
                    }
                    Ok(Err(ForwardError::Unavailable(m))) => last = ForwardError::Unavailable(m),
                    Ok(Err(refused)) => return Err(refused),
                    Err(_) => return Err(ForwardError::Unavailable("timed out".into())),
                }
            }
            if Instant::now() + RETRY_DELAY >= deadline {
                break;
            }
            tokio::time::sleep(RETRY_DELAY).await;
        }
        Err(last)
    }

    /// The leader to talk to: a fresh hint first, else the local view.
    fn target(&self, hint: Option<(NodeId, Option<Node>)>) -> Option<Target> {
        let (leader, node) = match hint {
            Some(h) => h,
            None => (self.raft.metrics().borrow().current_leader?, None),
        };
        if leader == self.id {
            return Some(Target::Local);
        }
        let node = node.or_else(|| {
            let m = self.raft.metrics().borrow().clone();
            m.membership_config.membership().get_node(&leader).cloned()
        })?;
        Some(Target::Remote(node))
    }

    async fn remote_write(&self, node: &Node, req: &Request) -> WriteResult {
        let addr = &node.cluster_addr;
        let msg = blob(addr, req).map_err(unavailable)?;
        let reply: WriteResult = self
            .peers
            .call(addr, msg, Some(OP_TIMEOUT), |ch, r| async move {
                limited!(
                    pb::forward_client::ForwardClient::new(ch),
                    self.peers.max_message_bytes()
                )
                .write(r)
                .await
            })
            .await
            .map_err(unavailable)?;
        reply
    }

    async fn remote_read_index(&self, node: &Node) -> ReadIndexResult {
        let addr = &node.cluster_addr;
        let reply: ReadIndexResult = self
            .peers
            .call(addr, pb::Empty {}, Some(OP_TIMEOUT), |ch, r| async move {
                limited!(
                    pb::forward_client::ForwardClient::new(ch),
                    self.peers.max_message_bytes()
                )
                .read_index(r)
                .await
            })
            .await
            .map_err(unavailable)?;
        reply
    }

    async fn remote_admin(&self, node: &Node, req: &AdminRequest) -> AdminResult {
        let addr = &node.cluster_addr;
        let msg = blob(addr, req).map_err(unavailable)?;
        let reply: AdminResult = self
            .peers
            .call(addr, msg, Some(ADMIN_TIMEOUT), |ch, r| async move {
                limited!(
                    pb::forward_client::ForwardClient::new(ch),
                    self.peers.max_message_bytes()
                )
                .admin(r)
                .await
            })
            .await
            .map_err(unavailable)?;
        reply
    }

    /// Waits until the local state machine applied `index`.
    async fn wait_applied(&self, index: u64) -> Result<(), StoreError> {
        if self.sm.applied_index() >= index {
            return Ok(());
        }
        self.raft
            .wait(Some(OP_TIMEOUT))
            .applied_index_at_least(Some(index), "coffer wait applied")
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(format!("waiting for index {index}: {e}")))
    }
}

impl From<ForwardError> for StoreError {
    fn from(e: ForwardError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

fn unavailable(f: RpcFailure) -> ForwardError {
    ForwardError::Unavailable(f.to_string())
}

/// The highest index replicated to a majority of voters (leader only).
fn quorum_index(m: &openraft::RaftMetrics<NodeId, Node>) -> Option<u64> {
    let repl = m.replication.as_ref()?;
    let mut matched: Vec<u64> = m
        .membership_config
        .membership()
        .voter_ids()
        .map(|id| {
            if id == m.id {
                m.last_log_index.unwrap_or(0)
            } else {
                repl.get(&id).and_then(|l| l.map(|l| l.index)).unwrap_or(0)
            }
        })
        .collect();
    if matched.is_empty() {
        return None;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched.get(matched.len() / 2).copied()
}

fn describe(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{} ms", d.as_millis()),
        None => "ever since this node started".into(),
    }
}

/// The gRPC services of one node.
struct Services {
    raft: RaftService,
    forward: ForwardService,
    integrity: IntegrityService,
}

/// Opens the Raft storage. When its integrity checks fail and
/// `auto_repair` is set, repairs from the node's own snapshot first;
/// otherwise the error says what to run.
fn open_storage(cfg: &ClusterConfig) -> Result<(LogStore, StateMachineStore), ClusterError> {
    let opts = raft_store::StoreOptions {
        log_store: cfg.tuning.log_store,
        cache_bytes: cfg.tuning.cache_mb.saturating_mul(1 << 20),
        ..Default::default()
    };
    match raft_store::open_with(&cfg.data_dir, &opts) {
        Err(e) if e.kind() == raft_store::ErrorKind::Corrupt && cfg.tuning.auto_repair => {
            tracing::error!(error = %e, "the state failed its integrity check; auto_repair is on");
            let done = integrity::repair_locally(&cfg.data_dir)?;
            tracing::warn!(%done, "repaired at start");
            Ok(raft_store::open_with(&cfg.data_dir, &opts)?)
        }
        other => Ok(other?),
    }
}

/// Binds the listener and spawns the mTLS gRPC server.
async fn serve(
    cfg: &ClusterConfig,
    services: Services,
) -> Result<(SocketAddr, (oneshot::Sender<()>, JoinHandle<()>)), ClusterError> {
    let transport = |e: &dyn std::fmt::Display| ClusterError::Transport(e.to_string());
    let listener = tokio::net::TcpListener::bind(cfg.listen_addr)
        .await
        .map_err(|e| transport(&format!("bind {}: {e}", cfg.listen_addr)))?;
    let local_addr = listener.local_addr().map_err(|e| transport(&e))?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let router = tonic::transport::Server::builder()
        // Every RPC the leader gives up on (a heartbeat past its deadline
        // during a pause or partition) resets a stream; h2's default of 20
        // pending resets then closes the whole connection to a peer that
        // is authenticated by mutual TLS and no abuser.
        .http2_max_pending_accept_reset_streams(Some(CLUSTER_MAX_PENDING_RESETS))
        .tls_config(crate::tls::grpc_server_tls(&cfg.tls))
        .map_err(|e| transport(&e))?
        .add_service(limited!(
            pb::raft_server::RaftServer::new(services.raft),
            cfg.tuning.max_message_bytes
        ))
        .add_service(limited!(
            pb::forward_server::ForwardServer::new(services.forward),
            cfg.tuning.max_message_bytes
        ))
        .add_service(limited!(
            pb::integrity_server::IntegrityServer::new(services.integrity),
            cfg.tuning.max_message_bytes
        ));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let stop = async {
            let _ = stop_rx.await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(error = %e, "cluster gRPC server stopped");
        }
    });
    Ok((local_addr, (stop_tx, handle)))
}

#[cfg(test)]
mod tests {
    use super::super::raft_config;

    #[test]
    fn raft_timing_is_valid_for_openraft() {
        let c = raft_config(super::super::SNAPSHOT_LOGS, &Default::default()).unwrap();
        assert!(c.election_timeout_min > c.heartbeat_interval * 3);
    }
}
