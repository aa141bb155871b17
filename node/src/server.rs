//! Assembles a node: cluster, seal, engines, HTTPS API; and the `--dev` mode
//! that initialises and unseals a single node by itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::Router;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use crate::api;
use crate::cluster::{cluster_store, ClusterConfig, ClusterNode};
use crate::config::{Config, HsmConfig, LimitsConfig, TlsConfig};
use crate::crypto::hsm::HsmProvider;
use crate::crypto::pkcs11::Pkcs11Hsm;
use crate::engine::certificates::CertificatesEngine;
use crate::engine::clock::now_secs;
use crate::engine::keys::KeysEngine;
use crate::engine::registry::Engines;
use crate::engine::secrets::SecretsEngine;
use crate::engine::store::Store;
use crate::engine::vaults::VaultsEngine;
use crate::files;
use crate::operator::{Operator, OperatorError};
use crate::seal::SealManager;
use crate::tls::{self, TlsMaterial};

/// File names `--dev` writes into its data dir.
pub const DEV_ROOT_TOKEN_FILE: &str = "root-token";
/// The single unseal share of a dev node.
pub const DEV_UNSEAL_KEY_FILE: &str = "unseal-key";

/// A running node.
pub struct Server {
    /// Operator actions (init, unseal, health).
    pub operator: Arc<Operator>,
    /// Cluster handle.
    pub node: Arc<ClusterNode>,
    api_addr: SocketAddr,
    lifecycle_interval: Duration,
    /// TEST ONLY: seconds the lifecycle work sees the clock ahead.
    clock_offset: u64,
    router: Router,
    api_tls: Arc<rustls::ServerConfig>,
    limits: LimitsConfig,
    engines: Engines,
    hsm: Option<Arc<Pkcs11Hsm>>,
    snapshots: Option<crate::cluster::snapshot_file::SnapshotsConfig>,
    alerts: (
        Arc<crate::engine::alerts::AlertsEngine>,
        crate::alerts::Sender,
    ),
    /// When the leader looks for lifecycle events.
    events: crate::alerts::EventsSchedule,
    /// `[metrics] listen`: the address and router of the metrics listener.
    metrics_listener: Option<(SocketAddr, axum::Router)>,
    /// How the leader asks members whether they are sealed.
    seal_probe: crate::alerts::SealProbe,
}

