//! `GET /v1/sys/snapshot`: a consistent snapshot of the cluster's state as
//! a file — the same checksummed format members exchange, values still
//! barrier-encrypted (useless without the custodians' shares) — and the
//! live restore of such a file into the running cluster, in chunks.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt as _;
use tokio::io::AsyncReadExt as _;

use serde::Deserialize;

use super::{SysError, SysState};
use crate::cluster::ClusterError;

/// Header carrying the log index the snapshot covers.
pub const SNAPSHOT_INDEX_HEADER: &str = "x-coffer-snapshot-index";

/// Chunk size of the streamed file.
const CHUNK: usize = 256 * 1024;

/// Routes that need a token.
pub fn protected_router() -> Router<SysState> {
    Router::new()
        .route("/v1/sys/snapshot", get(save))
        .route(
            "/v1/sys/snapshot/restore/{id}",
            axum::routing::delete(restore_discard),
        )
        .route("/v1/sys/snapshot/restore/{id}/commit", post(restore_commit))
        .route("/v1/sys/snapshot/restore/{id}/{seq}", post(restore_chunk))
}

/// One chunk of a live restore (raw bytes, at most
/// [`crate::cluster::live_restore::RESTORE_CHUNK_BYTES`]), replicated
/// through Raft.
async fn restore_chunk(
    State(s): State<SysState>,
    Path((id, seq)): Path<(String, u32)>,
    body: axum::body::Bytes,
) -> Result<Response, SysError> {
    s.operator
        .node()
        .stage_restore_chunk(&id, seq, body.to_vec())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitRequest {
    chunks: u32,
    #[serde(default)]
    force: bool,
}

/// Verifies the staged file and installs it (400 and nothing changed when
/// it is damaged, or of another cluster without `force`).
async fn restore_commit(
    State(s): State<SysState>,
    Path(id): Path<String>,
    body: Result<Json<CommitRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(super::bad_json)?;
    let outcome = s
        .operator
        .node()
        .commit_restore(&id, req.chunks, req.force)
        .await
        .map_err(|e| match e {
            ClusterError::Invalid(m) => SysError::new(StatusCode::BAD_REQUEST, m),
            other => other.into(),
        })?;
    Ok(Json(outcome).into_response())
}

async fn restore_discard(
    State(s): State<SysState>,
    Path(id): Path<String>,
) -> Result<Response, SysError> {
    s.operator.node().discard_restore(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn save(State(s): State<SysState>) -> Result<Response, SysError> {
    let path = s.operator.node().labelled_backup().await?;
    let opened = match raft_store::verify_snapshot_file(&path) {
        Ok(summary) => tokio::fs::File::open(&path)
            .await
            .map(|file| (summary, file))
            .map_err(|e| format!("opening the snapshot: {e}")),
        Err(e) => Err(e.to_string()),
    };
    // The open handle keeps the copy readable after it is unlinked, so no
    // copy is left behind whatever happens to the stream.
    let _ = tokio::fs::remove_file(&path).await;
    let (summary, file) =
        opened.map_err(|e| SysError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    tracing::info!(
        event = "snapshot.saved",
        index = summary.index(),
        bytes = summary.bytes,
        "snapshot streamed to an operator"
    );
    let stream = futures::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
    .boxed();
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(summary.bytes));
    headers.insert(SNAPSHOT_INDEX_HEADER, HeaderValue::from(summary.index()));
    Ok(response)
}
