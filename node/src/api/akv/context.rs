//! Per-request context: vault (from Host), base URL, api-version and the
//! request id used as the idempotency key of writes.

use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderName, HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::errors::ApiError;
use super::AkvState;

/// Header carrying the client's request id.
pub const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-client-request-id");
/// Header carrying the service's request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");

/// api-versions the Azure SDKs send.
pub const API_VERSIONS: &[&str] = &[
    "7.0",
    "7.1",
    "7.2",
    "7.3",
    "7.4",
    "7.5",
    "7.6",
    "7.3-preview",
    "7.4-preview.1",
    "7.5-preview.1",
    "7.6-preview.1",
    "7.6-preview.2",
    "2025-06-01-preview",
    "2025-07-01",
    "2026-04-01",
];

/// The request id of this request (client's, or generated).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Assigns the request id and echoes it on every response, errors included.
pub async fn request_id_layer(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&CLIENT_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 200)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v.clone());
        resp.headers_mut().insert(CLIENT_REQUEST_ID, v);
    }
    resp
}

/// What every handler needs to know about the request.
#[derive(Clone, Debug)]
pub struct AkvCtx {
    /// Vault addressed by the Host header (or the path, see [`request_vault`]).
    pub vault: String,
    /// `https://{Host}`: prefix of ids and links.
    pub base_url: String,
    /// The api-version query parameter (validated).
    pub api_version: String,
    /// Request id (client's `x-ms-client-request-id` or generated).
    pub request_id: String,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
}

impl AkvCtx {
    /// First value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Idempotency key of a write: the client's request id scoped to the
    /// vault, operation and object, so a reused id never replays another
    /// operation's result.
    pub fn write_id(&self, op: &str, name: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            self.vault.as_str(),
            op,
            &name.to_ascii_lowercase(),
            &self.request_id,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        format!("akv:{}", hex::encode(h.finalize()))
    }
}

impl FromRequestParts<AkvState> for AkvCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AkvState) -> Result<Self, ApiError> {
        let query: Vec<(String, String)> = parts
            .uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let api_version = query
            .iter()
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                ApiError::bad_parameter("The api-version query parameter is required")
            })?;
        if !API_VERSIONS.contains(&api_version.as_str()) {
            return Err(ApiError::bad_parameter(format!(
                "The api-version {api_version:?} is not supported; supported versions: {}",
                API_VERSIONS.join(", ")
            )));
        }
        let host = host_of(parts)?;
        let vault = request_vault(parts, state.vault_domain.as_deref(), &state.default_vault)?;
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), |r| r.0.clone());
        Ok(Self {
            vault,
            base_url: format!("https://{host}"),
            api_version,
            request_id,
            query,
        })
    }
}

/// The request's authority (HTTP/2 `:authority` or the Host header).
pub(crate) fn host_of(parts: &Parts) -> Result<String, ApiError> {
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let sane = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    if sane {
        Ok(host.to_ascii_lowercase())
    } else {
        Err(ApiError::bad_parameter("Invalid Host header"))
    }
}

/// The vault a request addresses: the `{vault}` segment of a route that
/// names its vault in the path (the PKI routes, `/v1/pki/{vault}/…`), else
/// the one its Host selects. Firewall, authorization and handlers all ask
/// here, so they never judge one vault and act on another.
pub(crate) fn request_vault(
    parts: &Parts,
    domain: Option<&str>,
    default_vault: &str,
) -> Result<String, ApiError> {
    if let Some(vault) = path_vault(&parts.uri, &parts.extensions) {
        return Ok(vault);
    }
    let host = host_of(parts)?;
    Ok(vault_for_host(&host, domain, default_vault))
}

/// The `{vault}` segment of a request's path (`uri`), when the route
/// axum matched (in `extensions`) has one.
pub(crate) fn path_vault(uri: &Uri, extensions: &Extensions) -> Option<String> {
    let matched = extensions.get::<MatchedPath>()?;
    let at = matched.as_str().split('/').position(|s| s == "{vault}")?;
    uri.path().split('/').nth(at).map(str::to_ascii_lowercase)
}

/// `{vault}.{domain}` → vault; anything else → the default vault.
pub fn vault_for_host(host: &str, domain: Option<&str>, default_vault: &str) -> String {
    let Some(domain) = domain.map(|d| d.trim_start_matches('.').to_ascii_lowercase()) else {
        return default_vault.to_owned();
    };
    let without_port = strip_port(host);
    for candidate in [host, without_port] {
        if let Some(prefix) = candidate
            .strip_suffix(domain.as_str())
            .and_then(|p| p.strip_suffix('.'))
        {
            if !prefix.is_empty() {
                return prefix.to_owned();
            }
        }
    }
    default_vault.to_owned()
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_comes_from_the_host_when_the_domain_matches() {
        let d = Some("vault.example");
        assert_eq!(vault_for_host("prod.vault.example", d, "default"), "prod");
        assert_eq!(
            vault_for_host("prod.vault.example:8443", d, "default"),
            "prod"
        );
        assert_eq!(
            vault_for_host("vault.example:8443", d, "default"),
            "default"
        );
        assert_eq!(vault_for_host("127.0.0.1:8443", d, "default"), "default");
        assert_eq!(vault_for_host("[::1]:8443", d, "default"), "default");
        assert_eq!(
            vault_for_host("prod.other.example", d, "default"),
            "default"
        );
        assert_eq!(
            vault_for_host("prod.vault.example", None, "default"),
            "default"
        );
        assert_eq!(
            vault_for_host(
                "prod.vault.example:8443",
                Some("vault.example:8443"),
                "default"
            ),
            "prod"
        );
    }
}
