//! Stored certificate records (JSON inside barrier ciphertext) and the
//! engine's public views of them.
//!
//! Layout (tables in [`crate::names`]): `c/{vault}/{name_lower}` the name
//! record, `cv/…/{version}` versions, `cp/…` the policy, `co/…` the pending
//! operation, `cc/{vault}/contacts` the contacts, `ci/{vault}/{issuer}`
//! issuers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::policy::Policy;
use crate::key_records::KeyMaterial;
use crate::object::DeletedInfo;

/// `cv/{vault}/{name_lower}/{version}`: one certificate version. Its key
/// and secret have the same name and version.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CertVersionRecord {
    /// Version id (32 lowercase hex), shared with the key and the secret.
    pub version: String,
    /// The certificate, DER.
    #[serde(with = "b64")]
    pub cer: Vec<u8>,
    /// Enabled.
    pub enabled: bool,
    /// Not-before (from the certificate), Unix seconds.
    pub nbf: i64,
    /// Expiry (from the certificate), Unix seconds.
    pub exp: i64,
    /// Creation, Unix seconds.
    pub created: u64,
    /// Last change, Unix seconds.
    pub updated: u64,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// Bytes as standard base64 in stored records (`#[serde(with = …)]`).
pub(super) mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(|_| serde::de::Error::custom("invalid base64"))
    }
}

/// Status of a pending operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OpStatus {
    /// Waiting (for a merge, or for the issuer).
    InProgress,
    /// The certificate exists.
    Completed,
    /// Cancelled on request.
    Cancelled,
    /// The issuer failed.
    Failed,
}

impl OpStatus {
    /// Key Vault's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OpStatus::InProgress => "inProgress",
            OpStatus::Completed => "completed",
            OpStatus::Cancelled => "cancelled",
            OpStatus::Failed => "failed",
        }
    }
}

/// `co/{vault}/{name_lower}`: the certificate's last create or import
/// request.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingRecord {
    /// Certificate name as written.
    pub name: String,
    /// Issuer name of the request.
    pub issuer: String,
    /// The CSR (DER) when a merge is awaited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    /// Cancellation was requested.
    pub cancellation_requested: bool,
    /// Status.
    pub status: OpStatus,
    /// Error of a failed request `(code, message)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<(String, String)>,
    /// 32 hex digits.
    pub request_id: String,
    /// The key awaiting the merged certificate (issuer Unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<KeyMaterial>,
    /// Enabled flag of the version to make.
    pub enabled: bool,
    /// Tags of the version to make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

impl std::fmt::Debug for PendingRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRecord")
            .field("name", &self.name)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl PendingRecord {
    /// The public view.
    pub fn operation(&self) -> CertificateOperation {
        CertificateOperation {
            name: self.name.clone(),
            issuer: self.issuer.clone(),
            csr: self.csr.clone(),
            cancellation_requested: self.cancellation_requested,
            status: self.status,
            error: self.error.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// A pending operation as answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateOperation {
    /// Certificate name.
    pub name: String,
    /// Issuer name.
    pub issuer: String,
    /// CSR, standard base64 of DER.
    pub csr: Option<String>,
    /// Cancellation was requested.
    pub cancellation_requested: bool,
    /// Status.
    pub status: OpStatus,
    /// `(code, message)` of a failure.
    pub error: Option<(String, String)>,
    /// 32 hex digits.
    pub request_id: String,
}

/// A certificate version as answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    /// Name as first written.
    pub name: String,
    /// Version (also the key's and the secret's).
    pub version: String,
    /// DER.
    pub cer: Vec<u8>,
    /// Enabled.
    pub enabled: bool,
    /// Not-before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// Creation.
    pub created: u64,
    /// Last change.
    pub updated: u64,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// The certificate's current policy (bundles show it; lists do not).
    pub policy: Option<Policy>,
}

impl CertVersionRecord {
    /// The public view under `name`, with `policy` when given.
    pub fn view(&self, name: &str, policy: Option<Policy>) -> Certificate {
        Certificate {
            name: name.to_owned(),
            version: self.version.clone(),
            cer: self.cer.clone(),
            enabled: self.enabled,
            nbf: self.nbf,
            exp: self.exp,
            created: self.created,
            updated: self.updated,
            tags: self.tags.clone(),
            policy,
        }
    }
}

/// A soft-deleted certificate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeletedCertificate {
    /// Latest version.
    pub certificate: Certificate,
    /// Unix seconds of the delete.
    pub deleted_date: u64,
    /// Unix seconds after which it is purged.
    pub scheduled_purge_date: u64,
}

impl DeletedCertificate {
    /// `v` deleted as `info` says.
    pub fn of(v: &CertVersionRecord, name: &str, info: DeletedInfo) -> Self {
        Self {
            certificate: v.view(name, None),
            deleted_date: info.deleted_date,
            scheduled_purge_date: info.scheduled_purge_date,
        }
    }
}

/// One certificate contact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// An issuer's administrator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDetails {
    /// First name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Last name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// An issuer's organisation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgDetails {
    /// Organisation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Administrators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_details: Option<Vec<AdminDetails>>,
}

/// `ci/{vault}/{issuer_lower}`: a certificate issuer.
#[derive(Clone, Serialize, Deserialize)]
pub struct IssuerRecord {
    /// Name as first written.
    pub name: String,
    /// Provider (`DigiCert`, `GlobalSign`, `Coffer`, …).
    pub provider: String,
    /// Account id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// Account password (write-only: never answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_details: Option<OrgDetails>,
    /// Enabled.
    pub enabled: bool,
    /// Creation.
    pub created: u64,
    /// Last change.
    pub updated: u64,
    /// `Coffer` issuers: `https://{host}/v1/pki/{vault}/{issuer}`, under
    /// which the CA certificate, CRL and OCSP responder are served (the
    /// address the issuer was set through; embedded in what it issues).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pki_url: Option<String>,
}

/// An issuer as answered (never its password).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuer {
    /// Name.
    pub name: String,
    /// Provider.
    pub provider: String,
    /// Account id.
    pub account_id: Option<String>,
    /// Organisation.
    pub org_details: Option<OrgDetails>,
    /// Enabled.
    pub enabled: bool,
    /// Creation.
    pub created: u64,
    /// Last change.
    pub updated: u64,
}

impl IssuerRecord {
    /// The public view (without the password).
    pub fn view(&self) -> Issuer {
        Issuer {
            name: self.name.clone(),
            provider: self.provider.clone(),
            account_id: self.account_id.clone(),
            org_details: self.org_details.clone(),
            enabled: self.enabled,
            created: self.created,
            updated: self.updated,
        }
    }
}

/// What a certificate backup carries besides name and versions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CertBackupExtra {
    /// The policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}
