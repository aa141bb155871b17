//! Issue 9 (API half), through the real binary and curl, as a client or an
//! attacker on the network would see it: security headers on every
//! response, error bodies on every error status (including the 414/431 of
//! oversize request heads), 413 for oversize bodies, the Bearer scheme in
//! any case, Retry-After on the sealed 503, DNS-label vault names, and the
//! file modes of what the node writes, whatever its umask.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use coffer_client::{Client, ClientConfig, Request};
use hyper::Method;
use serde_json::Value;

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_coffer")
}

/// A loopback address no other test process is handed (see `jepsen_tests::ports`).
fn free_addr() -> String {
    format!("127.0.0.1:{}", jepsen_tests::ports::free_port().unwrap())
}

/// A `coffer server` process, killed on drop.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `coffer server --dev` in `dir` under `umask` (the shell sets it
/// before exec, as an init system or a careless shell would).
fn start_dev(dir: &Path, api: &str, umask: &str) -> Node {
    let command = format!(
        "umask {umask}; exec \"$0\" server --dev --api-addr {api} --cluster-addr {} --data-dir \"$1\"",
        free_addr()
    );
    let child = Command::new("sh")
        .args(["-c", &command, binary()])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Node(child)
}

/// What curl received.
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    fn assert_security_headers(&self, what: &str) {
        for (name, value) in [
            ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff"),
            ("strict-transport-security", "max-age=31536000"),
            ("x-frame-options", "DENY"),
        ] {
            assert_eq!(self.header(name), value, "{what}: {name}");
        }
    }
}

/// Runs curl against the node with its CA; `http2` picks the protocol.
fn curl(ca: &Path, http2: bool, args: &[&str]) -> Reply {
    let dir = tempfile::tempdir().unwrap();
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .arg(if http2 { "--http2" } else { "--http1.1" })
        .arg("-D")
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(args)
        .output()
        .expect("curl is installed");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = std::fs::read_to_string(&head).unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = std::fs::read(&body).unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("non-JSON body: {}", String::from_utf8_lossy(&body)))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Waits for the dev node to answer health with 200; returns its token.
