//! Real receivers for the alert tests: an HTTP server taking webhook and
//! SMS-gateway posts, an SMTP server (Python's `aiosmtpd` when the test
//! venv has it, else a minimal SMTP listener in the test), and a UDP
//! syslog collector. Each keeps what it received.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

/// One HTTP post received.
#[derive(Clone, Debug)]
pub struct Post {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Vec<u8>,
}

/// Everything the receivers got so far.
#[derive(Default)]
pub struct Inbox {
    /// Webhook posts.
    pub webhook: Vec<Post>,
    /// SMS gateway posts.
    pub sms: Vec<Post>,
    /// Email messages (raw).
    pub email: Vec<String>,
    /// Syslog messages.
    pub syslog: Vec<String>,
}

/// The running receivers.
pub struct Receivers {
    /// What arrived.
    pub inbox: Arc<Mutex<Inbox>>,
    /// `http://…/hook` and `http://…/sms`.
    pub http: SocketAddr,
    /// SMTP port on 127.0.0.1.
    pub smtp_port: u16,
    /// Which SMTP server runs (`aiosmtpd` or `in-test`).
    pub smtp_kind: &'static str,
    /// UDP syslog address.
    pub syslog: SocketAddr,
    aiosmtpd: Option<(Child, PathBuf, tempfile::TempDir)>,
}

impl Drop for Receivers {
    fn drop(&mut self) {
        if let Some((child, _, _)) = self.aiosmtpd.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn take(
    State((inbox, which)): State<(Arc<Mutex<Inbox>>, &'static str)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let post = Post {
        headers,
        body: body.to_vec(),
    };
    let mut inbox = inbox.lock().unwrap();
    if which == "hook" {
        inbox.webhook.push(post);
    } else {
        inbox.sms.push(post);
    }
    StatusCode::OK
}

/// The `aiosmtpd` server: each message's raw content to one file in `dir`.
const AIOSMTPD: &str = r#"
import os, sys
from aiosmtpd.controller import Controller
out, port = sys.argv[1], int(sys.argv[2])
class Keep:
    async def handle_DATA(self, server, session, envelope):
        n = len(os.listdir(out))
        tmp = os.path.join(out, "%06d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(out, "%06d.eml" % n))
        return "250 OK"
c = Controller(Keep(), hostname="127.0.0.1", port=port)
c.start()
print("ready", flush=True)
sys.stdin.read()
"#;

impl Receivers {
    /// Starts every receiver.
    pub async fn start() -> Self {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let app = Router::new()
            .route("/hook", post(take).with_state((inbox.clone(), "hook")))
            .route("/sms", post(take).with_state((inbox.clone(), "sms")));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let syslog = udp.local_addr().unwrap();
        let keep = inbox.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = udp.recv(&mut buf).await {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                keep.lock().unwrap().syslog.push(msg);
            }
        });

        let (smtp_port, smtp_kind, aiosmtpd) = match start_aiosmtpd() {
            Some((port, child, dir, tmp)) => (port, "aiosmtpd", Some((child, dir, tmp))),
            None => (in_test_smtp(inbox.clone()).await, "in-test", None),
        };
        Self {
            inbox,
            http,
            smtp_port,
            smtp_kind,
            syslog,
            aiosmtpd,
        }
    }

    /// Reads the messages aiosmtpd stored into the inbox.
    pub fn collect(&self) {
        let Some((_, dir, _)) = &self.aiosmtpd else {
            return;
        };
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        let mails: Vec<String> = names
            .iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
            .collect();
        self.inbox.lock().unwrap().email = mails;
    }

    /// Waits until `done(inbox)` holds, or fails after `within`.
    pub async fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&Inbox) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            self.collect();
            if done(&self.inbox.lock().unwrap()) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Starts aiosmtpd from `COFFER_PYTHON` when that interpreter has it.
fn start_aiosmtpd() -> Option<(u16, Child, PathBuf, tempfile::TempDir)> {
    let python = std::env::var("COFFER_PYTHON").ok()?;
    let has = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    if !has {
        return None;
    }
    let tmp = tempfile::tempdir().ok()?;
    let dir = tmp.path().join("mail");
    std::fs::create_dir(&dir).ok()?;
    let port = jepsen_tests::cluster::free_port().ok()?;
    let mut child = Command::new(&python)
        .args(["-c", AIOSMTPD])
        .arg(&dir)
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    let mut line = String::new();
    let stdout = child.stdout.take()?;
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).ok()?;
    if line.trim() != "ready" {
        let _ = child.kill();
        return None;
    }
    Some((port, child, dir, tmp))
}

/// A minimal SMTP server (RFC 5321 commands a client sends for one
/// message), for machines without aiosmtpd.
async fn in_test_smtp(inbox: Arc<Mutex<Inbox>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let inbox = inbox.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                let _ = w.write_all(b"220 test ESMTP\r\n").await;
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(d) = data.as_mut() {
                        if line == "." {
                            inbox.lock().unwrap().email.push(std::mem::take(d));
                            data = None;
                            let _ = w.write_all(b"250 OK\r\n").await;
                        } else {
                            d.push_str(line.strip_prefix('.').unwrap_or(&line));
                            d.push('\n');
                        }
                        continue;
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    let answer: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-test\r\n250 8BITMIME\r\n",
                        "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go on\r\n"
                        }
                        "QUIT" => {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            break;
                        }
                        _ => b"502 not implemented\r\n",
                    };
                    let _ = w.write_all(answer).await;
                }
            });
        }
    });
    port
}