impl Server {
    /// Opens storage, joins the cluster transport and builds the API.
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        files::check_node_files(config)?;
        // Before anything records a metric (the Raft node does, from its
        // start: leader changes, log appends).
        let _ = crate::metrics::handle();
        let material = load_tls(&config.tls)?;
        let api_tls = tls::api_server_config(&material)?;
        let node = ClusterNode::start(ClusterConfig {
            node_id: config.node_id,
            listen_addr: config.cluster_addr,
            advertise: config.advertised_node(),
            data_dir: config.data_dir.clone(),
            tls: material,
            stale_reads: config.unsafe_stale_reads,
            snapshot_logs: config.raft_snapshot_logs,
            tuning: config.raft.clone(),
            join_token: config
                .join_token
                .as_ref()
                .map(|t| crate::cluster::JoinToken::new(t.expose())),
        })
        .await
        .context("starting the cluster node")?;
        if config.bootstrap {
            node.bootstrap(config.initial_members())
                .await
                .context("bootstrapping the Raft cluster")?;
        }
        if let (false, Some(token)) = (config.retry_join.is_empty(), &config.join_token) {
            node.retry_join(
                config.retry_join.clone(),
                token.expose(),
                config.advertised_node(),
            );
        }
        let pkcs11 = open_hsm(config).await;
        let hsm: Option<Arc<dyn HsmProvider>> = pkcs11.clone().map(|p| p as Arc<dyn HsmProvider>);
        let seal = Arc::new(SealManager::new());
        let store: Arc<dyn Store> = Arc::new(cluster_store(node.clone(), seal.clone()));
        let vaults = Arc::new(VaultsEngine::new(store.clone()));
        let secrets = Arc::new(SecretsEngine::new(store.clone()));
        let identity = Arc::new(crate::engine::identity::IdentityEngine::new(
            store.clone(),
            &config.tenant,
        ));
        let authz = Arc::new(crate::engine::authz::AuthzEngine::new(
            store.clone(),
            identity.clone(),
        ));
        // Without an `[hsm]` section, `*-HSM` key types answer 503 HsmUnavailable.
        let keys = Arc::new(
            KeysEngine::new(store.clone(), hsm).with_rotation_limits(config.rotation_limits()),
        );
        if let Some(secs) = config.unsafe_min_rotation_secs {
            tracing::warn!(
                secs,
                "TEST ONLY: rotation policy minimums lowered (unsafe_min_rotation_secs)"
            );
        }
        let clock_offset = config.unsafe_clock_offset_secs.unwrap_or(0);
        if clock_offset > 0 {
            tracing::warn!(
                secs = clock_offset,
                "TEST ONLY: certificates and lifecycle work see the clock ahead (unsafe_clock_offset_secs)"
            );
        }
        let certificates = Arc::new(CertificatesEngine::with_clock(
            store.clone(),
            keys.clone(),
            secrets.clone(),
            Arc::new(move || now_secs() + clock_offset),
        ));
        let settings = Arc::new(crate::engine::settings::SettingsEngine::new(store.clone()));
        let engines = Engines::new()
            .with(secrets.clone())
            .with(keys.clone())
            .with(certificates.clone())
            .with(identity.clone())
            .with(Arc::new(
                crate::engine::audit::retention::TrailRetention::new(
                    crate::engine::audit::Trail::new(store.clone()),
                    config.audit.trail_retention(),
                ),
            ));
        let sealed = seal.clone();
        let audit = crate::audit::Auditor::start(
            &config.audit,
            &config.data_dir,
            config.node_id,
            store.clone(),
            Box::new(move || sealed.is_sealed()),
        )
        .context("opening the audit file")?;
        let alerts = Arc::new(crate::engine::alerts::AlertsEngine::new(store.clone()));
        let sender = crate::alerts::Sender::new(&config.tenant)
            .context("setting up alert delivery")?
            .with_vault_domain(config.vault_domain.as_deref());
        let cluster_ca = std::fs::read_to_string(&config.tls.ca)
            .with_context(|| format!("reading the cluster CA {}", config.tls.ca.display()))?;
        let seal_probe = crate::alerts::SealProbe::new(Some(&cluster_ca))
            .context("setting up the members' seal probe")?;
        let seal_device = seal_device(config, pkcs11.as_ref());
        let operator = Arc::new(
            Operator::new(
                node.clone(),
                seal,
                store,
                vaults.clone(),
                engines.clone(),
                config.default_vault.clone(),
            )
            .with_seal_device(config.seal.seal_type, seal_device),
        );
        let scrape = crate::metrics::ScrapeAuth::from_file(config.metrics.token_file.as_deref())?;
        let router = api::router(api::ApiConfig {
            operator: operator.clone(),
            vaults,
            secrets: secrets.clone(),
            keys: keys.clone(),
            certificates,
            vault_domain: config.vault_domain.clone(),
            default_vault: config.default_vault.clone(),
            tenant: config.tenant.clone(),
            identity,
            authz,
            hsm: pkcs11
                .clone()
                .map(|p| p as Arc<dyn crate::crypto::hsm::HsmAdmin>),
            audit,
            alerts: api::sys::alerts::AlertsState {
                alerts: alerts.clone(),
                sender: sender.clone(),
            },
            trusted_proxies: config.server.trusted_proxies.clone(),
            settings,
            backup_dir: config.server.backup_dir.clone(),
            // On the API port unless `[metrics] listen` gives it its own.
            metrics: config.metrics.listen.is_none().then(|| scrape.clone()),
        });
        let metrics_listener = config
            .metrics
            .listen
            .map(|addr| (addr, crate::metrics::router(operator.clone(), scrape)));
        Ok(Self {
            operator,
            node,
            api_addr: config.api_addr,
            lifecycle_interval: Duration::from_secs(config.lifecycle_interval_secs),
            clock_offset,
            router,
            api_tls,
            limits: config.limits.clone(),
            engines,
            hsm: pkcs11,
            snapshots: config.snapshots.clone(),
            alerts: (alerts, sender),
            events: config.events.schedule(clock_offset),
            seal_probe,
            metrics_listener,
        })
    }

    /// Serves HTTPS until SIGINT/SIGTERM, then shuts the node down.
    pub async fn serve(self) -> anyhow::Result<()> {
        let listener = TcpListener::bind(self.api_addr)
            .await
            .with_context(|| format!("binding the API address {}", self.api_addr))?;
        tracing::info!(addr = %self.api_addr, "API listening");
        if let Some((addr, router)) = self.metrics_listener.clone() {
            let metrics = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the metrics address {addr}"))?;
            tracing::info!(%addr, "metrics listening");
            tokio::spawn(crate::listener::serve(
                metrics,
                self.api_tls.clone(),
                router,
                self.limits.clone(),
                shutdown_signal(),
            ));
        }
        tokio::spawn(lifecycle_loop(
            self.operator.clone(),
            self.engines.clone(),
            self.lifecycle_interval,
            self.clock_offset,
        ));
        tokio::spawn(crate::alerts::run(
            self.operator.clone(),
            self.alerts.0.clone(),
            self.alerts.1.clone(),
            self.events,
            self.seal_probe.clone(),
        ));
        tokio::spawn(fail_stop(self.node.clone()));
        tokio::spawn(auto_unseal_loop(self.operator.clone()));
        tokio::spawn(self.operator.clone().watch_restores());
        tokio::spawn(restart_for_repair(self.node.clone()));
        let node = self.node.clone();
        tokio::spawn(async move { node.auto_repair().await });
        if let Some(cfg) = self.snapshots.clone() {
            tokio::spawn(crate::cluster::snapshot_file::auto_snapshot_loop(
                self.node.clone(),
                cfg,
            ));
        }
        crate::listener::serve(
            listener,
            self.api_tls.clone(),
            self.router.clone(),
            self.limits.clone(),
            shutdown_signal(),
        )
        .await;
        tracing::info!("shutting down");
        self.node.shutdown().await;
        Ok(())
    }
}

