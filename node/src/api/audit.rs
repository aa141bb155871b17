//! The audit layer: one record per request, written to this node's audit
//! file before the answer leaves (fail closed). It wraps every route and
//! the fallback (inside the envelope), so it sees the final status, the
//! caller that authentication found ([`Caller`] on the response) and the
//! route axum matched. A record holds no body: no value, key material,
//! password, share or TOTP code can reach it; the bearer token and query
//! values other than paging ones are HMAC'd with the cluster audit key.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use zeroize::Zeroizing;

use super::akv::context::{path_vault, vault_for_host};
use super::akv::errors::ApiError;
use super::akv::firewall::ClientAddr;
use super::akv::operations;
use super::auth::{bearer_token, Caller};
use super::envelope::Surface;
use super::sys::SysError;
use crate::audit::{AuditError, Auditor};
use crate::engine::audit::{record, AuditEvent, Claims, Identity, Properties};

/// Query parameters written as given; every other value is HMAC'd.
const PLAIN_PARAMS: [&str; 3] = ["api-version", "maxresults", "$skiptoken"];
/// Error bodies longer than this are not read for `resultDescription`.
const ERROR_BODY_MAX: usize = 16 * 1024;

/// What the layer needs.
#[derive(Clone)]
pub struct AuditState {
    /// The node's audit device.
    pub auditor: Arc<Auditor>,
    /// DNS suffix of `{vault}.{domain}` hosts.
    pub vault_domain: Option<String>,
    /// Vault of bare addresses.
    pub default_vault: String,
}

/// The audit middleware (see the module documentation).
pub async fn audit(State(state): State<AuditState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let surface = Surface::of(req.uri().path());
    if state.auditor.refusing() {
        return unavailable(
            surface,
            "audit records cannot be written on this node; the request was not run",
        );
    }
    let (event, sensitive) = state.start(&req);
    let mut event = state.with_hmacs(event, sensitive).await;
    let operation = operation_name(&req);
    let response = next.run(req).await;
    let (response, description) = error_description(response).await;
    let status = response.status();
    event.operation_name = operation.clone();
    event.identity.claim = response
        .extensions()
        .get::<Caller>()
        .map(claims)
        .unwrap_or_default();
    event.result_type = if status.is_server_error() {
        "Failure"
    } else {
        "Success"
    }
    .into();
    event.result_signature = status.canonical_reason().unwrap_or("").into();
    event.result_description = description;
    event.properties.http_status_code = status.as_u16();
    let elapsed = started.elapsed();
    event.duration_ms = elapsed.as_millis().to_string();
    let status_code = status.as_u16().to_string();
    let class = format!("{}xx", status.as_u16() / 100);
    metrics::counter!("coffer_requests_total", "operation" => operation.clone(), "status_code" => status_code, "status_class" => class).increment(1);
    metrics::histogram!("coffer_request_duration_seconds", "operation" => operation)
        .record(elapsed.as_secs_f64());
    match state.auditor.record(event).await {
        Ok(_) => response,
        Err(e) => {
            tracing::error!(error = %e, "audit record not written: answering 503");
            let message = match e {
                AuditError::Timeout(_) => "the audit record could not be written in time",
                AuditError::Failed(_) => "the audit record could not be written",
            };
            unavailable(surface, message)
        }
    }
}

impl AuditState {
    /// The layer's state from the router's configuration.
    pub fn new(cfg: &super::ApiConfig) -> Self {
        Self {
            auditor: cfg.audit.clone(),
            vault_domain: cfg.vault_domain.clone(),
            default_vault: cfg.default_vault.clone(),
        }
    }

