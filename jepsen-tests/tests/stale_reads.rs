//! Proof that the checker bites: with the test-only flag that serves reads
//! without ReadIndex, a register run under partitions must be reported as
//! not linearizable (with a counterexample), not merely "unknown".

use std::time::Duration;

use jepsen_tests::checker::Verdict;
use jepsen_tests::nemesis::NemesisKind;
use jepsen_tests::runner::{self, coffer_binary};
use jepsen_tests::suite;
use jepsen_tests::workload::WorkloadKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_under_partitions_are_not_linearizable() {
    let out = tempfile::tempdir().unwrap();
    let mut cfg = suite::config(
        (WorkloadKind::Register, NemesisKind::PartitionRandom, 3, 15),
        7,
        coffer_binary().unwrap(),
        out.path().to_path_buf(),
    );
    cfg.stale_reads = true;
    cfg.check_budget = Duration::from_secs(60);
    let report = runner::run(cfg).await.unwrap();
    let lin = report
        .checks
        .iter()
        .find(|c| c.name == "linearizable")
        .expect("linearizability was checked");
    assert!(
        matches!(&lin.verdict, Verdict::Fail(m) if m.contains("no linearization")),
        "stale reads went unnoticed: {:?}",
        lin.verdict
    );
    let md = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert!(md.contains("linearizable FAIL"));
    assert!(out.path().join("latency.svg").exists());
}