/// Exit status of a node that stopped because its storage or Raft core
/// failed (EX_IOERR): a supervisor restarts it; health said why meanwhile.
pub const EXIT_STORAGE_FAILURE: i32 = 74;
/// How long health keeps answering 503 with the reason before the exit.
const FAIL_STOP_GRACE: Duration = Duration::from_millis(500);

/// Fail-stop: a node whose log storage or Raft core failed must not linger
/// as a process that looks alive and does nothing. It says why, once, and
/// exits non-zero.
async fn fail_stop(node: Arc<ClusterNode>) {
    let reason = node.fatal().await;
    tracing::error!(
        %reason,
        exit_code = EXIT_STORAGE_FAILURE,
        "this node cannot continue and exits; fix the cause (see the error) and restart it — \
         the other members keep serving, and it catches up when it is back"
    );
    tokio::time::sleep(FAIL_STOP_GRACE).await;
    std::process::exit(EXIT_STORAGE_FAILURE);
}

/// Exit status of a node that restarts to install a repair (EX_TEMPFAIL):
/// the supervisor starts it again and the staged snapshot is installed
/// before Raft starts.
pub const EXIT_RESTART_FOR_REPAIR: i32 = 75;

/// Exits once a repair snapshot or a DR promotion was staged.
async fn restart_for_repair(node: Arc<ClusterNode>) {
    node.restart_requested().await;
    // Let the answer to the repair request reach the operator first.
    tokio::time::sleep(FAIL_STOP_GRACE).await;
    tracing::warn!(
        exit_code = EXIT_RESTART_FOR_REPAIR,
        "exiting to install the staged repair or DR promotion; start the node again \
         (a supervisor does it)"
    );
    node.shutdown().await;
    std::process::exit(EXIT_RESTART_FOR_REPAIR);
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

/// The leader runs every engine's periodic work: purging soft-deleted
/// objects whose purge date has passed, due key rotation policies, ….
async fn lifecycle_loop(
    operator: Arc<Operator>,
    engines: Engines,
    every: Duration,
    clock_offset: u64,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if operator.is_sealed() || !operator.node().status().is_leader {
            continue;
        }
        for (what, result) in engines.leader_work(now_secs() + clock_offset).await {
            log_done(what, result);
        }
    }
}

/// Logs what one lifecycle task did (nothing when it had nothing to do).
fn log_done(what: &str, result: Result<usize, crate::engine::EngineError>) {
    match result {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "{what}"),
        Err(e) => tracing::warn!(error = %e, "{what}: failed"),
    }
}

