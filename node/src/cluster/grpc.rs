//! gRPC server side: the `Raft` and `Forward` services.

use std::sync::Arc;

use openraft::raft::AppendEntriesResponse;
use raft_store::{LogStore, StateMachineStore};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::dr;
use super::election::{self, LeaderContact, PreVoteRequest, Timing};
use super::forward::{self, AdminRequest, RaftHandle, WriteRequest};
use super::identity::{IdentityFile, CLUSTER_ID_HEADER};
use super::join::{self, JoinRequest, JoinToken};
use super::membership;
use super::pb;
use super::proposals::ProposalBatcher;
use super::read_index::ReadIndexBatcher;

/// Decodes a postcard-encoded request body.
pub(super) fn decode<T: DeserializeOwned>(req: Request<pb::Blob>) -> Result<T, Status> {
    postcard::from_bytes(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("decode: {e}")))
}

/// Encodes a reply body with postcard.
pub(super) fn encode<T: Serialize>(v: &T) -> Result<Response<pb::Blob>, Status> {
    postcard::to_allocvec(v)
        .map(|data| Response::new(pb::Blob { data }))
        .map_err(|e| Status::internal(format!("encode: {e}")))
}

/// Refuses a caller from another cluster (same CA, different cluster id);
/// a node that does not know its cluster yet adopts the caller's.
pub(super) fn check_cluster<T>(identity: &IdentityFile, req: &Request<T>) -> Result<(), Status> {
    let peer = req
        .metadata()
        .get(CLUSTER_ID_HEADER)
        .and_then(|v| v.to_str().ok());
    identity.check_peer(peer).map_err(|e| {
        tracing::error!(error = %e, "refused an RPC from another cluster");
        Status::failed_precondition(e.to_string())
    })
}

/// Peer replication: hands openraft RPCs to the local Raft and returns its
/// result (errors included) so the caller sees the remote error intact.
/// Records leader contact for the election driver and health.
#[derive(Clone)]
pub struct RaftService {
    raft: RaftHandle,
    contact: Arc<LeaderContact>,
    identity: Arc<IdentityFile>,
    log: LogStore,
    timing: Timing,
}

impl RaftService {
    /// Serves `raft`.
    pub fn new(
        raft: RaftHandle,
        contact: Arc<LeaderContact>,
        identity: Arc<IdentityFile>,
        log: LogStore,
        timing: Timing,
    ) -> Self {
        Self {
            raft,
            contact,
            identity,
            log,
            timing,
        }
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        check_cluster(&self.identity, &req)?;
        let rpc: openraft::raft::AppendEntriesRequest<raft_store::TypeConfig> = decode(req)?;
        let commit = rpc.leader_commit.map(|l| l.index);
        let _busy = self.contact.begin();
        let result = self.raft.append_entries(rpc).await;
        if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.contact.heard(commit);
        }
        encode(&result)
    }

    async fn vote(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        check_cluster(&self.identity, &req)?;
        encode(&self.raft.vote(decode(req)?).await)
    }

    async fn install_snapshot(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        check_cluster(&self.identity, &req)?;
        let rpc: openraft::raft::InstallSnapshotRequest<raft_store::TypeConfig> = decode(req)?;
        let leader_vote = rpc.vote;
        let _busy = self.contact.begin();
        let result = self.raft.install_snapshot(rpc).await;
        if matches!(&result, Ok(r) if r.vote <= leader_vote) {
            self.contact.heard(None);
        }
        encode(&result)
    }

    async fn pre_vote(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        check_cluster(&self.identity, &req)?;
        let rpc: PreVoteRequest = decode(req)?;
        encode(&election::answer(
            &self.raft,
            &self.contact,
            &self.log,
            &self.timing,
            &rpc,
        ))
    }
}

/// Leader-side handling of requests forwarded by followers.
#[derive(Clone)]
pub struct ForwardService {
    raft: RaftHandle,
    reads: Arc<ReadIndexBatcher>,
    proposals: Arc<ProposalBatcher>,
    identity: Arc<IdentityFile>,
    join_token: Option<JoinToken>,
    sm: StateMachineStore,
    superseded: Arc<dr::Superseded>,
}

impl ForwardService {
    /// Serves `raft`; read-index requests share rounds through `reads`,
    /// forwarded writes share entries through `proposals`. Auto-join
    /// requests are accepted with `join_token` only. `sm` is the local
    /// state (the DR member list).
    pub fn new(
        raft: RaftHandle,
        reads: Arc<ReadIndexBatcher>,
        proposals: Arc<ProposalBatcher>,
        identity: Arc<IdentityFile>,
        join_token: Option<JoinToken>,
        sm: StateMachineStore,
        superseded: Arc<dr::Superseded>,
    ) -> Self {
        Self {
            raft,
            reads,
            proposals,
            identity,
            join_token,
            sm,
            superseded,
        }
    }
}

#[tonic::async_trait]
impl pb::forward_server::Forward for ForwardService {
    async fn write(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        check_cluster(&self.identity, &req)?;
        let write: WriteRequest = decode(req)?;
        if let Some(reason) = self.superseded.reason() {
            return encode(&Err::<forward::WriteReply, _>(
                forward::ForwardError::Refused(reason),
            ));
        }
        encode(&self.proposals.write(write).await)
    }

    async fn read_index(&self, req: Request<pb::Empty>) -> Result<Response<pb::Blob>, Status> {
        check_cluster(&self.identity, &req)?;
        encode(&self.reads.read_index().await)
    }

    async fn admin(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        check_cluster(&self.identity, &req)?;
        let admin: AdminRequest = decode(req)?;
        if let AdminRequest::DrAdopt {
            cluster_id,
            promoted_by,
        } = &admin
        {
            return encode(&dr::answer_adopt(
                &self.raft,
                &self.sm,
                &self.identity,
                cluster_id,
                *promoted_by,
            ));
        }
        encode(&membership::leader_admin(&self.raft, &self.sm, admin).await)
    }

    async fn join(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        check_cluster(&self.identity, &req)?;
        let join: JoinRequest = decode(req)?;
        encode(&join::answer(&self.raft, &self.sm, self.join_token.as_ref(), join).await)
    }
}
