//! Body and path extractors whose rejections are Key Vault errors (axum's
//! plain-text rejections never reach the client).

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::errors::ApiError;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A JSON request body.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError::bad_parameter(format!(
                    "The request body is larger than {MAX_BODY_BYTES} bytes"
                ))
            })?;
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

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| PathParams(t))
            .map_err(|_| ApiError::bad_parameter("Invalid path parameters"))
    }
}
