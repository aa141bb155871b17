//! Lifecycle events (fact sheet §8): `Microsoft.KeyVault.{Secret|Key|
//! Certificate}{NewVersionCreated|NearExpiry|Expired}` for the current
//! version of every object, delivered to Event Grid subscriptions (the
//! `event-grid` receivers) and, for certificates whose policy has an
//! `EmailContacts` lifetime action, to the vault's certificate contacts
//! through the email receivers marked `certificate_contacts`.
//!
//! An event is a [`Firing`] with [`Firing::event`] set: the leader records
//! it through Raft with a compare-and-set on its id before anything is
//! sent, and the alerts' delivery path sends it and records every attempt.
//! The id is a digest of what the event is about (type, vault, object,
//! version, expiry), so a leader that takes over finds the firing and does
//! not emit it again; delivery is at least once with that stable id.
//!
//! Events are recorded only while some receiver wants them, so a cluster
//! without subscriptions keeps no event history.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::firing::{Delivery, Firing, MonitorCondition};
use super::receiver::{Receiver, ReceiverKind};
use super::rule::{GroupBy, Rule, Signal};
use super::state::Holding;
use super::{key, AlertsEngine, FIRING_PREFIX, PENDING_PREFIX, RECEIVER_PREFIX, RULE_PREFIX};
use crate::audit::record::format_time;
use crate::cas::{self, Plan};
use crate::certificates::{email_contacts_due, CertVersionRecord};
use crate::error::EngineError;
use crate::names::{CERTS, CERT_VERSIONS, KEYS, KEY_VERSIONS, SECRETS, SECRET_VERSIONS};
use crate::object::MetaRecord;
use crate::store::{Compare, Mutation, Txn};
use crate::view::{TableScan, VaultView};

/// Key Vault's lead time of `…NearExpiry`: 30 days before `exp`.
pub const DEFAULT_NEAR_EXPIRY_SECS: u64 = 30 * 86_400;
/// A version created longer ago than this is not announced as new (a
/// subscription created today does not get the history of the vault).
pub const NEW_VERSION_WINDOW_SECS: u64 = 600;
/// Events recorded per scan at most (the rest wait for the next one).
const EVENTS_MAX: usize = 500;
/// Severity shown for events in firing lists (informational).
const EVENT_SEVERITY: u8 = 3;

/// The kind of object an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectType {
    /// A secret.
    Secret,
    /// A key.
    Key,
    /// A certificate.
    Certificate,
}

impl ObjectType {
    /// The path segment of its ids: `secrets`, `keys`, `certificates`.
    pub fn collection(self) -> &'static str {
        match self {
            ObjectType::Secret => "secrets",
            ObjectType::Key => "keys",
            ObjectType::Certificate => "certificates",
        }
    }

    fn name(self) -> &'static str {
        match self {
            ObjectType::Secret => "Secret",
            ObjectType::Key => "Key",
            ObjectType::Certificate => "Certificate",
        }
    }
}

/// What happened to the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A new version became current.
    NewVersionCreated,
    /// The current version expires within the lead time.
    NearExpiry,
    /// The current version expired.
    Expired,
}

impl EventKind {
    fn name(self) -> &'static str {
        match self {
            EventKind::NewVersionCreated => "NewVersionCreated",
            EventKind::NearExpiry => "NearExpiry",
            EventKind::Expired => "Expired",
        }
    }
}

/// `Microsoft.KeyVault.{object}{kind}`.
pub fn event_type(object: ObjectType, kind: EventKind) -> String {
    format!("Microsoft.KeyVault.{}{}", object.name(), kind.name())
}

/// One lifecycle event, as recorded in its firing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// `Microsoft.KeyVault.SecretNearExpiry`, ….
    pub event_type: String,
    /// Secret, key or certificate.
    pub object_type: ObjectType,
    /// Vault name.
    pub vault: String,
    /// Object name as created.
    pub name: String,
    /// Version id.
    pub version: String,
    /// Not-before of the version, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expiry of the version, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// When the event happened (Key Vault record time format).
    pub time: String,
    /// Addresses of the certificate contacts (an `EmailContacts` event).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<String>,
}

