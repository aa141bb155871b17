//! The one place engine and request errors become Key Vault error responses:
//! `{"error":{"code","message","innererror":{"code"}}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::engine::store::StoreError;
use crate::engine::{EngineError, ObjectKind};

/// An error response of the Key Vault API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    inner: Option<&'static str>,
}

impl ApiError {
    /// 400 `BadParameter`.
    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadParameter", message)
    }

    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            inner: None,
        }
    }

    fn with_inner(mut self, inner: &'static str) -> Self {
        self.inner = Some(inner);
        self
    }

    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Key Vault error code of this error.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound {
                kind: ObjectKind::Secret,
                name,
            } => Self::new(
                StatusCode::NOT_FOUND,
                "SecretNotFound",
                format!("A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command."),
            ),
            EngineError::NotFound {
                kind: ObjectKind::DeletedSecret,
                name,
            } => Self::new(
                StatusCode::NOT_FOUND,
                "SecretNotFound",
                format!("Deleted Secret not found: {name}"),
            ),
            EngineError::VaultNotFound(name) => Self::new(
                StatusCode::NOT_FOUND,
                "VaultNotFound",
                format!("The vault {name} was not found"),
            ),
            EngineError::Disabled { .. } => Self::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "Operation get is not allowed on a disabled secret.",
            )
            .with_inner("SecretDisabled"),
            EngineError::DeletedButRecoverable { name, .. } => Self::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!("Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."),
            )
            .with_inner("ObjectIsDeletedButRecoverable"),
            EngineError::Conflict(message) => Self::new(StatusCode::CONFLICT, "Conflict", message),
            EngineError::BadParameter(message) => Self::bad_parameter(message),
            EngineError::MalformedBackup => Self::bad_parameter("Malformed backup blob"),
            EngineError::Busy => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Too many concurrent modifications of this object; retry the request",
            ),
            EngineError::Corrupt(detail) => {
                tracing::error!(%detail, "stored record could not be decoded");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "Internal error")
            }
            EngineError::Store(s) => store_error(s),
        }
    }
}

fn store_error(e: StoreError) -> ApiError {
    let unavailable =
        |m: &str| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", m);
    match e {
        StoreError::Sealed => unavailable(
            "This Coffer node is sealed: it cannot serve data until it is unsealed with the key shares",
        ),
        StoreError::NotInitialized => unavailable("This Coffer cluster is not initialized"),
        StoreError::Unavailable(detail) => {
            tracing::warn!(%detail, "store unavailable");
            unavailable("The cluster is temporarily unavailable; retry the request")
        }
        StoreError::Corrupt(detail) | StoreError::Internal(detail) => {
            tracing::error!(%detail, "storage failure");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "Internal error")
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    innererror: Option<Inner<'a>>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: ErrorBody {
                code: self.code,
                message: &self.message,
                innererror: self.inner.map(|code| Inner { code }),
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}
