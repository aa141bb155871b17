//! The short fault-injection suite (every nemesis at least once) must pass
//! on the real cluster: linearizable registers, no lost writes, no double
//! applies, converged replicas after every heal.

use jepsen_tests::runner::coffer_binary;
use jepsen_tests::suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_suite_passes() {
    let out = tempfile::tempdir().unwrap();
    let reports = suite::run(out.path(), true, 1, None, coffer_binary().unwrap())
        .await
        .unwrap();
    let summary = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    println!("{summary}");
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(jepsen_tests::report::markdown)
        .collect();
    assert!(failed.is_empty(), "failed runs:\n{}", failed.join("\n"));
    // Faults were injected and the cluster came back after each one.
    for r in &reports {
        if r.config.nemesis != jepsen_tests::nemesis::NemesisKind::None {
            assert!(
                !r.faults.is_empty(),
                "{:?}: no fault injected",
                r.config.nemesis
            );
            assert!(r.stats.recovery_ms.is_some_and(f64::is_finite));
        }
        assert!(
            r.stats.ok > 50,
            "{:?}: too few acknowledged ops",
            r.config.nemesis
        );
    }
}
