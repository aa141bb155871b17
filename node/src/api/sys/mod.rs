//! Operator API under `/v1/sys/…`: health, init, unseal, seal, Raft peers,
//! vaults. Errors use Vault's `{"errors":["…"]}` shape.

pub mod alerts;
pub mod audit;
pub mod custody;
pub mod dr;
pub mod hsm;
pub mod seal_migrate;
pub mod snapshot;
pub mod vaults;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::cluster::{ClusterError, PeersInfo};
use crate::config::LimitsConfig;
use crate::engine::error::EngineError;
use crate::engine::store::StoreError;
use crate::engine::vaults::VaultsEngine;
use crate::operator::{Operator, OperatorError};
use crate::seal::SealError;

/// Shared state of the operator API.
#[derive(Clone)]
pub struct SysState {
    /// Operator actions on this node.
    pub operator: Arc<Operator>,
    /// Vault management.
    pub vaults: Arc<VaultsEngine>,
    /// Role assignments (a new vault's administrators).
    pub authz: Arc<crate::engine::authz::AuthzEngine>,
    /// The node's PKCS#11 device (`/v1/sys/hsm/…`), if configured.
    pub hsm: Option<Arc<dyn crate::crypto::hsm::HsmAdmin>>,
}

/// Routes that need no token (health, seal status, init, unseal).
pub fn public_router(state: SysState) -> Router {
    Router::new()
        .route("/v1/sys/health", get(health))
        .route("/v1/sys/seal-status", get(seal_status))
        .route("/v1/sys/init", get(init_status).post(init))
        .route("/v1/sys/unseal", post(unseal))
        .merge(custody::public_router())
        .merge(dr::public_router())
        .merge(seal_migrate::public_router())
        .with_state(state)
}

/// Routes that need a valid token (the caller layers authentication on).
pub fn protected_router(state: SysState) -> Router {
    Router::new()
        .route("/v1/sys/seal", post(seal))
        .route("/v1/sys/rotate", post(rotate))
        .route("/v1/sys/raft/peers", get(peers))
        .route("/v1/sys/raft/join", post(join))
        .route("/v1/sys/raft/remove", post(remove))
        .route("/v1/sys/raft/digest", get(digest))
        .route("/v1/sys/raft/repair", post(repair))
        .merge(vaults::router())
        .merge(hsm::router())
        .merge(custody::protected_router())
        .merge(snapshot::protected_router())
        .merge(seal_migrate::protected_router())
        .with_state(state)
}

/// An operator API error rendered as `{"errors":[…]}`.
pub struct SysError(StatusCode, String);

impl SysError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        SysError(status, message.into())
    }
}

impl IntoResponse for SysError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "errors": [self.1] }))).into_response()
    }
}

