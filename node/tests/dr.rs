//! Disaster recovery on real processes in network namespaces: a 3-node
//! primary and a 2-node DR site (`operator raft join --dr`). The DR
//! replicas refuse writes and never vote; under write load every primary
//! node is SIGKILLed, a quorum of custodians makes a DR operation token on
//! a DR node, `operator dr promote` turns the DR site into a writable
//! cluster, and every write acknowledged more than one second before the
//! kill is there. Prints the measured RPO and RTO.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_client::secrets::SetOptions;
use coffer_client::Client;
use common::{binary, ok_json, operator_cli, quick_client, value_for, wait_exit};
use jepsen_tests::cluster::{ClusterOptions, LocalCluster, Placement};

/// Primary nodes (indexes) and DR nodes.
const PRIMARY: [usize; 3] = [0, 1, 2];
const DR: [usize; 2] = [3, 4];

/// Waits until node `i` reports `want` as its membership: (id, voter).
async fn wait_membership(cluster: &LocalCluster, i: usize, want: &[(u64, bool)]) {
    let client = quick_client(cluster, i);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(p) = client.sys().peers().await {
            let got: Vec<(u64, bool)> = p.peers.iter().map(|p| (p.node_id, p.voter)).collect();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} membership {got:?}, want {want:?}; logs in {}",
                i + 1,
                cluster.dir().display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "node {} has no membership",
            i + 1
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A DR operation token made on node `i` by `threshold` custodians.
async fn dr_token(cluster: &LocalCluster, i: usize, threshold: usize) -> String {
    let client = quick_client(cluster, i);
    let otp = coffer_seal::generate_root::new_otp();
    let started = client
        .sys()
        .generate_dr_token_init(Some(otp.as_str()), None)
        .await
        .unwrap();
    let nonce = started.nonce.expect("a nonce");
    let mut encoded = None;
    for share in cluster.shares.iter().take(threshold) {
        let step = client
            .sys()
            .generate_root_update(&nonce, share)
            .await
            .unwrap();
        encoded = step.encoded_token;
    }
    let encoded = encoded.expect("the quorum produced a token");
    coffer_seal::generate_root::decode_otp(&encoded, &otp)
        .unwrap()
        .to_string()
}

/// Names written and when each write was acknowledged.
type Acked = Arc<Mutex<Vec<(String, Instant)>>>;

/// Writes `w-N` through the primary until stopped, recording each
/// acknowledgement's time.
fn write_load(
    client: Client,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (Acked, tokio::task::JoinHandle<()>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let log = acked.clone();
    let task = tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let name = format!("s-w-{n}");
            let (secrets, value, opts) =
                (client.secrets(), value_for(&name), SetOptions::default());
            let write = secrets.set(&name, &value, &opts);
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), write).await {
                log.lock().unwrap().push((name, Instant::now()));
            }
        }
    });
    (acked, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dr_site_takes_over_when_the_primary_is_lost() {
    jepsen_tests::netns::check_available().unwrap();
    let mut cluster = LocalCluster::start(
        &binary(),
        ClusterOptions {
            placement: Placement::Netns,
            nodes: 5,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    cluster.init(0, 3, 2).await.unwrap();
    // Nodes 4 and 5 leave the bootstrap membership and come back empty as
    // the DR site.
    let admin = cluster.node_client(0).unwrap();
    for i in DR {
        admin.sys().remove(i as u64 + 1).await.unwrap();
        cluster.wipe_and_start_fresh(i).unwrap();
    }
    for i in DR {
        let node = &cluster.nodes[i];
        let (id, api, addr) = (
            node.id.to_string(),
            node.api_addr.clone(),
            node.cluster_addr.clone(),
        );
        let token = cluster.root_token.clone();
        let args = [
            "raft",
            "join",
            "--dr",
            "--node-id",
            &id,
            "--api-addr",
            &api,
            "--cluster-addr",
            &addr,
        ];
        ok_json(
            operator_cli(&cluster, 0, token.as_deref(), &args),
            "raft join --dr",
        );
        cluster.unseal(i).await.unwrap();
    }
    let site = [(1, true), (2, true), (3, true), (4, false), (5, false)];
    for i in [0, 3, 4] {
        wait_membership(&cluster, i, &site).await;
    }

    // A DR replica serves reads (through the primary's leader) and refuses
    // writes with a clear error.
    let primary = cluster
        .client_config(PRIMARY.iter().map(|i| cluster.nodes[*i].url()).collect())
        .map(|c| Client::new(c).unwrap())
        .unwrap();
    primary
        .secrets()
        .set("s-before", &value_for("s-before"), &SetOptions::default())
        .await
        .unwrap();
    let dr1 = quick_client(&cluster, 3);
    let read = dr1.secrets().get("s-before", None).await.unwrap();
    assert_eq!(read.value.as_deref(), Some(value_for("s-before").as_str()));
    let refused = dr1
        .secrets()
        .set("s-on-dr", "x", &SetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(503), "{refused}");
    assert!(
        refused.to_string().contains("disaster-recovery replica"),
        "{refused}"
    );
    // Promotion is refused while the primary is alive.
    let token = dr_token(&cluster, 3, 2).await;
    let early = operator_cli(&cluster, 3, None, &["dr", "promote", "--token", &token]);
    assert!(!early.status.success(), "promoted with a live primary");
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("not lost"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );

    // Write load on the primary, then every primary node is SIGKILLed.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (acked, load) = write_load(primary.clone(), stop.clone());
    let mut primary_commit = 0;
    let probe = quick_client(&cluster, 0);
    let load_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < load_until {
        if let Ok(h) = probe.sys().health().await {
            primary_commit = primary_commit.max(h.body.commit_index.unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in PRIMARY {
        cluster.kill(i);
    }
    let killed = Instant::now();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 5, "only {} writes under load", acked.len());
    let dr_applied = quick_client(&cluster, 3)
        .sys()
        .health()
        .await
        .ok()
        .and_then(|h| h.body.applied_index)
        .unwrap_or(0);

    // Custodians make a DR operation token on DR node 4 and promote it
    // once it no longer hears from the primary.
    let token = dr_token(&cluster, 3, 2).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let promoted = loop {
        let out = operator_cli(&cluster, 3, None, &["dr", "promote", "--token", &token]);
        if out.status.success() {
            break ok_json(out, "dr promote");
        }
        assert!(
            Instant::now() < deadline,
            "dr promote: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    eprintln!("promote: {promoted}");
    // The promoted node restarts itself (EX_TEMPFAIL) to install the new
    // membership; its supervisor (here the test) starts it again.
    let status = wait_exit(&mut cluster, 3, Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(75), "{status:?}");
    cluster.restart(3).unwrap();
    cluster.unseal(3).await.unwrap();
    let site_client = cluster
        .client_config(DR.iter().map(|i| cluster.nodes[*i].url()).collect())
        .map(|c| Client::new(c).unwrap())
        .unwrap();
    let mut attempt = 0;
    let rto = loop {
        attempt += 1;
        let name = format!("s-after-{attempt}");
        let (secrets, value) = (site_client.secrets(), value_for(&name));
        let opts = SetOptions::default();
        let write = secrets.set(&name, &value, &opts);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(3), write).await {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(120),
            "no write on the DR site within 120 s; logs in {}",
            cluster.dir().display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Node 5 becomes a voter of the new cluster and refuses nothing.
    wait_membership(&cluster, 3, &[(4, true), (5, true)]).await;
    wait_membership(&cluster, 4, &[(4, true), (5, true)]).await;
    quick_client(&cluster, 4)
        .secrets()
        .set("s-via-5", &value_for("s-via-5"), &SetOptions::default())
        .await
        .unwrap();

    // Every write acknowledged more than 1 s before the kill is on the DR
    // site; the ones missing are the RPO.
    let reader = quick_client(&cluster, 4);
    let mut missing = Vec::new();
    for (name, at) in &acked {
        match reader.secrets().get(name, None).await {
            Ok(got) => assert_eq!(got.value.as_deref(), Some(value_for(name).as_str())),
            Err(e) if e.status() == Some(404) => missing.push((name.clone(), *at)),
            Err(e) => panic!("{name}: {e}"),
        }
    }
    for (name, at) in &missing {
        assert!(
            killed.duration_since(*at) <= Duration::from_secs(1),
            "{name}, acknowledged {:?} before the kill, is lost",
            killed.duration_since(*at)
        );
    }
    let rpo_time = missing
        .iter()
        .map(|(_, at)| killed.duration_since(*at))
        .max()
        .unwrap_or_default();
    eprintln!(
        "DR: {} writes acknowledged under load, {} missing after promotion; RPO {} entries / \
         {} ms (last primary commit index seen {primary_commit}, DR applied {dr_applied} at \
         the kill); RTO {} ms (kill -> first write on the DR site, including the token \
         ceremony, the {} ms leader-silence guard, the restart and the unseal)",
        acked.len(),
        missing.len(),
        missing.len(),
        rpo_time.as_millis(),
        rto.as_millis(),
        3000,
    );

    // The whole old primary comes back with its old membership and data.
    // It reaches its DR members, which refuse it as a foreign cluster: it
    // fences itself and accepts no write, and the DR site is untouched.
    for i in PRIMARY {
        cluster.restart(i).unwrap();
    }
    for i in PRIMARY {
        cluster.unseal(i).await.unwrap();
    }
    let old = cluster
        .client_config(PRIMARY.iter().map(|i| cluster.nodes[*i].url()).collect())
        .map(|mut c| {
            c.timeout = Duration::from_secs(5);
            Client::new(c).unwrap()
        })
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let mut attempts = 0;
    while Instant::now() < until {
        attempts += 1;
        let name = format!("s-split-{attempts}");
        let write = old.secrets().set(&name, "x", &SetOptions::default()).await;
        let err = write.expect_err("the old primary accepted a write");
        eprintln!("old primary refused {name}: {err}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let fenced = quick_client(&cluster, 0)
        .sys()
        .health()
        .await
        .map(|h| h.body.problems)
        .unwrap_or_default();
    eprintln!("old primary node 1 problems: {fenced:?}");
    assert!(
        site_client.secrets().get("s-split-1", None).await.is_err(),
        "a split write reached the DR site"
    );
    wait_membership(&cluster, 3, &[(4, true), (5, true)]).await;
    site_client
        .secrets()
        .set("s-last", &value_for("s-last"), &SetOptions::default())
        .await
        .unwrap();
}