impl LifecycleEvent {
    /// One line for email subjects and logs.
    pub fn summary(&self) -> String {
        let exp = self
            .exp
            .map(|e| format!(", expires {}", format_time(secs_to_nanos(e))))
            .unwrap_or_default();
        format!(
            "Coffer event {}: {}/{} version {}{exp}",
            self.event_type, self.vault, self.name, self.version
        )
    }

    /// The event in the Event Grid schema (a one-element array, as Event
    /// Grid posts them), ids under `https://{vault_host}/…`, topic under
    /// `tenant`.
    pub fn event_grid(&self, id: &str, vault_host: &str, tenant: &str) -> Value {
        json!([{
            "id": uuid_form(id),
            "topic": format!(
                "/subscriptions/{tenant}/resourceGroups/coffer/providers/Microsoft.KeyVault/vaults/{}",
                self.vault
            ),
            "subject": self.name,
            "eventType": self.event_type,
            "eventTime": self.time,
            "data": {
                "Id": format!(
                    "https://{vault_host}/{}/{}/{}",
                    self.object_type.collection(), self.name, self.version
                ),
                "VaultName": self.vault,
                "ObjectType": self.object_type.name(),
                "ObjectName": self.name,
                "Version": self.version,
                "NBF": self.nbf,
                "EXP": self.exp,
            },
            "dataVersion": "1",
            "metadataVersion": "1",
        }])
    }
}

fn secs_to_nanos(secs: i64) -> u128 {
    u128::try_from(secs).unwrap_or(0) * 1_000_000_000
}

/// A 32-hex id written as a GUID (`8-4-4-4-12`), as Event Grid ids are.
pub fn uuid_form(id: &str) -> String {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!(
            "{}-{}-{}-{}-{}",
            &id[..8],
            &id[8..12],
            &id[12..16],
            &id[16..20],
            &id[20..]
        )
    } else {
        id.to_owned()
    }
}

/// The stable id of an event: a digest of everything that makes it this
/// event (`contacts` distinguishes the contacts' notice from the
/// subscriptions' event of the same version).
pub fn event_id(event: &LifecycleEvent, contacts: bool) -> String {
    use sha2::{Digest, Sha256};
    let exp = event.exp.unwrap_or(0).to_be_bytes();
    let mut h = Sha256::new();
    for part in [
        event.event_type.as_bytes(),
        event.vault.as_bytes(),
        event.name.to_ascii_lowercase().as_bytes(),
        event.version.as_bytes(),
        &exp[..],
        if contacts { b"contacts" } else { b"" },
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(&h.finalize()[..16])
}

impl Firing {
    /// The firing that delivers `event` to `receivers`.
    pub fn for_event(id: String, event: LifecycleEvent, receivers: &[String], now: u64) -> Self {
        Self {
            id,
            rule: event.event_type.clone(),
            description: event.summary(),
            severity: EVENT_SEVERITY,
            signal: Signal::Event,
            group_by: GroupBy::None,
            group: format!("{}/{}", event.vault, event.name),
            threshold: 1,
            window_secs: 0,
            count: 1,
            requests: None,
            fired_seq: 0,
            fired_at: event.time.clone(),
            window_start: event.time.clone(),
            state: MonitorCondition::Fired,
            resolved_at: None,
            deliveries: receivers
                .iter()
                .map(|r| Delivery::pending(r, MonitorCondition::Fired, now))
                .collect(),
            event: Some(event),
        }
    }
}

impl Receiver {
    /// Whether this receiver is an Event Grid subscription that wants
    /// `event_type` events of `vault`.
    pub fn subscribes(&self, event_type: &str, vault: &str) -> bool {
        match &self.kind {
            ReceiverKind::EventGrid {
                event_types,
                vaults,
                ..
            } => {
                (event_types.is_empty() || event_types.iter().any(|t| t == event_type))
                    && (vaults.is_empty() || vaults.iter().any(|v| v.eq_ignore_ascii_case(vault)))
            }
            _ => false,
        }
    }

    /// Whether this is an email receiver that mails certificate contacts.
    pub fn mails_contacts(&self) -> bool {
        matches!(
            self.kind,
            ReceiverKind::Email {
                certificate_contacts: true,
                ..
            }
        )
    }
}

/// What one scan did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventScan {
    /// Events recorded now.
    pub emitted: usize,
    /// Events found already recorded (by this or an earlier leader).
    pub known: usize,
    /// `expiring` alerts fired.
    pub fired: usize,
    /// `expiring` alerts resolved.
    pub resolved: usize,
    /// The scan walked every object (it stops early in a storm of events,
    /// and then the counts below cover only part of the objects).
    pub complete: bool,
    /// Current secret versions by how soon they expire (certificates'
    /// own secrets are counted as certificates, not here).
    pub secrets: ExpiryCounts,
    /// Current certificate versions by how soon they expire.
    pub certificates: ExpiryCounts,
}

