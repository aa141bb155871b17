//! `coffer bench`: a closed-loop load generator over `coffer-client`.
//!
//! Workloads against Coffer (`set`, `get`) and, so that a comparison runs
//! the very same client code, against its peers: `etcd-put` / `etcd-range`
//! (etcd's v3 JSON gateway, linearizable ranges) and `get` also works against
//! any server answering a secret bundle (the TLS hello-world ceiling).
//! Crypto workloads (`sign`, `encrypt`, `decrypt`) create one key of
//! `--key-type` first and then drive its versioned operation route.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use coffer_client::load::{self, LoadOptions, LoadReport};
use coffer_client::secrets::SetOptions;
use coffer_client::{Client, ClientConfig, ClientError, Request};
use serde::Serialize;

use super::ClientArgs;

mod keys;

/// What each operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// `PUT /secrets/{name}` (a replicated write).
    Set,
    /// `GET /secrets/{name}` (a linearizable read) of pre-written secrets.
    Get,
    /// etcd `PUT` through the v3 JSON gateway (comparison peer).
    EtcdPut,
    /// etcd linearizable `Range` through the v3 JSON gateway (comparison peer).
    EtcdRange,
    /// `POST /keys/{name}/{version}/sign` of a digest (RS256 for RSA keys,
    /// ES256/384/512 by curve for EC keys).
    Sign,
    /// `POST …/encrypt` of `--value-size` bytes (A*GCM for oct keys;
    /// RSA-OAEP-256 of at most 190 bytes for RSA keys).
    Encrypt,
    /// `POST …/decrypt` of a ciphertext made once before the run.
    Decrypt,
}

/// `coffer bench` arguments (client flags come from [`ClientArgs`]).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to run.
    #[arg(long, value_enum, default_value_t = Workload::Set)]
    pub workload: Workload,
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Measured duration in seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Unmeasured warm-up in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Stop after this many requests instead of after `--duration`.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct names (keys) the workload cycles through.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Do not write the keys before a read workload (they exist already).
    #[arg(long)]
    pub skip_prefill: bool,
    /// Name prefix of the benchmark secrets / keys.
    #[arg(long, default_value = "bench")]
    pub prefix: String,
    /// Offer HTTP/2 through ALPN (one multiplexed connection per node).
    #[arg(long, overrides_with = "http1")]
    pub http2: bool,
    /// HTTP/1.1 keep-alive only (a connection per client; the default).
    #[arg(long, overrides_with = "http2")]
    pub http1: bool,
    /// Send every request through one failover client instead of spreading
    /// clients round-robin over the given addresses.
    #[arg(long)]
    pub failover: bool,
    /// Key type of the crypto workloads: RSA-2048, EC-P256, oct-256,
    /// RSA-HSM-2048, EC-HSM-P256, oct-HSM-256, …
    #[arg(long, default_value = "RSA-2048")]
    pub key_type: String,
}

impl BenchArgs {
    /// Whether HTTP/2 is offered (the later of `--http2` / `--http1` wins).
    pub fn use_http2(&self) -> bool {
        self.http2 && !self.http1
    }
}

/// JSON document `coffer bench -o json` prints.
#[derive(Debug, Serialize)]
pub struct BenchOutput {
    /// Workload run.
    pub workload: Workload,
    /// Nodes driven.
    pub nodes: usize,
    /// Whether HTTP/2 was offered.
    pub http2: bool,
    /// Value size in bytes.
    pub value_size: usize,
    /// The measurements.
    #[serde(flatten)]
    pub report: LoadReport,
}

/// Runs `coffer bench`.
pub async fn run_bench(client_args: &ClientArgs, args: BenchArgs) -> anyhow::Result<()> {
    let out = bench(client_args, &args).await?;
    if client_args.json_output() {
        super::print_json(&out)?;
    } else {
        let r = &out.report;
        println!(
            "{:?} c={} {:.0} ops/s  p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms  errors {}",
            out.workload,
            r.concurrency,
            r.throughput,
            r.p50_us as f64 / 1e3,
            r.p99_us as f64 / 1e3,
            r.p999_us as f64 / 1e3,
            r.errors
        );
        if let Some(e) = &r.first_error {
            println!("first error: {e}");
        }
    }
    Ok(())
}

