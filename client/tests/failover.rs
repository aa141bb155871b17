//! Failover, pinning and typed-API behaviour against tiny local TLS servers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use coffer_client::{Client, ClientConfig, ClientError, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path_and_query: String,
    request_id: Option<String>,
    authorization: Option<String>,
    host: Option<String>,
    version: Version,
    body: Bytes,
}

type Handler = Arc<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

struct TestServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TestServer {
    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
    /// The requests the server saw, without the client's background health
    /// probes (it asks every node who leads when it writes without knowing).
    fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path_and_query != "/v1/sys/health")
            .cloned()
            .collect()
    }

    /// Every request, probes included.
    fn seen_all(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

async fn serve(pki: &Pki, handler: Handler) -> TestServer {
    serve_delayed(pki, handler, Duration::ZERO).await
}

/// A server that waits `delay` before answering each request.
async fn serve_delayed(pki: &Pki, handler: Handler, delay: Duration) -> TestServer {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der.clone())),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, handler, log) = (acceptor.clone(), handler.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let (handler, log) = (handler.clone(), log.clone());
                    async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, hyper::Error>(answer(req, &handler, &log).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    TestServer { addr, seen }
}

async fn answer(
    req: hyper::Request<Incoming>,
    handler: &Handler,
    log: &Mutex<Vec<Seen>>,
) -> Response<Full<Bytes>> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut seen = Seen {
        method: req.method().to_string(),
        path_and_query: req.uri().path_and_query().unwrap().to_string(),
        request_id: header("x-ms-client-request-id"),
        authorization: header("authorization"),
        host: header("host").or_else(|| req.uri().authority().map(|a| a.to_string())),
        version: req.version(),
        body: Bytes::new(),
    };
    seen.body = req.into_body().collect().await.unwrap().to_bytes();
    let (status, body) = handler(&seen);
    log.lock().unwrap().push(seen);
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn healthy() -> Handler {
    Arc::new(|_| (200, r#"{"ok":true}"#.into()))
}

fn sealed() -> Handler {
    Arc::new(|_| (503, r#"{"errors":["node is sealed"]}"#.into()))
}

fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("https://{addr}")
}

fn client(pki: &Pki, endpoints: Vec<String>, http2: bool) -> Client {
    Client::new(ClientConfig {
        endpoints,
        token: Some("test-token".into()),
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        timeout: Duration::from_millis(1500),
        http2,
        max_attempts: 0,
        ..ClientConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn fails_over_from_dead_port_to_healthy_node() {
    let pki = pki();
    let good = serve(&pki, healthy()).await;
    let c = client(&pki, vec![dead_endpoint(), good.url()], true);
    let resp = c.send(Request::get("/v1/ping")).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.endpoint, 1);
    let seen = good.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].request_id.as_deref(),
        Some(resp.request_id.as_str())
    );
    assert!(uuid::Uuid::parse_str(&resp.request_id).is_ok());
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer test-token"));
}

#[tokio::test]
async fn fails_over_from_503_keeping_the_request_id() {
    let pki = pki();
    let bad = serve(&pki, sealed()).await;
    let good = serve(&pki, healthy()).await;
    let c = client(&pki, vec![bad.url(), good.url()], true);
    let body = serde_json::json!({"value": "x"});
    let req = Request::put("/secrets/a?api-version=2026-04-01")
        .json(&body)
        .unwrap();
    let resp = c.send(req).await.unwrap();
    assert_eq!((resp.status.as_u16(), resp.endpoint), (200, 1));
    let (b, g) = (bad.seen(), good.seen());
    assert_eq!((b.len(), g.len()), (1, 1));
    assert_eq!(b[0].request_id, g[0].request_id);
    assert_eq!(g[0].request_id.as_deref(), Some(resp.request_id.as_str()));
    assert_eq!(g[0].body, Bytes::from(r#"{"value":"x"}"#));
    assert_eq!(g[0].method, "PUT");

    // The next request starts at the node that answered last.
    let resp = c
        .send(Request::get("/v1/ping").request_id("fixed-id"))
        .await
        .unwrap();
    assert_eq!(resp.endpoint, 1);
    assert_eq!(bad.seen().len(), 1);
    assert_eq!(good.seen()[1].request_id.as_deref(), Some("fixed-id"));
}

#[tokio::test]
async fn all_nodes_unavailable_returns_last_503_after_bounded_attempts() {
    let pki = pki();
    let a = serve(&pki, sealed()).await;
    let b = serve(&pki, sealed()).await;
    let c = client(&pki, vec![a.url(), b.url()], true);
    let resp = c
        .send(Request::get("/x").request_id("rid-1"))
        .await
        .unwrap();
    assert_eq!(resp.status, 503);
    let all: Vec<_> = a.seen().into_iter().chain(b.seen()).collect();
    assert_eq!(all.len(), 4, "2 × endpoints attempts");
    assert!(all.iter().all(|s| s.request_id.as_deref() == Some("rid-1")));
    let err = resp.error_for_status().unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(err.to_string().contains("node is sealed"));
}

#[tokio::test]
async fn pinned_send_does_not_fail_over() {
    let pki = pki();
    let bad = serve(&pki, sealed()).await;
    let good = serve(&pki, healthy()).await;
    let c = client(&pki, vec![bad.url(), good.url(), dead_endpoint()], true);
    let resp = c.send_to(0, Request::get("/x")).await.unwrap();
    assert_eq!(resp.status, 503);
    assert_eq!(bad.seen().len(), 1);
    assert!(good.seen().is_empty());
    let err = c.send_to(2, Request::get("/x")).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(good.seen().is_empty());
    assert!(matches!(
        c.send_to(3, Request::get("/x")).await,
        Err(ClientError::Config(_))
    ));
}

#[tokio::test]
async fn slow_node_times_out_and_fails_over() {
    let pki = pki();
    let slow = serve_delayed(&pki, healthy(), Duration::from_millis(2500)).await;
    let good = serve(&pki, healthy()).await;
    let c = client(&pki, vec![slow.url(), good.url()], false);
    let resp = c.send(Request::get("/x")).await.unwrap();
    assert_eq!(resp.endpoint, 1);
    let err = c.send_to(0, Request::get("/x")).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn negotiates_http2_only_when_enabled() {
    let pki = pki();
    let s = serve(&pki, healthy()).await;
    client(&pki, vec![s.url()], true)
        .send(Request::get("/x"))
        .await
        .unwrap();
    client(&pki, vec![s.url()], false)
        .send(Request::get("/x"))
        .await
        .unwrap();
    let versions: Vec<_> = s.seen().iter().map(|x| x.version).collect();
    assert_eq!(versions, vec![Version::HTTP_2, Version::HTTP_11]);
}

#[tokio::test]
async fn untrusted_server_certificate_is_refused() {
    let server_pki = pki();
    let other_pki = pki();
    let s = serve(&server_pki, healthy()).await;
    let c = client(&other_pki, vec![s.url()], true);
    let err = c.send_to(0, Request::get("/x")).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(s.seen().is_empty());
}

#[tokio::test]
async fn secrets_list_follows_next_link_and_get_decodes_bundle() {
    let pki = pki();
    let s = serve(
        &pki,
        Arc::new(|seen: &Seen| {
            let p = seen.path_and_query.as_str();
            if p.starts_with("/secrets?") && !p.contains("skiptoken") {
                assert!(p.contains("api-version=2026-04-01") && p.contains("maxresults=1"));
                (200, r#"{"value":[{"id":"https://v.example/secrets/a","attributes":{"enabled":true}}],
                          "nextLink":"https://other-host:1/secrets?api-version=2026-04-01&$skiptoken=p2&maxresults=1"}"#.into())
            } else if p.starts_with("/secrets?") {
                (200, r#"{"value":[{"id":"https://v.example/secrets/b","contentType":"text/plain"}],"nextLink":null}"#.into())
            } else if p.starts_with("/secrets/a/?") {
                (200, r#"{"value":"s3cret","id":"https://v.example/secrets/a/0123456789abcdef0123456789abcdef","attributes":{"enabled":true,"created":1}}"#.into())
            } else {
                (404, r#"{"error":{"code":"SecretNotFound","message":"A secret with (name/id) zz was not found in this key vault"}}"#.into())
            }
        }),
    )
    .await;
    let c = client(&pki, vec![s.url()], true);
    let items = c.secrets().list(Some(1)).await.unwrap();
    let names: Vec<_> = items.iter().filter_map(|i| i.name()).collect();
    assert_eq!(names, vec!["a", "b"]);

    let bundle = c
        .secrets()
        .with_host("team.vault.local")
        .get("a", None)
        .await
        .unwrap();
    assert_eq!(bundle.value.as_deref(), Some("s3cret"));
    assert_eq!(bundle.version(), Some("0123456789abcdef0123456789abcdef"));
    assert_eq!(s.seen()[2].host.as_deref(), Some("team.vault.local"));

    let err = c.secrets().get("zz", None).await.unwrap_err();
    match err {
        ClientError::Http { status, code, .. } => {
            assert_eq!(status, 404);
            assert_eq!(code.as_deref(), Some("SecretNotFound"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn secrets_with_request_id_and_backup_round_trip() {
    let pki = pki();
    let s = serve(
        &pki,
        Arc::new(
            |seen: &Seen| match seen.path_and_query.split('?').next().unwrap() {
                "/secrets/a/backup" => (200, r#"{"value":"AAEC_w"}"#.into()),
                "/secrets/restore" => (200, r#"{"id":"https://h/secrets/a/v"}"#.into()),
                _ => (200, r#"{"id":"https://h/secrets/a/v","value":"v"}"#.into()),
            },
        ),
    )
    .await;
    let c = client(&pki, vec![s.url()], true);
    let api = c.secrets().with_request_id("retry-me");
    api.set("a", "v", &Default::default()).await.unwrap();
    api.set("a", "v", &Default::default()).await.unwrap();
    let blob = c.secrets().backup("a").await.unwrap();
    assert_eq!(blob, vec![0, 1, 2, 255]);
    c.secrets().restore(&blob).await.unwrap();
    let seen = s.seen();
    assert_eq!(seen[0].request_id.as_deref(), Some("retry-me"));
    assert_eq!(seen[1].request_id.as_deref(), Some("retry-me"));
    assert_ne!(seen[2].request_id, seen[3].request_id);
    assert_eq!(seen[3].body, Bytes::from(r#"{"value":"AAEC_w"}"#));
}

#[tokio::test]
async fn health_returns_body_for_sealed_node_and_sys_local_calls_stay_on_one_node() {
    let pki = pki();
    let sealed_node = serve(
        &pki,
        Arc::new(|seen: &Seen| match seen.path_and_query.as_str() {
            "/v1/sys/health" => (
                503,
                r#"{"initialized":true,"sealed":true,"standby":true,"node_id":2}"#.into(),
            ),
            _ => (503, r#"{"errors":["node is sealed"]}"#.into()),
        }),
    )
    .await;
    let good = serve(
        &pki,
        Arc::new(|_| (200, r#"{"leader_id":1,"term":3,"peers":[]}"#.into())),
    )
    .await;
    let c = client(&pki, vec![sealed_node.url(), good.url()], true);
    let h = c.sys().health().await.unwrap();
    assert_eq!(h.status, 503);
    assert!(h.body.sealed && h.body.initialized);
    assert_eq!(h.body.node_id, Some(2));
    let err = c.sys().seal().await.unwrap_err();
    assert_eq!(err.status(), Some(503));
    assert!(good.seen().is_empty(), "node-local calls never fail over");
    let peers = c.sys().peers().await.unwrap();
    assert_eq!((peers.leader_id, peers.term), (Some(1), 3));
}

/// A node that answers health as Raft node `id` with `leader` leading, and
/// 200 `{}` to everything else.
fn node(id: u64, leader: u64) -> Handler {
    Arc::new(move |seen: &Seen| {
        if seen.path_and_query == "/v1/sys/health" {
            let status = if id == leader { 200 } else { 429 };
            (
                status,
                format!(r#"{{"node_id":{id},"leader_id":{leader}}}"#),
            )
        } else {
            (200, "{}".into())
        }
    })
}

#[tokio::test]
async fn writes_go_to_the_leader_the_nodes_name() {
    let pki = pki();
    let (a, b, c) = (
        serve(&pki, node(1, 3)).await,
        serve(&pki, node(2, 3)).await,
        serve(&pki, node(3, 3)).await,
    );
    let client = client(&pki, vec![a.url(), b.url(), c.url()], true);
    assert_eq!(client.routing().leader(), None);
    // The first write goes where reads go, and starts a background probe.
    let first = client.send(Request::post("/keys/k/rotate")).await.unwrap();
    assert_eq!(first.endpoint, 0);
    let started = std::time::Instant::now();
    while client.routing().leader().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no leader learnt"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(client.routing().leader(), Some(2));
    // Every node was probed once.
    for s in [&a, &b, &c] {
        assert_eq!(s.seen_all().len() - s.seen().len(), 1);
    }
    let write = client.send(Request::post("/keys/k/rotate")).await.unwrap();
    assert_eq!(write.endpoint, 2, "writes go to the leader");
    // Reads stay on the node that answered last (the leader now).
    let read = client.send(Request::get("/keys/k")).await.unwrap();
    assert_eq!(read.endpoint, 2);
}

#[tokio::test]
async fn the_request_deadline_bounds_every_attempt() {
    let pki = pki();
    let slow = serve_delayed(&pki, healthy(), Duration::from_secs(3)).await;
    let c = Client::new(ClientConfig {
        endpoints: vec![slow.url(), dead_endpoint()],
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        timeout: Duration::from_secs(2),
        deadline: Some(Duration::from_millis(700)),
        ..ClientConfig::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let err = c.send(Request::get("/x")).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        err.is_transient() || matches!(err, ClientError::Deadline { .. }),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
    // A per-request deadline overrides the client's.
    let started = std::time::Instant::now();
    let _ = c
        .send(Request::get("/x").deadline(Duration::from_millis(200)))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(900));
}

#[tokio::test]
async fn a_credential_signs_in_caches_the_token_and_renews_it_on_401() {
    use coffer_client::auth::{AppCredential, Credential};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pki = pki();
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let s = serve(
        &pki,
        Arc::new(move |seen: &Seen| {
            let p = seen.path_and_query.as_str();
            if p == "/contoso/oauth2/v2.0/token" {
                let form = String::from_utf8_lossy(&seen.body).to_string();
                assert!(form.contains("grant_type=client_credentials"), "{form}");
                assert!(form.contains("client_id=app-1"), "{form}");
                assert!(form.contains("client_secret=s3cr3t"), "{form}");
                assert!(
                    form.contains("scope=https%3A%2F%2Fvault.azure.net%2F.default"),
                    "{form}"
                );
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    200,
                    format!(
                        r#"{{"token_type":"Bearer","access_token":"tok-{n}","expires_in":"3600"}}"#
                    ),
                )
            } else if seen.authorization.as_deref() == Some("Bearer tok-1")
                && p.starts_with("/secrets/stale")
            {
                (
                    401,
                    r#"{"error":{"code":"Unauthorized","message":"token revoked"}}"#.into(),
                )
            } else {
                (200, r#"{"id":"https://h/secrets/a/v","value":"v"}"#.into())
            }
        }),
    )
    .await;
    let c = Client::new(ClientConfig {
        endpoints: vec![s.url()],
        ca_pem: Some(pki.ca_pem.clone().into_bytes()),
        credential: Some(AppCredential::new(
            "contoso",
            "app-1",
            Credential::ClientSecret("s3cr3t".to_string().into()),
        )),
        ..ClientConfig::default()
    })
    .unwrap();
    c.secrets().get("a", None).await.unwrap();
    c.secrets().get("a", None).await.unwrap();
    assert_eq!(issued.load(Ordering::SeqCst), 1, "the token is cached");
    // A 401 (revoked token): one new sign-in, one more try.
    c.secrets().get("stale", None).await.unwrap();
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    let auth: Vec<_> = s
        .seen()
        .into_iter()
        .filter(|x| !x.path_and_query.contains("oauth2"))
        .map(|x| x.authorization.unwrap_or_default())
        .collect();
    assert_eq!(
        auth,
        [
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-2"
        ]
    );
    // The secret never travels in a header.
    assert!(s.seen_all().iter().all(|x| !x
        .authorization
        .clone()
        .unwrap_or_default()
        .contains("s3cr3t")));
}

#[tokio::test]
async fn keys_stream_pages_and_decode_operations() {
    use futures::TryStreamExt as _;
    let pki = pki();
    let s = serve(
        &pki,
        Arc::new(|seen: &Seen| {
            let p = seen.path_and_query.as_str();
            if p.starts_with("/keys?") && !p.contains("skiptoken") {
                (200, r#"{"value":[{"kid":"https://h/keys/a"}],"nextLink":"https://h/keys?api-version=2026-04-01&$skiptoken=2"}"#.into())
            } else if p.starts_with("/keys?") {
                (200, r#"{"value":[{"kid":"https://h/keys/b"}]}"#.into())
            } else if p.starts_with("/keys/a//sign?") {
                let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
                assert_eq!(body, serde_json::json!({"alg": "ES256", "value": "AAEC"}));
                (200, r#"{"kid":"https://h/keys/a/v1","value":"_w"}"#.into())
            } else if p.starts_with("/keys/a/v1/verify?") {
                let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
                assert_eq!(body, serde_json::json!({"alg": "ES256", "digest": "AAEC", "value": "_w"}));
                (200, r#"{"value":true}"#.into())
            } else {
                (404, r#"{"error":{"code":"KeyNotFound","message":"no"}}"#.into())
            }
        }),
    )
    .await;
    let c = client(&pki, vec![s.url()], true);
    let keys = c.keys();
    let mut stream = std::pin::pin!(keys.list_stream(Some(1)));
    let first = stream.try_next().await.unwrap().unwrap();
    assert_eq!(first.name(), Some("a"));
    assert_eq!(
        s.seen().len(),
        1,
        "the second page is fetched only when needed"
    );
    let second = stream.try_next().await.unwrap().unwrap();
    assert_eq!(second.name(), Some("b"));
    assert!(stream.try_next().await.unwrap().is_none());
    let sig = keys.sign("a", None, "ES256", &[0, 1, 2]).await.unwrap();
    assert_eq!(sig, vec![0xff]);
    assert!(keys
        .verify("a", Some("v1"), "ES256", &[0, 1, 2], &sig)
        .await
        .unwrap());
    let err = keys.get("zz", None).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}
