//! Replica integrity: a node that finds its state damaged stops serving it,
//! says so, and gets a good copy back.
//!
//! Three parts:
//! - [`CorruptFlag`]: the node's own verdict, persisted as `CORRUPT.json` in
//!   the data dir so a restart does not resume serving bad data. While it is
//!   set the node answers data requests with 503, reports it in health, and
//!   never campaigns for leadership.
//! - [`check_loop`]: the leader's periodic cross-check (etcd's corruption
//!   check). Every member reports its state digest at one common applied
//!   index; the digests are additive hashes kept per applied entry
//!   (`raft_store::StateMachineStore::digest_at`), so nodes at different
//!   indexes are compared at the same one. Members outside the majority
//!   are marked corrupt; with no majority nothing is marked, and it is
//!   logged.
//! - Repair: a snapshot fetched from a healthy member (or the node's own,
//!   when the damage was found by the storage checks at open) is staged in
//!   `repair/` and installed before Raft starts, with
//!   `raft_store::repair_state_from_snapshot`. The log is kept, so the node
//!   re-applies what follows the snapshot and catches up as usual.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use openraft::ServerState;
use raft_store::{LogStore, NodeId, StateDigest, StateMachineStore};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Request, Response, Status};

use super::forward::RaftHandle;
use super::grpc::{decode, encode};
use super::identity::IdentityFile;
use super::network::{blob, limited, Peers};
use super::{pb, ClusterError};

/// The persisted verdict, in the data dir.
pub const CORRUPT_MARKER: &str = "CORRUPT.json";
/// Where a snapshot fetched for a repair waits for the next start.
pub const STAGED_DIR: &str = "repair";
const STAGED_FILE: &str = "snapshot.snap";
/// Chunk size of a snapshot streamed to a repairing member.
const CHUNK: usize = 1 << 20;
/// How long a member may take to build a snapshot for a repairing peer.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(120);
/// Deadline of one digest request.
const DIGEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why and since when this node considers its state damaged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptRecord {
    /// What was found.
    pub reason: String,
    /// When (Unix ms).
    pub since_ms: u64,
}

/// This node's verdict on its own state.
pub struct CorruptFlag {
    path: PathBuf,
    current: Mutex<Option<CorruptRecord>>,
}

impl CorruptFlag {
    /// Loads the verdict of the node whose data dir is `dir`.
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(CORRUPT_MARKER);
        let current = std::fs::read(&path).ok().map(|bytes| {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| CorruptRecord {
                reason: format!("{} exists but is unreadable", path.display()),
                since_ms: 0,
            })
        });
        if let Some(r) = &current {
            tracing::error!(
                reason = %r.reason,
                "this node's state was found damaged before; it serves no data until it is \
                 repaired (coffer operator raft repair)"
            );
        }
        Self {
            path,
            current: Mutex::new(current),
        }
    }

    /// The reason, when the state is considered damaged.
    pub fn corrupt(&self) -> Option<String> {
        self.lock().as_ref().map(|r| r.reason.clone())
    }

    /// Records that the state is damaged (once; later reasons are logged).
    pub fn mark(&self, reason: &str) {
        let mut current = self.lock();
        if current.is_some() {
            tracing::warn!(%reason, "further sign of damage to this node's state");
            return;
        }
        let record = CorruptRecord {
            reason: reason.to_string(),
            since_ms: crate::engine::clock::now_ms(),
        };
        if let Err(e) = write_record(&self.path, &record) {
            tracing::error!(error = %e, "cannot persist the corruption marker");
        }
        tracing::error!(
            %reason,
            "this node's state is damaged: it stops serving data and will not lead; repair it \
             with `coffer operator raft repair` (or set [raft] auto_repair = true)"
        );
        *current = Some(record);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<CorruptRecord>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn write_record(path: &Path, record: &CorruptRecord) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// `Digest` request: now, or at an applied index.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DigestRequest {
    /// The applied index to report the digest at; `None`: the current one.
    pub at: Option<u64>,
}

