//! The Key Vault proxy: a request from a local application is checked
//! against the application keys, then forwarded through the failover of
//! [`coffer_client::Client::send`] — the leader first for writes, the last
//! node that answered for reads, another node on a connection error, a
//! timeout or a `503`, until the request's deadline — always with the same
//! `x-ms-client-request-id` (taken from the application or generated
//! here), which the cluster uses to apply a write once however often it
//! arrives.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use coffer_client::auth::VAULT_RESOURCE;
use coffer_client::{ClientError, Request, REQUEST_ID_HEADER};
use http_body_util::BodyExt;

use super::cache::ReadCache;
use super::{apps, AgentError, Shared};

/// Headers that belong to one connection and are never forwarded
/// (RFC 9110 §7.6.1), plus those the agent sets itself.
const DROPPED: [&str; 11] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
];

/// Copies `from` without the connection-level headers and `extra_drop`.
fn forwardable(from: &HeaderMap, extra_drop: &[&str]) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        let n = name.as_str();
        if !DROPPED.contains(&n) && !extra_drop.contains(&n) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The authority the application addressed: HTTP/2 `:authority` or Host.
fn authority(parts: &axum::http::request::Parts) -> Option<HeaderValue> {
    parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| parts.headers.get(header::HOST).cloned())
}

/// The request id the application sent, when usable, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// The kernel's word on who is at the other end of a unix socket
/// connection (`SO_PEERCRED`); `None` when it could not be read.
#[derive(Debug, Clone, Copy)]
pub(super) struct PeerCred {
    uid: Option<u32>,
    pid: Option<i32>,
}

impl Connected<IncomingStream<'_, tokio::net::UnixListener>> for PeerCred {
    fn connect_info(stream: IncomingStream<'_, tokio::net::UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(cred) => Self {
                uid: Some(cred.uid()),
                pid: cred.pid(),
            },
            Err(_) => Self {
                uid: None,
                pid: None,
            },
        }
    }
}

/// Every path that is not the agent's own (TCP listener): the caller is
/// the application whose key it sends.
pub(super) async fn forward(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
) -> Response {
    let given = req
        .headers()
        .get(apps::APP_KEY_HEADER)
        .map(HeaderValue::as_bytes);
    let app = apps::find(&shared.apps, given);
    match forward_inner(&shared, app, req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// The same on the unix socket: the caller is the application its user id
/// belongs to; a key does not stand in for it.
pub(super) async fn forward_unix(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<PeerCred>,
    req: axum::extract::Request,
) -> Response {
    let app = peer.uid.and_then(|uid| apps::find_uid(&shared.apps, uid));
    if app.is_none() {
        tracing::warn!(uid = ?peer.uid, pid = ?peer.pid, "unix socket caller refused");
    }
    match forward_inner(&shared, app, req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn forward_inner(
    shared: &Shared,
    app: Option<&apps::App>,
    req: axum::extract::Request,
) -> Result<Response, AgentError> {
    let started = Instant::now();
    let app = app.ok_or(AgentError::UnknownCaller)?;
    let (parts, body) = req.into_parts();
    let body = http_body_util::Limited::new(body, shared.max_body)
        .collect()
        .await
        .map_err(|_| AgentError::BodyTooLarge(shared.max_body))?
        .to_bytes();
    let id = request_id(&parts.headers);
    let mut headers = forwardable(&parts.headers, &[apps::APP_KEY_HEADER]);
    // The node picks the vault and writes the ids, nextLinks and the 401
    // challenge from the Host: it must be the one the application used.
    if let Some(host) = authority(&parts) {
        headers.insert(header::HOST, host);
    }
    if app.attach_token && !headers.contains_key(header::AUTHORIZATION) {
        if let Some(identity) = &shared.identity {
            let (token, _) = identity
                .token_for(VAULT_RESOURCE)
                .await
                .map_err(|e| AgentError::NoToken(e.to_string()))?;
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.as_str()))
                .map_err(|_| AgentError::NoToken("the token is not a header value".into()))?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let cached = shared.cache.as_ref().and_then(|cache| {
        cache.saw(&parts.method, &path);
        ReadCache::key(&parts.method, &path, &headers, &app.name)
    });
    if let (Some(cache), Some(key)) = (&shared.cache, &cached) {
        if let Some((content_type, body)) = cache.get(key) {
            tracing::info!(
                app = %app.name, method = %parts.method, path = %parts.uri.path(),
                status = 200, request_id = %id, "served from the read cache"
            );
            let mut out = Response::new(Body::from(body));
            if let Some(ct) = content_type {
                out.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            return Ok(out);
        }
    }
    let mut outbound = Request::new(parts.method.clone(), path.clone());
    outbound.headers = headers;
    outbound.body = (!body.is_empty()).then_some(body);
    outbound.request_id = Some(id.clone());
    let result = shared.client.send(outbound).await;
    if let (Some(cache), Ok(resp)) = (&shared.cache, &result) {
        if let Some(key) = cached {
            cache.put(key, resp.status, &resp.headers, &resp.body);
        }
        // A write's answer came back: drop what was cached meanwhile.
        cache.saw(&parts.method, &path);
    }
    match result {
        Ok(resp) if resp.status != StatusCode::SERVICE_UNAVAILABLE => {
            tracing::info!(
                app = %app.name, method = %parts.method, path = %parts.uri.path(),
                status = resp.status.as_u16(), node = resp.endpoint,
                attempts = resp.attempts, request_id = %id, elapsed_ms = started.elapsed().as_millis() as u64,
                "forwarded"
            );
            Ok(render(resp))
        }
        // Every node answered 503 until the deadline: the last answer as is.
        Ok(resp) => {
            tracing::warn!(
                app = %app.name, method = %parts.method, path = %parts.uri.path(),
                request_id = %id, "no node could serve before the deadline"
            );
            Ok(render(resp))
        }
        Err(e) if e.is_transient() || matches!(e, ClientError::Deadline { .. }) => {
            tracing::warn!(
                app = %app.name, method = %parts.method, path = %parts.uri.path(),
                request_id = %id, error = %e, "no node answered before the deadline"
            );
            Err(AgentError::NoNode(e.to_string()))
        }
        Err(e) => Err(AgentError::Forward(e.to_string())),
    }
}

/// The node's answer as is, without its connection-level headers.
fn render(resp: coffer_client::Response) -> Response {
    let mut out = Response::new(Body::from(resp.body));
    *out.status_mut() = resp.status;
    *out.headers_mut() = forwardable(&resp.headers, &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_app_key_are_not_forwarded() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive"));
        h.insert("host", HeaderValue::from_static("127.0.0.1:1"));
        h.insert("x-coffer-agent-key", HeaderValue::from_static("k"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        h.insert(REQUEST_ID_HEADER, HeaderValue::from_static("abc"));
        let out = forwardable(&h, &[apps::APP_KEY_HEADER]);
        assert_eq!(out.len(), 2);
        assert!(out.contains_key("authorization"));
        assert_eq!(request_id(&out), "abc");
        assert_eq!(request_id(&HeaderMap::new()).len(), 36);
    }
}
