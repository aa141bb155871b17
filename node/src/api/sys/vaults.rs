//! `/v1/sys/vaults…`: create (optionally with the environment's network
//! rules), list, delete, and read or replace a vault's network rules.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{SysError, SysState};
use crate::engine::authz::{roles, Actor, AssignmentSpec};
use crate::engine::network::NetworkAcls;

/// The vault routes (behind the operator's authentication).
pub fn router() -> Router<SysState> {
    Router::new()
        .route("/v1/sys/vaults", get(list_vaults))
        .route(
            "/v1/sys/vaults/{name}",
            get(get_vault).put(create_vault).delete(delete_vault),
        )
        .route(
            "/v1/sys/vaults/{name}/network",
            get(get_network).put(set_network).delete(clear_network),
        )
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Optional body of a create: `{"networkAcls": {…}, "administrators": [oid]}`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateVault {
    #[serde(default)]
    network_acls: Option<NetworkAcls>,
    /// Object ids that get Key Vault Administrator at `/` of the new vault,
    /// so the root token is not needed for its first role assignments.
    #[serde(default)]
    administrators: Vec<String>,
}

/// A stable assignment name (a GUID) for `oid` administering `vault`: a
/// retried create assigns the same name again, which changes nothing.
fn admin_assignment_name(vault: &str, oid: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(Sha256::digest(format!("vault-admin|{vault}|{oid}")));
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, SysError> {
    serde_json::from_slice(body).map_err(|e| {
        SysError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e}"),
        )
    })
}

async fn list_vaults(State(s): State<SysState>) -> Result<Response, SysError> {
    let vaults = s.vaults.list().await?;
    Ok(Json(json!({ "vaults": vaults })).into_response())
}

async fn get_vault(
    State(s): State<SysState>,
    Path(name): Path<String>,
) -> Result<Response, SysError> {
    Ok(Json(s.vaults.get(&name).await?).into_response())
}

async fn create_vault(
    State(s): State<SysState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SysError> {
    // Older clients send no body: a vault open to every address.
    let req: CreateVault = if body.iter().all(u8::is_ascii_whitespace) {
        CreateVault::default()
    } else {
        parse(&body)?
    };
    let info = s
        .vaults
        .create_with(&name, req.network_acls, request_id(&headers).as_deref())
        .await?;
    for oid in &req.administrators {
        let spec = AssignmentSpec {
            scope: "/".into(),
            principal_id: oid.clone(),
            role_definition_id: roles::ADMINISTRATOR.into(),
            require_mfa: false,
            source_cidrs: Vec::new(),
        };
        let assignment = admin_assignment_name(&info.name, oid);
        s.authz
            .put_assignment(&Actor::BreakGlass, Some(&info.name), &assignment, spec)
            .await
            .map_err(|e| {
                SysError::new(StatusCode::BAD_REQUEST, format!("administrator {oid}: {e}"))
            })?;
    }
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

async fn get_network(
    State(s): State<SysState>,
    Path(name): Path<String>,
) -> Result<Response, SysError> {
    let info = s.vaults.get(&name).await?;
    Ok(Json(json!({ "name": info.name, "networkAcls": info.network_acls })).into_response())
}

async fn set_network(
    State(s): State<SysState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SysError> {
    let acls: NetworkAcls = parse(&body)?;
    let info = s
        .vaults
        .set_network(&name, Some(acls), request_id(&headers).as_deref())
        .await?;
    Ok(Json(json!({ "name": info.name, "networkAcls": info.network_acls })).into_response())
}

async fn clear_network(
    State(s): State<SysState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, SysError> {
    let info = s
        .vaults
        .set_network(&name, None, request_id(&headers).as_deref())
        .await?;
    Ok(Json(json!({ "name": info.name, "networkAcls": info.network_acls })).into_response())
}
