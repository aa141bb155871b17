//! Seal migration under `/v1/sys/seal-migrate/…` (Shamir ↔ pkcs11).
//!
//! Starting and cancelling need a token; share submissions need none (the
//! shares are the authorisation, as for unseal and rekey).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::custody::{NonceRequest, ShareRequest};
use super::{bad_json, OperatorJson, SysError, SysState};
use crate::seal::SealType;

/// Tokenless routes: status and share submissions.
pub fn public_router() -> Router<SysState> {
    Router::new()
        .route("/v1/sys/seal-migrate/init", get(status))
        .route("/v1/sys/seal-migrate/update", post(update))
}

/// Routes that need a token.
pub fn protected_router() -> Router<SysState> {
    Router::new()
        .route("/v1/sys/seal-migrate/init", post(init))
        .route("/v1/sys/seal-migrate/cancel", post(cancel))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InitRequest {
    /// `pkcs11` or `shamir`.
    target: SealType,
}

async fn init(
    State(s): State<SysState>,
    body: Result<Json<InitRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(bad_json)?;
    Ok(Json(s.operator.migrate_init(req.target)?).into_response())
}

async fn status(State(s): State<SysState>) -> Result<Response, SysError> {
    Ok(Json(s.operator.migrate_status()?).into_response())
}

async fn cancel(
    State(s): State<SysState>,
    body: Result<Json<NonceRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, SysError> {
    let Json(req) = body.map_err(bad_json)?;
    s.operator.migrate_cancel(&req.nonce)?;
    Ok(Json(json!({ "cancelled": true })).into_response())
}

async fn update(
    State(s): State<SysState>,
    OperatorJson(req): OperatorJson<ShareRequest>,
) -> Result<Response, SysError> {
    let (status, complete) = s.operator.migrate_update(&req.nonce, &req.key).await?;
    let mut body = json!(status);
    body["complete"] = json!(complete);
    Ok(Json(body).into_response())
}
