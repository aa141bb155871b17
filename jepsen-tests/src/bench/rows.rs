//! Every row of the table: how Coffer and its peer are driven.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use coffer_client::load::LoadReport;
use coffer_client::secrets::SetOptions;

use super::report::{average, Measure, Row};
use super::{crypto, etcd::EtcdCluster, hello, hsm, procs, BenchOptions};
use crate::cluster::{ClusterOptions, LocalCluster};

/// Name of the replicated-write rows (also the plot's series).
pub const WRITE_ROW: &str = "replicated write 256 B (3 nodes)";
/// The same with values of a realistic size (secrets go up to 25 KiB).
const LARGE_WRITE_ROW: &str = "replicated write 20 KiB (3 nodes)";
/// Value size of [`LARGE_WRITE_ROW`].
const LARGE_VALUE_SIZE: usize = 20 * 1024;
const READ_ROW: &str = "linearizable read (3 nodes, all members)";
const SINGLE_READ_ROW: &str = "read on 1 node";
/// Secret value size of every Coffer row (and etcd's values).
pub(super) const VALUE_SIZE: usize = 256;
const KEYS: u64 = 1000;

/// A load target: addresses, CA, optional token, and the server processes.
pub(super) struct Target<'a> {
    addrs: Vec<String>,
    ca: &'a Path,
    token: Option<&'a str>,
    pids: Vec<u32>,
    /// Name prefix of in-process server threads (hello-world), if any.
    threads: Option<&'static str>,
}

impl Target<'_> {
    fn cpu(&self) -> f64 {
        procs::total_cpu(&self.pids) + self.threads.map_or(0.0, procs::thread_cpu_seconds)
    }
}

