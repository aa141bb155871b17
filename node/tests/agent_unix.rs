//! `coffer agent` on a unix socket: who may use it is decided by the
//! kernel's peer credentials. A process of a listed user id is forwarded
//! (here to a cluster that is not there, so it gets the agent's own `503`
//! after its deadline); a process of any other user — even one that
//! presents a valid application key — is refused with `403`, and nothing
//! is forwarded for it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `curl --unix-socket` as user `uid` (through `setpriv`); (status, body).
fn curl_as(uid: u32, socket: &Path, key: Option<&str>) -> (u16, Value) {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        &format!("--reuid={uid}"),
        &format!("--regid={uid}"),
        "--clear-groups",
        "curl",
        "-sS",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code}",
        "--unix-socket",
    ])
    .arg(socket);
    if let Some(key) = key {
        cmd.args(["-H", &format!("x-coffer-agent-key: {key}")]);
    }
    let out = cmd
        .arg("http://localhost/secrets/db?api-version=7.4")
        .output()
        .expect("running setpriv curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (
        status.trim().parse().expect("status"),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn only_listed_user_ids_may_use_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    // Other users must reach the socket through the directory.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert.pem()).unwrap();
    let socket = dir.path().join("agent.sock");
    let key_file = dir.path().join("app.key");
    // A cluster address where nothing listens: forwarded requests fail
    // over until the (short) deadline.
    let config = format!(
        r#"[agent]
nodes = ["https://127.0.0.1:1"]
ca_cert = "{ca}"
state_dir = "{state}"
unix_socket = "{socket}"
attempt_timeout_secs = 1
request_deadline_secs = 1

[[agent.apps]]
name = "payments"
key_file = "{key}"
unix_uids = [0]
"#,
        ca = ca_path.display(),
        state = dir.path().join("state").display(),
        socket = socket.display(),
        key = key_file.display(),
    );
    let config_path = dir.path().join("agent.toml");
    std::fs::write(&config_path, config).unwrap();
    let log_path = dir.path().join("agent.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["agent", "--config"])
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let started = Instant::now();
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("agent exited").unwrap();
        if line.starts_with("AGENT_SOCKET=") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "agent did not start"
        );
    }
    let key = std::fs::read_to_string(&key_file)
        .unwrap()
        .trim()
        .to_owned();

    // Root (uid 0) is the application: forwarded, no node answers.
    let (status, body) = curl_as(0, &socket, None);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["innererror"]["code"], "AgentNoNode", "{body}");
    // nobody (65534) is not, with or without the application's key.
    for key in [None, Some(key.as_str())] {
        let (status, body) = curl_as(65534, &socket, key);
        assert_eq!(status, 403, "{body}");
        assert_eq!(
            body["error"]["innererror"]["code"], "AgentCallerUnknown",
            "{body}"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("unix socket caller refused"), "{log}");
    assert!(log.contains("65534"), "{log}");
    assert!(!log.contains(&key), "the agent logged an application key");
}
