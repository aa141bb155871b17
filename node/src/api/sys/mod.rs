//! Operator API under `/v1/sys/…`: health, init, unseal, seal, Raft peers,
//! vaults. Errors use Vault's `{"errors":["…"]}` shape.

pub mod hsm;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::cluster::{ClusterError, PeersInfo};
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
    /// The node's PKCS#11 device (`/v1/sys/hsm/…`), if configured.
    pub hsm: Option<Arc<crate::crypto::pkcs11::Pkcs11Hsm>>,
}

/// Routes that need no token (health, seal status, init, unseal).
pub fn public_router(state: SysState) -> Router {
    Router::new()
        .route("/v1/sys/health", get(health))
        .route("/v1/sys/seal-status", get(seal_status))
        .route("/v1/sys/init", get(init_status).post(init))
        .route("/v1/sys/unseal", post(unseal))
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
        .route("/v1/sys/vaults", get(list_vaults))
        .route(
            "/v1/sys/vaults/{name}",
            delete(delete_vault).put(create_vault),
        )
        .merge(hsm::router())
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
            OperatorError::Seal(SealError::Sealed) => StatusCode::SERVICE_UNAVAILABLE,
            OperatorError::Seal(_) => StatusCode::BAD_REQUEST,
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
            EngineError::VaultNotFound(_) => StatusCode::NOT_FOUND,
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
        "type": "shamir",
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
}

async fn init(
    State(s): State<SysState>,
    body: Result<Json<InitRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(bad_json)?;
    let result = s
        .operator
        .init(req.secret_shares, req.secret_threshold)
        .await?;
    let keys: Vec<&str> = result.shares.iter().map(|k| k.as_str()).collect();
    Ok(Json(json!({ "keys": keys, "root_token": result.root_token.as_str() })).into_response())
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
    body: Result<Json<UnsealRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(bad_json)?;
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

/// State-machine digest of this node, for replica comparison in tests.
async fn digest(State(s): State<SysState>) -> Result<Response, SysError> {
    let (digest, before, after) = s
        .operator
        .node()
        .digest()
        .map_err(|e| SysError(store_status(&e), e.to_string()))?;
    let stable = before == after;
    Ok(Json(json!({ "digest": digest, "applied_index": after, "stable": stable })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    node_id: u64,
    api_addr: String,
    cluster_addr: String,
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
    Ok(peers_body(s.operator.node().join(req.node_id, node).await?))
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

async fn list_vaults(State(s): State<SysState>) -> Result<Response, SysError> {
    let vaults = s.vaults.list().await?;
    Ok(Json(json!({ "vaults": vaults })).into_response())
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn create_vault(
    State(s): State<SysState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, SysError> {
    let info = s
        .vaults
        .create(&name, request_id(&headers).as_deref())
        .await?;
    Ok(Json(info).into_response())
}

async fn delete_vault(
    State(s): State<SysState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, SysError> {
    s.vaults
        .delete(&name, request_id(&headers).as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