/// How often a sealed node retries its auto-unseal (device back, records
/// replicated, seal migrated to pkcs11).
const AUTO_UNSEAL_RETRY: Duration = Duration::from_secs(2);

/// Unseals this node from its device whenever the replicated seal is of
/// type pkcs11 and the node is sealed (at start, after a migration, once a
/// missing device is back), until an operator seals it on purpose. Each
/// failure is kept as the reason health and seal status report.
async fn auto_unseal_loop(operator: Arc<Operator>) {
    let mut last_error: Option<String> = None;
    loop {
        match operator.auto_unseal().await {
            Ok(_) => last_error = None,
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(event = "seal.auto_unseal_failed", error = %text, "auto-unseal failed; the node stays sealed");
                    last_error = Some(text);
                }
            }
        }
        tokio::time::sleep(AUTO_UNSEAL_RETRY).await;
    }
}

/// The seal key in the `[hsm]` device when `[seal] type = "pkcs11"`.
fn seal_device(
    config: &Config,
    hsm: Option<&Arc<Pkcs11Hsm>>,
) -> Option<Arc<dyn crate::crypto::seal_device::SealDevice>> {
    if config.seal.seal_type != crate::seal::SealType::Pkcs11 {
        return None;
    }
    let hsm = hsm?.clone();
    Some(Arc::new(crate::crypto::pkcs11::Pkcs11SealKey::new(
        hsm,
        config.seal.key_label.clone(),
    )))
}

/// Opens the `[hsm]` device off the runtime (PKCS#11 blocks). An unusable
/// device still yields a provider: it reports itself unavailable and the
/// node serves everything else.
async fn open_hsm(config: &Config) -> Option<Arc<Pkcs11Hsm>> {
    let cfg = config.hsm.clone()?;
    let opened = tokio::task::spawn_blocking(move || Pkcs11Hsm::open(&cfg)).await;
    match opened {
        Ok(hsm) => {
            let status = hsm.status();
            if status.available {
                tracing::info!(
                    token = %status.token_label,
                    kek_present = status.kek_present,
                    "HSM tier available"
                );
            }
            Some(Arc::new(hsm))
        }
        Err(e) => {
            tracing::error!(error = %e, "opening the HSM panicked; HSM tier disabled");
            None
        }
    }
}

fn load_tls(paths: &TlsConfig) -> anyhow::Result<TlsMaterial> {
    TlsMaterial::load(&paths.ca, &paths.cert, &paths.key).context("loading TLS certificates")
}

/// Settings of `coffer server --dev`.
pub struct DevOptions {
    /// Where the store, certificates, token and unseal key live.
    pub data_dir: PathBuf,
    /// HTTPS API address.
    pub api_addr: SocketAddr,
    /// gRPC cluster address.
    pub cluster_addr: SocketAddr,
    /// The PKCS#11 device of the HSM tier, if any.
    pub hsm: Option<HsmConfig>,
}

/// The cluster address of a dev node: the port after the API's, so two dev
/// servers with different `--api-addr` do not clash (port 0 stays 0: any).
pub fn dev_cluster_addr(api: SocketAddr) -> SocketAddr {
    let port = match api.port() {
        0 => 0,
        p => p.checked_add(1).unwrap_or(p - 1),
    };
    SocketAddr::new(api.ip(), port)
}

/// `coffer server --dev` flags of the HSM tier.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct DevHsmArgs {
    /// PKCS#11 module of a device to attach (with --hsm-pin-file).
    #[arg(long, requires = "hsm_pin_file", conflicts_with = "hsm_softhsm")]
    pub hsm_module: Option<PathBuf>,
    /// Label of the token on that device.
    #[arg(long, default_value = DEV_HSM_TOKEN_LABEL)]
    pub hsm_token_label: String,
    /// File holding the token's user PIN.
    #[arg(long, requires = "hsm_module")]
    pub hsm_pin_file: Option<PathBuf>,
    /// Create a SoftHSM2 token in the data dir (Debian's `softhsm2`) and use it.
    #[arg(long)]
    pub hsm_softhsm: bool,
}

/// Token label of a dev node's device, unless `--hsm-token-label` says otherwise.
pub const DEV_HSM_TOKEN_LABEL: &str = "coffer-dev";
/// Where Debian's `softhsm2` installs its module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The SoftHSM2 user PIN of a dev node's own token, in its data dir.
pub const DEV_HSM_PIN_FILE: &str = "hsm-pin";