/// `Digest` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DigestReply {
    /// The digest, or `None` when the index is not among the recent ones.
    pub digest: Option<StateDigest>,
    /// This node's own verdict.
    pub corrupt: Option<String>,
}

/// `MarkCorrupt` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MarkRequest {
    /// What the leader found.
    pub reason: String,
}

/// `FetchSnapshot` request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The snapshot must cover at least this log index (the requester's
    /// purge point: what its log no longer holds).
    pub min_index: u64,
}

/// The gRPC `Integrity` service of a node.
pub struct IntegrityService {
    raft: RaftHandle,
    sm: StateMachineStore,
    flag: Arc<CorruptFlag>,
    identity: Arc<IdentityFile>,
}

impl IntegrityService {
    /// Serves this node's digests, verdict and snapshots.
    pub fn new(
        raft: RaftHandle,
        sm: StateMachineStore,
        flag: Arc<CorruptFlag>,
        identity: Arc<IdentityFile>,
    ) -> Self {
        Self {
            raft,
            sm,
            flag,
            identity,
        }
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::Blob, Status>> + Send>>;

#[tonic::async_trait]
impl pb::integrity_server::Integrity for IntegrityService {
    async fn digest(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        super::grpc::check_cluster(&self.identity, &req)?;
        let req: DigestRequest = decode(req)?;
        let digest = match req.at {
            None => Some(self.sm.digest()),
            Some(i) => self.sm.digest_at(i),
        };
        encode(&DigestReply {
            digest,
            corrupt: self.flag.corrupt(),
        })
    }

    async fn mark_corrupt(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        super::grpc::check_cluster(&self.identity, &req)?;
        let req: MarkRequest = decode(req)?;
        self.flag.mark(&req.reason);
        encode(&())
    }

    type FetchSnapshotStream = ChunkStream;

    async fn fetch_snapshot(
        &self,
        req: Request<pb::Blob>,
    ) -> Result<Response<Self::FetchSnapshotStream>, Status> {
        super::grpc::check_cluster(&self.identity, &req)?;
        if let Some(reason) = self.flag.corrupt() {
            return Err(Status::failed_precondition(format!(
                "this node's own state is damaged ({reason}); ask another member"
            )));
        }
        let req: FetchRequest = decode(req)?;
        let (_, file) = snapshot_covering(&self.raft, &self.sm, req.min_index).await?;
        let file = tokio::fs::File::from_std(file);
        let chunks = futures::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(pb::Blob { data: buf }), Some(file)))
                }
                Err(e) => Some((
                    Err(Status::internal(format!("reading the snapshot: {e}"))),
                    None,
                )),
            }
        });
        Ok(Response::new(Box::pin(chunks)))
    }
}

