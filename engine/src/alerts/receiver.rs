//! Receivers: where notifications go. Their settings are replicated
//! configuration; their secrets (webhook signing key, SMTP password, SMS
//! gateway credentials) are barrier-encrypted like every value and never
//! read back through the API ([`Receiver::redacted`]).

use serde::{Deserialize, Serialize};

use super::rule::is_valid_config_name;
use crate::error::EngineError;

/// What replaces a secret in answers.
pub const REDACTED: &str = "<redacted>";

/// How an email receiver's connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmtpSecurity {
    /// STARTTLS, required (refuses a server that does not offer it).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain text (a relay on the same host, tests).
    None,
}

/// Body encoding of an SMS gateway request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SmsFormat {
    /// `application/x-www-form-urlencoded` (Twilio-style).
    #[default]
    Form,
    /// A JSON object.
    Json,
}

fn to_field() -> String {
    "To".into()
}

fn from_field() -> String {
    "From".into()
}

fn body_field() -> String {
    "Body".into()
}

fn smtp_port() -> u16 {
    587
}

/// One receiver's kind and settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ReceiverKind {
    /// HTTP(S) POST of the Azure Monitor common alert schema.
    Webhook {
        /// `https://…` (or `http://` for a receiver on a private network).
        url: String,
        /// Signing key: the body's HMAC-SHA256 goes in `x-coffer-signature`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
        /// PEM CA certificates trusted besides the system roots.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_pem: Option<String>,
    },
    /// Email over SMTP.
    Email {
        /// SMTP server host name.
        host: String,
        /// SMTP port.
        #[serde(default = "smtp_port")]
        port: u16,
        /// Connection security.
        #[serde(default)]
        security: SmtpSecurity,
        /// SMTP user, if the server wants a login.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// SMTP password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        /// Sender address.
        from: String,
        /// Recipient addresses (may be empty when the receiver only mails
        /// certificate contacts).
        #[serde(default)]
        to: Vec<String>,
        /// Also mail `CertificateNearExpiry` to a vault's certificate
        /// contacts when a certificate's `EmailContacts` lifetime action
        /// triggers.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        certificate_contacts: bool,
    },
    /// A text message through an HTTP SMS gateway.
    Sms {
        /// The gateway's endpoint.
        url: String,
        /// Form or JSON body.
        #[serde(default)]
        format: SmsFormat,
        /// Destination number.
        to: String,
        /// Sender number or name, if the gateway wants one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// `Authorization` header value (`Basic …`, `Bearer …`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authorization: Option<String>,
        /// Field names of the destination, sender and text.
        #[serde(default = "to_field")]
        to_field: String,
        /// See `to_field`.
        #[serde(default = "from_field")]
        from_field: String,
        /// See `to_field`.
        #[serde(default = "body_field")]
        body_field: String,
    },
    /// An Event Grid webhook subscription: lifecycle events in the Event
    /// Grid schema, after the subscription validation handshake.
    EventGrid {
        /// The subscriber's endpoint, `https://…` (or `http://`).
        url: String,
        /// Event types delivered (`Microsoft.KeyVault.SecretNearExpiry`, …);
        /// empty: every type.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        event_types: Vec<String>,
        /// Vaults whose events are delivered; empty: every vault.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        vaults: Vec<String>,
        /// PEM CA certificates trusted besides the system roots.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_pem: Option<String>,
    },
    /// An RFC 5424 message to a syslog collector.
    Syslog {
        /// `udp://host:port`, `tcp://host:port` or `unix:///dev/log`.
        target: String,
    },
}

/// A receiver (replicated configuration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receiver {
    /// Name (set from the path).
    #[serde(default)]
    pub name: String,
    /// Kind and settings.
    #[serde(flatten)]
    pub kind: ReceiverKind,
}