fn wait_ready(dir: &Path, api: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let token = std::fs::read_to_string(dir.join("root-token")).unwrap_or_default();
        let ca = dir.join("ca.pem");
        if !token.is_empty() && ca.exists() {
            let ok = Command::new("curl")
                .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
                .arg(&ca)
                .arg(format!("https://{api}/v1/sys/health"))
                .output()
                .map(|o| o.stdout == b"200")
                .unwrap_or(false);
            if ok {
                return token.trim().to_owned();
            }
        }
        assert!(Instant::now() < deadline, "dev node not ready in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_response_carries_security_headers_and_an_error_body_in_its_surfaces_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let api = free_addr();
    let _node = start_dev(&data, &api, "022");
    let token = wait_ready(&data, &api);
    let ca = data.join("ca.pem");
    let url = |path: &str| format!("https://{api}{path}");
    let auth = format!("Authorization: Bearer {token}");

    for http2 in [false, true] {
        let proto = if http2 { "HTTP/2" } else { "HTTP/1.1" };
        // A success, a Key Vault error and an operator response.
        let r = curl(&ca, http2, &["-H", &auth, &url("/secrets?api-version=7.4")]);
        assert_eq!(r.status, 200, "{proto}");
        r.assert_security_headers(&format!("{proto} success"));
        let r = curl(
            &ca,
            http2,
            &["-H", &auth, &url("/secrets/absent?api-version=7.4")],
        );
        assert_eq!((r.status, r.code()), (404, "SecretNotFound"), "{proto}");
        r.assert_security_headers(&format!("{proto} error"));
        let r = curl(&ca, http2, &[&url("/v1/sys/seal-status")]);
        assert_eq!(r.status, 200, "{proto}");
        r.assert_security_headers(&format!("{proto} operator"));
        let r = curl(&ca, http2, &[&url("/secrets/absent?api-version=7.4")]);
        assert_eq!((r.status, r.code()), (401, "Unauthorized"), "{proto}");
        r.assert_security_headers(&format!("{proto} challenge"));

        // Router-level 404 and 405, in each surface's format.
        let r = curl(&ca, http2, &[&url("/no/such/route")]);
        assert_eq!((r.status, r.code()), (404, "NotFound"), "{proto}");
        r.assert_security_headers(&format!("{proto} 404"));
        let r = curl(&ca, http2, &[&url("/v1/sys/no-such-route")]);
        assert_eq!(r.status, 404, "{proto}");
        assert!(r.body["errors"][0].is_string(), "{proto}: {}", r.body);
        let r = curl(&ca, http2, &["-X", "DELETE", &url("/v1/sys/health")]);
        assert_eq!(r.status, 405, "{proto}");
        assert!(r.body["errors"][0].as_str().unwrap().contains("DELETE"));
        assert!(r.header("allow").contains("GET"), "{proto}");
        let r = curl(
            &ca,
            http2,
            &["-X", "PATCH", "-H", &auth, &url("/secrets?api-version=7.4")],
        );
        assert_eq!((r.status, r.code()), (405, "MethodNotAllowed"), "{proto}");

        // An oversize URI and header section: hyper's bodiless 414/431 no
        // more, the envelope answers in the surface's format.
        let long = url(&format!(
            "/secrets/x?api-version=7.4&pad={}",
            "a".repeat(20_000)
        ));
        let r = curl(&ca, http2, &[&long]);
        assert_eq!((r.status, r.code()), (414, "RequestUriTooLong"), "{proto}");
        r.assert_security_headers(&format!("{proto} 414"));
        let header_file = dir.path().join("big-header");
        std::fs::write(&header_file, format!("X-Padding: {}\n", "b".repeat(20_000))).unwrap();
        let big = format!("@{}", header_file.display());
        let r = curl(&ca, http2, &["-H", &big, &url("/secrets?api-version=7.4")]);
        assert_eq!(
            (r.status, r.code()),
            (431, "RequestHeaderFieldsTooLarge"),
            "{proto}"
        );
        let r = curl(&ca, http2, &["-H", &big, &url("/v1/sys/health")]);
        assert_eq!(r.status, 431, "{proto}");
        assert!(r.body["errors"][0].is_string(), "{proto}: {}", r.body);

        // An oversize body: 413 with its own message. Over HTTP/2 the
        // node follows its early answer with RST_STREAM(NO_ERROR) (RFC 9113
        // §8.1), which curl 7.88 reports as a stream error while it is still
        // uploading; the HTTP/2 case is sent with hyper's client below.
        if !http2 {
            let body_file = dir.path().join("big-body");
            let value = serde_json::json!({ "value": "x".repeat(300_000) }).to_string();
            std::fs::write(&body_file, value).unwrap();
            let r = curl(
                &ca,
                http2,
                &[
                    "-X",
                    "PUT",
                    "-H",
                    &auth,
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    &format!("@{}", body_file.display()),
                    &url("/secrets/big?api-version=7.4"),
                ],
            );
            assert_eq!(
                (r.status, r.code()),
                (413, "RequestEntityTooLarge"),
                "{proto}"
            );
        }

        // The Bearer scheme is case-insensitive.
        for scheme in ["BEARER", "bearer"] {
            let header = format!("Authorization: {scheme} {token}");
            let r = curl(
                &ca,
                http2,
                &["-H", &header, &url("/secrets?api-version=7.4")],
            );
            assert_eq!(r.status, 200, "{proto} {scheme}: {}", r.body);
        }
    }

    // The oversize body over HTTP/2 (the Coffer client: hyper, h2).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::new(ClientConfig {
            endpoints: vec![url("")],
            token: Some(token.clone()),
            ca_pem: Some(std::fs::read(&ca).unwrap()),
            max_attempts: 1,
            ..ClientConfig::default()
        })
        .unwrap();
        let body = serde_json::json!({ "value": "x".repeat(300_000) });
        for _ in 0..5 {
            let request = Request::new(Method::PUT, "/secrets/big?api-version=7.4")
                .json(&body)
                .unwrap();
            let response = client.send(request).await.unwrap();
            assert_eq!(response.status, 413);
            let value: Value = response.json().unwrap();
            assert_eq!(value["error"]["code"], "RequestEntityTooLarge");
        }
    });

    // Vault names are DNS labels.
    let r = curl(
        &ca,
        false,
        &["-X", "PUT", "-H", &auth, &url("/v1/sys/vaults/-vault")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["errors"][0]
        .as_str()
        .unwrap()
        .contains("vault names"));
    let r = curl(
        &ca,
        false,
        &["-X", "PUT", "-H", &auth, &url("/v1/sys/vaults/team-a")],
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // A sealed node: 503 with Retry-After, for the Key Vault and the
    // operator API alike.
    let r = curl(
        &ca,
        false,
        &["-X", "POST", "-H", &auth, &url("/v1/sys/seal")],
    );
    assert_eq!(r.status, 204);
    r.assert_security_headers("seal");
    let r = curl(&ca, false, &["-H", &auth, &url("/secrets?api-version=7.4")]);
    assert_eq!((r.status, r.code()), (503, "ServiceUnavailable"));
    assert_eq!(r.header("retry-after"), "1");
    r.assert_security_headers("sealed 503");
    let r = curl(&ca, true, &["-H", &auth, &url("/v1/sys/vaults")]);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), "1");
}

