//! Operator routes that manage the tenant's principals, under
//! `/v1/sys/identity/…` (root token only until RBAC lands). Errors use the
//! operator API's `{"errors":[…]}` shape.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::api::sys::{OperatorJson, SysError};
use crate::engine::identity::credentials::{user_template, FederatedCredential};
use crate::engine::identity::principals::template;
use crate::engine::identity::signing::Jwk;
use crate::engine::identity::{IdentityEngine, IdentityError, Kind};

/// The management routes (the caller layers authentication on).
pub fn router(identity: Arc<IdentityEngine>) -> Router {
    Router::new()
        .route("/v1/sys/identity/tenant", get(tenant))
        .route("/v1/sys/identity/signing-keys", get(signing_keys))
        .route("/v1/sys/identity/signing-keys/rotate", post(rotate))
        .route("/v1/sys/identity/{kind}", get(list).post(create))
        .route("/v1/sys/identity/{kind}/{id}", get(show).delete(remove))
        .route("/v1/sys/identity/{kind}/{id}/enable", post(enable))
        .route("/v1/sys/identity/{kind}/{id}/disable", post(disable))
        .route("/v1/sys/identity/apps/{id}/secrets", post(add_secret))
        .route(
            "/v1/sys/identity/apps/{id}/secrets/{secret}",
            delete(remove_secret),
        )
        .route("/v1/sys/identity/apps/{id}/certificates", post(add_cert))
        .route(
            "/v1/sys/identity/apps/{id}/certificates/{thumbprint}",
            delete(remove_cert),
        )
        .route("/v1/sys/identity/apps/{id}/federated", post(add_federated))
        .route(
            "/v1/sys/identity/apps/{id}/bound-cidrs",
            axum::routing::put(set_bound_cidrs),
        )
        .route(
            "/v1/sys/identity/groups/{id}/members/{member}",
            axum::routing::put(add_member).delete(remove_member),
        )
        .route("/v1/sys/identity/users/{id}/password", post(set_password))
        .route("/v1/sys/identity/users/{id}/mfa", post(enroll_mfa))
        .route("/v1/sys/identity/{kind}/{id}/unlock", post(unlock))
        .with_state(identity)
}

impl From<IdentityError> for SysError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Engine(e) => SysError::from(e),
            e => {
                let status = match &e {
                    IdentityError::NotFound(_) => StatusCode::NOT_FOUND,
                    IdentityError::Exists(_) => StatusCode::CONFLICT,
                    IdentityError::LockedOut { .. } => StatusCode::TOO_MANY_REQUESTS,
                    _ => StatusCode::BAD_REQUEST,
                };
                SysError::new(status, e.to_string())
            }
        }
    }
}

type Id = Arc<IdentityEngine>;

/// `apps` | `users` | `groups`.
fn kind(segment: &str) -> Result<Kind, SysError> {
    match segment {
        "apps" => Ok(Kind::App),
        "users" => Ok(Kind::User),
        "groups" => Ok(Kind::Group),
        _ => Err(SysError::new(
            StatusCode::NOT_FOUND,
            format!("unknown principal kind {segment} (apps, users, groups)"),
        )),
    }
}

async fn tenant(State(id): State<Id>) -> Result<Response, SysError> {
    Ok(Json(id.ensure_tenant().await?).into_response())
}

async fn signing_keys(State(id): State<Id>) -> Result<Response, SysError> {
    id.ensure_signing_key().await?;
    Ok(Json(json!({ "keys": id.jwks()? })).into_response())
}

async fn rotate(State(id): State<Id>) -> Result<Response, SysError> {
    let kid = id.rotate_signing_key().await?;
    tracing::info!(kid, "token signing key rotated");
    Ok(Json(json!({ "kid": kid })).into_response())
}

