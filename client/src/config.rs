//! Client configuration and its environment-variable form.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::auth::AppCredential;
use crate::ClientError;

/// Environment variable with a comma-separated list of node addresses.
pub const ENV_ADDR: &str = "COFFER_ADDR";
/// Environment variable with the bearer token.
pub const ENV_TOKEN: &str = "COFFER_TOKEN";
/// Environment variable with the path of the CA certificate (PEM).
pub const ENV_CACERT: &str = "COFFER_CACERT";

/// How to reach a Coffer cluster.
///
/// Start from [`ClientConfig::from_parts`] or [`ClientConfig::from_env`],
/// or fill the fields and take the rest from `Default`.
///
/// ```
/// use std::time::Duration;
/// use coffer_client::ClientConfig;
///
/// let cfg = ClientConfig::from_parts("node1:8453, https://node2:8453", Some("s3cr3t".into()), None)?;
/// assert_eq!(cfg.endpoints, ["https://node1:8453", "https://node2:8453"]);
/// assert_eq!(cfg.timeout, Duration::from_secs(10));
///
/// let cfg = ClientConfig {
///     deadline: Some(Duration::from_secs(30)),
///     max_attempts: 6,
///     ..cfg
/// };
/// // The token never shows in Debug output.
/// assert!(!format!("{cfg:?}").contains("s3cr3t"));
/// # Ok::<(), coffer_client::ClientError>(())
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    /// Node base URLs, `https://host:port` (see [`parse_endpoints`]).
    pub endpoints: Vec<String>,
    /// Bearer token sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// PEM of the CA that signed the nodes' API certificates. Required: the
    /// client trusts nothing else (no system or webpki roots).
    pub ca_pem: Option<Vec<u8>>,
    /// Deadline of one attempt (connect + request + response body).
    pub timeout: Duration,
    /// Deadline of one request across all its attempts and pauses; `None`:
    /// bounded by `max_attempts` only. [`Request::deadline`](crate::Request::deadline)
    /// overrides it per request.
    pub deadline: Option<Duration>,
    /// Sign in to the cluster's issuer as an application (client secret,
    /// certificate or federated token) and send its tokens, renewed before
    /// they expire; excludes `token`.
    pub credential: Option<AppCredential>,
    /// Offer HTTP/2 through ALPN (HTTP/1.1 is always offered).
    pub http2: bool,
    /// Attempts of one failover request; 0 picks `max(3, 2 × endpoints)`, or
    /// no limit but the deadline when `deadline` is set.
    pub max_attempts: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            token: None,
            ca_pem: None,
            timeout: Duration::from_secs(10),
            deadline: None,
            credential: None,
            http2: true,
            max_attempts: 0,
        }
    }
}

// The token must never reach logs, so Debug is written by hand.
impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoints", &self.endpoints)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|p| p.len()))
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field("credential", &self.credential)
            .field("http2", &self.http2)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl ClientConfig {
    /// Builds a configuration from an address list, an optional token and an
    /// optional CA file path.
    pub fn from_parts(
        addrs: &str,
        token: Option<String>,
        ca_path: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let ca_pem = ca_path
            .map(|p| {
                std::fs::read(p).map_err(|e| {
                    ClientError::Config(format!("cannot read CA file {}: {e}", p.display()))
                })
            })
            .transpose()?;
        Ok(Self {
            endpoints: parse_endpoints(addrs)?,
            token: token.filter(|t| !t.is_empty()),
            ca_pem,
            ..Self::default()
        })
    }

    /// Reads `COFFER_ADDR` (required), `COFFER_TOKEN` and `COFFER_CACERT`.
    pub fn from_env() -> Result<Self, ClientError> {
        let addrs = std::env::var(ENV_ADDR)
            .map_err(|_| ClientError::Config(format!("{ENV_ADDR} is not set")))?;
        let token = std::env::var(ENV_TOKEN).ok();
        let ca = std::env::var_os(ENV_CACERT);
        Self::from_parts(&addrs, token, ca.as_deref().map(Path::new))
    }

    /// Attempts a failover request makes with this configuration.
    pub(crate) fn attempts(&self) -> usize {
        if self.max_attempts == 0 && self.deadline.is_some() {
            usize::MAX
        } else if self.max_attempts == 0 {
            (2 * self.endpoints.len()).max(3)
        } else {
            self.max_attempts
        }
    }
}

/// Parses a comma-separated address list into `https://host:port` base URLs.
///
/// A bare `host:port` gets `https://`; `http://` is refused because tokens and
/// secrets must not travel in clear text; paths are not allowed.
///
/// ```
/// use coffer_client::{parse_endpoints, ClientError};
///
/// let eps = parse_endpoints("10.0.0.1:8453, https://node2.internal:8453/ ,[::1]:8453")?;
/// assert_eq!(eps, ["https://10.0.0.1:8453", "https://node2.internal:8453", "https://[::1]:8453"]);
///
/// // Clear-text HTTP, paths and empty lists are configuration errors.
/// for bad in ["http://10.0.0.1:8453", "https://node1:8453/v1", " , "] {
///     assert!(matches!(parse_endpoints(bad), Err(ClientError::Config(_))), "{bad}");
/// }
/// # Ok::<(), ClientError>(())
/// ```
pub fn parse_endpoints(list: &str) -> Result<Vec<String>, ClientError> {
    let endpoints = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_endpoint)
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        return Err(ClientError::Config("no endpoint given".into()));
    }
    Ok(endpoints)
}

fn parse_endpoint(raw: &str) -> Result<String, ClientError> {
    let with_scheme = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("https://{raw}")
    };
    let url = url::Url::parse(&with_scheme)
        .map_err(|e| ClientError::Config(format!("invalid endpoint {raw:?}: {e}")))?;
    if url.scheme() != "https" {
        return Err(ClientError::Config(format!(
            "endpoint {raw:?} must use https"
        )));
    }
    let host = url
        .host_str()
        .ok_or_else(|| ClientError::Config(format!("endpoint {raw:?} has no host")))?;
    if url.path() != "/" || url.query().is_some() {
        return Err(ClientError::Config(format!(
            "endpoint {raw:?} must not have a path or query"
        )));
    }
    Ok(match url.port() {
        Some(port) => format!("https://{host}:{port}"),
        None => format!("https://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_gets_https() {
        let eps = parse_endpoints("127.0.0.1:8453, https://node2:9000/ ,[::1]:1").unwrap();
        assert_eq!(
            eps,
            vec![
                "https://127.0.0.1:8453",
                "https://node2:9000",
                "https://[::1]:1"
            ]
        );
    }

    #[test]
    fn plain_http_and_paths_are_refused() {
        assert!(parse_endpoints("http://127.0.0.1:1").is_err());
        assert!(parse_endpoints("https://a:1/v1").is_err());
        assert!(parse_endpoints(" , ").is_err());
    }

    #[test]
    fn debug_hides_token() {
        let cfg = ClientConfig {
            token: Some("s3cr3t-token".into()),
            ..ClientConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
    }

    #[test]
    fn auto_attempts_scale_with_endpoints() {
        let mut cfg = ClientConfig {
            endpoints: vec!["https://a:1".into()],
            ..ClientConfig::default()
        };
        assert_eq!(cfg.attempts(), 3);
        cfg.endpoints = vec!["https://a:1".into(); 5];
        assert_eq!(cfg.attempts(), 10);
        cfg.max_attempts = 2;
        assert_eq!(cfg.attempts(), 2);
    }
}
