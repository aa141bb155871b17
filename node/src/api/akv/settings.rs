//! `KeyVaultSettingsClient`: `GET /settings`, `GET /settings/{name}`,
//! `PATCH /settings/{name}` (`{"value":"true"}`). Parse → engine → render.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::context::AkvCtx;
use super::errors::ApiError;
use super::extract::{JsonBody, PathParams};
use super::AkvState;

/// `PATCH /settings/{name}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSetting {
    /// The new value as a string (`"true"`), whatever the setting's type.
    value: String,
}

/// `GET /settings`.
pub async fn list(State(st): State<AkvState>, ctx: AkvCtx) -> Result<Json<Value>, ApiError> {
    let settings = st.settings.list(&ctx.vault).await?;
    Ok(Json(json!({ "settings": settings })))
}

/// `GET /settings/{name}`.
pub async fn get(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
) -> Result<Json<Value>, ApiError> {
    let setting = st.settings.get(&ctx.vault, &name).await?;
    Ok(Json(json!(setting)))
}

/// `PATCH /settings/{name}`.
pub async fn update(
    State(st): State<AkvState>,
    ctx: AkvCtx,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<UpdateSetting>,
) -> Result<Json<Value>, ApiError> {
    let id = ctx.write_id("setting", &name);
    let setting = st
        .settings
        .update(&ctx.vault, &name, &body.value, Some(&id))
        .await?;
    Ok(Json(json!(setting)))
}