async fn list(State(id): State<Id>, Path(k): Path<String>) -> Result<Response, SysError> {
    let items: Vec<_> = id
        .list(kind(&k)?)
        .await?
        .iter()
        .map(|p| p.redacted())
        .collect();
    Ok(Json(json!({ "value": items })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    /// Users only.
    #[serde(default)]
    password: Option<String>,
    /// Groups only: initial member object ids.
    #[serde(default)]
    members: Vec<String>,
    /// Apps only: the address ranges its tokens are bound to.
    #[serde(default)]
    bound_cidrs: Vec<String>,
}

async fn create(
    State(id): State<Id>,
    Path(k): Path<String>,
    OperatorJson(req): OperatorJson<CreateRequest>,
) -> Result<Response, SysError> {
    let kind = kind(&k)?;
    if kind != Kind::App && !req.bound_cidrs.is_empty() {
        return Err(SysError::new(
            StatusCode::BAD_REQUEST,
            "only applications can be bound to CIDRs",
        ));
    }
    let template = match kind {
        Kind::User => {
            let password = req
                .password
                .as_deref()
                .ok_or_else(|| SysError::new(StatusCode::BAD_REQUEST, "a user needs a password"))?;
            user_template(&req.name, password)?
        }
        Kind::Group => {
            let mut t = template(kind, &req.name);
            if let Some(g) = &mut t.group {
                g.members = req.members;
            }
            t
        }
        Kind::App => {
            let mut t = template(kind, &req.name);
            if let Some(app) = &mut t.app {
                app.bound_cidrs = req.bound_cidrs;
            }
            t
        }
    };
    let created = id.create_principal(template).await?;
    tracing::info!(kind = kind.as_str(), oid = %created.object_id, "principal created");
    Ok((StatusCode::CREATED, Json(created.redacted())).into_response())
}

async fn show(
    State(id): State<Id>,
    Path((k, name)): Path<(String, String)>,
) -> Result<Response, SysError> {
    Ok(Json(id.find(kind(&k)?, &name).await?.redacted()).into_response())
}

async fn remove(
    State(id): State<Id>,
    Path((k, name)): Path<(String, String)>,
) -> Result<Response, SysError> {
    id.delete(kind(&k)?, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn enable(
    State(id): State<Id>,
    Path((k, name)): Path<(String, String)>,
) -> Result<Response, SysError> {
    Ok(Json(id.set_enabled(kind(&k)?, &name, true).await?).into_response())
}

async fn disable(
    State(id): State<Id>,
    Path((k, name)): Path<(String, String)>,
) -> Result<Response, SysError> {
    Ok(Json(id.set_enabled(kind(&k)?, &name, false).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretRequest {
    #[serde(default)]
    valid_days: Option<u64>,
}

async fn add_secret(
    State(id): State<Id>,
    Path(app): Path<String>,
    OperatorJson(req): OperatorJson<SecretRequest>,
) -> Result<Response, SysError> {
    let secret = id.add_app_secret(&app, req.valid_days).await?;
    Ok((StatusCode::CREATED, Json(secret)).into_response())
}

async fn remove_secret(
    State(id): State<Id>,
    Path((app, secret)): Path<(String, String)>,
) -> Result<Response, SysError> {
    id.remove_app_secret(&app, &secret).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertRequest {
    /// PEM (or base64 DER) certificate.
    certificate: String,
}

async fn add_cert(
    State(id): State<Id>,
    Path(app): Path<String>,
    OperatorJson(req): OperatorJson<CertRequest>,
) -> Result<Response, SysError> {
    let thumbprint = id.add_app_certificate(&app, &req.certificate).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "thumbprint": thumbprint })),
    )
        .into_response())
}

async fn remove_cert(
    State(id): State<Id>,
    Path((app, thumbprint)): Path<(String, String)>,
) -> Result<Response, SysError> {
    id.remove_app_certificate(&app, &thumbprint).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FederatedRequest {
    name: String,
    issuer: String,
    subject: String,
    #[serde(default = "default_exchange_audience")]
    audience: String,
    /// The issuer's JWKS document (`{"keys":[…]}`).
    jwks: JwksDoc,
}

#[derive(Deserialize)]
struct JwksDoc {
    keys: Vec<Jwk>,
}

fn default_exchange_audience() -> String {
    "api://AzureADTokenExchange".into()
}

async fn add_federated(
    State(id): State<Id>,
    Path(app): Path<String>,
    OperatorJson(req): OperatorJson<FederatedRequest>,
) -> Result<Response, SysError> {
    let keys: Vec<Jwk> = req
        .jwks
        .keys
        .into_iter()
        .filter(|k| k.kty == "RSA")
        .collect();
    id.add_app_federated(
        &app,
        FederatedCredential {
            name: req.name,
            issuer: req.issuer,
            subject: req.subject,
            audience: req.audience,
            keys,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundCidrsRequest {
    /// The ranges (IPv4/IPv6 addresses or CIDRs); empty: unbound.
    bound_cidrs: Vec<String>,
}

/// `PUT /v1/sys/identity/apps/{id}/bound-cidrs`: replaces the app's
/// address binding; answers the app.
async fn set_bound_cidrs(
    State(id): State<Id>,
    Path(app): Path<String>,
    OperatorJson(req): OperatorJson<BoundCidrsRequest>,
) -> Result<Response, SysError> {
    let app = id.set_bound_cidrs(&app, &req.bound_cidrs).await?;
    tracing::info!(oid = %app.object_id, ranges = app.app.as_ref().map_or(0, |a| a.bound_cidrs.len()), "application address binding set");
    Ok(Json(app).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordRequest {
    password: String,
}

async fn set_password(
    State(id): State<Id>,
    Path(user): Path<String>,
    OperatorJson(req): OperatorJson<PasswordRequest>,
) -> Result<Response, SysError> {
    id.set_password(&user, &req.password).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn enroll_mfa(State(id): State<Id>, Path(user): Path<String>) -> Result<Response, SysError> {
    let uri = id.enroll_totp(&user).await?;
    Ok(Json(json!({ "otpauth_uri": uri })).into_response())
}

async fn unlock(
    State(id): State<Id>,
    Path((k, name)): Path<(String, String)>,
) -> Result<Response, SysError> {
    id.clear_lockout(kind(&k)?, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn add_member(
    State(id): State<Id>,
    Path((group, member)): Path<(String, String)>,
) -> Result<Response, SysError> {
    Ok(Json(id.set_group_member(&group, &member, true).await?).into_response())
}

async fn remove_member(
    State(id): State<Id>,
    Path((group, member)): Path<(String, String)>,
) -> Result<Response, SysError> {
    Ok(Json(id.set_group_member(&group, &member, false).await?).into_response())
}
