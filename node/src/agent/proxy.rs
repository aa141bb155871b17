//! The Key Vault proxy: a request from a local application is checked
//! against the application keys, then forwarded to a cluster node — the
//! leader first for writes, the last node that answered for reads —
//! and tried again on another node on a connection error, a timeout or a
//! `503`, always with the same `x-ms-client-request-id` (taken from the
//! application or generated here), which the cluster uses to apply a
//! write once however often it arrives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_client::{ClientError, Request, REQUEST_ID_HEADER};
use http_body_util::BodyExt;

use super::breaker::jitter;
use super::identity::VAULT_RESOURCE;
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

/// Pause before pass `pass` over the nodes (every node tried once per
/// pass): 50 ms doubling to 800 ms, times a jitter factor.
fn pass_pause(pass: u32) -> Duration {
    let shift = pass.saturating_sub(1).min(4);
    Duration::from_millis(50u64 << shift).mul_f64(jitter())
}

/// Whether a request changes state (sent to the leader first).
fn is_write(method: &Method) -> bool {
    !(method == Method::GET || method == Method::HEAD || method == Method::OPTIONS)
}

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

/// Every path that is not the agent's own: forward it.
pub(super) async fn forward(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
) -> Response {
    match forward_inner(&shared, req).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn forward_inner(
    shared: &Shared,
    req: axum::extract::Request,
) -> Result<Response, AgentError> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let given = parts
        .headers
        .get(apps::APP_KEY_HEADER)
        .map(HeaderValue::as_bytes);
    let app = apps::find(&shared.apps, given).ok_or(AgentError::UnknownCaller)?;
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
    let write = is_write(&parts.method);
    let mut outbound = Request::new(parts.method.clone(), path);
    outbound.headers = headers;
    outbound.body = (!body.is_empty()).then_some(body);
    outbound.request_id = Some(id.clone());

    let deadline = started + shared.deadline;
    let mut tried: Vec<usize> = Vec::new();
    let mut pass = 0u32;
    let mut attempts = 0u32;
    let mut last: Option<Result<coffer_client::Response, ClientError>> = None;
    while Instant::now() < deadline {
        let now = Instant::now();
        let order = shared.nodes.order(write, now);
        let next = order
            .iter()
            .copied()
            .find(|&i| !tried.contains(&i) && !shared.nodes.is_open(i, now))
            // Every node's breaker is open: one trial (the soonest to
            // reopen) per pass rather than none.
            .or_else(|| tried.is_empty().then(|| order.first().copied()).flatten());
        let Some(idx) = next else {
            tried.clear();
            pass += 1;
            tokio::time::sleep(pass_pause(pass).min(deadline.saturating_duration_since(now))).await;
            continue;
        };
        tried.push(idx);
        attempts += 1;
        let result = shared.client.send_to(idx, outbound.clone()).await;
        match result {
            Ok(resp) if resp.status != StatusCode::SERVICE_UNAVAILABLE => {
                shared.nodes.succeeded(idx);
                tracing::info!(
                    app = %app.name, method = %parts.method, path = %parts.uri.path(),
                    status = resp.status.as_u16(), node = idx, attempts,
                    request_id = %id, elapsed_ms = started.elapsed().as_millis() as u64,
                    "forwarded"
                );
                return Ok(render(resp));
            }
            Ok(resp) => {
                shared.nodes.failed(idx, Instant::now(), jitter());
                tracing::debug!(node = idx, request_id = %id, "node unavailable (503), trying another");
                last = Some(Ok(resp));
            }
            Err(e) if e.is_transient() => {
                shared.nodes.failed(idx, Instant::now(), jitter());
                tracing::debug!(node = idx, request_id = %id, error = %e, "attempt failed, trying another");
                last = Some(Err(e));
            }
            Err(e) => return Err(AgentError::Forward(e.to_string())),
        }
    }
    tracing::warn!(
        app = %app.name, method = %parts.method, path = %parts.uri.path(),
        attempts, request_id = %id, "no node answered before the deadline"
    );
    match last {
        Some(Ok(resp)) => Ok(render(resp)),
        Some(Err(e)) => Err(AgentError::NoNode(e.to_string())),
        None => Err(AgentError::NoNode("no attempt fitted the deadline".into())),
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

    #[test]
    fn writes_and_pauses() {
        assert!(is_write(&Method::PUT));
        assert!(is_write(&Method::POST));
        assert!(!is_write(&Method::GET));
        let p = pass_pause(1);
        assert!(p >= Duration::from_millis(25) && p < Duration::from_millis(75));
        assert!(pass_pause(10) < Duration::from_millis(1200));
    }
}
