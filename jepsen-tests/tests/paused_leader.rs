//! A stopped leader (SIGSTOP: a frozen VM, a stalled disk, a long GC) must
//! be replaced while it stays stopped. Found by the suite's `mixed` run on
//! 5 nodes: the followers that had never opened a connection to the leader
//! asked it for a pre-vote over a new connection; the kernel of the stopped
//! process completed the TCP handshake, the TLS handshake never finished,
//! and the 250 ms pre-vote deadline only started once a connection was
//! ready — so their election drivers waited for as long as the leader was
//! stopped, and no leader was elected for the whole 4.5 s pause.
//!
//! Here no client traffic runs, so no follower has a connection to the
//! leader: without a deadline on connection setup no election can start.

use std::time::{Duration, Instant};

use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
use jepsen_tests::runner::coffer_binary;

/// How long the leader stays stopped; failover takes about a second.
const PAUSE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_is_replaced_while_it_stays_stopped() {
    let mut cluster =
        LocalCluster::start(&coffer_binary().unwrap(), ClusterOptions::default()).unwrap();
    cluster.init(0, 1, 1).await.unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    cluster.signal(leader, libc::SIGSTOP).unwrap();
    let stopped = Instant::now();
    let mut replaced = None;
    while stopped.elapsed() < PAUSE {
        for i in (0..cluster.nodes.len()).filter(|&i| i != leader) {
            let mut cfg = cluster.client_config(vec![cluster.nodes[i].url()]).unwrap();
            cfg.timeout = Duration::from_millis(500);
            cfg.max_attempts = 1;
            let client = coffer_client::Client::new(cfg).unwrap();
            if let Ok(h) = client.sys().health().await {
                if h.status == 200 {
                    replaced = Some((i, stopped.elapsed()));
                }
            }
        }
        if replaced.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.signal(leader, libc::SIGCONT).unwrap();
    let (new_leader, after) = replaced.unwrap_or_else(|| {
        panic!(
            "no node took over from the stopped leader n{} within {PAUSE:?}; logs in {}",
            leader + 1,
            cluster.dir().display()
        )
    });
    eprintln!(
        "n{} took over from stopped n{} after {after:?}",
        new_leader + 1,
        leader + 1
    );
}