/// Lead time of the short expiry window (`within="7d"`).
pub const EXPIRY_WITHIN_SHORT_SECS: u64 = 7 * 86_400;
/// Lead time of the long expiry window (`within="30d"`).
pub const EXPIRY_WITHIN_LONG_SECS: u64 = 30 * 86_400;

/// How many current, not deleted versions of one kind of object expire
/// soon or have expired, at the scan's time. The windows are cumulative
/// (what expires within 7 days also expires within 30); an expired
/// version is in none of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExpiryCounts {
    /// Not yet expired, `exp` within [`EXPIRY_WITHIN_SHORT_SECS`].
    pub within_short: u64,
    /// Not yet expired, `exp` within [`EXPIRY_WITHIN_LONG_SECS`].
    pub within_long: u64,
    /// `exp` has passed.
    pub expired: u64,
}

impl ExpiryCounts {
    /// The counts named by window (`7d`, `30d`) and `expired`, as the
    /// `within` label of the expiry gauges shows them.
    pub fn by_window(&self) -> [(&'static str, u64); 3] {
        [
            ("7d", self.within_short),
            ("30d", self.within_long),
            ("expired", self.expired),
        ]
    }

    /// Counts a version expiring at `exp` (Unix seconds) as seen at `now`.
    fn count(&mut self, exp: i64, now: u64) {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let left = exp.saturating_sub(now);
        if left <= 0 {
            self.expired += 1;
            return;
        }
        let left = left.unsigned_abs();
        if left <= EXPIRY_WITHIN_SHORT_SECS {
            self.within_short += 1;
        }
        if left <= EXPIRY_WITHIN_LONG_SECS {
            self.within_long += 1;
        }
    }
}

/// The dates of a version, whatever its kind (secret, key and certificate
/// version records share these field names).
#[derive(Deserialize)]
struct Dates {
    version: String,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    exp: Option<i64>,
    created: u64,
}

impl AlertsEngine {
    /// One scan of every vault's secrets, keys and certificates at `now`
    /// (Unix seconds) on the leader: records each lifecycle event that
    /// some receiver wants and that no leader recorded yet, and fires and
    /// resolves the `expiring` alert rules. `near_expiry` is the lead time
    /// of `…NearExpiry` in seconds.
    pub async fn emit_events(&self, now: u64, near_expiry: u64) -> Result<EventScan, EngineError> {
        self.store.read_fence().await?;
        let rules: Vec<Rule> = self
            .list::<Rule>(RULE_PREFIX)?
            .into_iter()
            .filter(|r| r.enabled && r.condition.signal == Signal::Expiring)
            .collect();
        let mut holding: Vec<Vec<Holding>> = vec![Vec::new(); rules.len()];
        let mut scan = self
            .scan_objects(now, near_expiry, &rules, &mut holding)
            .await?;
        // An incomplete scan (a storm of events) does not know what stopped
        // holding: resolution waits for a complete one.
        let complete = scan.emitted < EVENTS_MAX;
        scan.complete = complete;
        for (rule, groups) in rules.iter().zip(&holding) {
            let o = self.apply_state(rule, groups, complete, now * 1000).await?;
            scan.fired += o.fired;
            scan.resolved += o.resolved;
        }
        Ok(scan)
    }

