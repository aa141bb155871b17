//! What every response of the node carries, whichever route (or none)
//! produced it: security headers, an error body in the format of the
//! surface that was addressed, and the limits on the request head.
//!
//! The layer wraps the whole router, so it sees the 404 of an unknown path
//! and the 405 of a known path with another method (both bodiless in axum),
//! and it answers an oversize URI or header section itself with 414 / 431
//! in the surface's error format. hyper answers those with bodiless
//! responses only beyond its own, higher limits (set by the listener).

use axum::body::HttpBody as _;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::akv::errors::ApiError;
use super::sys::SysError;

pub use crate::http_limits::{MAX_HEADER_BYTES, MAX_HEADER_COUNT, MAX_URI_BYTES};

/// The API a request addressed, which decides its error format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// The operator API under `/v1/sys` and the private CA's endpoints
    /// under `/v1/pki`: `{"errors":["…"]}`.
    Sys,
    /// Everything else is the Key Vault API: `{"error":{"code","message"}}`.
    KeyVault,
}

impl Surface {
    /// The surface of a request path.
    pub fn of(path: &str) -> Self {
        if path == "/v1/sys" || path.starts_with("/v1/sys/") || path.starts_with("/v1/pki/") {
            Surface::Sys
        } else {
            Surface::KeyVault
        }
    }
}

/// Headers on every response. The API serves JSON holding secrets and keys
/// to programs, never pages: nothing may be cached, sniffed as another type,
/// framed, or fetched again over plain HTTP.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::CACHE_CONTROL, "no-store"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
];

/// The request-head limits, security headers and error bodies of every
/// response (see the module documentation).
pub async fn envelope(req: Request, next: Next) -> Response {
    let surface = Surface::of(req.uri().path());
    let method = req.method().clone();
    let path = shown_path(req.uri().path());
    let mut response = match head_refusal(&req) {
        Some(refusal) => refusal.render(surface),
        None => next.run(req).await,
    };
    if needs_error_body(&response) {
        let status = response.status();
        let mut filled = Refusal::for_status(status, &method, &path).render(surface);
        // Keep what the original answer said beyond its body (e.g. `Allow`).
        for (name, value) in response.headers() {
            if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
                filled.headers_mut().insert(name.clone(), value.clone());
            }
        }
        response = filled;
    }
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The fallback of the router: 404 in the format of the addressed surface.
pub async fn unknown_route(method: Method, uri: axum::http::Uri) -> Response {
    Refusal::for_status(StatusCode::NOT_FOUND, &method, &shown_path(uri.path()))
        .render(Surface::of(uri.path()))
}

/// An error status without a body (axum's 405, a bare status code).
fn needs_error_body(response: &Response) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && response.body().size_hint().exact() == Some(0)
        && !response.headers().contains_key(header::CONTENT_TYPE)
}

/// Paths are echoed in messages, shortened: a refused path may be 8 KiB.
fn shown_path(path: &str) -> String {
    const SHOWN: usize = 100;
    match path.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_owned(),
    }
}

/// 414 or 431 when the request head exceeds the limits.
fn head_refusal(req: &Request) -> Option<Refusal> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(Refusal::UriTooLong);
    }
    if header_section_too_large(req.headers()) {
        return Some(Refusal::HeadersTooLarge);
    }
    None
}

fn header_section_too_large(headers: &HeaderMap) -> bool {
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    headers.len() > MAX_HEADER_COUNT || bytes > MAX_HEADER_BYTES
}

/// An error the envelope answers itself.
enum Refusal {
    UriTooLong,
    HeadersTooLarge,
    NoRoute { method: Method, path: String },
    WrongMethod { method: Method, path: String },
    Other(StatusCode),
}