impl From<OperatorError> for SysError {
    fn from(e: OperatorError) -> Self {
        let status = match &e {
            OperatorError::AlreadyInitialized | OperatorError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            OperatorError::NotInitialized => StatusCode::SERVICE_UNAVAILABLE,
            OperatorError::Seal(SealError::Sealed | SealError::Device(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            OperatorError::Seal(_) => StatusCode::BAD_REQUEST,
            OperatorError::Forbidden(_) => StatusCode::FORBIDDEN,
            OperatorError::Store(s) => store_status(s),
        };
        SysError(status, e.to_string())
    }
}

impl From<ClusterError> for SysError {
    fn from(e: ClusterError) -> Self {
        SysError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<EngineError> for SysError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::Store(s) => store_status(s),
            EngineError::BadParameter(_) => StatusCode::BAD_REQUEST,
            EngineError::VaultNotFound(_) | EngineError::NotFound { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::CONFLICT,
        };
        SysError(status, e.to_string())
    }
}

fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        StoreError::Corrupt(_) | StoreError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Body-parse failures become `{"errors":[…]}` rather than axum's text:
/// 413 for a body over the limit, 400 for everything else.
fn bad_json(e: axum::extract::rejection::JsonRejection) -> SysError {
    let status = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    SysError(status, format!("invalid request body: {}", e.body_text()))
}

async fn health(State(s): State<SysState>) -> Result<Response, SysError> {
    let health = s.operator.health()?;
    // Vault's codes, plus 503 for a node that cannot serve for a reason
    // other than its seal (the body's `problems` say which).
    let status = if !health.initialized {
        StatusCode::NOT_IMPLEMENTED
    } else if health.sealed || !health.problems.is_empty() {
        StatusCode::SERVICE_UNAVAILABLE
    } else if health.standby {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    };
    Ok((status, Json(health)).into_response())
}

async fn seal_status(State(s): State<SysState>) -> Result<Response, SysError> {
    seal_status_body(&s)
}

fn seal_status_body(s: &SysState) -> Result<Response, SysError> {
    let status = s.operator.seal_status()?;
    let initialized = s.operator.is_initialized()?;
    let node_id = s.operator.node().status().node_id;
    Ok(Json(json!({
        "type": status.seal_type.as_str(),
        "recovery_seal": status.seal_type != crate::seal::SealType::Shamir,
        "reason": status.reason,
        "initialized": initialized,
        "sealed": status.sealed,
        "t": status.threshold,
        "n": status.shares,
        "progress": status.progress,
        "nonce": status.nonce,
        "node_id": node_id,
    }))
    .into_response())
}

async fn init_status(State(s): State<SysState>) -> Result<Response, SysError> {
    Ok(Json(json!({ "initialized": s.operator.is_initialized()? })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitRequest {
    secret_shares: u8,
    secret_threshold: u8,
    /// One OpenPGP public key per share, in share order.
    #[serde(default)]
    pgp_keys: Vec<String>,
    /// OpenPGP public key for the initial root token.
    #[serde(default)]
    root_token_pgp_key: Option<String>,
}

async fn init(
    State(s): State<SysState>,
    OperatorJson(req): OperatorJson<InitRequest, KEYS_BODY_MAX_BYTES>,
) -> Result<Response, SysError> {
    let delivery = crate::operator::InitDelivery {
        pgp_keys: req.pgp_keys,
        root_token_pgp_key: req.root_token_pgp_key,
    };
    let result = s
        .operator
        .init_delivered(req.secret_shares, req.secret_threshold, &delivery)
        .await?;
    let keys: Vec<&str> = result.shares.iter().map(|k| k.as_str()).collect();
    // With the pkcs11 seal the keys are recovery keys: they authorise
    // rekey, generate-root and seal migration, not unseal.
    let seal_type = s.operator.seal_status()?.seal_type;
    Ok(Json(json!({
        "keys": keys,
        "seal_type": seal_type.as_str(),
        "root_token": result.root_token.as_str(),
        "pgp_fingerprints": result.pgp_fingerprints,
        "root_token_pgp_fingerprint": result.root_token_pgp_fingerprint,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsealRequest {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    reset: bool,
}

async fn unseal(
    State(s): State<SysState>,
    OperatorJson(req): OperatorJson<UnsealRequest>,
) -> Result<Response, SysError> {
    if req.reset {
        s.operator.unseal_reset()?;
    } else {
        let key = req.key.ok_or_else(|| {
            SysError(
                StatusCode::BAD_REQUEST,
                "missing \"key\" (or \"reset\": true)".into(),
            )
        })?;
        s.operator.unseal(key.trim())?;
    }
    seal_status_body(&s)
}

async fn seal(State(s): State<SysState>) -> StatusCode {
    s.operator.seal();
    StatusCode::NO_CONTENT
}

async fn rotate(State(s): State<SysState>) -> Result<Response, SysError> {
    let term = s.operator.rotate_keyring().await?;
    Ok(Json(json!({ "term": term })).into_response())
}

fn peers_body(p: PeersInfo) -> Response {
    Json(p).into_response()
}

async fn peers(State(s): State<SysState>) -> Result<Response, SysError> {
    Ok(peers_body(s.operator.node().peers().await?))
}

#[derive(Deserialize)]
struct DigestQuery {
    /// Also report the additive state digest right after this index.
    index: Option<u64>,
}

/// State-machine digest of this node, for replica comparison in tests:
/// the ordered digest of the current state, and the additive digest (the
/// one snapshot files carry) now or at `?index=`.
async fn digest(
    State(s): State<SysState>,
    axum::extract::Query(q): axum::extract::Query<DigestQuery>,
) -> Result<Response, SysError> {
    let node = s.operator.node();
    let (digest, before, after) = node
        .digest()
        .map_err(|e| SysError(store_status(&e), e.to_string()))?;
    let stable = before == after;
    let state = node.state_digest(q.index);
    Ok(Json(json!({
        "digest": digest,
        "applied_index": after,
        "stable": stable,
        "state_digest": state,
    }))
    .into_response())
}

/// Repairs this node's damaged state from the leader's snapshot: fetched,
/// staged, and installed at the restart that follows the answer.
async fn repair(State(s): State<SysState>) -> Result<Response, SysError> {
    let node = s.operator.node();
    if node.corrupt().is_none() {
        return Err(SysError(
            StatusCode::CONFLICT,
            "this node's state is not known to be damaged; nothing to repair".into(),
        ));
    }
    let done = node.repair_from_leader().await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "repair": done }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    node_id: u64,
    api_addr: String,
    cluster_addr: String,
    /// Join as a disaster-recovery replica (a learner never promoted).
    #[serde(default)]
    dr: bool,
}

async fn join(
    State(s): State<SysState>,
    body: Result<Json<JoinRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(bad_json)?;
    let node = raft_store::Node {
        api_addr: req.api_addr,
        cluster_addr: req.cluster_addr,
    };
    let node_handle = s.operator.node();
    let peers = if req.dr {
        node_handle.join_dr(req.node_id, node).await?
    } else {
        node_handle.join(req.node_id, node).await?
    };
    Ok(peers_body(peers))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveRequest {
    node_id: u64,
}

async fn remove(
    State(s): State<SysState>,
    body: Result<Json<RemoveRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(bad_json)?;
    Ok(peers_body(s.operator.node().remove(req.node_id).await?))
}

/// Largest body of the tokenless `init` and `unseal` (a share is a few
/// hundred hex digits; the rest is JSON punctuation).
pub const OPERATOR_BODY_MAX_BYTES: usize = 4096;

/// Largest body of a tokenless route that carries OpenPGP public keys
/// (`init`, `generate-root` with a key): an armored RSA-4096 key is about
/// 3.2 KB, so this fits one key per share for any practical share count.
pub const KEYS_BODY_MAX_BYTES: usize = 64 * 1024;

/// The JSON body of a tokenless operator route (`init`, `unseal`, the
/// ceremonies): anyone can send these, so the body is read only up to
/// `MAX` ([`OPERATOR_BODY_MAX_BYTES`] unless the route carries keys; 413 above) and only for
/// `operator_body_timeout_secs` (408 after), not the data plane's 2 MB with
/// no deadline.
pub(crate) struct OperatorJson<T, const MAX: usize = OPERATOR_BODY_MAX_BYTES>(pub(crate) T);

impl<S, T, const MAX: usize> FromRequest<S> for OperatorJson<T, MAX>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        // The listener puts the node's limits on every request; a router
        // used without it (in-process tests) gets the defaults.
        let deadline = req
            .extensions()
            .get::<Arc<LimitsConfig>>()
            .map(|l| l.operator_body_timeout())
            .unwrap_or_else(|| LimitsConfig::default().operator_body_timeout());
        let too_large = || {
            unread_body(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {MAX} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX as u64) {
            return Err(too_large());
        }
        let (parts, body) = req.into_parts();
        let read = Limited::new(body, MAX).collect();
        let bytes = match tokio::time::timeout(deadline, read).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Err(_) => {
                let secs = deadline.as_secs();
                return Err(too_slow(format!(
                    "the request body did not arrive within {secs} s"
                )));
            }
            Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large()),
            Ok(Err(e)) if crate::listener::is_body_too_slow(&*e) => {
                return Err(too_slow("the request body arrived too slowly".into()));
            }
            Ok(Err(_)) => {
                return Err(unread_body(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read".into(),
                ))
            }
        };
        // axum's own extractor on the bytes: same content-type and JSON
        // checks, same messages as the other routes.
        let req = Request::from_parts(parts, Body::from(bytes));
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(e) => Err(bad_json(e).into_response()),
        }
    }
}

fn too_slow(message: String) -> Response {
    unread_body(StatusCode::REQUEST_TIMEOUT, message)
}

/// An error answered while part of the body is unread: the connection
/// cannot carry another request, so it is closed after this answer.
fn unread_body(status: StatusCode, message: String) -> Response {
    let mut response = SysError(status, message).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::post;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn echo_key(OperatorJson(req): OperatorJson<UnsealRequest>) -> String {
        req.key.unwrap_or_default()
    }

    fn app() -> Router {
        Router::new().route("/unseal", post(echo_key))
    }

    fn request(body: Body, length: Option<usize>) -> Request {
        let mut builder = Request::post("/unseal").header(header::CONTENT_TYPE, "application/json");
        if let Some(n) = length {
            builder = builder.header(header::CONTENT_LENGTH, n);
        }
        builder.body(body).unwrap()
    }

    async fn answer(response: Response) -> (StatusCode, Option<HeaderValue>, serde_json::Value) {
        let status = response.status();
        let connection = response.headers().get(header::CONNECTION).cloned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, connection, json)
    }

    #[tokio::test]
    async fn a_small_json_body_is_read() {
        let body = r#"{"key":"abc"}"#;
        let response = app()
            .oneshot(request(Body::from(body), Some(body.len())))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"abc");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_whether_declared_or_streamed() {
        let big = format!(r#"{{"key":"{}"}}"#, "a".repeat(OPERATOR_BODY_MAX_BYTES));
        // Declared: refused before a byte is read.
        let declared = app()
            .oneshot(request(Body::from(big.clone()), Some(big.len())))
            .await
            .unwrap();
        // Streamed without a length: refused once the limit is passed.
        let chunks = big
            .into_bytes()
            .chunks(1000)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>();
        let streamed = app()
            .oneshot(request(
                Body::from_stream(futures::stream::iter(chunks)),
                None,
            ))
            .await
            .unwrap();
        for response in [declared, streamed] {
            let (status, connection, json) = answer(response).await;
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(connection.unwrap(), "close");
            assert!(
                json["errors"][0].as_str().unwrap().contains("4096"),
                "{json}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_408_after_the_deadline() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tx.send(Ok(Bytes::from_static(b"{\"key\":"))).await.unwrap();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let limits = Arc::new(LimitsConfig {
            operator_body_timeout_secs: 3,
            ..LimitsConfig::default()
        });
        let mut req = request(Body::from_stream(stream), Some(100));
        req.extensions_mut().insert(limits);
        let started = tokio::time::Instant::now();
        let response = app().oneshot(req).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        let (status, connection, json) = answer(response).await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(connection.unwrap(), "close");
        assert!(
            json["errors"][0].as_str().unwrap().contains("3 s"),
            "{json}"
        );
        drop(tx);
    }

    #[tokio::test]
    async fn bad_json_keeps_the_errors_shape() {
        let response = app()
            .oneshot(request(Body::from("{not json"), Some(9)))
            .await
            .unwrap();
        let (status, _, json) = answer(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            json["errors"][0]
                .as_str()
                .unwrap()
                .starts_with("invalid request body"),
            "{json}"
        );
    }
}