    /// Walks the objects: events into firings, `expiring` rules' holding
    /// groups into `holding` (one list per rule).
    async fn scan_objects(
        &self,
        now: u64,
        near_expiry: u64,
        rules: &[Rule],
        holding: &mut [Vec<Holding>],
    ) -> Result<EventScan, EngineError> {
        let receivers: Vec<Receiver> = self.list(RECEIVER_PREFIX)?;
        let subscriptions: Vec<&Receiver> = receivers
            .iter()
            .filter(|r| matches!(r.kind, ReceiverKind::EventGrid { .. }))
            .collect();
        let contacts: Vec<String> = receivers
            .iter()
            .filter(|r| r.mails_contacts())
            .map(|r| r.name.clone())
            .collect();
        // Always walked, even when nothing subscribes: the expiry counts
        // (the `…_expiring` gauges) come from this scan, not from scrapes.
        let mut scan = EventScan::default();
        let tables = [
            (ObjectType::Secret, SECRETS, SECRET_VERSIONS),
            (ObjectType::Key, KEYS, KEY_VERSIONS),
            (ObjectType::Certificate, CERTS, CERT_VERSIONS),
        ];
        for (object, meta_table, version_table) in tables {
            let mut objects = TableScan::new(&*self.store, meta_table);
            while let Some(batch) = objects.next_batch()? {
                for (vault, lower, entry) in batch {
                    if scan.emitted >= EVENTS_MAX {
                        return Ok(scan);
                    }
                    let Ok(meta) = cas::decode::<MetaRecord>(&entry.value) else {
                        continue;
                    };
                    // A certificate's key and secret are announced as the
                    // certificate; deleted objects have no current version.
                    if meta.deleted.is_some() || (meta.managed && object != ObjectType::Certificate)
                    {
                        continue;
                    }
                    let view = VaultView::unchecked(&*self.store, &vault);
                    let suffix = format!("{lower}/{}", meta.latest);
                    let Some(version) = view.get(version_table, &suffix)? else {
                        continue;
                    };
                    let Ok(dates) = cas::decode::<Dates>(&version.value) else {
                        continue;
                    };
                    if let Some(exp) = dates.exp {
                        match object {
                            ObjectType::Secret => scan.secrets.count(exp, now),
                            ObjectType::Certificate => scan.certificates.count(exp, now),
                            ObjectType::Key => {}
                        }
                        let group = format!("{vault}/{}/{}", object.collection(), meta.name);
                        let ahead = |within: u64| {
                            exp <= i64::try_from(now.saturating_add(within)).unwrap_or(i64::MAX)
                        };
                        for (rule, held) in rules.iter().zip(holding.iter_mut()) {
                            let vault_ok = rule
                                .condition
                                .filter
                                .vault
                                .as_deref()
                                .is_none_or(|v| v.eq_ignore_ascii_case(&vault));
                            if vault_ok && ahead(rule.condition.within()) {
                                held.push(Holding {
                                    group: group.clone(),
                                    episode: u64::try_from(exp).unwrap_or(0),
                                    count: 1,
                                });
                            }
                        }
                    }
                    for kind in due_kinds(&dates, now, near_expiry) {
                        let event = LifecycleEvent {
                            event_type: event_type(object, kind),
                            object_type: object,
                            vault: vault.clone(),
                            name: meta.name.clone(),
                            version: dates.version.clone(),
                            nbf: dates.nbf,
                            exp: dates.exp,
                            time: event_time(&dates, kind, now),
                            contacts: Vec::new(),
                        };
                        let wanted: Vec<String> = subscriptions
                            .iter()
                            .filter(|r| r.subscribes(&event.event_type, &vault))
                            .map(|r| r.name.clone())
                            .collect();
                        if !wanted.is_empty() {
                            let id = event_id(&event, false);
                            self.record_event(id, event, &wanted, now, &mut scan)
                                .await?;
                        }
                    }
                    if object == ObjectType::Certificate && !contacts.is_empty() {
                        let cert: CertVersionRecord = cas::decode(&version.value)?;
                        if let Some(emails) = email_contacts_due(&view, &lower, &cert, now)? {
                            let event = LifecycleEvent {
                                event_type: event_type(object, EventKind::NearExpiry),
                                object_type: object,
                                vault: vault.clone(),
                                name: meta.name.clone(),
                                version: cert.version.clone(),
                                nbf: Some(cert.nbf),
                                exp: Some(cert.exp),
                                time: format_time(u128::from(now) * 1_000_000_000),
                                contacts: emails,
                            };
                            let id = event_id(&event, true);
                            self.record_event(id, event, &contacts, now, &mut scan)
                                .await?;
                        }
                    }
                }
            }
        }
        Ok(scan)
    }

