//! Client errors. No variant ever carries a secret value, share or token.

use std::time::Duration;

use serde::Deserialize;

/// Everything that can go wrong talking to Coffer.
///
/// Match on the variant to decide what to do; [`ClientError::status`] and
/// [`ClientError::is_transient`] cover the common questions.
///
/// ```
/// use coffer_client::ClientError;
///
/// // A Key Vault error body, as the server sends it.
/// let err = ClientError::from_response(
///     403,
///     br#"{"error":{"code":"Forbidden","message":"secret is disabled","innererror":{"code":"SecretDisabled"}}}"#,
/// );
/// match &err {
///     ClientError::Http { status: 403, inner_code, .. } => {
///         assert_eq!(inner_code.as_deref(), Some("SecretDisabled"));
///     }
///     other => panic!("unexpected error: {other}"),
/// }
/// assert_eq!(err.status(), Some(403));
/// assert!(!err.is_transient());
///
/// // An operator API error body.
/// let err = ClientError::from_response(503, br#"{"errors":["Vault is sealed"]}"#);
/// assert!(err.is_transient()); // another node may answer
/// assert_eq!(err.to_string(), "HTTP 503: Vault is sealed");
///
/// // Errors raised by the client itself carry no status.
/// let err = coffer_client::parse_endpoints("http://127.0.0.1:8200").unwrap_err();
/// assert!(matches!(err, ClientError::Config(_)));
/// assert_eq!(err.status(), None);
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached or the connection broke mid-request.
    #[error("cannot reach {endpoint}: {message}")]
    Connect {
        /// Base URL of the node.
        endpoint: String,
        /// Transport error text.
        message: String,
    },
    /// One attempt took longer than the configured timeout.
    #[error("request to {endpoint} timed out after {timeout:?}")]
    Timeout {
        /// Base URL of the node.
        endpoint: String,
        /// The configured per-attempt timeout.
        timeout: Duration,
    },
    /// The request's deadline passed before any node could be tried.
    #[error("the request's deadline passed after {elapsed:?} without an answer")]
    Deadline {
        /// Time spent on the request.
        elapsed: Duration,
    },
    /// The issuer refused the client's credential, or the credential could
    /// not be used (unreadable file, bad key). Never carries the credential.
    #[error("cannot sign in: {0}")]
    Auth(String),
    /// The server answered with an error status.
    #[error("HTTP {status}{}: {message}", code_suffix(.code, .inner_code))]
    Http {
        /// HTTP status code.
        status: u16,
        /// Key Vault error code (`error.code`); `None` for operator API errors.
        code: Option<String>,
        /// Key Vault inner error code (`error.innererror.code`), e.g. `SecretDisabled`.
        inner_code: Option<String>,
        /// Server message (joined for the operator API's `errors` list).
        message: String,
    },
    /// The response body was not what the API promises.
    #[error("cannot decode response: {0}")]
    Decode(String),
    /// The client was configured or called wrongly.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

fn code_suffix(code: &Option<String>, inner: &Option<String>) -> String {
    match (code, inner) {
        (Some(c), Some(i)) => format!(" {c} ({i})"),
        (Some(c), None) => format!(" {c}"),
        _ => String::new(),
    }
}

impl ClientError {
    /// HTTP status of an [`ClientError::Http`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether failover to another node may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Timeout { .. }) || self.status() == Some(503)
    }

    /// Builds an [`ClientError::Http`] from a status and a body in either the
    /// Key Vault format `{"error":{"code","message","innererror"}}` or the
    /// operator format `{"errors":["…"]}`.
    pub fn from_response(status: u16, body: &[u8]) -> Self {
        let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
        if let Some(err) = parsed.error {
            return Self::Http {
                status,
                code: err.code,
                inner_code: err.innererror.and_then(|i| i.code),
                message: err.message.unwrap_or_default(),
            };
        }
        let message = match parsed.errors {
            Some(list) if !list.is_empty() => list.join("; "),
            _ => default_reason(status),
        };
        Self::Http {
            status,
            code: None,
            inner_code: None,
            message,
        }
    }

    /// A decode error that does not echo the offending input (serde_json's
    /// messages may quote a secret value).
    pub(crate) fn decode(e: &serde_json::Error) -> Self {
        Self::Decode(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    }
}

fn default_reason(status: u16) -> String {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
        .to_string()
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    error: Option<KvError>,
    errors: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct KvError {
    code: Option<String>,
    message: Option<String>,
    innererror: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_vault_errors() {
        let body = br#"{"error":{"code":"Forbidden","message":"disabled","innererror":{"code":"SecretDisabled"}}}"#;
        match ClientError::from_response(403, body) {
            ClientError::Http {
                status,
                code,
                inner_code,
                message,
            } => {
                assert_eq!(status, 403);
                assert_eq!(code.as_deref(), Some("Forbidden"));
                assert_eq!(inner_code.as_deref(), Some("SecretDisabled"));
                assert_eq!(message, "disabled");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_operator_errors_and_garbage() {
        let err = ClientError::from_response(400, br#"{"errors":["bad share","again"]}"#);
        assert_eq!(err.to_string(), "HTTP 400: bad share; again");
        let err = ClientError::from_response(502, b"<html>");
        assert_eq!(err.to_string(), "HTTP 502: Bad Gateway");
        assert!(ClientError::from_response(503, b"").is_transient());
    }

    #[test]
    fn decode_errors_do_not_echo_input() {
        let e = serde_json::from_str::<u64>("\"hunter2\"").unwrap_err();
        assert!(!ClientError::decode(&e).to_string().contains("hunter2"));
    }
}
