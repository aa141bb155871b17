//! Hostile clients against the real `coffer` binary on loopback: held
//! connections at the open-files limit, the per-address cap, and each
//! connection timeout of `[limits]` (shortened through the config).
//!
//! Attackers connect from 127.0.0.2 (all of 127/8 is loopback on Linux),
//! the well-behaved client from 127.0.0.1, so the per-address cap tells
//! them apart as it would two hosts.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const ATTACKER: &str = "127.0.0.2";
/// Time the server may take beyond a configured timeout to close.
const SLACK: Duration = Duration::from_secs(3);

/// One node started from a config file, killed on drop.
struct Node {
    child: Child,
    api: SocketAddr,
    log: PathBuf,
    tls: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port no other test process is handed (see `jepsen_tests::ports`).
fn free_port() -> u16 {
    jepsen_tests::ports::free_port().unwrap()
}

impl Node {
    /// Starts a single bootstrapping node with `limits` as its `[limits]`
    /// section, under `RLIMIT_NOFILE = nofile:nofile` when given (soft and
    /// hard alike, so the server cannot raise it).
    async fn start(limits: &str, nofile: Option<u64>) -> Node {
        let bin = env!("CARGO_BIN_EXE_coffer");
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("tls");
        let status = Command::new(bin)
            .args(["operator", "tls", "--out"])
            .arg(&tls_dir)
            .args(["--node", "node1=127.0.0.1,localhost"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = dir.path().join("node1.toml");
        std::fs::write(
            &config,
            format!(
                "node_id = 1\ndata_dir = {data:?}\napi_addr = \"{api}\"\n\
                 cluster_addr = \"127.0.0.1:{cluster}\"\nbootstrap = true\nlog_format = \"text\"\n\
                 [tls]\nca = {ca:?}\ncert = {cert:?}\nkey = {key:?}\n[limits]\n{limits}\n",
                data = dir.path().join("data"),
                cluster = free_port(),
                ca = tls_dir.join("ca.pem"),
                cert = tls_dir.join("node1.pem"),
                key = tls_dir.join("node1-key.pem"),
            ),
        )
        .unwrap();
        let log = dir.path().join("node1.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin);
        cmd.arg("server")
            .arg("--config")
            .arg(&config)
            // The default filter is part of what the log-volume checks test.
            .env_remove("COFFER_LOG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file);
        if let Some(n) = nofile {
            // SAFETY: only the async-signal-safe setrlimit runs in the child
            // between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().unwrap();
        let node = Node {
            child,
            api,
            log,
            tls: client_tls(&tls_dir.join("ca.pem"), b"http/1.1"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while node.health_from("127.0.0.1").await.is_err() {
            assert!(
                Instant::now() < deadline,
                "node not up:\n{}",
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        node
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_lines(&self) -> usize {
        self.log_text().lines().count()
    }

    /// User plus system CPU time of the server process so far.
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 of the whole line.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    /// A TCP connection from `source` that has not started TLS.
    async fn tcp_from(&self, source: &str) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(format!("{source}:0").parse().unwrap())?;
        socket.connect(self.api).await
    }

    /// A TLS connection from `source` (HTTP/1.1 by ALPN).
    async fn tls_from(&self, source: &str) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp_from(source).await?;
        TlsConnector::from(self.tls.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
    }

    /// `GET /v1/sys/health` on a new connection from `source`: the status.
    async fn health_from(&self, source: &str) -> std::io::Result<u16> {
        let mut tls = self.tls_from(source).await?;
        tls.write_all(
            b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await?;
        let mut answer = Vec::new();
        tls.read_to_end(&mut answer).await?;
        status_of(&answer).ok_or_else(|| std::io::Error::other("no HTTP status line"))
    }

    /// Health within `budget`, retrying refused or cut connections.
    async fn health_within(&self, source: &str, budget: Duration) -> Result<u16, String> {
        let deadline = Instant::now() + budget;
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            let left = deadline - Instant::now();
            match tokio::time::timeout(left, self.health_from(source)).await {
                Ok(Ok(status)) => return Ok(status),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(last)
    }
}

fn client_tls(ca: &Path, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

fn status_of(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Reads until the server closes the connection (EOF or reset) and returns
/// what arrived, or `None` if it is still open after `within`.
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // Reset, or a TLS stream cut without close_notify: closed.
                Err(_) => return,
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|()| got)
}

/// Opens `count` plain TCP connections from `source` and keeps those the
/// server let through (the rest it closed or never accepted).
async fn hold_tcp(node: &Node, source: &str, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..count {
        let connected = tokio::time::timeout(Duration::from_secs(2), node.tcp_from(source)).await;
        if let Ok(Ok(tcp)) = connected {
            held.push(tcp);
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_open_files_limit_leave_health_answering() {
    // Default limits under 256 descriptors: 128 kept for storage and
    // cluster, so 128 API connections, 16 of them from one address.
    let node = Node::start("", Some(256)).await;
    let held = hold_tcp(&node, ATTACKER, 300).await;
    assert!(held.len() > 256, "only {} connections opened", held.len());

    let (cpu0, lines0, t0) = (node.cpu_time(), node.log_lines(), Instant::now());
    for _ in 0..5 {
        let status = node
            .health_within("127.0.0.1", Duration::from_secs(1))
            .await
            .unwrap_or_else(|e| panic!("health not answered within 1 s: {e}"));
        assert!(status >= 200, "{status}");
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    let (cpu, lines, wall) = (
        node.cpu_time() - cpu0,
        node.log_lines() - lines0,
        t0.elapsed(),
    );
    assert!(cpu < wall / 2, "server used {cpu:?} CPU in {wall:?}");
    assert!(
        lines < 100,
        "{lines} log lines in {wall:?}:\n{}",
        node.log_text()
    );
    drop(held);
}

#[tokio::test(flavor = "multi_thread")]
async fn running_out_of_descriptors_backs_off_instead_of_spinning() {
    // No reserve and no caps: the API connections themselves exhaust the
    // 256 descriptors, and `accept` fails with EMFILE until some close.
    let node = Node::start(
        "reserved_fds = 0\nmax_connections = 100000\nmax_connections_per_ip = 100000\n",
        Some(256),
    )
    .await;
    let held = hold_tcp(&node, ATTACKER, 300).await;
    let (cpu0, lines0, t0) = (node.cpu_time(), node.log_lines(), Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu, lines, wall) = (
        node.cpu_time() - cpu0,
        node.log_lines() - lines0,
        t0.elapsed(),
    );
    let log = node.log_text();
    assert!(
        log.contains("accept failed; backing off"),
        "no EMFILE seen:\n{log}"
    );
    assert!(cpu < wall / 2, "server used {cpu:?} CPU in {wall:?}");
    assert!(lines < 100, "{lines} log lines in {wall:?}");

    // Once the attacker lets go, the node serves again.
    drop(held);
    node.health_within("127.0.0.1", Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("health not back after the attacker left: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_address_cap_refuses_one_more_while_others_are_served() {
    let node = Node::start(
        "max_connections_per_ip = 4\ntls_handshake_timeout_secs = 60\n",
        None,
    )
    .await;
    let mut held = hold_tcp(&node, ATTACKER, 4).await;
    assert_eq!(held.len(), 4);
    // The server only counts a connection once it accepted it.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut fifth = node.tcp_from(ATTACKER).await.unwrap();
    assert!(
        closed_within(&mut fifth, Duration::from_secs(1))
            .await
            .is_some(),
        "the fifth connection from one address was not closed"
    );
    node.health_within("127.0.0.1", Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("another address was not served: {e}"));

    // A freed slot takes a new connection from that address again.
    held.pop();
    node.health_within(ATTACKER, Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("freed slot not reusable: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_that_never_starts_tls_is_closed_after_the_handshake_timeout() {
    let node = Node::start("tls_handshake_timeout_secs = 1\n", None).await;
    let mut tcp = node.tcp_from(ATTACKER).await.unwrap();
    let got = closed_within(&mut tcp, Duration::from_secs(1) + SLACK).await;
    assert_eq!(got, Some(Vec::new()), "still open, or answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_tls_without_a_request_is_closed_after_the_header_timeout() {
    let node = Node::start(
        "header_read_timeout_secs = 1\nidle_timeout_secs = 60\n",
        None,
    )
    .await;
    let mut tls = node.tls_from(ATTACKER).await.unwrap();
    assert!(
        closed_within(&mut tls, Duration::from_secs(1) + SLACK)
            .await
            .is_some(),
        "an idle TLS connection stayed open"
    );
}

const HEALTH: &[u8] = b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Reads one response head (and ignores its body) on a keep-alive connection.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> u16 {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a response");
            got.extend_from_slice(&buf[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                if got.len() >= end + 4 + length {
                    return status_of(&got).unwrap();
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_head_is_cut_after_the_header_timeout() {
    let node = Node::start(
        "header_read_timeout_secs = 2\nidle_timeout_secs = 60\n",
        None,
    )
    .await;
    let mut tls = node.tls_from(ATTACKER).await.unwrap();
    // One complete request first: what follows is a keep-alive connection's
    // next head, not its first request.
    tls.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut tls).await >= 200);

    let started = Instant::now();
    let slow = b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for byte in slow.iter() {
        if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
            cut = true;
            break;
        }
        if let Some(_closed) = closed_within(&mut tls, Duration::from_secs(1)).await {
            cut = true;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2) + SLACK,
            "slowloris head still open after {:?}",
            started.elapsed()
        );
    }
    assert!(cut, "the whole slow head went through");
    assert!(started.elapsed() < Duration::from_secs(2) + SLACK);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_outlives_the_header_timeout_then_closes() {
    let node = Node::start(
        "header_read_timeout_secs = 1\nidle_timeout_secs = 4\n",
        None,
    )
    .await;
    let mut tls = node.tls_from(ATTACKER).await.unwrap();
    tls.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut tls).await >= 200);
    // Idle past the header timeout: a keep-alive connection may rest longer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tls.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut tls).await >= 200);
    assert!(
        closed_within(&mut tls, Duration::from_secs(4) + SLACK)
            .await
            .is_some(),
        "an idle keep-alive connection stayed open"
    );
}

/// `POST /v1/sys/unseal` announcing `length` bytes; the caller sends them.
fn unseal_head(length: usize) -> Vec<u8> {
    format!(
        "POST /v1/sys/unseal HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_unseal_body_is_answered_408_and_closed() {
    let node = Node::start(
        "operator_body_timeout_secs = 2\nbody_rate_window_secs = 60\n",
        None,
    )
    .await;
    let mut tls = node.tls_from(ATTACKER).await.unwrap();
    tls.write_all(&unseal_head(100)).await.unwrap();
    tls.write_all(br#"{"key":"ab"#).await.unwrap();
    let got = closed_within(&mut tls, Duration::from_secs(2) + SLACK)
        .await
        .expect("a stalled unseal body kept its connection");
    assert_eq!(
        status_of(&got),
        Some(408),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(String::from_utf8_lossy(&got).contains(r#"{"errors":["#));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_trickling_below_the_minimum_rate_is_cut() {
    // 100 bytes/s over 2 s; the unseal deadline is out of the way.
    let node = Node::start(
        "min_body_bytes_per_sec = 100\nbody_rate_window_secs = 2\noperator_body_timeout_secs = 60\n",
        None,
    )
    .await;
    let mut tls = node.tls_from(ATTACKER).await.unwrap();
    tls.write_all(&unseal_head(2000)).await.unwrap();
    tls.write_all(br#"{"key":""#).await.unwrap();
    let started = Instant::now();
    let got = loop {
        // 10 bytes a second: a tenth of the minimum.
        let _ = tls.write_all(b"aaaaaaaaaa").await;
        if let Some(got) = closed_within(&mut tls, Duration::from_secs(1)).await {
            break got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2) + SLACK,
            "a trickling body kept its connection"
        );
    };
    assert_eq!(
        status_of(&got),
        Some(408),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rapid_reset_connections_log_one_warning_per_interval() {
    let node = Node::start("", None).await;
    let h2_tls = client_tls(&node._dir.path().join("tls/ca.pem"), b"h2");
    let lines0 = node.log_lines();
    let mut cut = 0;
    for _ in 0..10 {
        let tcp = node.tcp_from(ATTACKER).await.unwrap();
        let tls = TlsConnector::from(h2_tls.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut client, connection) = h2::client::handshake(tls).await.unwrap();
        let driver = tokio::spawn(connection);
        // Open streams and cancel them at once (RST_STREAM), as fast as
        // the connection takes them, until the server sends GOAWAY.
        for _ in 0..10_000 {
            let Ok(ready) = client.clone().ready().await else {
                break;
            };
            client = ready;
            let request = axum::http::Request::get(format!(
                "https://localhost:{}/v1/sys/health",
                node.api.port()
            ))
            .body(())
            .unwrap();
            match client.send_request(request, true) {
                Ok((response, _)) => drop(response),
                Err(_) => break,
            }
        }
        let ended = tokio::time::timeout(Duration::from_secs(5), driver).await;
        // Cut: GOAWAY(ENHANCE_YOUR_CALM), or the socket closed under the
        // client's writes before it read the GOAWAY.
        if let Ok(Ok(Err(e))) = ended {
            if e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || e.is_io() {
                cut += 1;
            }
        }
    }
    assert!(cut >= 5, "only {cut} of 10 connections were cut for resets");
    let log = node.log_text();
    let warnings = log
        .lines()
        .skip(lines0)
        .filter(|l| l.contains("WARN"))
        .count();
    assert_eq!(warnings, 1, "{cut} connections cut, warnings:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_http2_connection_is_closed_after_the_idle_timeout() {
    let node = Node::start(
        "header_read_timeout_secs = 1\nidle_timeout_secs = 3\n",
        None,
    )
    .await;
    let h2_tls = client_tls(&node._dir.path().join("tls/ca.pem"), b"h2");
    let tcp = node.tcp_from(ATTACKER).await.unwrap();
    let tls = TlsConnector::from(h2_tls)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (client, mut connection) = h2::client::handshake(tls).await.unwrap();
    let mut pings = connection.ping_pong().unwrap();
    let mut driver = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = axum::http::Request::get("https://localhost/v1/sys/health")
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    assert!(response.await.unwrap().status().as_u16() >= 200);
    // Pings every half second keep nothing alive: only requests count.
    let answered = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(3) + SLACK, async {
        loop {
            tokio::select! {
                _ = &mut driver => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    let _ = pings.ping(h2::Ping::opaque()).await;
                }
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "idle HTTP/2 connection still open after {:?}",
        answered.elapsed()
    );
}