/// `(mode, path)` of everything under `dir`.
fn modes_under(dir: &Path) -> Vec<(u32, PathBuf)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        out.push((meta.permissions().mode() & 0o777, path.clone()));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
        }
    }
    out
}

fn assert_owner_only(dir: &Path) {
    let modes = modes_under(dir);
    assert!(modes.len() > 3, "{modes:?}");
    for (mode, path) in modes {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let public_cert = name.ends_with(".pem") && !name.ends_with("-key.pem");
        let expected = if path.is_dir() {
            0o700
        } else if public_cert {
            0o644
        } else {
            0o600
        };
        assert_eq!(mode, expected, "{} is {mode:o}", path.display());
    }
}

#[test]
fn files_are_owner_only_even_under_umask_000() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev");
    let api = free_addr();
    let node = start_dev(&data, &api, "000");
    wait_ready(&data, &api);
    drop(node);
    // Data dir 0700, databases, token, share and keys 0600, certs 0644.
    assert_owner_only(&data);
    assert!(data.join("raft").join("state.redb").is_file());

    let tls = dir.path().join("tls");
    let status = Command::new("sh")
        .args([
            "-c",
            "umask 000; exec \"$0\" operator tls --out \"$1\" --node n1=127.0.0.1",
            binary(),
        ])
        .arg(&tls)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_owner_only(&tls);
}

/// Runs `coffer server --config` until it exits or `wait` passes.
fn run_until(config: &Path, wait: Duration) -> Option<Output> {
    let mut child = Command::new(binary())
        .args(["server", "--config"])
        .arg(config)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn the_server_refuses_an_open_data_dir_or_key_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let status = Command::new(binary())
        .args(["operator", "tls", "--out"])
        .arg(&tls)
        .args(["--node", "n1=127.0.0.1"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("node.toml");
    let text = format!(
        "node_id = 1\ndata_dir = {data:?}\napi_addr = {:?}\ncluster_addr = {:?}\nbootstrap = true\n\
         [tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        free_addr(),
        free_addr(),
        tls.join("ca.pem"),
        tls.join("n1.pem"),
        tls.join("n1-key.pem"),
    );
    std::fs::write(&config, &text).unwrap();

    let refused = run_until(&config, Duration::from_secs(20)).expect("the server must exit");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&data.display().to_string()) && stderr.contains("chmod 700"),
        "{stderr}"
    );
    assert!(
        !data.join("log.wal").exists() && !data.join("log.redb").exists(),
        "nothing opened before the check"
    );

    // A readable key is refused the same way.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = tls.join("n1-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = run_until(&config, Duration::from_secs(20)).expect("the server must exit");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("n1-key.pem") && stderr.contains("chmod 600"),
        "{stderr}"
    );

    // Told otherwise, it starts (and keeps running).
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        &config,
        format!("allow_insecure_permissions = true\n{text}"),
    )
    .unwrap();
    let outcome = run_until(&config, Duration::from_secs(5));
    assert!(
        outcome.is_none(),
        "it exited: {:?}",
        outcome.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
    );
    assert!(data.join("log.wal").exists());
}
