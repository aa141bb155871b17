//! JSON shapes of the Key Vault certificates API and their rendering from
//! engine views. Ids are absolute URLs; `x5t` is unpadded base64url while
//! `cer`, `csr` and `x5c` are padded standard base64 (as the service).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::models::AttributesIn;
use crate::engine::certificates::issuers::IssuerParams;
use crate::engine::certificates::pending::status_details;
use crate::engine::certificates::x509::x5t;
use crate::engine::certificates::{
    Certificate, CertificateOperation, Contact, Issuer, OpStatus, OrgDetails, Policy,
    RECOVERABLE_DAYS, RECOVERY_LEVEL,
};

/// Body of `POST /certificates/{name}/create`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    /// The policy (an empty policy is refused by the engine's checks).
    pub policy: Option<Policy>,
    /// Attributes of the first version.
    pub attributes: Option<AttributesIn>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Accepted; chains are kept in the order given.
    pub preserve_cert_order: Option<bool>,
}

/// Body of `POST /certificates/{name}/import`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportBody {
    /// base64 PFX, base64 PEM or raw PEM.
    pub value: String,
    /// PFX password.
    pub pwd: Option<String>,
    /// Policy (exportability, content type).
    pub policy: Option<Policy>,
    /// Attributes.
    pub attributes: Option<AttributesIn>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Accepted; chains are kept in the order given.
    pub preserve_cert_order: Option<bool>,
}

/// Body of `POST /certificates/{name}/pending/merge`.
#[derive(Deserialize)]
pub struct MergeBody {
    /// Standard base64 DER certificates, leaf first.
    pub x5c: Vec<String>,
    /// Attributes.
    pub attributes: Option<AttributesIn>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
}

/// Body of `PATCH /certificates/{name}/{version}`.
#[derive(Deserialize)]
pub struct UpdateBody {
    /// Attributes.
    pub attributes: Option<AttributesIn>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Policy changes.
    pub policy: Option<Policy>,
}

/// Body of `PATCH /certificates/{name}/pending`.
#[derive(Deserialize)]
pub struct PendingPatch {
    /// Must be true.
    pub cancellation_requested: bool,
}

/// Body and answer of `/certificates/contacts`.
#[derive(Deserialize, Serialize)]
pub struct ContactsBody {
    /// `{base}/certificates/contacts` (answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The contacts.
    #[serde(default)]
    pub contacts: Vec<Contact>,
}

/// `credentials` of an issuer.
#[derive(Deserialize, Serialize, Default)]
pub struct Credentials {
    /// Account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Password (requests only).
    #[serde(default, skip_serializing)]
    pub pwd: Option<String>,
}

/// `attributes` of an issuer.
#[derive(Deserialize, Serialize, Default)]
pub struct IssuerAttributes {
    /// Enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<u64>,
    /// Last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<u64>,
}

/// Body of `PUT`/`PATCH /certificates/issuers/{name}`.
#[derive(Deserialize)]
pub struct IssuerBody {
    /// Provider.
    pub provider: Option<String>,
    /// Credentials.
    pub credentials: Option<Credentials>,
    /// Organisation.
    pub org_details: Option<OrgDetails>,
    /// Attributes.
    pub attributes: Option<IssuerAttributes>,
}

impl From<IssuerBody> for IssuerParams {
    fn from(b: IssuerBody) -> Self {
        let creds = b.credentials.unwrap_or_default();
        IssuerParams {
            provider: b.provider,
            account_id: creds.account_id,
            password: creds.pwd.map(zeroize::Zeroizing::new),
            org_details: b.org_details,
            enabled: b.attributes.and_then(|a| a.enabled),
            pki_url: None,
        }
    }
}

/// `attributes` of certificate responses.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertAttributesOut {
    enabled: bool,
    nbf: i64,
    exp: i64,
    created: u64,
    updated: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_level: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recoverable_days: Option<u64>,
}

/// The policy with its id.
#[derive(Serialize)]
pub struct PolicyOut {
    id: String,
    #[serde(flatten)]
    policy: Policy,
}

/// Renders the policy of certificate `name`.
pub fn policy_out(base: &str, name: &str, policy: Policy) -> PolicyOut {
    PolicyOut {
        id: format!("{base}/certificates/{name}/policy"),
        policy,
    }
}

/// `{"id": …}`.
#[derive(Serialize)]
pub struct IdOnly {
    id: String,
}