/// The `[hsm]` section of a dev node. With `--hsm-softhsm` it creates the
/// token on first use under `DATA_DIR/softhsm` and points `SOFTHSM2_CONF`
/// there — which is why it runs in `main` before any other thread exists.
pub fn prepare_dev_hsm(args: &DevHsmArgs, data_dir: &Path) -> anyhow::Result<Option<HsmConfig>> {
    let (module, pin_file) = if let Some(module) = &args.hsm_module {
        let pin = args
            .hsm_pin_file
            .clone()
            .context("--hsm-pin-file is required")?;
        (module.clone(), pin)
    } else if args.hsm_softhsm {
        (
            PathBuf::from(SOFTHSM_MODULE),
            create_dev_softhsm_token(data_dir, &args.hsm_token_label)?,
        )
    } else {
        return Ok(None);
    };
    let cfg = HsmConfig {
        module,
        token_label: args.hsm_token_label.clone(),
        pin_file: Some(pin_file),
        pin_env: None,
        max_sessions: 16,
        key_cache: 1024,
    };
    cfg.validate().map_err(anyhow::Error::msg)?;
    Ok(Some(cfg))
}

/// Creates (once) a SoftHSM2 token for a dev node and returns its PIN file.
fn create_dev_softhsm_token(data_dir: &Path, label: &str) -> anyhow::Result<PathBuf> {
    if !Path::new(SOFTHSM_MODULE).exists() {
        bail!("--hsm-softhsm needs SoftHSM2 ({SOFTHSM_MODULE}): apt-get install softhsm2");
    }
    let dir = data_dir.join("softhsm");
    let tokens = dir.join("tokens");
    files::create_private_dir(&tokens).with_context(|| format!("creating {}", tokens.display()))?;
    let conf = dir.join("softhsm2.conf");
    files::write_private_file(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        )
        .as_bytes(),
    )?;
    // SAFETY of the environment: called from `main` before the runtime starts.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let pin_path = data_dir.join(DEV_HSM_PIN_FILE);
    if pin_path.exists() {
        return Ok(pin_path);
    }
    let pin = Zeroizing::new(hex::encode(rand::random::<[u8; 16]>()));
    let so_pin = Zeroizing::new(hex::encode(rand::random::<[u8; 16]>()));
    // A dev token: its PINs pass on softhsm2-util's command line for the
    // moment it runs (visible in `ps` to this user); a real device's PIN
    // comes from a file or a variable that is taken out of the environment.
    let status = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label, "--pin"])
        .arg(pin.as_str())
        .arg("--so-pin")
        .arg(so_pin.as_str())
        .env("SOFTHSM2_CONF", &conf)
        .stdout(std::process::Stdio::null())
        .status()
        .context("running softhsm2-util (apt-get install softhsm2)")?;
    if !status.success() {
        bail!("softhsm2-util --init-token failed ({status})");
    }
    files::write_private_file(&pin_path, pin.as_bytes())?;
    Ok(pin_path)
}

/// Runs a single self-initialising, self-unsealing node.
pub async fn run_dev(opts: DevOptions) -> anyhow::Result<()> {
    // The dev dir holds the root token and the unseal key besides the data.
    files::check(&opts.data_dir, files::Guarded::DataDir)?;
    files::create_private_dir(&opts.data_dir)
        .with_context(|| format!("creating {}", opts.data_dir.display()))?;
    let tls_paths = tls::ensure_dev_tls(&opts.data_dir).context("creating dev TLS certificates")?;
    let config = Config {
        node_id: 1,
        data_dir: opts.data_dir.join("raft"),
        api_addr: opts.api_addr,
        cluster_addr: opts.cluster_addr,
        advertise_api_addr: None,
        advertise_cluster_addr: None,
        vault_domain: None,
        default_vault: "default".into(),
        tenant: "coffer".into(),
        bootstrap: true,
        peers: Vec::new(),
        retry_join: Vec::new(),
        join_token: None,
        join_token_file: None,
        // A dev node runs as a user without a memlock allowance.
        lock_memory: false,
        tls: TlsConfig {
            ca: tls_paths.ca.clone(),
            cert: tls_paths.cert,
            key: tls_paths.key,
        },
        log_format: "text".into(),
        raft_snapshot_logs: crate::cluster::SNAPSHOT_LOGS,
        lifecycle_interval_secs: 60,
        unsafe_stale_reads: false,
        unsafe_min_rotation_secs: None,
        unsafe_clock_offset_secs: None,
        allow_insecure_permissions: false,
        hsm: opts.hsm.clone(),
        raft: Default::default(),
        limits: LimitsConfig::default(),
        snapshots: None,
        seal: Default::default(),
        audit: Default::default(),
        server: Default::default(),
        events: Default::default(),
        metrics: Default::default(),
    };
    let server = Server::start(&config).await?;
    wait_for_leader(&server.node).await?;
    dev_init_or_unseal(&server.operator, &opts.data_dir).await?;
    let hsm_line = match &server.hsm {
        Some(hsm) => ensure_dev_kek(hsm.clone()).await?,
        None => "none (try --hsm-softhsm)".to_string(),
    };
    print_dev_banner(&opts, &tls_paths.ca, &hsm_line);
    server.serve().await
}

