//! The audit record: Key Vault's `AuditEvent` (fact sheet §9), one per
//! request, plus the node that wrote it.
//!
//! What a record may hold is decided by its types: there is no field for a
//! request or response body, so secret values, key material, passwords,
//! shares and TOTP codes cannot be written. A bearer token is never stored;
//! only its HMAC under the cluster's audit key ([`super::AuditKey`]), so an
//! auditor holding a leaked token can ask "was it used" without the trail
//! revealing tokens.

use serde::{Deserialize, Serialize};

/// `category` of every record.
pub const CATEGORY: &str = "AuditEvent";

/// One audited request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// UTC, 7 fraction digits (`2026-11-30T02:33:00.1234567Z`): the format
    /// Key Vault writes, fixed width, so text order is time order.
    pub time: String,
    /// Upper-case resource id of the vault (or `/COFFER/SYS` for the
    /// operator API).
    pub resource_id: String,
    /// `SecretGet`, `KeySign`, … (the operation table's name).
    pub operation_name: String,
    /// The client's `api-version`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operation_version: String,
    /// Always [`CATEGORY`].
    pub category: String,
    /// `Success` (also for 4xx, as Key Vault writes it) or `Failure` (5xx).
    pub result_type: String,
    /// HTTP reason phrase: `OK`, `Forbidden`, `Not Found`, ….
    pub result_signature: String,
    /// Error message of a failed request (never holds a value: error
    /// messages are built to exclude them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_description: Option<String>,
    /// Milliseconds, as a string (Key Vault's type).
    pub duration_ms: String,
    /// The client's address: the TCP peer, or the client a trusted proxy
    /// forwarded (`X-Forwarded-For`), as the network rules judge it.
    pub caller_ip_address: String,
    /// `x-ms-client-request-id` when the client sent a GUID, else a new one.
    pub correlation_id: String,
    /// Who called.
    pub identity: Identity,
    /// Request details.
    pub properties: Properties,
    /// The node that handled the request.
    pub node_id: u64,
    /// Position in that node's own file chain; set on records of the
    /// replicated trail so each is traced to its node's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_seq: Option<u64>,
    /// Id of the node's file chain (new when a node starts a chain from
    /// scratch, e.g. after its data dir was wiped), so the trail does not
    /// take a restarted chain's `seq` 1… for records it already holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_stream: Option<String>,
}

/// `identity` of a record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The verified caller's claims (empty for anonymous requests).
    pub claim: Claims,
}

/// The claims of the verified caller.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Principal object id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<String>,
    /// Client id of the calling application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// How the application authenticated (`0`, `1`, `2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appidacr: Option<String>,
    /// `app` or `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idtyp: Option<String>,
    /// User sign-in name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    /// Authentication methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The break-glass root token was used (no principal).
    #[serde(
        rename = "xms_coffer_root",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub root_token: bool,
}

impl Claims {
    /// Whether `principal` names this caller: its oid, appid or upn, or
    /// `root` for the root token.
    pub fn names(&self, principal: &str) -> bool {
        (self.root_token && principal.eq_ignore_ascii_case("root"))
            || [&self.oid, &self.appid, &self.upn]
                .into_iter()
                .flatten()
                .any(|v| v.eq_ignore_ascii_case(principal))
    }

    /// A short name of the caller for tables: upn, appid, oid, `root`, `-`.
    pub fn display(&self) -> &str {
        if self.root_token {
            return "root";
        }
        self.upn
            .as_deref()
            .or(self.appid.as_deref())
            .or(self.oid.as_deref())
            .unwrap_or("-")
    }
}

/// `properties` of a record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Properties {
    /// The object addressed (`https://{vault}/secrets/{name}`), when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `User-Agent`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_info: String,
    /// HTTP status of the answer.
    pub http_status_code: u16,
    /// Method and full request URI as received.
    pub request_uri: String,
    /// HTTP method.
    pub http_method: String,
    /// The vault addressed (`-` for the operator API).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vault: String,
    /// `hmac-sha256:…` of the bearer token, under the cluster audit key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_hmac: Option<String>,
}

/// Formats Unix time (nanoseconds) as Key Vault's record time:
/// `YYYY-MM-DDTHH:MM:SS.fffffffZ`.
pub fn format_time(unix_nanos: u128) -> String {
    let secs = i64::try_from(unix_nanos / 1_000_000_000).unwrap_or(i64::MAX);
    let frac = (unix_nanos % 1_000_000_000) / 100;
    let (date, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(date);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:07}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Now, as [`format_time`].
pub fn now() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format_time(nanos)
}

/// Parses a record time (`YYYY-MM-DDTHH:MM:SS[.f…]Z`, the form
/// [`format_time`] writes) back to Unix milliseconds; `None` when it is not
/// in that form.
pub fn parse_time_ms(time: &str) -> Option<u64> {
    let b = time.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !time.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { time.get(r)?.parse().ok() };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let frac = time.get(19..time.len() - 1)?;
    let millis = match frac.strip_prefix('.') {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) => {
            format!("{:0<3}", &digits[..digits.len().min(3)])
                .parse::<i64>()
                .ok()?
        }
        None if frac.is_empty() => 0,
        _ => return None,
    };
    let secs = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs * 1000 + millis).ok()
}

/// (year, month, day) to days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_has_seven_fraction_digits_and_sorts_as_text() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.0000000Z");
        // 2024-02-29T23:59:59.123456789Z
        let t = 1_709_251_199_123_456_789u128;
        assert_eq!(format_time(t), "2024-02-29T23:59:59.1234567Z");
        assert!(format_time(t) < format_time(t + 100));
    }

    #[test]
    fn times_parse_back_to_milliseconds() {
        let t = 1_709_251_199_123_456_789u128;
        assert_eq!(parse_time_ms(&format_time(t)), Some(1_709_251_199_123));
        assert_eq!(parse_time_ms(&format_time(0)), Some(0));
        assert_eq!(
            parse_time_ms("2026-11-30T02:33:00Z"),
            Some(1_796_005_980_000)
        );
        for bad in [
            "",
            "2026-11-30",
            "2026-13-30T02:33:00Z",
            "2026-11-30T02:33:00.Z",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_record_serialises_in_the_auditevent_shape() {
        let event = AuditEvent {
            time: format_time(0),
            operation_name: "SecretGet".into(),
            category: CATEGORY.into(),
            duration_ms: "3".into(),
            identity: Identity {
                claim: Claims {
                    oid: Some("o-1".into()),
                    amr: vec!["pwd".into()],
                    ..Default::default()
                },
            },
            properties: Properties {
                http_status_code: 200,
                ..Default::default()
            },
            ..Default::default()
        };
        let v = serde_json::to_value(&event).unwrap();
        assert_eq!(v["operationName"], "SecretGet");
        assert_eq!(v["durationMs"], "3");
        assert_eq!(v["identity"]["claim"]["oid"], "o-1");
        assert_eq!(v["properties"]["httpStatusCode"], 200);
        assert!(v["identity"]["claim"].get("xms_coffer_root").is_none());
        let back: AuditEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn a_principal_is_named_by_oid_appid_upn_or_root() {
        let user = Claims {
            oid: Some("o-1".into()),
            upn: Some("alice@example.com".into()),
            ..Default::default()
        };
        assert!(user.names("o-1") && user.names("ALICE@example.com"));
        assert!(!user.names("root") && !user.names("bob"));
        let root = Claims {
            root_token: true,
            ..Default::default()
        };
        assert!(root.names("root") && root.display() == "root");
    }
}
