//! Custody ceremonies under `/v1/sys/…`: rekey, generate-root, root tokens.
//!
//! Share submissions need no token — the shares are the authorisation, as
//! for unseal — and so does starting generate-root (it is the way back
//! when no root token is left). Starting or cancelling a rekey and managing
//! root tokens need a token.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{bad_json, OperatorJson, SysError, SysState, KEYS_BODY_MAX_BYTES};
use crate::operator::custody::{GenerateRootAnswer, RekeyAnswer};
use crate::seal::SealConfig;

/// Tokenless routes: share submissions and generate-root.
pub fn public_router() -> Router<SysState> {
    Router::new()
        .route("/v1/sys/rekey/init", get(rekey_status))
        .route("/v1/sys/rekey/update", post(rekey_update))
        .route("/v1/sys/rekey/verify", post(rekey_verify))
        .route(
            "/v1/sys/generate-root/attempt",
            get(generate_root_status).post(generate_root_init),
        )
        .route("/v1/sys/generate-root/update", post(generate_root_update))
        .route("/v1/sys/generate-root/cancel", post(generate_root_cancel))
}

/// Routes that need a token.
pub fn protected_router() -> Router<SysState> {
    Router::new()
        .route("/v1/sys/rekey/init", post(rekey_init))
        .route("/v1/sys/rekey/cancel", post(rekey_cancel))
        .route("/v1/sys/root-tokens", get(root_tokens))
        .route("/v1/sys/root-tokens/revoke", post(revoke_root))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RekeyInitRequest {
    secret_shares: u8,
    secret_threshold: u8,
    #[serde(default)]
    pgp_keys: Vec<String>,
    #[serde(default)]
    require_verification: bool,
}

async fn rekey_init(
    State(s): State<SysState>,
    body: Result<Json<RekeyInitRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(bad_json)?;
    // The seal type is the cluster's; a rekey keeps it.
    let config = SealConfig {
        shares: req.secret_shares,
        threshold: req.secret_threshold,
        seal_type: Default::default(),
    };
    let status = s
        .operator
        .rekey_init(config, &req.pgp_keys, req.require_verification)?;
    Ok(Json(status).into_response())
}

async fn rekey_status(State(s): State<SysState>) -> Result<Response, SysError> {
    Ok(Json(s.operator.rekey_status()?).into_response())
}

/// A ceremony's nonce (cancel of rekey and of seal migration).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NonceRequest {
    pub(super) nonce: String,
}

async fn rekey_cancel(
    State(s): State<SysState>,
    body: Result<Json<NonceRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(bad_json)?;
    s.operator.rekey_cancel(&req.nonce)?;
    Ok(Json(json!({ "cancelled": true })).into_response())
}

/// One share submitted to a ceremony (rekey, seal migration).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShareRequest {
    pub(super) key: String,
    pub(super) nonce: String,
}

fn rekey_body(answer: RekeyAnswer) -> Response {
    let keys: Vec<&str> = answer.keys.iter().map(|k| k.as_str()).collect();
    let mut body = json!(answer.status);
    body["complete"] = json!(answer.complete);
    if !keys.is_empty() {
        body["keys"] = json!(keys);
    }
    Json(body).into_response()
}

async fn rekey_update(
    State(s): State<SysState>,
    OperatorJson(req): OperatorJson<ShareRequest>,
) -> Result<Response, SysError> {
    let answer = s.operator.rekey_update(&req.nonce, &req.key).await?;
    Ok(rekey_body(answer))
}

async fn rekey_verify(
    State(s): State<SysState>,
    OperatorJson(req): OperatorJson<ShareRequest>,
) -> Result<Response, SysError> {
    let answer = s.operator.rekey_verify(&req.nonce, &req.key).await?;
    Ok(rekey_body(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateRootInitRequest {
    #[serde(default)]
    otp: Option<String>,
    #[serde(default)]
    pgp_key: Option<String>,
    /// Make a DR operation token (kept on this node) instead of a root token.
    #[serde(default)]
    dr_operation: bool,
}

async fn generate_root_init(
    State(s): State<SysState>,
    OperatorJson(req): OperatorJson<GenerateRootInitRequest, KEYS_BODY_MAX_BYTES>,
) -> Result<Response, SysError> {
    let policy = if req.dr_operation {
        crate::operator::dr::DR_OPERATION_POLICY
    } else {
        "root"
    };
    let status =
        s.operator
            .generate_root_init(req.otp.as_deref(), req.pgp_key.as_deref(), policy)?;
    Ok(Json(status).into_response())
}

async fn generate_root_status(State(s): State<SysState>) -> Result<Response, SysError> {
    Ok(Json(s.operator.generate_root_status()?).into_response())
}

async fn generate_root_cancel(
    State(s): State<SysState>,
    OperatorJson(req): OperatorJson<NonceRequest>,
) -> Result<Response, SysError> {
    s.operator.generate_root_cancel(&req.nonce)?;
    Ok(Json(json!({ "cancelled": true })).into_response())
}

async fn generate_root_update(
    State(s): State<SysState>,
    OperatorJson(req): OperatorJson<ShareRequest>,
) -> Result<Response, SysError> {
    let GenerateRootAnswer {
        status,
        encoded_token,
    } = s
        .operator
        .generate_root_update(&req.nonce, &req.key)
        .await?;
    let mut body = json!(status);
    body["complete"] = json!(encoded_token.is_some());
    if let Some(token) = encoded_token {
        body["encoded_token"] = json!(token);
    }
    Ok(Json(body).into_response())
}

async fn root_tokens(State(s): State<SysState>) -> Result<Response, SysError> {
    Ok(Json(json!({ "tokens": s.operator.root_tokens()? })).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    #[serde(default)]
    accessor: Option<String>,
}

async fn revoke_root(
    State(s): State<SysState>,
    body: Result<Json<RevokeRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(bad_json)?;
    let revoked = s.operator.revoke_root(req.accessor.as_deref()).await?;
    Ok(Json(json!({ "revoked": revoked })).into_response())
}
