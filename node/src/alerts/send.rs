//! Sending one notification to one receiver: webhook (common alert schema,
//! HMAC-SHA256 signed), email over SMTP (lettre), SMS through an HTTP
//! gateway, syslog (the audit sinks' RFC 5424 client). Errors say what
//! failed without quoting a receiver's secret.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::audit::sinks::{hostname, rfc5424_message, Syslog, SyslogTarget};
use crate::engine::alerts::{
    Firing, MonitorCondition, Receiver, ReceiverKind, SmsFormat, SmtpSecurity,
};

/// How long one attempt may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Header carrying the webhook body's signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-coffer-signature";
/// Header carrying the firing id (receivers deduplicate on it).
pub const ALERT_ID_HEADER: &str = "x-coffer-alert-id";
/// `<PRI>` of alert syslog messages: facility authpriv (10), severity
/// alert (1).
const SYSLOG_PRI: u8 = 10 * 8 + 1;

pub(super) type HttpClient =
    hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why a notification was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The receiver's settings cannot be used.
    #[error("receiver settings: {0}")]
    Config(String),
    /// Connecting or talking to the receiver failed.
    #[error("{0}")]
    Transport(String),
    /// The receiver answered with an error status.
    #[error("the receiver answered HTTP {0}")]
    Status(u16),
    /// The attempt took longer than [`SEND_TIMEOUT`].
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// An Event Grid subscriber did not echo the validation code.
    #[error("the subscriber did not answer the subscription validation handshake with its validationCode")]
    Validation,
}

/// Header telling an Event Grid subscriber what a post is:
/// `SubscriptionValidation` or `Notification`.
pub const EVENT_GRID_TYPE_HEADER: &str = "aeg-event-type";

/// Sends notifications; holds the HTTP client with the system roots.
#[derive(Clone)]
pub struct Sender {
    http: HttpClient,
    cluster: Arc<str>,
    vault_domain: Option<Arc<str>>,
}

impl Sender {
    /// A sender naming `cluster` in alert target ids, trusting the system
    /// roots for HTTPS receivers.
    pub fn new(cluster: &str) -> Result<Self, SendError> {
        Ok(Self {
            http: http_client(None)?,
            cluster: cluster.into(),
            vault_domain: None,
        })
    }

    /// Names objects in events as `https://{vault}.{domain}/…` (without a
    /// domain: `https://{vault}/…`).
    pub fn with_vault_domain(mut self, domain: Option<&str>) -> Self {
        self.vault_domain = domain.map(Into::into);
        self
    }

    fn vault_host(&self, vault: &str) -> String {
        match &self.vault_domain {
            Some(d) => format!("{vault}.{d}"),
            None => vault.to_owned(),
        }
    }

    /// The Event Grid subscription validation handshake with an
    /// `event-grid` receiver: a `SubscriptionValidationEvent` whose
    /// `validationCode` the subscriber must echo as `validationResponse`.
    pub async fn validate_subscription(&self, receiver: &Receiver) -> Result<(), SendError> {
        let ReceiverKind::EventGrid { url, ca_pem, .. } = &receiver.kind else {
            return Err(SendError::Config("not an event-grid receiver".into()));
        };
        let code = uuid::Uuid::new_v4().to_string();
        let body = serde_json::to_vec(&serde_json::json!([{
            "id": uuid::Uuid::new_v4().to_string(),
            "topic": format!("/subscriptions/{}/resourceGroups/coffer/providers/Microsoft.KeyVault/vaults", self.cluster),
            "subject": "",
            "data": {"validationCode": code, "validationUrl": null},
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": crate::engine::audit::record::now(),
            "metadataVersion": "1",
            "dataVersion": "2",
        }]))
        .map_err(|e| SendError::Config(e.to_string()))?;
        let headers = vec![
            ("content-type", "application/json".to_owned()),
            (EVENT_GRID_TYPE_HEADER, "SubscriptionValidation".to_owned()),
            ("aeg-subscription-name", receiver.name.to_ascii_uppercase()),
        ];
        let exchange = self.post(url, ca_pem.as_deref(), headers, body);
        let answer = match tokio::time::timeout(SEND_TIMEOUT, exchange).await {
            Ok(r) => r?,
            Err(_) => return Err(SendError::Timeout(SEND_TIMEOUT)),
        };
        let echoed = serde_json::from_slice::<serde_json::Value>(&answer)
            .ok()
            .and_then(|v| v["validationResponse"].as_str().map(str::to_owned));
        if echoed.as_deref() == Some(code.as_str()) {
            Ok(())
        } else {
            Err(SendError::Validation)
        }
    }

