//! Body and path extractors whose rejections are Key Vault errors (axum's
//! plain-text rejections never reach the client).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use http_body_util::LengthLimitError;
use serde::de::DeserializeOwned;

use super::errors::ApiError;
use crate::error_chain::find_cause;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// 413 when the declared `Content-Length` already exceeds the limit, so
/// such a body is refused without reading it.
pub fn check_declared_length(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > MAX_BODY_BYTES as u64 => Err(ApiError::body_too_large(MAX_BODY_BYTES)),
        _ => Ok(()),
    }
}

/// Reads a whole body of at most [`MAX_BODY_BYTES`]: 413 above the limit,
/// 400 when the stream itself fails (a reset, malformed chunking) — two
/// different faults that used to share one "too large" 400.
pub async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            if find_cause::<LengthLimitError>(&e).is_some() {
                ApiError::body_too_large(MAX_BODY_BYTES)
            } else if crate::listener::is_body_too_slow(&e) {
                ApiError::body_too_slow()
            } else {
                ApiError::unreadable_body()
            }
        })
}

/// A JSON request body.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        check_declared_length(req.headers())?;
        let bytes = read_body(req.into_body()).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_parameter("A JSON request body is required"));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_parameter(describe(&e)))
    }
}

/// serde_json may quote the offending input (possibly a secret); only field
/// names and positions are echoed.
fn describe(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let field_issue = text.starts_with("missing field") || text.starts_with("unknown field");
    if field_issue {
        format!("Invalid request body: {text}")
    } else {
        format!(
            "Invalid request body: malformed JSON or wrong value type at line {} column {}",
            e.line(),
            e.column()
        )
    }
}

/// Path parameters.
pub struct PathParams<T>(pub T);

/// The `{name}` of an object and its optional `{version}` segment: one
/// handler serves `/…/{name}`, `/…/{name}/` and `/…/{name}/{version}`, an
/// absent or empty version meaning the latest.
#[derive(Debug, serde::Deserialize)]
pub struct ObjectPath {
    /// Object name as given.
    pub name: String,
    /// Version as given; empty for the latest.
    #[serde(default)]
    pub version: String,
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathParams(t))
            .map_err(|_| ApiError::bad_parameter("Invalid path parameters"))
    }
}
