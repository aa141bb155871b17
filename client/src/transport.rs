//! HTTPS transport with multi-endpoint failover.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{HeaderMap, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::TokenSource;
use crate::http::{build_http, tls_config, HttpClient};
use crate::routing::{jitter, pass_pause, Nodes};
use crate::{ClientConfig, ClientError, REQUEST_ID_HEADER};

/// Leader probes start at most this often (writes with no known leader and
/// failed attempts ask for one).
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Deadline of one health probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One logical API request: method, path with query, headers and JSON body.
///
/// ```
/// use std::time::Duration;
/// use coffer_client::Request;
/// use hyper::header::{HeaderValue, HOST};
///
/// let req = Request::put("/secrets/db-password?api-version=2026-04-01")
///     .json(&serde_json::json!({"value": "hunter2"}))?
///     .header(HOST, HeaderValue::from_static("payments.vault.example"))
///     .request_id("3b7c2a1e-0d4f-4e8a-9b6c-5f2e1d0c9b8a")
///     .deadline(Duration::from_secs(5));
/// assert!(req.is_write()); // goes to the leader first
/// assert_eq!(req.body.as_deref(), Some(&br#"{"value":"hunter2"}"#[..]));
/// assert!(!Request::get("/v1/sys/health").is_write());
/// # Ok::<(), coffer_client::ClientError>(())
/// ```
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
    /// Deadline of the whole request across attempts; `None` takes the
    /// client's [`ClientConfig::deadline`].
    pub deadline: Option<Duration>,
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
            deadline: None,
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

    /// Gives up on the request (every attempt included) after `deadline`.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Whether the request changes state: such requests go to the leader
    /// first when it is known (a follower would forward them there).
    pub fn is_write(&self) -> bool {
        !matches!(self.method, Method::GET | Method::HEAD | Method::OPTIONS)
    }
}

/// A server answer (any status).
///
/// Usually obtained from [`Client::send`]; shown here built by hand.
///
/// ```
/// use coffer_client::{ClientError, Response};
/// use hyper::{HeaderMap, StatusCode};
///
/// let answer = |status, body: &'static str| Response {
///     status,
///     headers: HeaderMap::new(),
///     body: body.into(),
///     endpoint: 0,
///     request_id: "3b7c2a1e-0d4f-4e8a-9b6c-5f2e1d0c9b8a".into(),
///     attempts: 1,
/// };
/// let ok = answer(StatusCode::OK, r#"{"initialized": true}"#).error_for_status()?;
/// let body: serde_json::Value = ok.json()?;
/// assert_eq!(body["initialized"], true);
///
/// let err = answer(StatusCode::NOT_FOUND, r#"{"error":{"code":"SecretNotFound","message":"no such secret"}}"#)
///     .error_for_status()
///     .unwrap_err();
/// assert!(matches!(err, ClientError::Http { status: 404, .. }));
/// # Ok::<(), ClientError>(())
/// ```
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
    /// Attempts the request took (1 when the first node answered).
    pub attempts: usize,
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

/// Async Coffer client; cheap to clone (shares its connection pool, its
/// view of the nodes and its token cache).
///
/// ```
/// # fn main() -> Result<(), coffer_client::ClientError> {
/// # let ca_pem = rcgen::generate_simple_self_signed(vec!["localhost".into()])
/// #     .unwrap().cert.pem().into_bytes();
/// use std::time::Duration;
/// use coffer_client::{Client, ClientConfig};
///
/// let client = Client::new(ClientConfig {
///     endpoints: coffer_client::parse_endpoints("node1:8453,node2:8453,node3:8453")?,
///     ca_pem: Some(ca_pem),
///     deadline: Some(Duration::from_secs(20)),
///     ..ClientConfig::default()
/// })?;
/// assert_eq!(client.endpoints().len(), 3);
/// // No health answer yet: the leader is unknown.
/// assert_eq!(client.routing().leader(), None);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    http: HttpClient,
    endpoints: Vec<String>,
    token: Option<HeaderValue>,
    /// Where tokens come from when the client signs in itself.
    auth: Option<Arc<TokenSource>>,
    timeout: Duration,
    deadline: Option<Duration>,
    attempts: usize,
    routing: Arc<Routing>,
}