/// This node's snapshot file covering `min_index`, building a new one if
/// the current one is older: its path and a handle opened before any newer
/// snapshot could prune it.
pub(crate) async fn snapshot_covering(
    raft: &RaftHandle,
    sm: &StateMachineStore,
    min_index: u64,
) -> Result<(PathBuf, std::fs::File), Status> {
    let covers = |sm: &StateMachineStore| -> Result<_, Status> {
        let current = sm
            .open_current_snapshot()
            .map_err(|e| Status::internal(format!("opening the snapshot: {e}")))?;
        Ok(current
            .filter(|open| open.meta.last_log_id.map_or(0, |l| l.index) >= min_index)
            .map(|open| (open.path, open.file)))
    };
    if let Some(found) = covers(sm)? {
        return Ok(found);
    }
    raft.trigger()
        .snapshot()
        .await
        .map_err(|e| Status::unavailable(format!("building a snapshot: {e}")))?;
    let deadline = Instant::now() + SNAPSHOT_WAIT;
    while Instant::now() < deadline {
        if let Some(found) = covers(sm)? {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Status::unavailable(format!(
        "no snapshot covering index {min_index} within {SNAPSHOT_WAIT:?}"
    )))
}

/// Streams a snapshot covering `min_index` from the member at `addr` into
/// `data_dir/repair/`, verifies it and returns its path. The file is staged
/// atomically: a partial download is never mistaken for a snapshot.
pub async fn fetch_snapshot(
    peers: &Peers,
    addr: &str,
    min_index: u64,
    data_dir: &Path,
) -> Result<PathBuf, ClusterError> {
    let fail =
        |m: String| ClusterError::Unavailable(format!("fetching a snapshot from {addr}: {m}"));
    let msg = blob(addr, &FetchRequest { min_index }).map_err(|e| fail(e.to_string()))?;
    let channel = peers.channel(addr).map_err(|e| fail(e.to_string()))?;
    let mut client = limited!(
        pb::integrity_client::IntegrityClient::new(channel),
        peers.max_message_bytes()
    );
    let mut stream = client
        .fetch_snapshot(peers.request(msg, None))
        .await
        .map_err(|s| fail(s.message().to_string()))?
        .into_inner();
    let dir = data_dir.join(STAGED_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| fail(format!("creating {}: {e}", dir.display())))?;
    let tmp = dir.join(format!("{STAGED_FILE}.part"));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .await
        .map_err(|e| fail(format!("creating {}: {e}", tmp.display())))?;
    let mut bytes = 0u64;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| fail(s.message().to_string()))?
    {
        bytes += chunk.data.len() as u64;
        file.write_all(&chunk.data)
            .await
            .map_err(|e| fail(format!("writing {}: {e}", tmp.display())))?;
    }
    file.sync_all()
        .await
        .map_err(|e| fail(format!("syncing {}: {e}", tmp.display())))?;
    drop(file);
    let summary = raft_store::verify_snapshot_file(&tmp).map_err(|e| fail(e.to_string()))?;
    if summary.index() < min_index {
        return Err(fail(format!(
            "it covers index {} but {min_index} is needed",
            summary.index()
        )));
    }
    let staged = dir.join(STAGED_FILE);
    std::fs::rename(&tmp, &staged).map_err(|e| fail(format!("staging: {e}")))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail(format!("syncing {}: {e}", dir.display())))?;
    tracing::info!(
        from = addr,
        bytes,
        index = summary.index(),
        "snapshot for repair staged; it is installed when the node starts"
    );
    Ok(staged)
}

/// Before the storage is opened: installs a staged repair snapshot, if one
/// is waiting, and clears the corruption verdict. Returns what was done.
pub fn install_staged(data_dir: &Path) -> Result<Option<String>, ClusterError> {
    let staged = data_dir.join(STAGED_DIR).join(STAGED_FILE);
    if !staged.exists() {
        return Ok(None);
    }
    let report = raft_store::repair_state_from_snapshot(data_dir, &staged)?;
    let _ = std::fs::remove_file(&staged);
    clear_marker(data_dir)?;
    let done = format!(
        "state restored from a snapshot at index {} (damaged state kept as {})",
        report.snapshot.index(),
        report
            .moved_aside
            .as_ref()
            .map_or_else(|| "nothing".into(), |p| p.display().to_string())
    );
    tracing::warn!(%done, "repair installed; the log after the snapshot is re-applied");
    Ok(Some(done))
}

/// Repairs the state from the node's own newest snapshot, when it verifies
/// and the log covers everything after it (damage found by the storage
/// checks at open; not for a state that diverged, whose snapshots diverged
/// with it).
pub fn repair_locally(data_dir: &Path) -> Result<String, ClusterError> {
    match raft_store::local_repair_possible(data_dir)? {
        raft_store::LocalRepair::Possible { snapshot, .. } => {
            let report = raft_store::repair_state_from_snapshot(data_dir, &snapshot)?;
            clear_marker(data_dir)?;
            Ok(format!(
                "state restored from this node's snapshot at index {}",
                report.snapshot.index()
            ))
        }
        other => Err(ClusterError::Invalid(format!(
            "this node's own snapshot cannot repair it ({other:?}); fetch one from a healthy \
             member: coffer operator raft repair --config FILE --from HOST:CLUSTER_PORT"
        ))),
    }
}