impl Refusal {
    fn for_status(status: StatusCode, method: &Method, path: &str) -> Self {
        let (method, path) = (method.clone(), path.to_owned());
        match status {
            StatusCode::NOT_FOUND => Refusal::NoRoute { method, path },
            StatusCode::METHOD_NOT_ALLOWED => Refusal::WrongMethod { method, path },
            StatusCode::URI_TOO_LONG => Refusal::UriTooLong,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Refusal::HeadersTooLarge,
            other => Refusal::Other(other),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Refusal::UriTooLong => StatusCode::URI_TOO_LONG,
            Refusal::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::NoRoute { .. } => StatusCode::NOT_FOUND,
            Refusal::WrongMethod { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Other(status) => *status,
        }
    }

    /// `(Key Vault error code, message)`.
    fn describe(&self) -> (&'static str, String) {
        match self {
            Refusal::UriTooLong => (
                "RequestUriTooLong",
                format!("The request URI is longer than the limit of {MAX_URI_BYTES} bytes"),
            ),
            Refusal::HeadersTooLarge => (
                "RequestHeaderFieldsTooLarge",
                format!(
                    "The request headers exceed the limit of {MAX_HEADER_COUNT} fields or \
                     {MAX_HEADER_BYTES} bytes"
                ),
            ),
            Refusal::NoRoute { method, path } => (
                "NotFound",
                format!("No operation {method} {path} exists on this server"),
            ),
            Refusal::WrongMethod { method, path } => (
                "MethodNotAllowed",
                format!("The method {method} is not allowed on {path}"),
            ),
            Refusal::Other(status) => (
                "Error",
                status
                    .canonical_reason()
                    .unwrap_or("The request failed")
                    .to_owned(),
            ),
        }
    }

    fn render(&self, surface: Surface) -> Response {
        let status = self.status();
        let (code, message) = self.describe();
        match surface {
            Surface::KeyVault => ApiError::with_status(status, code, message).into_response(),
            Surface::Sys => SysError::new(status, message).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    fn app() -> Router {
        Router::new()
            .route("/v1/sys/thing", get(|| async { "sys" }))
            .route("/secrets/{name}", get(|| async { "akv" }))
            .route("/v1/sys/gone", get(|| async { StatusCode::GONE }))
            .fallback(unknown_route)
            .layer(axum::middleware::from_fn(envelope))
    }

    async fn send(req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let resp = app().oneshot(req).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, body)
    }

    fn bare(status: StatusCode) -> Response {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = status;
        r
    }

    fn get_req(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    fn assert_security_headers(headers: &HeaderMap) {
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["strict-transport-security"], "max-age=31536000");
        assert_eq!(headers["x-frame-options"], "DENY");
    }

    #[tokio::test]
    async fn unknown_paths_are_404_in_the_surfaces_format() {
        let (status, headers, body) = send(get_req("/nothing/here")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "NotFound");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("GET /nothing/here"));
        assert_security_headers(&headers);
        let (status, _, body) = send(get_req("/v1/sys/nothing")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["errors"][0]
            .as_str()
            .unwrap()
            .contains("/v1/sys/nothing"));
    }

    #[tokio::test]
    async fn a_wrong_method_is_405_with_a_body_and_allow() {
        let req = Request::delete("/secrets/x").body(Body::empty()).unwrap();
        let (status, headers, body) = send(req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "MethodNotAllowed");
        assert!(headers["allow"].to_str().unwrap().contains("GET"));
        assert_eq!(headers["content-type"], "application/json");
        assert_security_headers(&headers);
        let req = Request::post("/v1/sys/thing").body(Body::empty()).unwrap();
        let (status, _, body) = send(req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(body["errors"][0].as_str().unwrap().contains("POST"));
    }

    #[tokio::test]
    async fn a_bare_error_status_gets_a_body() {
        let (status, _, body) = send(get_req("/v1/sys/gone")).await;
        assert_eq!(status, StatusCode::GONE);
        assert_eq!(body["errors"][0], "Gone");
        assert!(needs_error_body(&bare(StatusCode::BAD_GATEWAY)));
        assert!(!needs_error_body(&bare(StatusCode::NO_CONTENT)));
    }

    #[tokio::test]
    async fn oversize_uris_and_headers_are_414_and_431() {
        let long = format!("/secrets/x?api-version=7.4&p={}", "a".repeat(MAX_URI_BYTES));
        let (status, headers, body) = send(get_req(&long)).await;
        assert_eq!(status, StatusCode::URI_TOO_LONG);
        assert_eq!(body["error"]["code"], "RequestUriTooLong");
        assert_security_headers(&headers);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.len() < 200, "the path is not echoed: {message}");

        let big = "b".repeat(MAX_HEADER_BYTES);
        let req = Request::get("/v1/sys/thing")
            .header("x-big", big)
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(req).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(body["errors"][0].as_str().unwrap().contains("headers"));

        let mut many = Request::get("/secrets/x");
        for i in 0..=MAX_HEADER_COUNT {
            many = many.header(format!("x-h{i}"), "1");
        }
        let (status, _, body) = send(many.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(body["error"]["code"], "RequestHeaderFieldsTooLarge");

        // Right at the limits: served.
        let edge = format!("/secrets/{}", "a".repeat(MAX_URI_BYTES - "/secrets/".len()));
        let (status, _, _) = send(get_req(&edge)).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn successes_carry_the_security_headers_too() {
        let (status, headers, _) = send(get_req("/secrets/x")).await;
        assert_eq!(status, StatusCode::OK);
        assert_security_headers(&headers);
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
    }

    #[test]
    fn the_surface_follows_the_path() {
        assert_eq!(Surface::of("/v1/sys/health"), Surface::Sys);
        assert_eq!(Surface::of("/v1/sys"), Surface::Sys);
        assert_eq!(Surface::of("/v1/system"), Surface::KeyVault);
        assert_eq!(Surface::of("/secrets/x"), Surface::KeyVault);
    }
}
