//! A follower cut off from its peers must hear from the leader again soon
//! after the partition heals, not after TCP's retransmission backoff on
//! the stalled connection (which grows with the partition's length: 5.4 s
//! after an 8 s cut before the peer connections got a 1 s / 2 s HTTP/2
//! keepalive; 150-250 ms after). The bound leaves room for one lost SYN
//! (1 s) of the redial.

use std::time::{Duration, Instant};

use coffer_client::secrets::SetOptions;
use jepsen_tests::cluster::{ClusterOptions, LocalCluster, Placement};
use jepsen_tests::netns;
use jepsen_tests::runner::coffer_binary;

/// How long the follower is cut off.
const CUT: Duration = Duration::from_secs(8);

async fn in_contact(cluster: &LocalCluster, i: usize) -> bool {
    let mut cfg = cluster.client_config(vec![cluster.nodes[i].url()]).unwrap();
    cfg.timeout = Duration::from_millis(500);
    cfg.max_attempts = 1;
    let client = coffer_client::Client::new(cfg).unwrap();
    client
        .sys()
        .health()
        .await
        .is_ok_and(|h| h.status == 429 && h.body.problems.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_follower_hears_from_the_leader_within_three_seconds() {
    netns::check_available().unwrap();
    let options = ClusterOptions {
        placement: Placement::Netns,
        max_leader_silence_ms: Some(1000),
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&coffer_binary().unwrap(), options).unwrap();
    cluster.init(0, 1, 1).await.unwrap();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .unwrap();
    let follower = (leader + 1) % 3;
    let client = cluster.client().unwrap();
    // Writes while the follower is cut off: the leader keeps sending to it.
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{i}");
                let _ = client
                    .secrets()
                    .set(&name, &"x".repeat(4000), &SetOptions::default())
                    .await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let net = cluster.netns().unwrap();
    for other in (0..3).filter(|&o| o != follower) {
        net.cut(follower, other).unwrap();
    }
    tokio::time::sleep(CUT).await;
    // The leader's TCP connections to the follower as the partition heals
    // (retransmission backoff, unacknowledged bytes), for the failure text.
    let sockets = std::process::Command::new("ip")
        .args(["netns", "exec", &net.ns(leader), "ss", "-tin", "dst"])
        .arg(net.ip(follower))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    net.heal().unwrap();
    let healed = Instant::now();
    while !in_contact(&cluster, follower).await {
        assert!(
            healed.elapsed() < Duration::from_secs(30),
            "no contact 30 s after the heal"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = healed.elapsed();
    writer.abort();
    eprintln!("n{} back in contact {after:?} after the heal", follower + 1);
    assert!(
        after < Duration::from_secs(3),
        "n{} heard from the leader only {after:?} after an {CUT:?} partition healed; \
         the leader's sockets to it at the heal:\n{sockets}",
        follower + 1
    );
}