impl Receiver {
    /// Refuses receivers that cannot work.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::BadParameter(format!("alert receiver: {m}")));
        if !is_valid_config_name(&self.name) {
            return bad("the name must be 1-64 letters, digits, '-' or '_'");
        }
        let http_url = |u: &str| {
            url::Url::parse(u)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .is_some()
        };
        match &self.kind {
            ReceiverKind::Webhook { url, secret, .. } => {
                if !http_url(url) {
                    return bad("url must be an http(s) URL");
                }
                if secret.as_deref() == Some(REDACTED) {
                    return bad("give the signing secret itself, not the redacted marker");
                }
            }
            ReceiverKind::Email {
                host,
                from,
                to,
                certificate_contacts,
                ..
            } => {
                if host.is_empty() || from.is_empty() || (to.is_empty() && !certificate_contacts) {
                    return bad("email needs host, from and at least one to");
                }
                if !from.contains('@') || to.iter().any(|t| !t.contains('@')) {
                    return bad("from and to must be email addresses");
                }
            }
            ReceiverKind::Sms { url, to, .. } => {
                if !http_url(url) || to.is_empty() {
                    return bad("sms needs an http(s) url and a to number");
                }
            }
            ReceiverKind::EventGrid {
                url, event_types, ..
            } => {
                if !http_url(url) {
                    return bad("url must be an http(s) URL");
                }
                if let Some(t) = event_types.iter().find(|t| !is_event_type(t)) {
                    return bad(&format!("{t} is not a Key Vault event type"));
                }
            }
            ReceiverKind::Syslog { target } => {
                let ok = ["udp://", "tcp://", "unix://"]
                    .iter()
                    .any(|p| target.starts_with(p) && target.len() > p.len());
                if !ok {
                    return bad("target must be udp://host:port, tcp://host:port or unix:///path");
                }
            }
        }
        Ok(())
    }

    /// The receiver as answers show it: secrets replaced by [`REDACTED`].
    pub fn redacted(&self) -> Self {
        let hide = |s: &Option<String>| s.as_ref().map(|_| REDACTED.to_owned());
        let kind = match &self.kind {
            ReceiverKind::Webhook {
                url,
                secret,
                ca_pem,
            } => ReceiverKind::Webhook {
                url: url.clone(),
                secret: hide(secret),
                ca_pem: ca_pem.clone(),
            },
            ReceiverKind::Email {
                host,
                port,
                security,
                username,
                password,
                from,
                to,
                certificate_contacts,
            } => ReceiverKind::Email {
                host: host.clone(),
                port: *port,
                security: *security,
                username: username.clone(),
                password: hide(password),
                from: from.clone(),
                to: to.clone(),
                certificate_contacts: *certificate_contacts,
            },
            ReceiverKind::Sms {
                url,
                format,
                to,
                from,
                authorization,
                to_field,
                from_field,
                body_field,
            } => ReceiverKind::Sms {
                url: url.clone(),
                format: *format,
                to: to.clone(),
                from: from.clone(),
                authorization: hide(authorization),
                to_field: to_field.clone(),
                from_field: from_field.clone(),
                body_field: body_field.clone(),
            },
            ReceiverKind::EventGrid { .. } | ReceiverKind::Syslog { .. } => self.kind.clone(),
        };
        Self {
            name: self.name.clone(),
            kind,
        }
    }

    /// `webhook`, `email`, `sms`, `syslog`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ReceiverKind::Webhook { .. } => "webhook",
            ReceiverKind::Email { .. } => "email",
            ReceiverKind::Sms { .. } => "sms",
            ReceiverKind::EventGrid { .. } => "event-grid",
            ReceiverKind::Syslog { .. } => "syslog",
        }
    }
}

/// `Microsoft.KeyVault.{Secret|Key|Certificate}{NewVersionCreated|
/// NearExpiry|Expired}`.
fn is_event_type(t: &str) -> bool {
    t.strip_prefix("Microsoft.KeyVault.").is_some_and(|rest| {
        ["Secret", "Key", "Certificate"].iter().any(|o| {
            rest.strip_prefix(o)
                .is_some_and(|k| matches!(k, "NewVersionCreated" | "NearExpiry" | "Expired"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receivers_parse_validate_and_hide_their_secrets() {
        let hook: Receiver = serde_json::from_value(serde_json::json!({
            "name": "hook", "type": "webhook",
            "url": "https://alerts.example.com/in", "secret": "s3cret-signing-key"
        }))
        .unwrap();
        hook.validate().unwrap();
        let shown = serde_json::to_string(&hook.redacted()).unwrap();
        assert!(
            !shown.contains("s3cret") && shown.contains(REDACTED),
            "{shown}"
        );
        let sms: Receiver = serde_json::from_value(serde_json::json!({
            "name": "pager", "type": "sms", "url": "http://127.0.0.1:9/sms",
            "to": "+15550100", "authorization": "Basic dXNlcjpwYXNz"
        }))
        .unwrap();
        sms.validate().unwrap();
        assert!(!serde_json::to_string(&sms.redacted())
            .unwrap()
            .contains("dXNlcjpwYXNz"));
        let mail: Receiver = serde_json::from_value(serde_json::json!({
            "name": "ops", "type": "email", "host": "smtp.example.com",
            "from": "coffer@example.com", "to": ["ops@example.com"], "password": "pw-123456"
        }))
        .unwrap();
        mail.validate().unwrap();
        assert!(!serde_json::to_string(&mail.redacted())
            .unwrap()
            .contains("pw-123456"));
        for bad in [
            serde_json::json!({"name": "x", "type": "webhook", "url": "ftp://x"}),
            serde_json::json!({"name": "x", "type": "syslog", "target": "/dev/log"}),
            serde_json::json!({"name": "x", "type": "email", "host": "h", "from": "a", "to": []}),
        ] {
            let r: Receiver = serde_json::from_value(bad.clone()).unwrap();
            assert!(r.validate().is_err(), "{bad}");
        }
    }
}
