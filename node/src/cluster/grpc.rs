//! gRPC server side: the `Raft` and `Forward` services.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use std::sync::Arc;

use super::forward::{self, AdminRequest, RaftHandle, WriteRequest};
use super::membership;
use super::pb;
use super::read_index::ReadIndexBatcher;

fn decode<T: DeserializeOwned>(req: Request<pb::Blob>) -> Result<T, Status> {
    postcard::from_bytes(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("decode: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<Response<pb::Blob>, Status> {
    postcard::to_allocvec(v)
        .map(|data| Response::new(pb::Blob { data }))
        .map_err(|e| Status::internal(format!("encode: {e}")))
}

/// Peer replication: hands openraft RPCs to the local Raft and returns its
/// result (errors included) so the caller sees the remote error intact.
#[derive(Clone)]
pub struct RaftService {
    raft: RaftHandle,
}

impl RaftService {
    /// Serves `raft`.
    pub fn new(raft: RaftHandle) -> Self {
        Self { raft }
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        encode(&self.raft.append_entries(decode(req)?).await)
    }

    async fn vote(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        encode(&self.raft.vote(decode(req)?).await)
    }

    async fn install_snapshot(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        encode(&self.raft.install_snapshot(decode(req)?).await)
    }
}

/// Leader-side handling of requests forwarded by followers.
#[derive(Clone)]
pub struct ForwardService {
    raft: RaftHandle,
    reads: Arc<ReadIndexBatcher>,
}

impl ForwardService {
    /// Serves `raft`; read-index requests share rounds through `reads`.
    pub fn new(raft: RaftHandle, reads: Arc<ReadIndexBatcher>) -> Self {
        Self { raft, reads }
    }
}

#[tonic::async_trait]
impl pb::forward_server::Forward for ForwardService {
    async fn write(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        let write: WriteRequest = decode(req)?;
        encode(&forward::leader_write(&self.raft, write).await)
    }

    async fn read_index(&self, _req: Request<pb::Empty>) -> Result<Response<pb::Blob>, Status> {
        encode(&self.reads.read_index().await)
    }

    async fn admin(&self, req: Request<pb::Blob>) -> Result<Response<pb::Blob>, Status> {
        let admin: AdminRequest = decode(req)?;
        encode(&membership::leader_admin(&self.raft, admin).await)
    }
}
