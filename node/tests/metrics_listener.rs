//! `[metrics]`: `/metrics` on its own HTTPS listener, scraped with a bearer
//! token, through `curl` and checked by `promtool`, against a real node;
//! the API port no longer serves it, and scrapes without the token (or
//! with another) get 401.

use std::process::Command;

use jepsen_tests::cluster::{free_port, ClusterOptions, LocalCluster};

/// `curl` of `url`, with `token` as bearer if given: (HTTP status, body).
fn curl(ca: &std::path::Path, url: &str, token: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .arg(url);
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let out = cmd.output().expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_on_their_own_listener_need_the_scrape_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics-token");
    std::fs::write(&token_file, "scrape-4f1c9e0b7a\n").unwrap();
    let port = free_port().unwrap();
    let cluster = LocalCluster::start_ready(
        &std::path::PathBuf::from(env!("CARGO_BIN_EXE_coffer")),
        ClusterOptions {
            nodes: 1,
            extra_config: Some(format!(
                "[metrics]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = {:?}",
                token_file.display().to_string()
            )),
            ..ClusterOptions::default()
        },
    )
    .await
    .unwrap();
    let ca = cluster.ca_path.clone();
    let metrics = format!("https://127.0.0.1:{port}/metrics");

    let (code, _) = curl(&ca, &metrics, None);
    assert_eq!(code, 401, "no token");
    let (code, body) = curl(&ca, &metrics, Some("scrape-wrong"));
    assert_eq!(code, 401, "wrong token");
    assert!(!body.contains("coffer_"), "a refused scrape shows nothing");

    let (code, body) = curl(&ca, &metrics, Some("scrape-4f1c9e0b7a"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("coffer_sealed 0"), "{body}");
    let text = dir.path().join("metrics.txt");
    std::fs::write(&text, &body).unwrap();
    let check = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", text.display()))
        .output()
        .expect("running promtool");
    assert!(
        check.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The API port no longer answers /metrics, with or without the token.
    let api = format!("{}/metrics", cluster.nodes[0].url());
    let (code, body) = curl(&ca, &api, Some("scrape-4f1c9e0b7a"));
    assert_ne!(code, 200, "{body}");
    assert!(!body.contains("coffer_sealed"));
}
