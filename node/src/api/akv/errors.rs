//! The one place engine and request errors become Key Vault error responses:
//! `{"error":{"code","message","innererror":{"code"}}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::crypto::CryptoError;
use crate::engine::authz::AuthzError;
use crate::engine::store::StoreError;
use crate::engine::{EngineError, KeyRefusal, ObjectKind};

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

    /// 501 `NotSupported`: a feature of the real service Coffer lacks.
    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "NotSupported", message)
    }

    /// 413 `RequestEntityTooLarge`: the body exceeds `limit` bytes.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("The request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 400 `BadParameter`: the body stream failed before its end (the client
    /// reset the stream, or sent malformed chunked encoding).
    pub fn unreadable_body() -> Self {
        Self::bad_parameter("The request body could not be read: the stream ended with an error")
    }

    /// 408 `RequestTimeout`: the body arrived slower than the minimum rate
    /// (`[limits] min_body_bytes_per_sec`) and was cut.
    pub fn body_too_slow() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            "The request body arrived too slowly and was cut off",
        )
    }

    /// 404 for a path or method no route serves.
    pub fn not_found_route(method: &str, path: &str) -> Self {
        let message = format!("No operation {method} {path} exists on this server");
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// An error of any status, for answers no handler produced (an unknown
    /// route, an oversize request head: see `api::envelope`).
    pub fn with_status(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, code, message)
    }

    /// 403 `Forbidden` / `ForbiddenByRbac`: no role assignment grants
    /// `action` on `resource` (the body of the real service, §9).
    pub fn forbidden_by_rbac(caller: &str, action: &str, resource: &str, vault: &str) -> Self {
        Self::rbac_denial(
            caller,
            action,
            resource,
            "(not found)",
            "DeniedWithNoValidRBAC",
            vault,
        )
    }

    /// 403 `Forbidden` / `ForbiddenByRbac` for a token without a second
    /// factor whose only assignment granting `action` requires one, from a
    /// client that cannot take the claims challenge (it did not declare
    /// `cp1`): the body says so, rather than that no assignment exists.
    pub fn forbidden_without_mfa(caller: &str, action: &str, resource: &str, vault: &str) -> Self {
        Self::rbac_denial(
            caller,
            action,
            resource,
            "(found, requires multi-factor authentication: the token's amr has no 'mfa' and its client did not declare the 'cp1' capability, so no claims challenge was sent)",
            "DeniedWithoutMultiFactor",
            vault,
        )
    }

    /// 403 `Forbidden` / `ForbiddenByRbac` for a request whose only
    /// assignments granting `action` are limited to source networks that
    /// do not contain its client address (Coffer's condition): the body
    /// says so, rather than that no assignment exists. Names the client
    /// address (as the firewall's answer does), never the ranges.
    pub fn forbidden_outside_network(
        caller: &str,
        action: &str,
        resource: &str,
        vault: &str,
        client: &str,
    ) -> Self {
        Self::rbac_denial(
            caller,
            action,
            resource,
            &format!("(found, requires a source network: the client address {client} is outside the assignment's source CIDRs)"),
            "DeniedOutsideSourceNetwork",
            vault,
        )
    }

    /// The RBAC denial body of the real service (§9).
    fn rbac_denial(
        caller: &str,
        action: &str,
        resource: &str,
        assignment: &str,
        reason: &str,
        vault: &str,
    ) -> Self {
        let message = format!(
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\nCaller: {caller}\r\nAction: '{action}'\r\nResource: '{resource}'\r\nAssignment: {assignment}\r\nDecisionReason: '{reason}' \r\nVault: {vault};location=coffer\r\n"
        );
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message).with_inner("ForbiddenByRbac")
    }

    /// 403 `Forbidden` / `ForbiddenByFirewall`: the vault's network rules
    /// do not allow `client` (the body of the real service, §9).
    pub fn forbidden_by_firewall(client: &str, caller: &str, vault: &str) -> Self {
        let message = format!(
            "Client address is not authorized and caller is not a trusted service.\r\nClient address: {client}\r\nCaller: {caller}\r\nVault: {vault};location=coffer\r\n"
        );
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message).with_inner("ForbiddenByFirewall")
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
            EngineError::NotFound {
                kind: ObjectKind::Key,
                name,
            } => Self::new(
                StatusCode::NOT_FOUND,
                "KeyNotFound",
                format!("A key with (name/id) {name} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command."),
            ),
            EngineError::NotFound {
                kind: ObjectKind::DeletedKey,
                name,
            } => Self::new(
                StatusCode::NOT_FOUND,
                "KeyNotFound",
                format!("Deleted Key not found: {name}"),
            ),
            EngineError::NotFound {
                kind: ObjectKind::Certificate,
                name,
            } => Self::new(
                StatusCode::NOT_FOUND,
                "CertificateNotFound",
                format!("A certificate with (name/id) {name} was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
            ),
            EngineError::NotFound {
                kind: ObjectKind::DeletedCertificate,
                name,
            } => Self::new(
                StatusCode::NOT_FOUND,
                "CertificateNotFound",
                format!("Deleted Certificate not found: {name}"),
            ),
            EngineError::NotFound {
                kind: ObjectKind::CertificateOperation,
                name,
            } => Self::new(
                StatusCode::NOT_FOUND,
                "PendingCertificateNotFound",
                format!("Pending certificate not found: {name}"),
            ),
            EngineError::NotFound {
                kind: ObjectKind::CertificateIssuer,
                ..
            } => Self::new(
                StatusCode::NOT_FOUND,
                "CertificateIssuerNotFound",
                "Issuer not found",
            ),
            EngineError::NotFound {
                kind: ObjectKind::CertificateContacts,
                ..
            } => Self::new(StatusCode::NOT_FOUND, "ContactsNotFound", "Contacts not found"),
            // Alert configuration is served by the operator API, never here.
            EngineError::NotFound {
                kind: kind @ (ObjectKind::AlertRule | ObjectKind::AlertReceiver | ObjectKind::AlertFiring),
                name,
            } => Self::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{kind} {name} was not found"),
            ),
            EngineError::Managed { kind, op } => Self::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("Operation \"{op}\" is not allowed as this object's lifetime is managed by Key Vault."),
            )
            .with_inner(match kind {
                ObjectKind::Key | ObjectKind::DeletedKey => "KeyManagedByKeyVault",
                _ => "SecretManagedByKeyVault",
            }),
            EngineError::Forbidden(message) => {
                Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
            }
            EngineError::PendingInProgress(message) => {
                Self::new(StatusCode::CONFLICT, "Forbidden", message)
            }
            EngineError::DeletedButRecoverable {
                kind: ObjectKind::Certificate | ObjectKind::DeletedCertificate,
                name,
            } => Self::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!("Certificate {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the certificate can only be recovered or purged."),
            )
            .with_inner("ObjectIsDeletedButRecoverable"),
            EngineError::KeyForbidden { op, reason, .. } => key_forbidden(op, reason),
            EngineError::Crypto(c) => crypto_error(c),
            EngineError::NotSupported(message) => {
                Self::new(StatusCode::NOT_IMPLEMENTED, "NotSupported", message)
            }
            EngineError::DeletedButRecoverable {
                kind: ObjectKind::Key | ObjectKind::DeletedKey,
                name,
            } => Self::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!("Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."),
            )
            .with_inner("ObjectIsDeletedButRecoverable"),
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

