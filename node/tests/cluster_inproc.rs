//! Three in-process cluster members over real mTLS gRPC and redb storage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer::cluster::{cluster_store, pb, ClusterConfig, ClusterNode};
use coffer::engine::store::{Store, StoreError};
use coffer::seal::SealManager;
use coffer::tls::{self, TlsMaterial};
use raft_store::{Mutation, Node, NodeId, Request, Txn};
use tempfile::TempDir;

struct Ca {
    pem: String,
    key: zeroize::Zeroizing<String>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let (pem, key) = tls::generate_ca(name).unwrap();
        Ca { pem, key }
    }

    fn material(&self, name: &str) -> TlsMaterial {
        let (cert_pem, key_pem) =
            tls::issue_cert(&self.pem, &self.key, name, &["127.0.0.1".to_string()]).unwrap();
        TlsMaterial {
            ca_pem: self.pem.clone(),
            cert_pem,
            key_pem,
        }
    }
}

struct Cluster {
    ca: Ca,
    nodes: BTreeMap<NodeId, Arc<ClusterNode>>,
    _dirs: Vec<TempDir>,
}

fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

async fn start_node(ca: &Ca, id: NodeId, dirs: &mut Vec<TempDir>) -> Arc<ClusterNode> {
    start_node_tuned(ca, id, dirs, Default::default()).await
}

async fn start_node_tuned(
    ca: &Ca,
    id: NodeId,
    dirs: &mut Vec<TempDir>,
    tuning: coffer::cluster::RaftTuning,
) -> Arc<ClusterNode> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ClusterConfig {
        node_id: id,
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        advertise: Node::default(),
        data_dir: dir.path().to_path_buf(),
        tls: ca.material(&format!("n{id}")),
        stale_reads: false,
        snapshot_logs: coffer::cluster::SNAPSHOT_LOGS,
        tuning,
        join_token: None,
    };
    dirs.push(dir);
    ClusterNode::start(cfg).await.unwrap()
}

fn advertised(node: &ClusterNode) -> Node {
    let addr = node.local_addr().to_string();
    Node {
        api_addr: addr.clone(),
        cluster_addr: addr,
    }
}

async fn start_cluster(n: u64) -> Cluster {
    start_cluster_tuned(n, coffer::cluster::DEFAULT_PROPOSALS_IN_FLIGHT).await
}

/// [`start_cluster`] with `[raft] proposals_in_flight` set.
async fn start_cluster_tuned(n: u64, proposals_in_flight: usize) -> Cluster {
    init_crypto();
    let ca = Ca::new("test cluster CA");
    let mut dirs = Vec::new();
    let mut nodes = BTreeMap::new();
    let tuning = coffer::cluster::RaftTuning {
        proposals_in_flight,
        ..Default::default()
    };
    for id in 1..=n {
        let node = start_node_tuned(&ca, id, &mut dirs, tuning.clone()).await;
        nodes.insert(id, node);
    }
    let members: BTreeMap<NodeId, Node> =
        nodes.iter().map(|(id, n)| (*id, advertised(n))).collect();
    nodes[&1].bootstrap(members.clone()).await.unwrap();
    // A second bootstrap (e.g. a restarted node re-running its init) is a no-op.
    nodes[&2].bootstrap(members).await.unwrap();
    let cluster = Cluster {
        ca,
        nodes,
        _dirs: dirs,
    };
    cluster.wait_leader(Duration::from_secs(10)).await;
    cluster
}

