//! `/metrics`: the node's Prometheus text exposition. Counters and
//! histograms are recorded where things happen (requests in the audit
//! layer, audit writes in the audit device); Raft and seal gauges are read
//! from the node when scraped. Names follow fact sheet §11.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::engine::alerts::ExpiryCounts;
use crate::operator::Operator;

/// Counter of leaderships this node observed (see
/// `cluster::node::count_leader_changes`).
pub const LEADER_CHANGES: &str = "coffer_raft_leader_changes_total";
/// Gauge of current secret versions expiring, by `within`.
pub const SECRETS_EXPIRING: &str = "coffer_secrets_expiring";
/// Gauge of current certificate versions expiring, by `within`.
pub const CERTIFICATES_EXPIRING: &str = "coffer_certificates_expiring";

/// Latency buckets (seconds): 1 ms … 10 s.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once (several in-process nodes of a
/// test share it); `None` when another recorder was installed first.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    describe_counter!(
        "coffer_requests_total",
        "Requests answered, by operation, status code and status class."
    );
    describe_histogram!(
        "coffer_request_duration_seconds",
        Unit::Seconds,
        "Time to answer a request, by operation (audit write included)."
    );
    describe_counter!(
        "coffer_audit_records_total",
        "Audit records written, by sink (file, raft, stdout, syslog)."
    );
    describe_counter!(
        "coffer_audit_failures_total",
        "Audit records that a sink could not write (file failures refuse requests)."
    );
    describe_gauge!(
        "coffer_audit_ship_backlog",
        "Audit records written to this node's file and not yet in the replicated trail."
    );
    describe_gauge!("coffer_raft_term", "Current Raft term.");
    describe_gauge!("coffer_raft_leader", "1 when this node is the Raft leader.");
    describe_counter!(
        "coffer_raft_apply_total",
        "Raft log entries applied to this node's state machine."
    );
    describe_gauge!(
        "coffer_raft_commit_index",
        "Highest log index known committed."
    );
    describe_gauge!(
        "coffer_raft_apply_lag",
        "Committed log entries not yet applied on this node."
    );
    describe_gauge!(
        "coffer_raft_leader_last_contact_seconds",
        Unit::Seconds,
        "On the leader: time since a quorum last acknowledged it."
    );
    describe_counter!(
        LEADER_CHANGES,
        "Leaders this node has seen take over (a new leader id or term); the first leader seen \
         after the node starts counts."
    );
    describe_histogram!(
        "coffer_raft_proposal_batch_size",
        "Client writes per Raft entry the leader proposed (proposal batching)."
    );
    describe_histogram!(
        raft_store::log_store::APPEND_SECONDS,
        Unit::Seconds,
        "Raft log appends: time from the append to its entries being durable (group commit)."
    );
    describe_histogram!(
        raft_store::log_store::FSYNC_SECONDS,
        Unit::Seconds,
        "Raft log group commits: the durable write itself (redb commit, or WAL write and \
         fdatasync), one per group of appends."
    );
    describe_histogram!(
        crate::crypto::hsm::OPERATION_SECONDS,
        Unit::Seconds,
        "HSM (PKCS#11) operations by operation, failed ones included; verify and RSA \
         encryption of HSM keys run in software and are not counted."
    );
    describe_counter!(
        crate::crypto::hsm::ERRORS_TOTAL,
        "HSM operations the device failed or could not be reached for, by operation \
         (refused input and failed decryptions of bad data are not counted)."
    );
    describe_gauge!(
        SECRETS_EXPIRING,
        "Current secret versions expiring within 7d or 30d (cumulative), or already expired \
         (within=\"expired\"), as of the leader's last lifecycle scan. Only the leader counts; \
         other nodes report 0, so take max() over the nodes."
    );
    describe_gauge!(
        CERTIFICATES_EXPIRING,
        "Current certificate versions expiring within 7d or 30d (cumulative), or already \
         expired (within=\"expired\"), as of the leader's last lifecycle scan. Only the \
         leader counts; other nodes report 0, so take max() over the nodes."
    );
    describe_gauge!("coffer_sealed", "1 when this node is sealed.");
    describe_counter!(
        "coffer_alerts_fired_total",
        "Alerts fired by the rules (counted on the leader that fired them)."
    );
    describe_counter!(
        "coffer_alerts_resolved_total",
        "Alerts resolved (their condition stopped holding)."
    );
    describe_counter!(
        "coffer_alerts_suppressed_total",
        "Threshold crossings not fired: the group's alert was active or throttled, or already fired."
    );
    describe_counter!(
        "coffer_alert_deliveries_total",
        "Alert notification attempts, by receiver type and outcome (delivered, failed)."
    );
    describe_gauge!(
        "coffer_alert_first_access_pairs",
        "Principal/object pairs a first-access rule remembers (on the leader)."
    );
    describe_gauge!(
        "coffer_alert_first_access_evicted_pairs",
        "Pairs a first-access rule forgot because its seen set was full (they alert again)."
    );
    describe_counter!(
        "coffer_events_recorded_total",
        "Lifecycle events (Event Grid) recorded by the leader for delivery."
    );
    describe_counter!(
        "coffer_events_emitted_total",
        "Lifecycle event notifications delivered, by event type."
    );
    metrics::counter!(LEADER_CHANGES).increment(0);
    // Registering a histogram is enough for it to be served (count 0).
    let _ = metrics::histogram!(raft_store::log_store::APPEND_SECONDS);
    let _ = metrics::histogram!(raft_store::log_store::FSYNC_SECONDS);
    for op in crate::crypto::hsm::operation::ALL {
        let _ = metrics::histogram!(crate::crypto::hsm::OPERATION_SECONDS, "operation" => op);
        metrics::counter!(crate::crypto::hsm::ERRORS_TOTAL, "operation" => op).increment(0);
    }
    set_expiring(None);
    for name in [
        "coffer_alerts_fired_total",
        "coffer_alerts_resolved_total",
        "coffer_alerts_suppressed_total",
        "coffer_events_recorded_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    for kind in ["webhook", "email", "sms", "syslog", "event-grid"] {
        for outcome in ["delivered", "failed"] {
            metrics::counter!("coffer_alert_deliveries_total", "receiver_type" => kind, "outcome" => outcome)
                .increment(0);
        }
    }
    for sink in ["file", "raft"] {
        metrics::counter!("coffer_audit_failures_total", "sink" => sink).increment(0);
        metrics::counter!("coffer_audit_records_total", "sink" => sink).increment(0);
    }
}