    /// Records the firing of `event` unless one with `id` exists.
    async fn record_event(
        &self,
        id: String,
        event: LifecycleEvent,
        receivers: &[String],
        now: u64,
        scan: &mut EventScan,
    ) -> Result<(), EngineError> {
        let fkey = key(FIRING_PREFIX, &id);
        // A local read first: every scan meets every recorded event again.
        if self.store.get(&fkey)?.is_some() {
            scan.known += 1;
            return Ok(());
        }
        let firing = Firing::for_event(id.clone(), event, receivers, now);
        let value = cas::encode(&firing)?;
        let recorded = cas::write(&*self.store, None, || {
            if self.store.get(&fkey)?.is_some() {
                return Ok(Plan::Answer(false));
            }
            Ok(Plan::Commit(Txn {
                compare: vec![Compare::Revision {
                    key: fkey.clone(),
                    revision: 0,
                }],
                mutations: vec![
                    Mutation::Put {
                        key: fkey.clone(),
                        value: value.clone(),
                    },
                    Mutation::Put {
                        key: key(PENDING_PREFIX, &id),
                        value: b"null".to_vec(),
                    },
                ],
                result: b"true".to_vec(),
            }))
        })
        .await?;
        if recorded {
            scan.emitted += 1;
            tracing::info!(event = %id, summary = %firing.description, "lifecycle event recorded");
        } else {
            scan.known += 1;
        }
        Ok(())
    }
}

/// The events a version with `dates` has at `now`: new while younger than
/// [`NEW_VERSION_WINDOW_SECS`]; near expiry from `exp - near_expiry` until
/// `exp`; expired from `exp` for as long as the lead time (an object that
/// expired long ago is history, not news).
fn due_kinds(dates: &Dates, now: u64, near_expiry: u64) -> Vec<EventKind> {
    let mut out = Vec::new();
    if dates.created <= now && now < dates.created.saturating_add(NEW_VERSION_WINDOW_SECS) {
        out.push(EventKind::NewVersionCreated);
    }
    if let Some(exp) = dates.exp {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let lead = i64::try_from(near_expiry).unwrap_or(i64::MAX);
        if now < exp && now >= exp.saturating_sub(lead) {
            out.push(EventKind::NearExpiry);
        }
        if now >= exp && now < exp.saturating_add(lead.max(86_400)) {
            out.push(EventKind::Expired);
        }
    }
    out
}

/// When the event happened: creation for a new version, the expiry for
/// `Expired`, the scan for `NearExpiry` (which happens when noticed).
fn event_time(dates: &Dates, kind: EventKind, now: u64) -> String {
    let secs = match kind {
        EventKind::NewVersionCreated => dates.created,
        EventKind::Expired => dates.exp.and_then(|e| u64::try_from(e).ok()).unwrap_or(now),
        EventKind::NearExpiry => now,
    };
    format_time(u128::from(secs) * 1_000_000_000)
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