fn clear_marker(data_dir: &Path) -> Result<(), ClusterError> {
    match std::fs::remove_file(data_dir.join(CORRUPT_MARKER)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ClusterError::Invalid(format!(
            "removing the corruption marker: {e}"
        ))),
    }
}

/// Offline repair of the stopped node configured by `config`: from its own
/// newest snapshot (`local`), or from the first of `from` (default: the
/// config's peers) that serves one covering this node's log.
pub async fn repair_offline(
    config: &crate::config::Config,
    from: &[String],
    local: bool,
) -> Result<String, ClusterError> {
    let dir = &config.data_dir;
    let identity = Arc::new(IdentityFile::open(dir, config.node_id)?);
    if local {
        return repair_locally(dir);
    }
    let tls = crate::tls::TlsMaterial::load(&config.tls.ca, &config.tls.cert, &config.tls.key)
        .map_err(|e| ClusterError::Transport(format!("loading TLS material: {e}")))?;
    let peers = Peers::new(tls, identity, &config.raft);
    let min = {
        let log = LogStore::open_in(dir, &Default::default())?;
        purge_point(&log)
    };
    let candidates: Vec<String> = if from.is_empty() {
        config
            .peers
            .iter()
            .map(|p| p.cluster_addr.clone())
            .collect()
    } else {
        from.to_vec()
    };
    if candidates.is_empty() {
        return Err(ClusterError::Invalid(
            "name a healthy member to fetch a snapshot from: --from HOST:CLUSTER_PORT".into(),
        ));
    }
    let mut errors = Vec::new();
    for addr in &candidates {
        match fetch_snapshot(&peers, addr, min, dir).await {
            Ok(_) => {
                return Ok(install_staged(dir)?.unwrap_or_else(|| "nothing was staged".into()));
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(ClusterError::Unavailable(errors.join("; ")))
}

/// The log index below which this node's log holds nothing (a repair
/// snapshot must reach it).
pub fn purge_point(log: &LogStore) -> u64 {
    log.log_state()
        .ok()
        .and_then(|s| s.last_purged_log_id)
        .map_or(0, |l| l.index)
}

/// What one cross-check round found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every answering member agrees at `index`.
    Agree {
        /// The common applied index compared.
        index: u64,
        /// How many members answered.
        members: usize,
    },
    /// These members differ from the majority at `index`.
    Minority {
        /// The common applied index compared.
        index: u64,
        /// The members outside the majority.
        nodes: Vec<NodeId>,
    },
    /// No majority digest at `index` (logged; nothing is marked).
    Split {
        /// The common applied index compared.
        index: u64,
    },
    /// Nothing to compare (fewer than two answers, or no common index).
    Skipped,
}

/// Decides which members differ, from their digests at one index.
pub fn judge(index: u64, digests: &BTreeMap<NodeId, String>) -> Verdict {
    if digests.len() < 2 {
        return Verdict::Skipped;
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in digests.values() {
        *counts.entry(d.as_str()).or_default() += 1;
    }
    let Some((majority, count)) = counts.into_iter().max_by_key(|(_, c)| *c) else {
        return Verdict::Skipped;
    };
    if count == digests.len() {
        return Verdict::Agree {
            index,
            members: count,
        };
    }
    if count * 2 <= digests.len() {
        return Verdict::Split { index };
    }
    let nodes = digests
        .iter()
        .filter(|(_, d)| d.as_str() != majority)
        .map(|(id, _)| *id)
        .collect();
    Verdict::Minority { index, nodes }
}

/// The pieces of a node the cross-check needs.
pub struct Checker {
    /// This node's Raft.
    pub raft: RaftHandle,
    /// Its state machine.
    pub sm: StateMachineStore,
    /// Its verdict.
    pub flag: Arc<CorruptFlag>,
    /// Channels to the others.
    pub peers: Peers,
    /// Its id.
    pub id: NodeId,
}

impl Checker {
    /// Runs a cross-check every `every` while this node leads.
    pub async fn run(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if self.raft.metrics().borrow().state != ServerState::Leader {
                continue;
            }
            let verdict = self.round().await;
            self.act(&verdict).await;
        }
    }

    /// One round: every member's digest at one common applied index.
    pub async fn round(&self) -> Verdict {
        let members: Vec<(NodeId, String)> = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.id)
                .map(|(id, n)| (*id, n.cluster_addr.clone()))
                .collect()
        };
        // Where is everyone? The smallest applied index is the one all
        // have reached; each keeps digests of its recent entries.
        let now = futures::future::join_all(
            members
                .iter()
                .map(|(id, addr)| async move { (*id, addr.clone(), self.ask(addr, None).await) }),
        )
        .await;
        let answering: Vec<(NodeId, String, u64)> = now
            .into_iter()
            .filter_map(|(id, addr, r)| Some((id, addr, r?.digest?.applied_index)))
            .collect();
        let mine = self.sm.digest().applied_index;
        let Some(index) = answering.iter().map(|(_, _, i)| *i).chain([mine]).min() else {
            return Verdict::Skipped;
        };
        if index == 0 {
            return Verdict::Skipped;
        }
        let mut digests = BTreeMap::new();
        if let Some(d) = self.sm.digest_at(index) {
            digests.insert(self.id, d.digest_hex);
        }
        let at = futures::future::join_all(
            answering
                .iter()
                .map(|(id, addr, _)| async move { (*id, self.ask(addr, Some(index)).await) }),
        )
        .await;
        for (id, reply) in at {
            if let Some(d) = reply.and_then(|r| r.digest) {
                digests.insert(id, d.digest_hex);
            }
        }
        judge(index, &digests)
    }

    async fn act(&self, verdict: &Verdict) {
        match verdict {
            Verdict::Minority { index, nodes } => {
                for id in nodes {
                    let reason = format!(
                        "its state digest at applied index {index} differs from the \
                         majority's (cross-check by leader {})",
                        self.id
                    );
                    if *id == self.id {
                        self.flag.mark(&reason);
                        // A leader applying onto a damaged state would
                        // answer writes from it: stop, so another leads.
                        tracing::error!("this leader's state is damaged; stopping Raft");
                        let _ = self.raft.shutdown().await;
                    } else {
                        tracing::error!(
                            node = id,
                            index,
                            "a member's state differs from the majority's"
                        );
                        self.mark_remote(*id, &reason).await;
                    }
                }
            }
            Verdict::Split { index } => crate::log_every!(
                Duration::from_secs(300),
                error,
                index,
                "replica state digests disagree with no majority; cannot tell which is damaged"
            ),
            Verdict::Agree { .. } | Verdict::Skipped => {}
        }
    }

    async fn ask(&self, addr: &str, at: Option<u64>) -> Option<DigestReply> {
        let msg = blob(addr, &DigestRequest { at }).ok()?;
        let max = self.peers.max_message_bytes();
        self.peers
            .call(addr, msg, Some(DIGEST_TIMEOUT), |ch, r| async move {
                limited!(pb::integrity_client::IntegrityClient::new(ch), max)
                    .digest(r)
                    .await
            })
            .await
            .ok()
    }

    async fn mark_remote(&self, id: NodeId, reason: &str) {
        let addr = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .get_node(&id)
                .map(|n| n.cluster_addr.clone())
        };
        let Some(addr) = addr else { return };
        let Ok(msg) = blob(
            &addr,
            &MarkRequest {
                reason: reason.to_string(),
            },
        ) else {
            return;
        };
        let max = self.peers.max_message_bytes();
        let sent: Result<(), _> = self
            .peers
            .call(&addr, msg, Some(DIGEST_TIMEOUT), |ch, r| async move {
                limited!(pb::integrity_client::IntegrityClient::new(ch), max)
                    .mark_corrupt(r)
                    .await
            })
            .await;
        if let Err(e) = sent {
            tracing::warn!(node = id, error = %e, "could not tell a member its state is damaged");
        }
    }
}

#[cfg(test)]
#[path = "integrity_tests.rs"]
mod tests;
