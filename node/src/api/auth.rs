//! Authentication in front of the Key Vault and protected operator routes.
//!
//! Runs before any handler, so the body of an unauthenticated request is
//! never read: the Azure SDKs send their first request without a body and
//! expect the 401 challenge that tells them where to get a token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::api::identity::ClusterAudience;
use crate::engine::identity::{IdentityEngine, VerifiedToken, VerifyError};
use crate::operator::Operator;

/// Marks a request authenticated with the root token (break-glass): the
/// authorization layer allows it and logs it.
#[derive(Clone, Copy, Debug)]
pub struct BreakGlass;

/// Which API's error format the middleware answers in.
#[derive(Clone, Copy, Debug)]
pub enum Flavor {
    /// `{"error":{"code","message"}}` plus the Bearer challenge.
    KeyVault,
    /// `{"errors":["…"]}`.
    Sys,
}

/// What the authentication middleware needs.
#[derive(Clone)]
pub struct AuthState {
    /// Token verification and seal state.
    pub operator: Arc<Operator>,
    /// Tenant named in the challenge's `authorization` URI.
    pub tenant: String,
    /// Resource named in the challenge (`https://{vault_domain}`), when set.
    pub vault_domain: Option<String>,
    /// Error format.
    pub flavor: Flavor,
    /// Verifies the access tokens the cluster's issuer minted.
    pub identity: Arc<IdentityEngine>,
}

/// Who made an authenticated request. In the request's extensions for
/// handlers and authorization, and copied onto the response so layers
/// outside authentication (the audit record) know the caller too.
#[derive(Clone, Debug)]
pub enum Caller {
    /// The break-glass root token (no principal).
    RootToken,
    /// A verified access token of the cluster's issuer.
    Token(Arc<VerifiedToken>),
}

/// Runs `req` as `caller`'s request.
async fn run_as(caller: Caller, mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(caller.clone());
    let mut response = next.run(req).await;
    response.extensions_mut().insert(caller);
    response
}

/// Rejects sealed-node, unauthenticated and bad-token requests.
pub async fn authenticate(State(auth): State<AuthState>, mut req: Request, next: Next) -> Response {
    if auth.operator.is_sealed() {
        return sealed(auth.flavor);
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let Some(token) = token else {
        return challenge(&auth, &req, "Request is missing a Bearer or PoP token.");
    };
    // Access tokens (JWTs: three dot-separated parts) are for the Key Vault
    // API; the operator API keeps the root token until RBAC lands.
    if matches!(auth.flavor, Flavor::KeyVault) && token.split('.').count() == 3 {
        return verify_access_token(&auth, token.to_owned(), req, next).await;
    }
    match auth.operator.verify_token(token) {
        Ok(Some(_record)) => {
            if matches!(auth.flavor, Flavor::KeyVault) {
                // Break-glass: the root token bypasses identity and RBAC;
                // the authorization layer logs each use.
                req.extensions_mut().insert(BreakGlass);
            }
            run_as(Caller::RootToken, req, next).await
        }
        Ok(None) => challenge(&auth, &req, "The bearer token is not valid for this vault."),
        Err(e) => {
            tracing::warn!(error = %e, "token verification failed");
            unavailable(
                auth.flavor,
                "token verification is unavailable on this node",
            )
        }
    }
}

/// Verifies an access token locally and passes the request on with the
/// verified token in its extensions; any defect is a 401 challenge.
async fn verify_access_token(
    auth: &AuthState,
    token: String,
    mut req: Request,
    next: Next,
) -> Response {
    let members: Vec<String> = match auth.operator.node().peers().await {
        Ok(p) => p.peers.into_iter().map(|p| p.api_addr).collect(),
        Err(_) => Vec::new(),
    };
    let audience = ClusterAudience::new(
        auth.vault_domain.as_deref(),
        request_host(&req),
        members.iter().map(String::as_str),
    );
    let started = std::time::Instant::now();
    let verified = auth.identity.verify(&token, &audience).await;
    tracing::debug!(
        verify_ms = started.elapsed().as_millis() as u64,
        "access token verified"
    );
    match verified {
        Ok(verified) => {
            let verified = Arc::new(verified);
            req.extensions_mut().insert(verified.clone());
            run_as(Caller::Token(verified), req, next).await
        }
        Err(VerifyError::Rejected(reason)) => {
            tracing::info!(%reason, "access token refused");
            challenge(auth, &req, "The access token is not valid for this vault.")
        }
        Err(VerifyError::Unavailable(e)) => {
            tracing::warn!(error = %e, "access token verification failed");
            unavailable(
                auth.flavor,
                "token verification is unavailable on this node",
            )
        }
    }
}

fn request_host(req: &Request) -> Option<&str> {
    crate::api::identity::request_host(req.headers(), req.uri())
}

/// The token of an `Authorization: Bearer <token>` value. The scheme name
/// is case-insensitive and may be followed by several spaces (RFC 9110
/// §11.1, §11.4).
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn challenge(auth: &AuthState, req: &Request, message: &str) -> Response {
    match auth.flavor {
        Flavor::Sys => sys_error(StatusCode::UNAUTHORIZED, message),
        Flavor::KeyVault => {
            let host = request_host(req).unwrap_or("localhost");
            let resource = auth.vault_domain.as_deref().unwrap_or(host);
            // The tenant GUID once the identity store exists (clients
            // compare it with their credential's tenant), else the name.
            let tenant = match auth.identity.tenant() {
                Ok(Some(t)) => t.id,
                _ => auth.tenant.clone(),
            };
            let value = format!(
                "Bearer authorization=\"https://{host}/{tenant}\", resource=\"https://{resource}\""
            );
            let mut response = akv_error(StatusCode::UNAUTHORIZED, "Unauthorized", message);
            if let Ok(value) = HeaderValue::from_str(&value) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
    }
}

fn sealed(flavor: Flavor) -> Response {
    unavailable(
        flavor,
        "This Coffer node is sealed: unseal it with the key shares (coffer operator unseal) or use another node.",
    )
}

/// 503 with `Retry-After`, as every 503 of the Key Vault API carries: the
/// Azure SDKs' retry policy waits that long, and a client with other nodes
/// (the Coffer client) moves on to them.
fn unavailable(flavor: Flavor, message: &str) -> Response {
    let mut response = match flavor {
        Flavor::Sys => sys_error(StatusCode::SERVICE_UNAVAILABLE, message),
        Flavor::KeyVault => akv_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        ),
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn sys_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "errors": [message] }))).into_response()
}

fn akv_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "bEaReR abc",
            "Bearer   abc",
            "Bearer abc ",
        ] {
            assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "PoP abc", ""] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }
}
