//! HTTPS transport with multi-endpoint failover.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{HeaderMap, Method, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{ClientConfig, ClientError, REQUEST_ID_HEADER};

type HttpClient = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One logical API request: method, path with query, headers and JSON body.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Path and query, e.g. `/secrets/a?api-version=2026-04-01`.
    pub path: String,
    /// Extra headers (e.g. `Host` to pick a vault).
    pub headers: HeaderMap,
    /// Body bytes, sent with `Content-Type: application/json`.
    pub body: Option<Bytes>,
    /// `x-ms-client-request-id`; a uuid v4 is generated when `None`.
    pub request_id: Option<String>,
}

impl Request {
    /// A request without body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: HeaderMap::new(),
            body: None,
            request_id: None,
        }
    }

    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// `POST path`.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    /// `PUT path`.
    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::PUT, path)
    }

    /// `PATCH path`.
    pub fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::PATCH, path)
    }

    /// `DELETE path`.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// Serialises `body` as the JSON body.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Result<Self, ClientError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ClientError::Config(format!("cannot encode request body: {e}")))?;
        self.body = Some(Bytes::from(bytes));
        Ok(self)
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the request id kept across retries.
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
}

/// A server answer (any status).
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body.
    pub body: Bytes,
    /// Index (into the configured endpoints) of the node that answered.
    pub endpoint: usize,
    /// The request id that was sent.
    pub request_id: String,
}

impl Response {
    /// Turns a non-2xx answer into [`ClientError::Http`].
    pub fn error_for_status(self) -> Result<Self, ClientError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(ClientError::from_response(self.status.as_u16(), &self.body))
        }
    }

    /// Decodes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::decode(&e))
    }
}

/// Async Coffer client; cheap to clone (shares its connection pool).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: HttpClient,
    endpoints: Vec<String>,
    token: Option<HeaderValue>,
    timeout: Duration,
    attempts: usize,
    last_good: AtomicUsize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.endpoints)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client; fails without endpoints or without a usable CA.
    pub fn new(cfg: ClientConfig) -> Result<Self, ClientError> {
        if cfg.endpoints.is_empty() {
            return Err(ClientError::Config("no endpoint given".into()));
        }
        let ca = cfg.ca_pem.as_deref().ok_or_else(|| {
            ClientError::Config("a CA certificate is required (COFFER_CACERT)".into())
        })?;
        let http = build_http(tls_config(ca)?, cfg.timeout, cfg.http2);
        let token = cfg
            .token
            .as_deref()
            .map(|t| {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| ClientError::Config("token has invalid characters".into()))?;
                v.set_sensitive(true);
                Ok::<_, ClientError>(v)
            })
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                attempts: cfg.attempts(),
                endpoints: cfg.endpoints,
                token,
                timeout: cfg.timeout,
                last_good: AtomicUsize::new(0),
            }),
        })
    }

    /// Builds a client from `COFFER_ADDR`, `COFFER_TOKEN` and `COFFER_CACERT`.
    pub fn from_env() -> Result<Self, ClientError> {
        Self::new(ClientConfig::from_env()?)
    }

    /// The configured node base URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// Sends `req`, failing over to the next node (round robin from the last
    /// node that answered) on connection errors, timeouts and `503`, with a
    /// small backoff once every node has been tried. The request id stays the
    /// same on every attempt. After the last attempt the last `503` response
    /// (or error) is returned as is.
    pub async fn send(&self, req: Request) -> Result<Response, ClientError> {
        let id = request_id_for(&req);
        let n = self.inner.endpoints.len();
        let start = self.inner.last_good.load(Ordering::Relaxed) % n;
        let mut last = Err(ClientError::Config("no attempt made".into()));
        for attempt in 0..self.inner.attempts {
            if let Some(pause) = backoff(attempt, n) {
                tokio::time::sleep(pause).await;
            }
            let idx = (start + attempt) % n;
            match self.attempt(idx, &req, &id).await {
                Ok(resp) if resp.status != StatusCode::SERVICE_UNAVAILABLE => {
                    self.inner.last_good.store(idx, Ordering::Relaxed);
                    return Ok(resp);
                }
                Ok(resp) => {
                    tracing::debug!(endpoint = %self.inner.endpoints[idx], request_id = %id, "node unavailable (503), failing over");
                    last = Ok(resp);
                }
                Err(e) if e.is_transient() => {
                    tracing::debug!(request_id = %id, error = %e, "attempt failed, failing over");
                    last = Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        last
    }

    /// Sends `req` to one node only (no failover, no retry).
    pub async fn send_to(&self, endpoint: usize, req: Request) -> Result<Response, ClientError> {
        if endpoint >= self.inner.endpoints.len() {
            return Err(ClientError::Config(format!(
                "endpoint index {endpoint} out of range ({} configured)",
                self.inner.endpoints.len()
            )));
        }
        let id = request_id_for(&req);
        self.attempt(endpoint, &req, &id).await
    }

    /// Sends `req` to one node and hands a successful (2xx) body to `sink`
    /// chunk by chunk, calling `progress(received, content_length)` after
    /// each — for downloads too large to hold in memory (snapshots). The
    /// client's timeout applies to the answer's head and to each chunk, not
    /// to the whole body. A non-2xx answer is returned with its body (for
    /// the error message) and nothing reaches `sink`.
    pub async fn download_to(
        &self,
        endpoint: usize,
        req: Request,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<Response, ClientError> {
        let url = self
            .inner
            .endpoints
            .get(endpoint)
            .ok_or_else(|| ClientError::Config(format!("endpoint index {endpoint} out of range")))?
            .clone();
        let id = request_id_for(&req);
        let timeout = self.inner.timeout;
        let timed_out = || ClientError::Timeout {
            endpoint: url.clone(),
            timeout,
        };
        let failed = |message: String| ClientError::Connect {
            endpoint: url.clone(),
            message,
        };
        let http_req = self.build(&url, &req, &id)?;
        let resp = tokio::time::timeout(timeout, self.inner.http.request(http_req))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| failed(error_chain(&e)))?;
        let (parts, mut body) = resp.into_parts();
        let mut kept = Vec::new();
        if parts.status.is_success() {
            let total = parts
                .headers
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let mut received = 0u64;
            while let Some(frame) = tokio::time::timeout(timeout, body.frame())
                .await
                .map_err(|_| timed_out())?
            {
                let frame = frame.map_err(|e| failed(error_chain(&e)))?;
                if let Some(data) = frame.data_ref() {
                    sink(data).map_err(|e| failed(format!("writing the download: {e}")))?;
                    received += data.len() as u64;
                    progress(received, total);
                }
            }
            if total.is_some_and(|t| t != received) {
                return Err(failed(format!(
                    "the download ended after {received} bytes of {}",
                    total.unwrap_or(0)
                )));
            }
        } else {
            kept = tokio::time::timeout(timeout, body.collect())
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| failed(error_chain(&e)))?
                .to_bytes()
                .to_vec();
        }
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body: Bytes::from(kept),
            endpoint,
            request_id: id,
        })
    }

    async fn attempt(&self, idx: usize, req: &Request, id: &str) -> Result<Response, ClientError> {
        let endpoint = &self.inner.endpoints[idx];
        let http_req = self.build(endpoint, req, id)?;
        let exchange = async {
            let resp =
                self.inner
                    .http
                    .request(http_req)
                    .await
                    .map_err(|e| ClientError::Connect {
                        endpoint: endpoint.clone(),
                        message: error_chain(&e),
                    })?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| ClientError::Connect {
                    endpoint: endpoint.clone(),
                    message: error_chain(&e),
                })?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
                endpoint: idx,
                request_id: id.to_string(),
            })
        };
        tokio::time::timeout(self.inner.timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                endpoint: endpoint.clone(),
                timeout: self.inner.timeout,
            })?
    }

    fn build(
        &self,
        endpoint: &str,
        req: &Request,
        id: &str,
    ) -> Result<hyper::Request<Full<Bytes>>, ClientError> {
        let uri = format!("{endpoint}{}", req.path);
        let mut builder = hyper::Request::builder()
            .method(req.method.clone())
            .uri(&uri);
        let headers = builder
            .headers_mut()
            .ok_or_else(|| ClientError::Config(format!("invalid request URI {uri:?}")))?;
        headers.extend(req.headers.clone());
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let id_value = HeaderValue::from_str(id)
            .map_err(|_| ClientError::Config("request id has invalid characters".into()))?;
        headers.insert(HeaderName::from_static(REQUEST_ID_HEADER), id_value);
        if let Some(token) = &self.inner.token {
            headers
                .entry(AUTHORIZATION)
                .or_insert_with(|| token.clone());
        }
        if req.body.is_some() {
            headers
                .entry(CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
        }
        builder
            .body(Full::new(req.body.clone().unwrap_or_default()))
            .map_err(|e| ClientError::Config(format!("invalid request: {e}")))
    }
}