/// Creates the cluster KEK in a dev node's device unless it holds one, so
/// `*-HSM` keys work at once; returns the banner's HSM line.
async fn ensure_dev_kek(hsm: Arc<Pkcs11Hsm>) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let status = hsm.status();
        if !status.available {
            bail!(
                "the HSM device is not usable: {}",
                status.error.unwrap_or_else(|| "unknown error".into())
            );
        }
        if !status.kek_present {
            hsm.create_kek()
                .context("creating the cluster KEK in the device")?;
        }
        Ok(format!("token {:?}, KEK present", status.token_label))
    })
    .await
    .context("the HSM task panicked")?
}

async fn wait_for_leader(node: &ClusterNode) -> anyhow::Result<()> {
    for _ in 0..200 {
        if node.status().is_leader {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the dev node did not become leader within 10 s")
}

async fn dev_init_or_unseal(operator: &Operator, dir: &Path) -> anyhow::Result<()> {
    let key_path = dir.join(DEV_UNSEAL_KEY_FILE);
    let token_path = dir.join(DEV_ROOT_TOKEN_FILE);
    if operator.is_initialized()? {
        let key = Zeroizing::new(
            std::fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?,
        );
        operator
            .unseal(key.trim())
            .map_err(|e: OperatorError| anyhow::anyhow!("auto-unseal failed: {e}"))?;
        return Ok(());
    }
    let result = operator.init(1, 1).await?;
    let share = result.shares.first().context("init returned no share")?;
    for (path, contents) in [
        (&key_path, share.as_bytes()),
        (&token_path, result.root_token.as_bytes()),
    ] {
        files::write_private_file(path, contents)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn print_dev_banner(opts: &DevOptions, ca: &Path, hsm: &str) {
    let dir = opts.data_dir.display();
    let addr = opts.api_addr;
    // The banner prints paths, never the token or key themselves.
    println!(
        "\nCoffer dev server: single node, initialised and unsealed.\n\
         \n  API:         https://{addr}\n  CA cert:     {ca}\n  Root token:  {dir}/{DEV_ROOT_TOKEN_FILE}\n  Unseal key:  {dir}/{DEV_UNSEAL_KEY_FILE}\n  HSM tier:    {hsm}\n\
         \nTry it:\n\
         \n  export COFFER_ADDR=https://{addr} COFFER_CACERT={ca} COFFER_TOKEN=$(cat {dir}/{DEV_ROOT_TOKEN_FILE})\
         \n  coffer secret set hello --value world && coffer secret get hello\
         \n  curl --cacert {ca} -H \"Authorization: Bearer $COFFER_TOKEN\" \"https://{addr}/secrets/hello?api-version=2026-04-01\"\n",
        ca = ca.display(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_node_puts_its_cluster_port_next_to_the_api_port() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(dev_cluster_addr(at("127.0.0.1:8443")), at("127.0.0.1:8444"));
        assert_eq!(dev_cluster_addr(at("127.0.0.1:9000")), at("127.0.0.1:9001"));
        assert_eq!(dev_cluster_addr(at("127.0.0.1:0")), at("127.0.0.1:0"));
        assert_eq!(dev_cluster_addr(at("[::1]:65535")), at("[::1]:65534"));
    }
}