impl From<AuthzError> for ApiError {
    fn from(e: AuthzError) -> Self {
        match e {
            AuthzError::NotFound(what) => Self::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{what} was not found"),
            ),
            AuthzError::Conflict(message) => Self::new(StatusCode::CONFLICT, "Conflict", message),
            AuthzError::BadRequest(message) => Self::bad_parameter(message),
            AuthzError::Forbidden { action, message } => Self::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("Caller is not authorized to perform action on resource.\r\nAction: '{action}'\r\n{message}"),
            )
            .with_inner("ForbiddenByRbac"),
            AuthzError::Engine(e) => e.into(),
        }
    }
}

/// 403 of key operations, with the innererror code naming the reason.
fn key_forbidden(op: &str, reason: KeyRefusal) -> ApiError {
    let (message, inner) = match reason {
        KeyRefusal::Disabled => (
            format!("Operation {op} is not allowed on a disabled key."),
            "KeyDisabled",
        ),
        KeyRefusal::OperationNotAllowed => (
            format!("Operation {op} is not permitted on this key: it is not in the key's key_ops."),
            "KeyOperationForbidden",
        ),
        KeyRefusal::NotYetValid => (
            format!("Operation {op} is not allowed before the key's not-before (nbf) time."),
            "KeyNotYetValid",
        ),
        KeyRefusal::Expired => (
            format!("Operation {op} is not allowed on an expired key."),
            "KeyExpired",
        ),
    };
    ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message).with_inner(inner)
}

/// Crypto failures: bad input is the caller's (400); a missing HSM is this
/// node's condition (503, another node may serve it); the rest is ours.
fn crypto_error(e: CryptoError) -> ApiError {
    match e {
        CryptoError::AlgorithmMismatch { .. }
        | CryptoError::BadInput(_)
        | CryptoError::Unsupported(_) => ApiError::bad_parameter(e.to_string()),
        CryptoError::DecryptFailed => ApiError::bad_parameter(
            "Decryption failed: the ciphertext, iv, tag, aad or algorithm does not match the key",
        ),
        CryptoError::HsmUnavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            e.to_string(),
        )
        .with_inner("HsmUnavailable"),
        CryptoError::Internal(detail) => {
            tracing::error!(%detail, "crypto failure");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "Internal error",
            )
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
        // 503: a failover client moves on to a member that takes writes.
        StoreError::ReadOnly(detail) => unavailable(&detail).with_inner("ReadOnlyReplica"),
        StoreError::TooLarge(detail) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLarge",
            format!("The request cannot be stored: {detail}"),
        ),
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