/// Runs `coffer bench` as a child process against `t`, measuring the
/// servers' CPU around it.
pub(super) async fn drive(
    opts: &BenchOptions,
    t: &Target<'_>,
    workload: &str,
    concurrency: usize,
    extra: &[&str],
) -> anyhow::Result<Measure> {
    let mut cmd = tokio::process::Command::new(&opts.coffer);
    cmd.arg("bench")
        .args(["--workload", workload, "-o", "json", "--addr"])
        .arg(t.addrs.join(","))
        .arg("--ca-cert")
        .arg(t.ca)
        .arg(format!("--concurrency={concurrency}"))
        .arg(format!("--duration={}", opts.secs()));
    // Defaults unless the caller overrides them (clap refuses repeats).
    for (flag, value) in [
        ("--warmup", opts.warmup().to_string()),
        ("--keys", KEYS.to_string()),
        ("--value-size", VALUE_SIZE.to_string()),
    ] {
        if !extra.iter().any(|a| a.starts_with(flag)) {
            cmd.arg(format!("{flag}={value}"));
        }
    }
    cmd.args(extra)
        .env_remove("COFFER_TOKEN")
        .env_remove("COFFER_ADDR");
    if let Some(token) = t.token {
        cmd.env("COFFER_TOKEN", token);
    }
    let cpu0 = t.cpu();
    let out = cmd.output().await.context("running coffer bench")?;
    let cpu = t.cpu() - cpu0;
    if !out.status.success() {
        bail!(
            "coffer bench {workload} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let report: LoadReport =
        serde_json::from_slice(&out.stdout).context("parsing coffer bench output")?;
    let per_op = cpu / report.issued.max(1) as f64;
    Ok(Measure {
        report,
        cpu_s_per_op: per_op,
    })
}

/// Runs `a` and `b` `rounds` times, alternating which goes first (ABBA…),
/// so slow drift of the machine hits both sides alike.
async fn interleaved(
    opts: &BenchOptions,
    a: (&Target<'_>, &str, &[&str]),
    b: (&Target<'_>, &str, &[&str]),
    concurrency: usize,
) -> (anyhow::Result<Measure>, anyhow::Result<Measure>) {
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let (mut ea, mut eb) = (None, None);
    for round in 0..opts.rounds() {
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            let (t, w, x) = if side == 0 { a } else { b };
            match drive(opts, t, w, concurrency, x).await {
                Ok(m) if side == 0 => ra.push(m),
                Ok(m) => rb.push(m),
                Err(e) if side == 0 => ea = Some(e),
                Err(e) => eb = Some(e),
            }
        }
    }
    let pick = |v: Vec<Measure>, e: Option<anyhow::Error>| {
        average(&v).ok_or_else(|| e.unwrap_or_else(|| anyhow::anyhow!("no run")))
    };
    (pick(ra, ea), pick(rb, eb))
}

fn row(
    name: &str,
    concurrency: usize,
    peer_name: &str,
    target: Option<f64>,
    (c, p): (anyhow::Result<Measure>, anyhow::Result<Measure>),
) -> Row {
    let mut note = Vec::new();
    if let Err(e) = &c {
        note.push(format!("Coffer failed: {e:#}"));
    }
    if let Err(e) = &p {
        note.push(format!("peer failed: {e:#}"));
    }
    for m in [c.as_ref().ok(), p.as_ref().ok()].into_iter().flatten() {
        if m.report.errors > 0 {
            note.push(format!(
                "{} errors, first: {}",
                m.report.errors,
                m.report.first_error.clone().unwrap_or_default()
            ));
        }
    }
    Row {
        name: name.into(),
        concurrency,
        coffer: c.ok(),
        peer_name: peer_name.into(),
        peer: p.ok(),
        target,
        note: note.join("; "),
    }
}

pub(super) async fn coffer_cluster(
    opts: &BenchOptions,
    nodes: usize,
) -> anyhow::Result<LocalCluster> {
    LocalCluster::start_ready(
        &opts.coffer,
        ClusterOptions {
            nodes,
            extra_config: opts.node_config.clone(),
            ..ClusterOptions::default()
        },
    )
    .await
}

pub(super) fn coffer_target(c: &LocalCluster) -> Target<'_> {
    Target {
        addrs: c.nodes.iter().map(|n| n.url()).collect(),
        ca: &c.ca_path,
        token: c.root_token.as_deref(),
        pids: c.nodes.iter().filter_map(|n| n.pid()).collect(),
        threads: None,
    }
}

/// Runs the selected sections in table order.
pub async fn run_all(opts: &BenchOptions, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    if opts.wants("write") || opts.wants("read") || opts.wants("failover") {
        let mut three = coffer_cluster(opts, 3).await?;
        if opts.wants("write") || opts.wants("read") {
            let etcd = EtcdCluster::start(&opts.coffer, 3).await?;
            let et = Target {
                addrs: etcd.client_urls.clone(),
                ca: &etcd.ca_path,
                token: None,
                pids: etcd.pids(),
                threads: None,
            };
            let ct = coffer_target(&three);
            if opts.wants("write") {
                write_rows(opts, &ct, &et, rows).await;
            }
            if opts.wants("read") {
                read_rows(opts, &ct, &et, rows).await?;
            }
        }
        if opts.wants("failover") {
            rows.push(failover_row(opts, &mut three).await);
        }
    }
    if opts.wants("single-read") || opts.wants("restart") {
        let mut one = coffer_cluster(opts, 1).await?;
        if opts.wants("single-read") {
            single_read_rows(opts, &one, rows).await?;
        }
        if opts.wants("restart") {
            rows.push(restart_row(opts, &mut one).await);
        }
    }
    if opts.wants("crypto") {
        let one = coffer_cluster(opts, 1).await?;
        crypto_rows(opts, &one, rows).await;
    }
    if opts.wants("hsm") {
        hsm_rows(opts, rows).await?;
    }
    Ok(())
}

async fn write_rows(opts: &BenchOptions, ct: &Target<'_>, et: &Target<'_>, rows: &mut Vec<Row>) {
    let levels: &[usize] = if opts.quick {
        &[1, 16]
    } else {
        &[1, 16, 64, 256]
    };
    for &c in levels {
        let res = interleaved(opts, (ct, "set", &[]), (et, "etcd-put", &[]), c).await;
        let target = (c == 64).then_some(1.5);
        rows.push(row(WRITE_ROW, c, "etcd put (3 members)", target, res));
    }
    let large = format!("--value-size={LARGE_VALUE_SIZE}");
    let large: &[&str] = &[&large];
    for &c in &levels[..levels.len().min(3)] {
        let res = interleaved(opts, (ct, "set", large), (et, "etcd-put", large), c).await;
        rows.push(row(LARGE_WRITE_ROW, c, "etcd put (3 members)", None, res));
    }
}

async fn read_rows(
    opts: &BenchOptions,
    ct: &Target<'_>,
    et: &Target<'_>,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    // Write every key once; the measured runs then only read.
    for (t, w) in [(ct, "set"), (et, "etcd-put")] {
        let n = KEYS.to_string();
        drive(opts, t, w, 16, &["--requests", &n, "--warmup=0"]).await?;
    }
    let levels: &[usize] = if opts.quick { &[1, 16] } else { &[1, 64] };
    let skip: &[&str] = &["--skip-prefill"];
    for &c in levels {
        let res = interleaved(opts, (ct, "get", skip), (et, "etcd-range", skip), c).await;
        let target = (c == 64).then_some(2.0);
        rows.push(row(READ_ROW, c, "etcd linearizable range", target, res));
    }
    Ok(())
}

/// A 1-node read against a TLS hello-world, at the crypto rows' client
/// count (the hello-world there is the ceiling of any HTTPS request at that
/// concurrency on this machine, load generator included) and at 64.
async fn single_read_rows(
    opts: &BenchOptions,
    one: &LocalCluster,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = hello::start(&opts.coffer, dir.path(), VALUE_SIZE)?;
    let ht = Target {
        addrs: vec![server.url.clone()],
        ca: &dir.path().join("ca.pem"),
        token: None,
        pids: Vec::new(),
        threads: Some(hello::THREAD_NAME),
    };
    let ct = coffer_target(one);
    let n = KEYS.to_string();
    drive(opts, &ct, "set", 16, &["--requests", &n, "--warmup=0"]).await?;
    let top = if opts.quick { 16 } else { 64 };
    let skip: &[&str] = &["--skip-prefill"];
    for c in [crypto_threads(), top] {
        let res = interleaved(opts, (&ct, "get", skip), (&ht, "get", skip), c).await;
        let target = (c == top).then_some(0.5);
        rows.push(row(
            SINGLE_READ_ROW,
            c,
            "TLS hello-world (hyper+rustls)",
            target,
            res,
        ));
    }
    Ok(())
}

/// Threads on the raw side and clients on the Coffer side of the crypto rows.
fn crypto_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Coffer (through `coffer bench`) and an in-process peer, alternating which
/// goes first each round (ABBA…); the peer runs on a blocking thread.
async fn interleaved_inproc<P>(
    opts: &BenchOptions,
    ct: &Target<'_>,
    coffer_args: &[&str],
    workload: &str,
    concurrency: usize,
    peer: P,
) -> (anyhow::Result<Measure>, anyhow::Result<Measure>)
where
    P: Fn() -> anyhow::Result<(LoadReport, f64)> + Clone + Send + 'static,
{
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let (mut ea, mut eb) = (None, None);
    for round in 0..opts.rounds() {
        for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            if side == 0 {
                match drive(opts, ct, workload, concurrency, coffer_args).await {
                    Ok(m) => ra.push(m),
                    Err(e) => ea = Some(e),
                }
                continue;
            }
            let p = peer.clone();
            let res = tokio::task::spawn_blocking(p)
                .await
                .map_err(|e| anyhow::anyhow!("peer task: {e}"))
                .and_then(|r| r);
            match res {
                Ok((report, cpu)) => {
                    let cpu_s_per_op = cpu / report.issued.max(1) as f64;
                    rb.push(Measure {
                        report,
                        cpu_s_per_op,
                    });
                }
                Err(e) => eb = Some(e),
            }
        }
    }
    let pick = |v: Vec<Measure>, e: Option<anyhow::Error>| {
        average(&v).ok_or_else(|| e.unwrap_or_else(|| anyhow::anyhow!("no run")))
    };
    (pick(ra, ea), pick(rb, eb))
}

async fn crypto_rows(opts: &BenchOptions, one: &LocalCluster, rows: &mut Vec<Row>) {
    let threads = crypto_threads();
    let ct = coffer_target(one);
    let ops = [
        (
            "RSA-2048 sign (RS256)",
            crypto::CryptoOp::Rsa2048Sign,
            "sign",
            "RSA-2048",
            Some(0.8),
        ),
        (
            "ES256 sign",
            crypto::CryptoOp::Es256Sign,
            "sign",
            "EC-P256",
            None,
        ),
        (
            "A256GCM encrypt 4 KiB",
            crypto::CryptoOp::A256GcmEncrypt4k,
            "encrypt",
            "oct-256",
            None,
        ),
        (
            "RSA-OAEP-256 decrypt (2048)",
            crypto::CryptoOp::RsaOaep256Decrypt,
            "decrypt",
            "RSA-2048",
            None,
        ),
    ];
    for (name, op, workload, key_type, target) in ops {
        let dur = Duration::from_secs_f64(opts.secs());
        let key_type = format!("--key-type={key_type}");
        let args = [key_type.as_str(), "--value-size=4096", "--prefix=crypto"];
        let peer = move || crypto::run(op, threads, dur);
        let res = interleaved_inproc(opts, &ct, &args, workload, threads, peer).await;
        rows.push(row(
            &format!("{name}, software key (1 node)"),
            threads,
            &format!("aws-lc-rs in-process, {threads} threads"),
            target,
            res,
        ));
    }
}

async fn hsm_rows(opts: &BenchOptions, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let mut one = LocalCluster::start(
        &opts.coffer,
        ClusterOptions {
            nodes: 1,
            hsm: true,
            extra_config: opts.node_config.clone(),
            ..ClusterOptions::default()
        },
    )?;
    one.init(0, 1, 1).await?;
    one.wait_for_leader(Duration::from_secs(20)).await?;
    let token = one.hsm_token(0).context("cluster has no HSM token")?;
    let threads = crypto_threads();
    let ct = coffer_target(&one);
    let ops = [
        (
            "RSA-HSM 2048 sign (RS256)",
            hsm::HsmOp::Rsa2048Sign,
            "RSA-HSM-2048",
        ),
        (
            "EC-HSM P-256 sign (ES256)",
            hsm::HsmOp::Es256Sign,
            "EC-HSM-P256",
        ),
    ];
    for (name, op, key_type) in ops {
        let dur = Duration::from_secs_f64(opts.secs());
        let key_type = format!("--key-type={key_type}");
        let args = [key_type.as_str(), "--prefix=hsm"];
        let tok = token.clone();
        let peer = move || hsm::run(&tok, op, threads, dur);
        let res = interleaved_inproc(opts, &ct, &args, "sign", threads, peer).await;
        rows.push(row(
            &format!("{name}, SoftHSM2 (1 node)"),
            threads,
            &format!("cryptoki C_Sign on the same token, {threads} threads"),
            Some(0.9),
            res,
        ));
    }
    Ok(())
}

/// Kills the leader during writes, `n` times; time from the kill until a
/// write started after it succeeds.
async fn failover_row(opts: &BenchOptions, cluster: &mut LocalCluster) -> Row {
    let n = if opts.quick { 2 } else { 10 };
    let mut times = Vec::new();
    let mut note = String::new();
    for i in 0..n {
        match failover_once(cluster, i).await {
            Ok(d) => times.push(d),
            Err(e) => {
                note = format!("round {i} failed: {e:#}");
                break;
            }
        }
    }
    times.sort();
    let fmt =
        |d: Option<&Duration>| d.map_or("–".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    let median = times.get(times.len() / 2);
    let met = median.is_some_and(|m| m.as_secs_f64() <= 1.5);
    Row {
        name: "leader failover (kill -9 during writes)".into(),
        concurrency: 8,
        coffer: None,
        peer_name: String::new(),
        peer: None,
        target: None,
        note: format!(
            "{} kills: median {}, max {} (target median ≤ 1.5 s: {}){}{}",
            times.len(),
            fmt(median),
            fmt(times.last()),
            if met { "met" } else { "**missed**" },
            if note.is_empty() { "" } else { "; " },
            note
        ),
    }
}

async fn failover_once(cluster: &mut LocalCluster, round: usize) -> anyhow::Result<Duration> {
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let client = {
        let c = cluster.client()?;
        Arc::new(c)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, stop) = (client.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let name = format!("fo-{w}-{}", i % 50);
                let _ = client
                    .secrets()
                    .set(&name, "v", &SetOptions::default())
                    .await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    cluster.kill(leader);
    let probe = cluster.client()?;
    let result = loop {
        if killed_at.elapsed() > Duration::from_secs(30) {
            break Err(anyhow::anyhow!("no successful write within 30 s"));
        }
        let name = format!("fo-probe-{round}");
        if probe
            .secrets()
            .set(&name, "v", &SetOptions::default())
            .await
            .is_ok()
        {
            break Ok(killed_at.elapsed());
        }
    };
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    cluster.restart(leader)?;
    cluster.unseal(leader).await?;
    result
}

/// One node with many secrets: restart time, memory and disk use.
async fn restart_row(opts: &BenchOptions, one: &mut LocalCluster) -> Row {
    let n: u64 = if opts.quick { 2_000 } else { 100_000 };
    let res = restart_measure(opts, one, n).await;
    Row {
        name: format!("restart, 1 node with {n} secrets of {VALUE_SIZE} B"),
        concurrency: 0,
        coffer: None,
        peer_name: String::new(),
        peer: None,
        target: None,
        note: match res {
            Ok(s) => s,
            Err(e) => format!("failed: {e:#}"),
        },
    }
}

async fn restart_measure(
    opts: &BenchOptions,
    one: &mut LocalCluster,
    n: u64,
) -> anyhow::Result<String> {
    let ct = coffer_target(one);
    let keys = format!("--keys={n}");
    let reqs = n.to_string();
    drive(
        opts,
        &ct,
        "set",
        64,
        &["--requests", &reqs, &keys, "--prefix", "r", "--warmup=0"],
    )
    .await?;
    let (serving, reading) = super::scale::restart_timing(one, 0, "r-0").await?;
    let pid = one.nodes[0].pid().context("node not running")?;
    let rss = procs::rss_bytes(pid);
    let disk = procs::dir_bytes(&one.nodes[0].data_dir);
    let live = n * VALUE_SIZE as u64;
    Ok(format!(
        "process start → serving {:.2} s; unseal → first read {:.2} s; RSS {:.1} MiB; data dir {:.1} MiB = {:.1} bytes per live value byte",
        serving.as_secs_f64(),
        reading.as_secs_f64(),
        rss as f64 / 1048576.0,
        disk as f64 / 1048576.0,
        disk as f64 / live as f64
    ))
}