/// The nodes' breakers and leader, and when they were last probed.
struct Routing {
    nodes: Nodes,
    probed: Mutex<Option<Instant>>,
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
                bearer(t).map_err(|_| ClientError::Config("token has invalid characters".into()))
            })
            .transpose()?;
        let plain = Self {
            inner: Arc::new(Inner {
                http,
                attempts: cfg.attempts(),
                routing: Arc::new(Routing {
                    nodes: Nodes::new(cfg.endpoints.len()),
                    probed: Mutex::new(None),
                }),
                endpoints: cfg.endpoints,
                token,
                auth: None,
                timeout: cfg.timeout,
                deadline: cfg.deadline,
            }),
        };
        let Some(credential) = cfg.credential else {
            return Ok(plain);
        };
        if plain.inner.token.is_some() {
            return Err(ClientError::Config(
                "give either a token or a credential, not both".into(),
            ));
        }
        // The token source signs in through the same nodes and pool, without
        // a token of its own.
        let mut inner = (*plain.inner).clone();
        inner.auth = Some(Arc::new(TokenSource::new(plain, credential)));
        Ok(Self {
            inner: Arc::new(inner),
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

    /// What the client knows of the nodes: breakers and the leader.
    pub fn routing(&self) -> &Nodes {
        &self.inner.routing.nodes
    }

    /// The token source when the client signs in with a credential.
    pub fn token_source(&self) -> Option<&TokenSource> {
        self.inner.auth.as_deref()
    }

    /// Sends `req` with failover: writes go to the leader first when it is
    /// known, reads to the node that answered last; a node that fails
    /// (connection error, timeout, `503`) has its breaker opened and the
    /// next one is tried. Once every node was tried the client pauses
    /// (50 ms doubling to 800 ms, with jitter) and starts another pass.
    /// The request id stays the same on every attempt, so the server
    /// applies a write once however often it arrives. It stops after the
    /// configured attempts or at the deadline, whichever comes first, and
    /// returns the last `503` response (or error) as is.
    ///
    /// With a credential, a `401` answer fetches a new token and tries
    /// once more.
    pub async fn send(&self, req: Request) -> Result<Response, ClientError> {
        let id = request_id_for(&req);
        let write = req.is_write();
        let nodes = &self.inner.routing.nodes;
        if write && nodes.leader().is_none() {
            self.probe_soon();
        }
        let started = Instant::now();
        let deadline = req.deadline.or(self.inner.deadline).map(|d| started + d);
        let mut auth = self.authorization(false).await?;
        let mut renewed = false;
        let mut tried: Vec<usize> = Vec::new();
        let (mut pass, mut attempts) = (0u32, 0usize);
        let mut last = None;
        while attempts < self.inner.attempts {
            let now = Instant::now();
            let left = match deadline {
                Some(d) if d <= now => break,
                Some(d) => d - now,
                None => Duration::MAX,
            };
            let order = nodes.order(write, now);
            let next = order
                .iter()
                .copied()
                .find(|&i| !tried.contains(&i) && !nodes.is_open(i, now))
                // Every breaker is open: one trial (the soonest to reopen)
                // per pass rather than none.
                .or_else(|| tried.is_empty().then(|| order.first().copied()).flatten());
            let Some(idx) = next else {
                tried.clear();
                pass += 1;
                tokio::time::sleep(pass_pause(pass, jitter()).min(left)).await;
                continue;
            };
            tried.push(idx);
            attempts += 1;
            let timeout = self.inner.timeout.min(left);
            match self.attempt(idx, &req, &id, auth.as_ref(), timeout).await {
                Ok(resp)
                    if resp.status == StatusCode::UNAUTHORIZED
                        && self.inner.auth.is_some()
                        && !renewed =>
                {
                    // A token the cluster no longer takes (signing key
                    // rotated, revoked): one more try with a fresh one.
                    renewed = true;
                    auth = self.authorization(true).await?;
                    tried.pop();
                }
                Ok(mut resp) if resp.status != StatusCode::SERVICE_UNAVAILABLE => {
                    nodes.succeeded(idx);
                    resp.attempts = attempts;
                    return Ok(resp);
                }
                Ok(mut resp) => {
                    resp.attempts = attempts;
                    nodes.failed(idx, Instant::now(), jitter());
                    self.probe_soon();
                    tracing::debug!(endpoint = %self.inner.endpoints[idx], request_id = %id, "node unavailable (503), failing over");
                    last = Some(Ok(resp));
                }
                Err(e) if e.is_transient() => {
                    nodes.failed(idx, Instant::now(), jitter());
                    self.probe_soon();
                    tracing::debug!(request_id = %id, error = %e, "attempt failed, failing over");
                    last = Some(Err(e));
                }
                Err(e) => return Err(e),
            }
        }
        last.unwrap_or(Err(ClientError::Deadline {
            elapsed: started.elapsed(),
        }))
    }

    /// [`Client::send`] as a boxed future: the token source signs in
    /// through `send`, which asks the token source for a token, so one of
    /// the two must have a named (not inferred) future type.
    pub(crate) fn send_boxed(
        &self,
        req: Request,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response, ClientError>> + Send + '_>,
    > {
        Box::pin(self.send(req))
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
        let auth = self.authorization(false).await?;
        let timeout = req
            .deadline
            .map_or(self.inner.timeout, |d| d.min(self.inner.timeout));
        self.attempt(endpoint, &req, &id, auth.as_ref(), timeout)
            .await
    }

    /// Asks every node for its health at once and records what the answers
    /// say: a node answering as leader or standby closes its breaker, a
    /// sealed or silent one opens it (an answer that is no health answer
    /// changes nothing), and the answers name the leader that
    /// writes are sent to. `coffer agent` calls this every second; the
    /// client itself starts it in the background when it needs a leader.
    pub async fn probe_nodes(&self) {
        let nodes = &self.inner.routing.nodes;
        // Health needs no token: probe without one, so a failing sign-in
        // never marks a node down.
        let plain = self.inner.auth.as_ref().map_or(self, |a| a.client());
        let probes = (0..self.inner.endpoints.len()).map(|i| async move {
            let sys = plain.sys().pinned(i).with_deadline(PROBE_TIMEOUT);
            match sys.health().await {
                Ok(h) => {
                    nodes.observed(i, h.body.node_id, h.body.leader_id);
                    if matches!(h.status, 200 | 429) {
                        nodes.healthy(i);
                    } else {
                        nodes.failed(i, Instant::now(), jitter());
                    }
                }
                Err(e) if e.is_transient() => {
                    nodes.failed(i, Instant::now(), jitter());
                }
                // It answered, but not as a Coffer node does (e.g. `coffer
                // agent` or a load balancer refusing the probe): reachable,
                // and no word on the leader.
                Err(_) => {}
            }
        });
        futures::future::join_all(probes).await;
    }

    /// Starts [`Client::probe_nodes`] in the background unless one started
    /// less than [`PROBE_EVERY`] ago (or no Tokio runtime runs this task).
    fn probe_soon(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut probed = self
                .inner
                .routing
                .probed
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if probed.is_some_and(|t| t.elapsed() < PROBE_EVERY) {
                return;
            }
            *probed = Some(Instant::now());
        }
        let client = self.clone();
        runtime.spawn(async move { client.probe_nodes().await });
    }

    /// The `Authorization` value: the configured token, or one from the
    /// token source (`renew`: a new one even if the cached one is valid).
    async fn authorization(&self, renew: bool) -> Result<Option<HeaderValue>, ClientError> {
        let Some(source) = &self.inner.auth else {
            return Ok(self.inner.token.clone());
        };
        if renew {
            source.forget().await;
        }
        let token = source.token().await?;
        bearer(&token)
            .map(Some)
            .map_err(|_| ClientError::Auth("the issued token is not a header value".into()))
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
        let auth = self.authorization(false).await?;
        let http_req = self.build(&url, &req, &id, auth.as_ref())?;
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
            attempts: 1,
        })
    }

    async fn attempt(
        &self,
        idx: usize,
        req: &Request,
        id: &str,
        auth: Option<&HeaderValue>,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        let endpoint = &self.inner.endpoints[idx];
        let http_req = self.build(endpoint, req, id, auth)?;
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
                attempts: 1,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                endpoint: endpoint.clone(),
                timeout,
            })?
    }

    fn build(
        &self,
        endpoint: &str,
        req: &Request,
        id: &str,
        auth: Option<&HeaderValue>,
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
        if let Some(token) = auth {
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

/// `Bearer {token}`, marked sensitive so it never shows in debug output.
fn bearer(token: &str) -> Result<HeaderValue, hyper::header::InvalidHeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {token}"))?;
    v.set_sensitive(true);
    Ok(v)
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

#[cfg(test)]
mod tests {
    use super::*;

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