fn request_id_for(req: &Request) -> String {
    req.request_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// No pause during the first pass over the nodes; afterwards 50 ms doubling
/// per pass, capped at 800 ms, so a cluster mid-election gets time to settle.
fn backoff(attempt: usize, nodes: usize) -> Option<Duration> {
    let n = nodes.max(1);
    let pass = attempt / n;
    // Pause only at the first attempt of a new pass.
    if pass == 0 || attempt != pass * n {
        return None;
    }
    let shift = u32::try_from(pass - 1).unwrap_or(u32::MAX).min(4);
    Some(Duration::from_millis(50u64 << shift))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn tls_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        let cert = cert.map_err(|e| ClientError::Config(format!("invalid CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Config(format!("invalid CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Config("CA PEM contains no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Config(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn build_http(tls: rustls::ClientConfig, timeout: Duration, http2: bool) -> HttpClient {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(timeout));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1();
    let connector = if http2 {
        builder.enable_http2().wrap_connector(tcp)
    } else {
        builder.wrap_connector(tcp)
    };
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_only_between_passes() {
        assert_eq!(backoff(0, 3), None);
        assert_eq!(backoff(1, 3), None);
        assert_eq!(backoff(2, 3), None);
        assert_eq!(backoff(3, 3), Some(Duration::from_millis(50)));
        assert_eq!(backoff(4, 3), None);
        assert_eq!(backoff(6, 3), Some(Duration::from_millis(100)));
        assert_eq!(backoff(1, 1), Some(Duration::from_millis(50)));
        assert_eq!(backoff(100, 1), Some(Duration::from_millis(800)));
    }

    #[test]
    fn client_requires_a_ca() {
        let cfg = ClientConfig {
            endpoints: vec!["https://127.0.0.1:1".into()],
            ..ClientConfig::default()
        };
        assert!(matches!(Client::new(cfg), Err(ClientError::Config(_))));
        let cfg = ClientConfig {
            endpoints: vec!["https://127.0.0.1:1".into()],
            ca_pem: Some(b"not a pem".to_vec()),
            ..ClientConfig::default()
        };
        assert!(matches!(Client::new(cfg), Err(ClientError::Config(_))));
    }
}
