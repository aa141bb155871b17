//! Which records `coffer audit query` asks for; one matcher, used by the
//! server that reads the trail.

use serde::{Deserialize, Serialize};

use super::record::AuditEvent;

/// Filters of a query; every given one must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// Records at or after this time (record time format, or a prefix of
    /// it such as `2026-11-30` or `2026-11-30T02:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Records before this time (same format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// oid, appid, upn, or `root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// `operationName` (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// An HTTP status (`403`) or class (`4xx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The vault addressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
}

impl Query {
    /// Whether `event` passes every filter.
    pub fn matches(&self, event: &AuditEvent) -> bool {
        let time_ok = self
            .since
            .as_deref()
            .is_none_or(|s| event.time.as_str() >= s)
            && self
                .until
                .as_deref()
                .is_none_or(|u| event.time.as_str() < u);
        time_ok
            && self
                .principal
                .as_deref()
                .is_none_or(|p| event.identity.claim.names(p))
            && self
                .operation
                .as_deref()
                .is_none_or(|o| event.operation_name.eq_ignore_ascii_case(o))
            && self
                .vault
                .as_deref()
                .is_none_or(|v| event.properties.vault.eq_ignore_ascii_case(v))
            && self
                .status
                .as_deref()
                .is_none_or(|s| status_matches(s, event.properties.http_status_code))
    }
}

fn status_matches(filter: &str, code: u16) -> bool {
    let f = filter.to_ascii_lowercase();
    match f.strip_suffix("xx") {
        Some(class) => class == (code / 100).to_string(),
        None => f == code.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{Claims, Identity, Properties};

    fn event(time: &str, upn: &str, op: &str, status: u16, vault: &str) -> AuditEvent {
        AuditEvent {
            time: time.into(),
            operation_name: op.into(),
            identity: Identity {
                claim: Claims {
                    upn: Some(upn.into()),
                    ..Default::default()
                },
            },
            properties: Properties {
                http_status_code: status,
                vault: vault.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn every_given_filter_must_match() {
        let e = event(
            "2026-11-30T02:10:00.0000000Z",
            "alice",
            "SecretGet",
            403,
            "prod",
        );
        assert!(Query::default().matches(&e));
        let q = Query {
            since: Some("2026-11-30T02:00".into()),
            until: Some("2026-11-30T03".into()),
            principal: Some("alice".into()),
            operation: Some("secretget".into()),
            status: Some("4xx".into()),
            vault: Some("prod".into()),
        };
        assert!(q.matches(&e));
        for q2 in [
            Query {
                since: Some("2026-11-30T02:11".into()),
                ..q.clone()
            },
            Query {
                until: Some("2026-11-30T02:10".into()),
                ..q.clone()
            },
            Query {
                principal: Some("bob".into()),
                ..q.clone()
            },
            Query {
                operation: Some("SecretSet".into()),
                ..q.clone()
            },
            Query {
                status: Some("200".into()),
                ..q.clone()
            },
            Query {
                status: Some("5xx".into()),
                ..q.clone()
            },
            Query {
                vault: Some("dev".into()),
                ..q.clone()
            },
        ] {
            assert!(!q2.matches(&e), "{q2:?}");
        }
        assert!(Query {
            status: Some("403".into()),
            ..Default::default()
        }
        .matches(&e));
    }
}
