//! The HTTP ceiling: a TLS server on Coffer's stack (hyper + rustls with
//! aws-lc-rs, ALPN h2/http1.1, tokio with one worker per core) that answers
//! every request with a fixed Key Vault secret bundle, so `coffer bench
//! --workload get` drives it exactly as it drives a node.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::TlsAcceptor;

/// Prefix of the server's thread names (for per-thread CPU accounting).
pub const THREAD_NAME: &str = "hello-srv";

/// A running hello-world server; its runtime stops on drop.
pub struct HelloServer {
    /// `https://127.0.0.1:port`.
    pub url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for HelloServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let certs =
        rustls_pemfile::certs(&mut fs::read(cert)?.as_slice()).collect::<Result<Vec<_>, _>>()?;
    let key =
        rustls_pemfile::private_key(&mut fs::read(key)?.as_slice())?.context("no private key")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Issues a certificate with `coffer operator tls` into `dir` and starts the
/// server on a free port. Returns the server and the CA path.
pub fn start(coffer: &Path, dir: &Path, value_size: usize) -> anyhow::Result<HelloServer> {
    let ok = std::process::Command::new(coffer)
        .args(["operator", "tls", "--out"])
        .arg(dir)
        .args(["--node", "hello=127.0.0.1,localhost"])
        .status()?
        .success();
    if !ok {
        bail!("coffer operator tls failed for the hello server");
    }
    let acceptor = TlsAcceptor::from(Arc::new(server_config(
        &dir.join("hello.pem"),
        &dir.join("hello-key.pem"),
    )?));
    let body = Bytes::from(format!(
        r#"{{"value":"{}","id":"https://127.0.0.1/secrets/bench-0/0123456789abcdef0123456789abcdef","attributes":{{"enabled":true,"created":1700000000,"updated":1700000000,"recoveryLevel":"Recoverable+Purgeable","recoverableDays":90}}}}"#,
        "x".repeat(value_size)
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(THREAD_NAME)
        .enable_all()
        .build()?;
    // Bound with std: the caller may itself be inside a runtime, where
    // `block_on` is not allowed.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    std_listener.set_nonblocking(true)?;
    let addr: SocketAddr = std_listener.local_addr()?;
    let listener = {
        let _guard = runtime.enter();
        tokio::net::TcpListener::from_std(std_listener)?
    };
    runtime.spawn(accept_loop(listener, acceptor, body));
    Ok(HelloServer {
        url: format!("https://{addr}"),
        runtime: Some(runtime),
    })
}

async fn accept_loop(listener: tokio::net::TcpListener, acceptor: TlsAcceptor, body: Bytes) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = service_fn(move |_req| {
                let body = body.clone();
                async move {
                    hyper::Response::builder()
                        .header("content-type", "application/json; charset=utf-8")
                        .body(Full::new(body))
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}