    /// The record's request half, and the values it may only show as HMACs.
    fn start(&self, req: &Request) -> (AuditEvent, Sensitive) {
        let headers = req.headers();
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_ascii_lowercase())
            .or_else(|| text("host").map(|h| h.to_ascii_lowercase()))
            .unwrap_or_else(|| "localhost".into());
        let path = req.uri().path().to_owned();
        // A route naming its vault in the path (Coffer's CA) is that
        // vault's, whatever its surface.
        let vault = match (path_vault(req.uri(), req.extensions()), Surface::of(&path)) {
            (Some(vault), _) => Some(vault),
            (None, Surface::Sys) => None,
            (None, Surface::KeyVault) => Some(vault_for_host(
                &host,
                self.vault_domain.as_deref(),
                &self.default_vault,
            )),
        };
        let (vault, resource_id, id) = match vault {
            None => (String::new(), "/COFFER/SYS".to_owned(), None),
            Some(vault) => {
                let rid = format!("/COFFER/VAULTS/{}", vault.to_ascii_uppercase());
                (vault, rid, Some(format!("https://{host}{path}")))
            }
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .map(|t| Zeroizing::new(t.to_owned()));
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let api_version = query
            .iter()
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let correlation_id = text("x-ms-client-request-id")
            .filter(|id| uuid::Uuid::parse_str(id).is_ok())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let event = AuditEvent {
            time: record::now(),
            resource_id,
            operation_version: api_version,
            category: record::CATEGORY.into(),
            // The client the network rules judge (resolved once, outside
            // this layer): a trusted proxy's forwarded client, not the proxy.
            caller_ip_address: req
                .extensions()
                .get::<ClientAddr>()
                .map(|c| c.0.to_string())
                .unwrap_or_default(),
            correlation_id,
            identity: Identity::default(),
            properties: Properties {
                id,
                client_info: text("user-agent").unwrap_or_default(),
                request_uri: format!("https://{host}{path}"),
                http_method: req.method().to_string(),
                vault,
                ..Default::default()
            },
            node_id: self.auditor.node_id(),
            ..Default::default()
        };
        (event, Sensitive { token, query })
    }

    /// Adds the bearer token's HMAC and the query, its values other than
    /// [`PLAIN_PARAMS`] HMAC'd (`redacted` while the key is unreadable).
    async fn with_hmacs(&self, mut event: AuditEvent, sensitive: Sensitive) -> AuditEvent {
        if let Some(token) = &sensitive.token {
            event.properties.token_hmac = self.auditor.fingerprint(token.as_bytes()).await;
        }
        let mut shown = Vec::with_capacity(sensitive.query.len());
        for (k, v) in &sensitive.query {
            let value = if PLAIN_PARAMS.contains(&k.as_str()) {
                v.clone()
            } else {
                self.auditor
                    .fingerprint(v.as_bytes())
                    .await
                    .unwrap_or_else(|| "redacted".into())
            };
            shown.push((k.as_str(), value));
        }
        if !shown.is_empty() {
            event.properties.request_uri.push('?');
            event.properties.request_uri.push_str(
                &url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(shown)
                    .finish(),
            );
        }
        event
    }
}

/// Request values a record shows only as HMACs.
struct Sensitive {
    token: Option<Zeroizing<String>>,
    query: Vec<(String, String)>,
}

/// The claims a record shows for `caller`.
fn claims(caller: &Caller) -> Claims {
    match caller {
        Caller::RootToken => Claims {
            root_token: true,
            ..Default::default()
        },
        Caller::Token(t) => {
            let c = &t.claims;
            Claims {
                oid: Some(c.oid.clone()),
                appid: Some(c.appid.clone()).filter(|a| !a.is_empty()),
                appidacr: Some(c.appidacr.clone()).filter(|a| !a.is_empty()),
                idtyp: Some(c.idtyp.clone()),
                upn: c.preferred_username.clone(),
                amr: c.amr.clone(),
                root_token: false,
            }
        }
    }
}

/// The Key Vault operation name from the operation table (`SecretGet`);
/// for the operator and identity routes, which have no Key Vault name,
/// `METHOD /route/{param}`; `UnknownRoute` for paths no route matched.
fn operation_name(req: &Request) -> String {
    if let Some(op) = operations::of(req) {
        return op.name().to_owned();
    }
    match req.extensions().get::<MatchedPath>() {
        Some(m) => format!("{} {}", req.method(), m.as_str()),
        None => "UnknownRoute".into(),
    }
}

/// The error message of a failed answer (`error.message` or `errors[0]`),
/// with the response rebuilt from the bytes read.
async fn error_description(response: Response) -> (Response, Option<String>) {
    let status = response.status();
    let small = axum::body::HttpBody::size_hint(response.body())
        .upper()
        .is_some_and(|n| n as usize <= ERROR_BODY_MAX);
    if status.as_u16() < 400 || !small {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return (Response::from_parts(parts, Body::empty()), None);
    };
    let bytes = collected.to_bytes();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.pointer("/errors/0"))
                .and_then(|m| m.as_str().map(str::to_owned))
        });
    (Response::from_parts(parts, Body::from(bytes)), message)
}

/// 503 in the addressed API's format, with `Retry-After`.
fn unavailable(surface: Surface, message: &str) -> Response {
    let mut response = match surface {
        Surface::Sys => SysError::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response(),
        Surface::KeyVault => ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
        .into_response(),
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
