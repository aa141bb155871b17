//! `GET /v1/sys/snapshot`: a consistent snapshot of the cluster's state as
//! a file — the same checksummed format members exchange, values still
//! barrier-encrypted (useless without the custodians' shares).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt as _;
use tokio::io::AsyncReadExt as _;

use super::{SysError, SysState};

/// Header carrying the log index the snapshot covers.
pub const SNAPSHOT_INDEX_HEADER: &str = "x-coffer-snapshot-index";

/// Chunk size of the streamed file.
const CHUNK: usize = 256 * 1024;

/// Routes that need a token.
pub fn protected_router() -> Router<SysState> {
    Router::new().route("/v1/sys/snapshot", get(save))
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