    /// Sends `firing`'s `condition` notification to `receiver`.
    pub async fn send(
        &self,
        receiver: &Receiver,
        firing: &Firing,
        condition: MonitorCondition,
    ) -> Result<(), SendError> {
        match tokio::time::timeout(SEND_TIMEOUT, self.send_inner(receiver, firing, condition)).await
        {
            Ok(r) => r,
            Err(_) => Err(SendError::Timeout(SEND_TIMEOUT)),
        }
    }

    async fn send_inner(
        &self,
        receiver: &Receiver,
        firing: &Firing,
        condition: MonitorCondition,
    ) -> Result<(), SendError> {
        match &receiver.kind {
            ReceiverKind::Webhook {
                url,
                secret,
                ca_pem,
            } => {
                let body = serde_json::to_vec(&firing.common_schema(condition, &self.cluster))
                    .map_err(|e| SendError::Config(e.to_string()))?;
                let mut headers = vec![
                    ("content-type", "application/json".to_owned()),
                    (ALERT_ID_HEADER, firing.id.clone()),
                    ("x-coffer-monitor-condition", condition.as_str().to_owned()),
                ];
                if let Some(key) = secret {
                    headers.push((SIGNATURE_HEADER, signature(key.as_bytes(), &body)));
                }
                self.post(url, ca_pem.as_deref(), headers, body)
                    .await
                    .map(drop)
            }
            ReceiverKind::EventGrid { url, ca_pem, .. } => {
                let test;
                let event = match &firing.event {
                    Some(e) => e,
                    None => {
                        test = test_event(firing);
                        &test
                    }
                };
                let host = self.vault_host(&event.vault);
                let body = serde_json::to_vec(&event.event_grid(&firing.id, &host, &self.cluster))
                    .map_err(|e| SendError::Config(e.to_string()))?;
                let headers = vec![
                    ("content-type", "application/json".to_owned()),
                    (EVENT_GRID_TYPE_HEADER, "Notification".to_owned()),
                    ("aeg-subscription-name", receiver.name.to_ascii_uppercase()),
                    (ALERT_ID_HEADER, firing.id.clone()),
                ];
                self.post(url, ca_pem.as_deref(), headers, body)
                    .await
                    .map(drop)
            }
            ReceiverKind::Sms {
                url,
                format,
                to,
                from,
                authorization,
                to_field,
                from_field,
                body_field,
            } => {
                let text = firing.summary(condition);
                let mut fields: Vec<(&str, &str)> = vec![
                    (to_field.as_str(), to.as_str()),
                    (body_field.as_str(), text.as_str()),
                ];
                if let Some(f) = from {
                    fields.push((from_field.as_str(), f.as_str()));
                }
                let (content_type, body) = match format {
                    SmsFormat::Form => (
                        "application/x-www-form-urlencoded",
                        url::form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(fields)
                            .finish()
                            .into_bytes(),
                    ),
                    SmsFormat::Json => {
                        let map: serde_json::Map<String, serde_json::Value> = fields
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
                            .collect();
                        (
                            "application/json",
                            serde_json::to_vec(&map)
                                .map_err(|e| SendError::Config(e.to_string()))?,
                        )
                    }
                };
                let mut headers = vec![
                    ("content-type", content_type.to_owned()),
                    (ALERT_ID_HEADER, firing.id.clone()),
                ];
                if let Some(a) = authorization {
                    headers.push(("authorization", a.clone()));
                }
                self.post(url, None, headers, body).await.map(drop)
            }
            ReceiverKind::Email {
                host,
                port,
                security,
                username,
                password,
                from,
                to,
                certificate_contacts,
            } => {
                // A certificate contacts' notice goes to the contacts.
                let contacts = firing
                    .event
                    .as_ref()
                    .filter(|e| *certificate_contacts && !e.contacts.is_empty())
                    .map(|e| e.contacts.as_slice());
                let email = Email {
                    host,
                    port: *port,
                    security: *security,
                    username: username.as_deref(),
                    password: password.as_deref(),
                    from,
                    to: contacts.unwrap_or(to),
                };
                email.send(firing, condition, &self.cluster).await
            }
            ReceiverKind::Syslog { target } => {
                let target = SyslogTarget::parse(target).map_err(SendError::Config)?;
                let msg = serde_json::to_vec(&serde_json::json!({
                    "alertId": firing.id,
                    "monitorCondition": condition.as_str(),
                    "summary": firing.summary(condition),
                    "rule": firing.rule,
                    "group": firing.group,
                }))
                .map_err(|e| SendError::Config(e.to_string()))?;
                let time = crate::engine::audit::record::now();
                let message = rfc5424_message(SYSLOG_PRI, &time, &hostname(), "alert", &msg);
                tokio::task::spawn_blocking(move || Syslog::new(target).send(&message))
                    .await
                    .map_err(|e| SendError::Transport(e.to_string()))?
                    .map_err(|e| SendError::Transport(format!("syslog: {e}")))
            }
        }
    }

