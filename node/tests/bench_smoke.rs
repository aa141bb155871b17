//! Smoke tests of the benchmark tooling: they check that `coffer bench` and
//! the side-by-side runner run and produce their outputs, with tiny sizes.
//! They assert shapes, never timings (the full benchmark is not part of the
//! test command).

use std::path::PathBuf;
use std::process::Command;

use jepsen_tests::bench::{self, BenchOptions};
use jepsen_tests::cluster::{ClusterOptions, LocalCluster};

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_coffer"))
}

fn bench_json(cluster: &LocalCluster, workload: &str, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(binary())
        .args(["bench", "--workload", workload, "-o", "json"])
        .args(["--concurrency=2", "--warmup=0", "--keys=5"])
        .args(if extra.is_empty() {
            &["--duration=0.3"][..]
        } else {
            extra
        })
        .arg("--addr")
        .arg(cluster.nodes[0].url())
        .arg("--ca-cert")
        .arg(&cluster.ca_path)
        .env("COFFER_TOKEN", cluster.root_token.as_deref().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn coffer_bench_reports_writes_and_reads_as_json() {
    let mut cluster = LocalCluster::start(
        &binary(),
        ClusterOptions {
            nodes: 1,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    cluster.init(0, 1, 1).await.unwrap();
    let sign: &[&str] = &["--duration=1", "--key-type=EC-P256"];
    for (workload, extra) in [("set", &[][..]), ("get", &[]), ("sign", sign)] {
        let v = bench_json(&cluster, workload, extra);
        assert_eq!(v["workload"], workload);
        assert!(v["ops"].as_u64().unwrap() > 0, "{v}");
        assert_eq!(v["errors"], 0, "{v}");
        assert!(v["p50_us"].as_u64().unwrap() <= v["p99_us"].as_u64().unwrap());
        assert!(v["throughput"].as_f64().unwrap() > 0.0);
    }
    // The value written by the set workload is readable with the plain CLI.
    let got = cluster
        .client()
        .unwrap()
        .secrets()
        .get("bench-0", None)
        .await
        .unwrap();
    assert_eq!(got.value.as_deref().map(str::len), Some(256));
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_writes_table_json_and_plot() {
    let out = tempfile::tempdir().unwrap();
    let opts = BenchOptions {
        coffer: binary(),
        out: out.path().to_path_buf(),
        quick: true,
        only: vec!["single-read".into(), "hsm".into()],
        // Long enough that both sides complete requests on a loaded 2-core
        // machine (0.3 s gave the TLS peer no completed request at load 13).
        duration: Some(1.0),
        node_config: None,
        scale_sizes: Vec::new(),
    };
    let result = bench::run(&opts).await.unwrap();
    let read = result
        .rows
        .iter()
        .find(|r| r.name == "read on 1 node")
        .expect("single-node read row");
    assert!(read.coffer.is_some(), "{}", read.note);
    assert!(read.peer.is_some(), "{}", read.note);
    assert!(read.ratio().is_some());
    let md = std::fs::read_to_string(out.path().join("bench.md")).unwrap();
    assert!(md.contains("| read on 1 node |"), "{md}");
    let hsm: Vec<_> = result
        .rows
        .iter()
        .filter(|r| r.name.contains("HSM"))
        .collect();
    assert_eq!(hsm.len(), 2, "{md}");
    for r in hsm {
        assert!(r.ratio().is_some(), "{}: {}", r.name, r.note);
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("bench.json")).unwrap()).unwrap();
    assert!(json["rows"].as_array().unwrap().len() >= 3);
    // The 1-node read is measured at the crypto rows' client count and at
    // the top one: a family, charted against its peer.
    let reads: Vec<usize> = result
        .rows
        .iter()
        .filter(|r| r.name == "read on 1 node")
        .map(|r| r.concurrency)
        .collect();
    assert_eq!(reads.len(), 2, "{md}");
    assert_ne!(reads[0], reads[1]);
    let svg = std::fs::read_to_string(out.path().join("throughput.svg")).unwrap();
    assert!(svg.contains("read on 1 node"), "the family's panel");
    assert!(svg.contains("TLS hello-world"), "its peer's line");
}