/// CertificateBundle.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateBundle {
    id: String,
    kid: String,
    sid: String,
    x5t: String,
    cer: String,
    attributes: CertAttributesOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<PolicyOut>,
    pending: IdOnly,
}

/// CertificateItem of lists.
#[derive(Serialize)]
pub struct CertificateItem {
    id: String,
    x5t: String,
    attributes: CertAttributesOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<BTreeMap<String, String>>,
}

fn attributes(c: &Certificate, recovery: bool) -> CertAttributesOut {
    CertAttributesOut {
        enabled: c.enabled,
        nbf: c.nbf,
        exp: c.exp,
        created: c.created,
        updated: c.updated,
        recovery_level: recovery.then_some(RECOVERY_LEVEL),
        recoverable_days: recovery.then_some(RECOVERABLE_DAYS),
    }
}

/// The bundle of a certificate version (with its policy when given).
pub fn bundle(base: &str, c: Certificate) -> CertificateBundle {
    let (name, version) = (&c.name, &c.version);
    CertificateBundle {
        id: format!("{base}/certificates/{name}/{version}"),
        kid: format!("{base}/keys/{name}/{version}"),
        sid: format!("{base}/secrets/{name}/{version}"),
        x5t: x5t(&c.cer),
        cer: STANDARD.encode(&c.cer),
        attributes: attributes(&c, true),
        tags: c.tags.clone(),
        pending: IdOnly {
            id: format!("{base}/certificates/{name}/pending"),
        },
        policy: c.policy.clone().map(|p| policy_out(base, name, p)),
    }
}

/// A list item; versioned ids for version lists.
pub fn item(base: &str, c: &Certificate, versioned: bool) -> CertificateItem {
    CertificateItem {
        id: if versioned {
            format!("{base}/certificates/{}/{}", c.name, c.version)
        } else {
            format!("{base}/certificates/{}", c.name)
        },
        x5t: x5t(&c.cer),
        attributes: attributes(c, false),
        tags: c.tags.clone(),
    }
}

/// `issuer` of an operation.
#[derive(Serialize)]
pub struct IssuerName {
    name: String,
}

/// `error` of an operation.
#[derive(Serialize)]
pub struct OpError {
    code: String,
    message: String,
}

/// CertificateOperation.
#[derive(Serialize)]
pub struct OperationOut {
    id: String,
    issuer: IssuerName,
    #[serde(skip_serializing_if = "Option::is_none")]
    csr: Option<String>,
    cancellation_requested: bool,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_details: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<OpError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    request_id: String,
}

/// Renders an operation.
pub fn operation(base: &str, op: &CertificateOperation) -> OperationOut {
    OperationOut {
        id: format!("{base}/certificates/{}/pending", op.name),
        issuer: IssuerName {
            name: op.issuer.clone(),
        },
        csr: op.csr.clone(),
        cancellation_requested: op.cancellation_requested,
        status: op.status.as_str(),
        status_details: status_details(op),
        error: op
            .error
            .clone()
            .map(|(code, message)| OpError { code, message }),
        target: (op.status == OpStatus::Completed)
            .then(|| format!("{base}/certificates/{}", op.name)),
        request_id: op.request_id.clone(),
    }
}

/// IssuerBundle.
#[derive(Serialize)]
pub struct IssuerOut {
    id: String,
    provider: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    credentials: Option<Credentials>,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_details: Option<OrgDetails>,
    attributes: IssuerAttributes,
}

/// Renders an issuer (never its password).
pub fn issuer(base: &str, i: Issuer) -> IssuerOut {
    IssuerOut {
        id: format!("{base}/certificates/issuers/{}", i.name),
        provider: i.provider,
        credentials: i.account_id.map(|a| Credentials {
            account_id: Some(a),
            pwd: None,
        }),
        org_details: i.org_details,
        attributes: IssuerAttributes {
            enabled: Some(i.enabled),
            created: Some(i.created),
            updated: Some(i.updated),
        },
    }
}

/// An issuer in a list.
#[derive(Serialize)]
pub struct IssuerItem {
    id: String,
    provider: String,
}

/// Renders an issuer list item.
pub fn issuer_item(base: &str, i: &Issuer) -> IssuerItem {
    IssuerItem {
        id: format!("{base}/certificates/issuers/{}", i.name),
        provider: i.provider.clone(),
    }
}

/// Contacts with their id.
pub fn contacts(base: &str, contacts: Vec<Contact>) -> ContactsBody {
    ContactsBody {
        id: Some(format!("{base}/certificates/contacts")),
        contacts,
    }
}