/// Prepares and runs one workload, returning its measurements.
pub async fn bench(client_args: &ClientArgs, args: &BenchArgs) -> anyhow::Result<BenchOutput> {
    let clients = clients(client_args, args)?;
    let crypto = match args.workload {
        Workload::Sign | Workload::Encrypt | Workload::Decrypt => {
            let first = clients.first().context("no endpoint")?;
            let name = format!("{}-key", args.prefix);
            let req =
                keys::prepare(first, args.workload, &args.key_type, &name, args.value_size).await?;
            Some(Arc::new(req))
        }
        _ => None,
    };
    let value = Arc::new("x".repeat(args.value_size));
    let op = Op {
        clients: Arc::new(clients),
        value: value.clone(),
        etcd_value: Arc::new(b64(value.as_bytes())),
        prefix: Arc::new(args.prefix.clone()),
        keys: args.keys.max(1),
        workload: args.workload,
        crypto,
    };
    if !args.skip_prefill && matches!(args.workload, Workload::Get | Workload::EtcdRange) {
        prefill(&op, args.concurrency).await?;
    }
    let opts = LoadOptions {
        concurrency: args.concurrency.max(1),
        duration: Duration::from_secs_f64(args.duration.max(0.0)),
        warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
        total_ops: args.requests,
    };
    let report = load::run(&opts, move |worker, seq| {
        let op = op.clone();
        async move { op.call(worker, seq).await }
    })
    .await;
    Ok(BenchOutput {
        workload: args.workload,
        nodes: op_nodes(client_args)?,
        http2: args.use_http2(),
        value_size: args.value_size,
        report,
    })
}

fn op_nodes(client_args: &ClientArgs) -> anyhow::Result<usize> {
    Ok(coffer_client::parse_endpoints(&client_args.addr)?.len())
}

/// One client per address (spread) or one failover client over all of them.
fn clients(client_args: &ClientArgs, args: &BenchArgs) -> anyhow::Result<Vec<Client>> {
    let ca = client_args
        .ca_cert
        .as_deref()
        .context("a CA certificate is required: pass --ca-cert or set COFFER_CACERT")?;
    let base = ClientConfig::from_parts(&client_args.addr, client_args.token.clone(), Some(ca))?;
    let make = |endpoints: Vec<String>| {
        Client::new(ClientConfig {
            endpoints,
            timeout: Duration::from_secs(client_args.timeout.max(1)),
            http2: args.use_http2(),
            ..base.clone()
        })
    };
    if args.failover {
        return Ok(vec![make(base.endpoints.clone())?]);
    }
    base.endpoints
        .iter()
        .map(|e| make(vec![e.clone()]))
        .collect::<Result<_, _>>()
        .map_err(Into::into)
}

/// Writes every key once so reads find it.
async fn prefill(op: &Op, concurrency: usize) -> anyhow::Result<()> {
    let writer = Op {
        workload: match op.workload {
            Workload::EtcdRange => Workload::EtcdPut,
            _ => Workload::Set,
        },
        ..op.clone()
    };
    let opts = LoadOptions {
        concurrency: concurrency.clamp(1, 64),
        total_ops: Some(op.keys),
        ..LoadOptions::default()
    };
    let report = load::run(&opts, move |w, seq| {
        let writer = writer.clone();
        async move { writer.call(w, seq).await }
    })
    .await;
    if report.errors > 0 {
        bail!(
            "prefill failed ({} errors): {}",
            report.errors,
            report.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

#[derive(Clone)]
struct Op {
    clients: Arc<Vec<Client>>,
    value: Arc<String>,
    etcd_value: Arc<String>,
    prefix: Arc<String>,
    keys: u64,
    workload: Workload,
    /// The prepared request of a crypto workload.
    crypto: Option<Arc<Request>>,
}

impl Op {
    async fn call(&self, worker: usize, seq: u64) -> Result<(), ClientError> {
        let client = &self.clients[worker % self.clients.len()];
        let name = format!("{}-{}", self.prefix, seq % self.keys);
        match self.workload {
            Workload::Set => {
                client
                    .secrets()
                    .set(&name, &self.value, &SetOptions::default())
                    .await?;
            }
            Workload::Get => {
                client.secrets().get(&name, None).await?;
            }
            Workload::EtcdPut => {
                let body = format!(
                    r#"{{"key":"{}","value":"{}"}}"#,
                    b64(name.as_bytes()),
                    self.etcd_value
                );
                etcd(client, "/v3/kv/put", body).await?;
            }
            Workload::EtcdRange => {
                // serializable=false (the default) makes the range linearizable.
                let body = format!(r#"{{"key":"{}"}}"#, b64(name.as_bytes()));
                etcd(client, "/v3/kv/range", body).await?;
            }
            Workload::Sign | Workload::Encrypt | Workload::Decrypt => {
                let req = self.crypto.as_deref().ok_or_else(|| {
                    ClientError::Config("crypto workload without a prepared key".into())
                })?;
                client.send(req.clone()).await?.error_for_status()?;
            }
        }
        Ok(())
    }
}

async fn etcd(client: &Client, path: &str, body: String) -> Result<(), ClientError> {
    let mut req = Request::post(path);
    req.body = Some(body.into());
    client.send(req).await?.error_for_status()?;
    Ok(())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn http_flags_pick_the_last_one() {
        let cli = Cli::try_parse_from(["coffer", "--http2", "--http1"]).unwrap();
        assert!(!cli.bench.use_http2());
        let cli =
            Cli::try_parse_from(["coffer", "--http1", "--http2", "--workload", "get"]).unwrap();
        assert!(cli.bench.use_http2());
        assert_eq!(cli.bench.workload, Workload::Get);
    }
}