    async fn post(
        &self,
        url: &str,
        ca_pem: Option<&str>,
        headers: Vec<(&str, String)>,
        body: Vec<u8>,
    ) -> Result<Bytes, SendError> {
        let own;
        let client = match ca_pem {
            Some(pem) => {
                own = http_client(Some(pem))?;
                &own
            }
            None => &self.http,
        };
        let mut req = hyper::Request::post(url);
        for (name, value) in headers {
            let value = HeaderValue::from_str(&value)
                .map_err(|_| SendError::Config(format!("header {name} is not valid")))?;
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SendError::Config(format!("request: {e}")))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| SendError::Transport(error_chain(&e)))?;
        let status = resp.status();
        // Read the answer (the connection can then be reused); a broken
        // body after a success status still counts as delivered.
        let answer = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(answer)
        } else {
            Err(SendError::Status(status.as_u16()))
        }
    }
}

/// `error: cause: cause` (hyper's errors say little at the top).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `sha256=<hex HMAC-SHA256 of body under key>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match <Hmac<sha2::Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn tls_config(extra_pem: Option<&str>) -> Result<rustls::ClientConfig, SendError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = extra_pem {
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
            let cert = cert.map_err(|e| SendError::Config(format!("ca_pem: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| SendError::Config(format!("ca_pem: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn client_with(tls: rustls::ClientConfig) -> HttpClient {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(SEND_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

pub(super) fn http_client(extra_pem: Option<&str>) -> Result<HttpClient, SendError> {
    Ok(client_with(tls_config(extra_pem)?))
}

/// What a receiver test sends an `event-grid` receiver: an event about
/// no real object, named after the test firing.
fn test_event(firing: &Firing) -> crate::engine::alerts::LifecycleEvent {
    crate::engine::alerts::LifecycleEvent {
        event_type: "Microsoft.KeyVault.SecretNewVersionCreated".into(),
        object_type: crate::engine::alerts::ObjectType::Secret,
        vault: "coffer-receiver-test".into(),
        name: "coffer-receiver-test".into(),
        version: firing.id.clone(),
        nbf: None,
        exp: None,
        time: firing.fired_at.clone(),
        contacts: Vec::new(),
    }
}

/// The text of an event email.
fn event_email_body(
    firing: &Firing,
    event: &crate::engine::alerts::LifecycleEvent,
    cluster: &str,
) -> String {
    let date = |t: Option<i64>| {
        t.and_then(|s| u128::try_from(s).ok())
            .map(|s| crate::engine::audit::record::format_time(s * 1_000_000_000))
            .unwrap_or_else(|| "-".into())
    };
    let mut lines = vec![
        event.event_type.clone(),
        String::new(),
        format!("Cluster: {cluster}"),
        format!("Vault: {}", event.vault),
        format!("{:?}: {}", event.object_type, event.name),
        format!("Version: {}", event.version),
        format!("Not before: {}", date(event.nbf)),
        format!("Expires: {}", date(event.exp)),
        format!("Event time: {}", event.time),
        format!("Event id: {}", firing.id),
    ];
    if !event.contacts.is_empty() {
        lines.push(String::new());
        lines.push("You are a certificate contact of this vault.".into());
    }
    lines.push(String::new());
    lines.join("\n")
}

/// The text of an alert email: one short field per line (so it travels
/// as 7-bit text, searchable as written).
fn email_body(firing: &Firing, condition: MonitorCondition, cluster: &str) -> String {
    if let Some(event) = &firing.event {
        return event_email_body(firing, event, cluster);
    }
    let mut lines = vec![
        format!("{}: {}", condition.as_str(), firing.rule),
        String::new(),
        format!("Condition: {}", condition.as_str()),
        format!("Severity: Sev{}", firing.severity),
        format!("Cluster: {cluster}"),
        format!("{}: {}", firing.group_by.dimension(), firing.group),
        format!("Signal: {:?}", firing.signal),
        format!(
            "Count: {} (threshold {}, window {} s)",
            firing.count, firing.threshold, firing.window_secs
        ),
        format!("Window start: {}", firing.window_start),
        format!("Crossed at: {}", firing.fired_at),
    ];
    if let Some(r) = &firing.resolved_at {
        lines.push(format!("Resolved at: {r}"));
    }
    lines.push(format!("Alert id: {}", firing.id));
    if !firing.description.is_empty() {
        lines.push(String::new());
        lines.push(firing.description.clone());
    }
    lines.push(String::new());
    lines.join("\n")
}

/// An email receiver's settings for one message.
struct Email<'a> {
    host: &'a str,
    port: u16,
    security: SmtpSecurity,
    username: Option<&'a str>,
    password: Option<&'a str>,
    from: &'a str,
    to: &'a [String],
}

impl Email<'_> {
    async fn send(
        &self,
        firing: &Firing,
        condition: MonitorCondition,
        cluster: &str,
    ) -> Result<(), SendError> {
        use lettre::message::{header::ContentType, Mailbox};
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

        let mailbox = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| SendError::Config(format!("address {a:?}: {e}")))
        };
        let mut builder = Message::builder()
            .from(mailbox(self.from)?)
            .subject(firing.summary(condition));
        for to in self.to {
            builder = builder.to(mailbox(to)?);
        }
        let message = builder
            .header(ContentType::TEXT_PLAIN)
            .body(email_body(firing, condition, cluster))
            .map_err(|e| SendError::Config(format!("message: {e}")))?;
        let smtp_err =
            |e: lettre::transport::smtp::Error| SendError::Transport(format!("smtp: {e}"));
        let mut transport = match self.security {
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host)
            }
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(self.host).map_err(smtp_err)?
            }
            SmtpSecurity::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(self.host).map_err(smtp_err)?
            }
        }
        .port(self.port)
        .timeout(Some(SEND_TIMEOUT));
        if let (Some(user), Some(pass)) = (self.username, self.password) {
            transport = transport.credentials(Credentials::new(user.to_owned(), pass.to_owned()));
        }
        transport
            .build()
            .send(message)
            .await
            .map(|_| ())
            .map_err(smtp_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};

    type Seen = Arc<Mutex<Vec<(String, HeaderMap, Vec<u8>)>>>;

    /// An HTTP receiver answering `status` to `/in`.
    async fn receiver(status: StatusCode) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .route(
                "/in",
                axum::routing::post(
                    move |State(seen): State<Seen>, headers: HeaderMap, body: Bytes| async move {
                        seen.lock()
                            .unwrap()
                            .push(("/in".into(), headers, body.to_vec()));
                        status
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/in", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn firing() -> Firing {
        serde_json::from_value(serde_json::json!({
            "id": "0123456789abcdef0123456789abcdef", "rule": "burst", "severity": 1,
            "signal": "denied", "group_by": "ip", "group": "10.0.0.9", "threshold": 5,
            "window_secs": 60, "count": 5, "fired_seq": 9,
            "fired_at": "2026-11-30T02:33:00.0000000Z",
            "window_start": "2026-11-30T02:32:10.0000000Z",
            "state": "Fired", "deliveries": []
        }))
        .unwrap()
    }

    fn named(kind: serde_json::Value) -> Receiver {
        let mut v = kind;
        v["name"] = "r".into();
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn webhooks_are_signed_and_sms_gateways_get_their_fields() {
        let sender = Sender::new("test").unwrap();
        let (url, seen) = receiver(StatusCode::OK).await;
        let hook = named(serde_json::json!({"type": "webhook", "url": url, "secret": "k"}));
        sender
            .send(&hook, &firing(), MonitorCondition::Resolved)
            .await
            .unwrap();
        let sms = named(serde_json::json!({
            "type": "sms", "url": url, "format": "json", "to": "+1555", "from": "Coffer",
            "to_field": "to", "body_field": "text", "authorization": "Bearer gw-token"
        }));
        sender
            .send(&sms, &firing(), MonitorCondition::Fired)
            .await
            .unwrap();
        let seen = seen.lock().unwrap();
        let (_, headers, body) = &seen[0];
        assert_eq!(headers[SIGNATURE_HEADER], signature(b"k", body).as_str());
        assert_eq!(headers[ALERT_ID_HEADER], "0123456789abcdef0123456789abcdef");
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["data"]["essentials"]["monitorCondition"], "Resolved");
        let (_, headers, body) = &seen[1];
        assert_eq!(headers["authorization"], "Bearer gw-token");
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(v["to"], "+1555");
        assert_eq!(v["From"], "Coffer");
        assert!(v["text"].as_str().unwrap().contains("Fired: burst"), "{v}");
    }

    #[tokio::test]
    async fn refusals_and_unreachable_receivers_are_errors() {
        let sender = Sender::new("test").unwrap();
        let (url, _) = receiver(StatusCode::SERVICE_UNAVAILABLE).await;
        let hook = named(serde_json::json!({"type": "webhook", "url": url}));
        assert!(matches!(
            sender.send(&hook, &firing(), MonitorCondition::Fired).await,
            Err(SendError::Status(503))
        ));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let gone = named(serde_json::json!({
            "type": "webhook", "url": format!("http://127.0.0.1:{port}/in")
        }));
        assert!(matches!(
            sender.send(&gone, &firing(), MonitorCondition::Fired).await,
            Err(SendError::Transport(_))
        ));
    }

    #[test]
    fn email_lines_stay_short() {
        let body = email_body(&firing(), MonitorCondition::Fired, "test");
        assert!(body.lines().all(|l| l.len() <= 78), "{body}");
        assert!(body.contains("Condition: Fired") && body.contains("CallerIPAddress: 10.0.0.9"));
    }

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