/// Sets the expiry gauges from the leader's scan (`counts` of secrets and
/// certificates), or to 0 on a node that does not lead (`None`).
pub fn set_expiring(counts: Option<(ExpiryCounts, ExpiryCounts)>) {
    let (secrets, certificates) = counts.unwrap_or_default();
    for (name, c) in [
        (SECRETS_EXPIRING, secrets),
        (CERTIFICATES_EXPIRING, certificates),
    ] {
        for (within, n) in c.by_window() {
            metrics::gauge!(name, "within" => within).set(n as f64);
        }
    }
}

/// Who may scrape `/metrics`: anyone, or only callers presenting the bearer
/// token of `[metrics] token_file` (kept as its SHA-256, compared in
/// constant time).
#[derive(Clone, Debug, Default)]
pub struct ScrapeAuth {
    token_sha256: Option<[u8; 32]>,
}

impl ScrapeAuth {
    /// Reads the token file, if one is configured (surrounding whitespace
    /// ignored; an empty file is refused rather than taken as "no token").
    pub fn from_file(path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading [metrics] token_file {}: {e}", path.display()))?;
        let token = text.trim();
        anyhow::ensure!(
            !token.is_empty(),
            "[metrics] token_file {} is empty",
            path.display()
        );
        Ok(Self::with_token(token))
    }

    /// Requires `token`.
    pub fn with_token(token: &str) -> Self {
        Self {
            token_sha256: Some(sha256(token.as_bytes())),
        }
    }

    /// Whether a request with these headers may scrape.
    pub fn allows(&self, headers: &axum::http::HeaderMap) -> bool {
        let Some(want) = self.token_sha256 else {
            return true;
        };
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        aws_lc_rs::constant_time::verify_slices_are_equal(&sha256(given.trim().as_bytes()), &want)
            .is_ok()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// `GET /metrics`, for the scrapers `scrape` allows.
pub fn router(operator: Arc<Operator>, scrape: ScrapeAuth) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state((operator, Arc::new(scrape)))
}

async fn render(
    State((operator, scrape)): State<(Arc<Operator>, Arc<ScrapeAuth>)>,
    headers: axum::http::HeaderMap,
) -> Response {
    if !scrape.allows(&headers) {
        let mut response = (
            axum::http::StatusCode::UNAUTHORIZED,
            "a bearer token is required to scrape /metrics ([metrics] token_file)\n",
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let status = operator.node().status();
    metrics::gauge!("coffer_raft_term").set(status.term as f64);
    metrics::gauge!("coffer_raft_leader").set(f64::from(u8::from(status.is_leader)));
    metrics::counter!("coffer_raft_apply_total").absolute(status.applied_index);
    metrics::gauge!("coffer_raft_commit_index").set(status.commit_index as f64);
    metrics::gauge!("coffer_raft_apply_lag")
        .set(status.commit_index.saturating_sub(status.applied_index) as f64);
    if let Some(ms) = operator.node().millis_since_quorum_ack() {
        metrics::gauge!("coffer_raft_leader_last_contact_seconds").set(ms as f64 / 1000.0);
    }
    metrics::gauge!("coffer_sealed").set(f64::from(u8::from(operator.is_sealed())));
    let body = handle().map(PrometheusHandle::render).unwrap_or_default();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