impl Cluster {
    /// Waits until every live node agrees on one leader; returns its id.
    async fn wait_leader(&self, within: Duration) -> NodeId {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<Option<NodeId>> =
                self.nodes.values().map(|n| n.status().leader_id).collect();
            if let Some(Some(l)) = leaders.first() {
                let agreed = leaders.iter().all(|x| *x == Some(*l));
                if agreed && self.nodes.contains_key(l) && self.nodes[l].status().is_leader {
                    return *l;
                }
            }
            assert!(Instant::now() < deadline, "no leader elected: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn followers(&self, leader: NodeId) -> Vec<Arc<ClusterNode>> {
        self.nodes
            .iter()
            .filter(|(id, _)| **id != leader)
            .map(|(_, n)| n.clone())
            .collect()
    }

    async fn shutdown(&self) {
        for n in self.nodes.values() {
            n.shutdown().await;
        }
    }
}

fn put(id: &str, key: &[u8], value: &[u8]) -> Request {
    Request {
        request_id: Some(id.to_string()),
        time_ms: 0,
        txn: Txn {
            compare: vec![],
            mutations: vec![Mutation::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            }],
            result: b"done".to_vec(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_write_via_follower_is_visible_on_other_follower_after_fence() {
    let c = start_cluster(3).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let f = c.followers(leader);

    let resp = f[0].propose(put("w1", b"k/a", b"v1")).await.unwrap();
    assert!(resp.succeeded);
    assert!(!resp.deduplicated);
    // The proposing follower has applied its own write on return.
    assert_eq!(f[0].get_raw(b"k/a").unwrap().unwrap().value, b"v1");

    f[1].read_fence().await.unwrap();
    let got = f[1].get_raw(b"k/a").unwrap().unwrap();
    assert_eq!(got.value, b"v1");
    assert_eq!(got.revision, resp.revision);
    let scanned = f[1].scan_raw(b"k/", None, 10).unwrap();
    assert_eq!(scanned.len(), 1);

    let st = c.nodes[&leader].status();
    assert!(st.is_leader && st.commit_index >= resp.revision && st.applied_index >= resp.revision);
    c.shutdown().await;
}

/// A put of `key` that holds only while `key` does not exist.
fn create(id: &str, key: &[u8], value: &[u8]) -> Request {
    let mut req = put(id, key, value);
    req.txn.compare = vec![raft_store::Compare::Revision {
        key: key.to_vec(),
        revision: 0,
    }];
    req
}

/// Concurrent writes through every member: each gets its own answer, a
/// key's revision names the one write that stored it, racing creates of
/// one key let exactly one through, a request id sent twice applies once —
/// and, with batching on (the default), writes shared entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_entries_and_each_gets_its_own_answer() {
    for in_flight in [coffer::cluster::DEFAULT_PROPOSALS_IN_FLIGHT, 0] {
        let c = start_cluster_tuned(3, in_flight).await;
        let nodes: Vec<Arc<ClusterNode>> = c.nodes.values().cloned().collect();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..240usize {
            let node = nodes[i % nodes.len()].clone();
            let req = match i % 4 {
                // Racing creates of one key.
                0 => create(&format!("hot-{i}"), b"k/hot", format!("v{i}").as_bytes()),
                // Pairs under one request id (i and i + 1 share id d-{i/2}).
                1 | 2 => create(
                    &format!("d-{}", i / 4),
                    format!("k/d{}", i / 4).as_bytes(),
                    b"dup",
                ),
                _ => create(
                    &format!("w-{i}"),
                    format!("k/w{i}").as_bytes(),
                    format!("v{i}").as_bytes(),
                ),
            };
            tasks.spawn(async move { (i, node.propose(req).await.unwrap()) });
        }
        let mut answers = Vec::new();
        while let Some(done) = tasks.join_next().await {
            answers.push(done.unwrap());
        }
        let leader = c.wait_leader(Duration::from_secs(5)).await;
        let check = &c.nodes[&leader];
        check.read_fence().await.unwrap();
        let hot: Vec<_> = answers
            .iter()
            .filter(|(i, r)| i % 4 == 0 && r.succeeded)
            .collect();
        assert_eq!(hot.len(), 1, "exactly one racing create of one key applies");
        let stored = check.get_raw(b"k/hot").unwrap().unwrap();
        assert_eq!(stored.value, format!("v{}", hot[0].0).into_bytes());
        assert_eq!(stored.revision, hot[0].1.revision);
        for (i, r) in answers.iter().filter(|(i, _)| i % 4 == 3) {
            assert!(r.succeeded && !r.deduplicated, "write {i}");
            let stored = check
                .get_raw(format!("k/w{i}").as_bytes())
                .unwrap()
                .unwrap();
            assert_eq!(
                (stored.revision, stored.value.clone()),
                (r.revision, format!("v{i}").into_bytes())
            );
            assert_eq!(r.result, b"done");
        }
        for pair in 0..60usize {
            let both: Vec<_> = answers
                .iter()
                .filter(|(i, _)| matches!(i % 4, 1 | 2) && i / 4 == pair)
                .map(|(_, r)| r)
                .collect();
            assert_eq!(both.len(), 2);
            assert!(both.iter().all(|r| r.succeeded), "pair {pair}: {both:?}");
            assert_eq!(
                both.iter().filter(|r| r.deduplicated).count(),
                1,
                "pair {pair}"
            );
            assert_eq!(both[0].revision, both[1].revision, "pair {pair}");
        }
        let applied: Vec<u64> = answers
            .iter()
            .filter(|(_, r)| r.succeeded && !r.deduplicated)
            .map(|(_, r)| r.revision)
            .collect();
        let entries: std::collections::BTreeSet<u64> = applied.iter().copied().collect();
        if in_flight == 0 {
            assert_eq!(
                entries.len(),
                applied.len(),
                "batching off: an entry per write"
            );
        } else {
            assert!(
                entries.len() < applied.len(),
                "240 concurrent writes took {} entries for {} writes",
                entries.len(),
                applied.len()
            );
        }
        c.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_retried_request_id_applies_once() {
    let c = start_cluster(3).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let f = c.followers(leader);

    let first = f[0].propose(put("same-id", b"k/x", b"one")).await.unwrap();
    // The retry carries the same id but would overwrite the value if applied.
    let retry = c.nodes[&leader]
        .propose(put("same-id", b"k/x", b"two"))
        .await
        .unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.revision, first.revision);
    assert_eq!(retry.result, first.result);
    f[1].read_fence().await.unwrap();
    assert_eq!(f[1].get_raw(b"k/x").unwrap().unwrap().value, b"one");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_fails_over_when_leader_stops() {
    let mut c = start_cluster(3).await;
    let old = c.wait_leader(Duration::from_secs(5)).await;
    c.nodes[&old]
        .propose(put("before", b"k/f", b"1"))
        .await
        .unwrap();

    let stopped = Instant::now();
    let leader_node = c.nodes.remove(&old).unwrap();
    leader_node.shutdown().await;
    eprintln!("leader shutdown took {:?}", stopped.elapsed());
    let new = c.wait_leader(Duration::from_secs(10)).await;
    let failover = stopped.elapsed();
    eprintln!("failover took {failover:?}");
    assert_ne!(new, old);
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );

    // Both survivors accept writes again (one forwards to the new leader).
    for (i, n) in c.nodes.values().enumerate() {
        let r = n
            .propose(put(&format!("after{i}"), b"k/f", b"2"))
            .await
            .unwrap();
        assert!(r.succeeded);
    }
    for n in c.nodes.values() {
        n.read_fence().await.unwrap();
        assert_eq!(n.get_raw(b"k/f").unwrap().unwrap().value, b"2");
    }
    c.shutdown().await;
}

async fn read_index_with(tls: TlsMaterial, addr: &str) -> Result<(), String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls::grpc_client_tls(&tls, "127.0.0.1"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2));
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    let mut client = pb::forward_client::ForwardClient::new(channel);
    client
        .read_index(pb::Empty {})
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_rejects_peer_with_cert_from_other_ca() {
    let c = start_cluster(3).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let addr = c.nodes[&leader].local_addr().to_string();

    // Same trust anchor, so only the server's client-cert check can fail.
    let good = c.ca.material("client");
    read_index_with(good, &addr).await.unwrap();
    let rogue = Ca::new("rogue CA").material("intruder");
    let impostor = TlsMaterial {
        ca_pem: c.ca.pem.clone(),
        ..rogue
    };
    assert!(read_index_with(impostor, &addr).await.is_err());

    // A member with a foreign-CA certificate never joins: the leader cannot
    // replicate to it, so the join gives up instead of adding it.
    let mut dirs = Vec::new();
    let foreign_ca = Ca::new("foreign CA");
    let outsider = start_node(&foreign_ca, 9, &mut dirs).await;
    let joined = tokio::time::timeout(
        Duration::from_secs(3),
        c.nodes[&leader].join(9, advertised(&outsider)),
    )
    .await;
    assert!(!matches!(joined, Ok(Ok(_))), "foreign node joined");
    let peers = c.nodes[&leader].peers().await.unwrap();
    assert!(
        peers.peers.iter().all(|p| p.node_id != 9 || !p.voter),
        "foreign node became a voter: {peers:?}"
    );
    outsider.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_join_and_remove_member_through_follower() {
    let mut c = start_cluster(3).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let f = c.followers(leader);
    f[0].propose(put("pre", b"k/j", b"x")).await.unwrap();

    let mut dirs = Vec::new();
    let n4 = start_node(&c.ca, 4, &mut dirs).await;
    let peers = f[0].join(4, advertised(&n4)).await.unwrap();
    let p4 = peers.peers.iter().find(|p| p.node_id == 4).unwrap();
    assert!(p4.voter);
    assert_eq!(peers.peers.len(), 4);
    // The new member has the data written before it joined.
    n4.read_fence().await.unwrap();
    assert_eq!(n4.get_raw(b"k/j").unwrap().unwrap().value, b"x");

    let peers = f[1].remove(4).await.unwrap();
    assert!(peers.peers.iter().all(|p| p.node_id != 4));
    assert_eq!(peers.peers.len(), 3);
    n4.shutdown().await;
    c.nodes.remove(&4);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_store_encrypts_at_rest_and_refuses_when_sealed() {
    let c = start_cluster(3).await;
    let leader = c.wait_leader(Duration::from_secs(5)).await;
    let f = c.followers(leader);

    let material = coffer::seal::initialize(1, 1).unwrap();
    let seal_a = Arc::new(SealManager::new());
    seal_a.unseal_with(&material);
    let seal_b = Arc::new(SealManager::new());
    seal_b.unseal_with(&material);
    let a = cluster_store(f[0].clone(), seal_a);
    let b = cluster_store(f[1].clone(), seal_b);

    let txn = Txn {
        compare: vec![],
        mutations: vec![Mutation::Put {
            key: b"vault/v1".to_vec(),
            value: b"plaintext-record".to_vec(),
        }],
        result: b"created".to_vec(),
    };
    let out = a.commit(Some("req-1"), txn.clone()).await.unwrap();
    assert!(out.succeeded && !out.deduplicated);
    assert_eq!(&out.result[..], b"created");
    let again = a.commit(Some("req-1"), txn).await.unwrap();
    assert!(again.deduplicated);
    assert_eq!(&again.result[..], b"created");

    b.read_fence().await.unwrap();
    let e = b.get(b"vault/v1").unwrap().unwrap();
    assert_eq!(&e.value[..], b"plaintext-record");
    assert_eq!(e.revision, out.revision);
    let raw = f[1].get_raw(b"vault/v1").unwrap().unwrap();
    assert!(!raw
        .value
        .windows(b"plaintext".len())
        .any(|w| w == b"plaintext"));

    let blob = a.seal_blob(b"backup", b"secret").unwrap();
    assert_eq!(&b.open_blob(b"backup", &blob).unwrap()[..], b"secret");
    assert!(b.open_blob(b"other-purpose", &blob).is_err());
    // A blob from a client that does not open (a tampered backup) is
    // refused; it says nothing about this node's own state.
    assert_eq!(f[1].corrupt(), None);

    let sealed = cluster_store(f[1].clone(), Arc::new(SealManager::new()));
    assert!(matches!(sealed.get(b"vault/v1"), Err(StoreError::Sealed)));
    let r = sealed.commit(None, Txn::default()).await;
    assert!(matches!(r, Err(StoreError::Sealed)), "{r:?}");
    assert!(f[1].get_raw(b"vault/v1").unwrap().is_some());
    c.shutdown().await;
}
