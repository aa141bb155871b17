//! Disaster recovery under `/v1/sys/dr/…`: a DR replica's status and its
//! promotion. The DR operation token (from the generate-root ceremony with
//! `"dr_operation": true`) is the authorisation of `promote`: on a DR site
//! whose primary is lost, it is what the custodians can still produce.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{OperatorJson, SysError, SysState};

/// Tokenless routes (the DR operation token is in the body).
pub fn public_router() -> Router<SysState> {
    Router::new()
        .route("/v1/sys/dr/status", get(status))
        .route("/v1/sys/dr/promote", post(promote))
}

async fn status(State(s): State<SysState>) -> Result<Response, SysError> {
    Ok(Json(s.operator.dr_status()?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteRequest {
    dr_operation_token: String,
}

impl Drop for PromoteRequest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.dr_operation_token);
    }
}

async fn promote(
    State(s): State<SysState>,
    OperatorJson(req): OperatorJson<PromoteRequest>,
) -> Result<Response, SysError> {
    let done = s.operator.dr_promote(&req.dr_operation_token).await?;
    Ok(Json(json!({ "promoted": true, "message": done })).into_response())
}
