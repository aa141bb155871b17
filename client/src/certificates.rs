//! Typed Key Vault certificates API (`/certificates`,
//! `/deletedcertificates`): create with a policy and wait for the
//! operation, import, read, list, delete.
//!
//! ```no_run
//! # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
//! use std::time::Duration;
//! use coffer_client::certificates::CertificatePolicy;
//!
//! let policy = CertificatePolicy::self_signed("CN=api.internal", &["api.internal"]);
//! let cert = client
//!     .certificates()
//!     .create_and_wait("api-tls", &policy, Duration::from_secs(60))
//!     .await?;
//! println!("{}", cert.id.unwrap_or_default());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::kv::{check, id_segments, path, scope_builders, unb64, version as checked_version};
use crate::kv::{DeletionInfo, Scope};
use crate::{Client, ClientError, Request};

/// How often [`Certificates::create_and_wait`] asks for the operation.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Certificate attributes (times are Unix seconds): the
/// [`Attributes`](crate::Attributes) every object kind shares.
///
/// ```
/// let attrs: coffer_client::certificates::CertificateAttributes = serde_json::from_str(
///     r#"{"enabled": true, "nbf": 1764547200, "exp": 1796083200, "recoveryLevel": "Recoverable"}"#,
/// ).unwrap();
/// assert_eq!(attrs.exp.zip(attrs.nbf).map(|(e, n)| (e - n) / 86_400), Some(365));
/// assert_eq!(attrs.recovery_level.as_deref(), Some("Recoverable"));
/// ```
pub type CertificateAttributes = crate::Attributes;

/// A certificate policy: how the key, the secret and the X.509 certificate
/// are made, who issues it and when it renews. Members are Key Vault's
/// JSON objects; see the Key Vault reference for their fields.
///
/// ```
/// use coffer_client::certificates::CertificatePolicy;
///
/// let p = CertificatePolicy::self_signed("CN=a.example", &["a.example"]);
/// let json = serde_json::to_value(&p).unwrap();
/// assert_eq!(json["issuer"]["name"], "Self");
/// assert_eq!(json["x509_props"]["sans"]["dns_names"][0], "a.example");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CertificatePolicy {
    /// `https://{host}/certificates/{name}/policy` (answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `{exportable, kty, key_size, reuse_key, crv}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_props: Option<serde_json::Value>,
    /// `{contentType}`: `application/x-pkcs12` or `application/x-pem-file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_props: Option<serde_json::Value>,
    /// `{subject, sans, ekus, key_usage, validity_months, basic_constraints}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_props: Option<serde_json::Value>,
    /// `[{trigger: {lifetime_percentage | days_before_expiry}, action: {action_type}}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_actions: Option<serde_json::Value>,
    /// `{name: "Self" | "Unknown" | an issuer, cty}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<serde_json::Value>,
    /// `{enabled, created, updated}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Value>,
}

impl CertificatePolicy {
    /// A self-signed RSA certificate for `subject` with DNS names `dns`,
    /// valid 12 months, the secret in PKCS#12.
    pub fn self_signed(subject: &str, dns: &[&str]) -> Self {
        Self {
            key_props: Some(
                serde_json::json!({"kty": "RSA", "key_size": 2048, "exportable": true, "reuse_key": false}),
            ),
            secret_props: Some(serde_json::json!({"contentType": "application/x-pkcs12"})),
            x509_props: Some(serde_json::json!({
                "subject": subject,
                "sans": {"dns_names": dns},
                "validity_months": 12,
            })),
            issuer: Some(serde_json::json!({"name": "Self"})),
            ..Self::default()
        }
    }
}

/// A certificate version (`CertificateBundle`).
///
/// ```
/// use coffer_client::certificates::CertificateBundle;
///
/// let cert: CertificateBundle = serde_json::from_str(r#"{
///     "id": "https://vault.example/certificates/api-tls/5b1f0c2e",
///     "kid": "https://vault.example/keys/api-tls/5b1f0c2e",
///     "sid": "https://vault.example/secrets/api-tls/5b1f0c2e",
///     "cer": "MIIBhTCCASugAwIBAgIQ",
///     "attributes": {"enabled": true}
/// }"#).unwrap();
/// assert_eq!(cert.name(), Some("api-tls"));
/// assert_eq!(cert.version(), Some("5b1f0c2e"));
/// // `cer` is base64 DER; a DER certificate starts with a SEQUENCE tag.
/// assert_eq!(cert.der()?[0], 0x30);
/// // An answer without `cer` is a decode error, not a panic.
/// assert!(CertificateBundle::default().der().is_err());
/// # Ok::<(), coffer_client::ClientError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CertificateBundle {
    /// `https://{host}/certificates/{name}/{version}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The key's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The secret's id (certificate and private key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// base64url SHA-1 thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5t: Option<String>,
    /// The certificate DER, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cer: Option<String>,
    /// Attributes.
    #[serde(default)]
    pub attributes: CertificateAttributes,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// The policy, when the answer carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<CertificatePolicy>,
}

impl CertificateBundle {
    /// Certificate name taken from `id`.
    pub fn name(&self) -> Option<&str> {
        id_segments(self.id.as_deref()?).map(|(n, _)| n)
    }

    /// Version taken from `id`.
    pub fn version(&self) -> Option<&str> {
        id_segments(self.id.as_deref()?).and_then(|(_, v)| v)
    }

    /// The certificate DER decoded from `cer`.
    pub fn der(&self) -> Result<Vec<u8>, ClientError> {
        let cer = self
            .cer
            .as_deref()
            .ok_or_else(|| ClientError::Decode("the answer has no cer".into()))?;
        unb64(cer, "cer")
    }
}

/// A certificate in a list (`CertificateItem`).
///
/// ```
/// let item: coffer_client::certificates::CertificateItem = serde_json::from_str(r#"{
///     "id": "https://vault.example/certificates/api-tls",
///     "x5t": "fLi3U52HunIVNXubkEnf8tP6Wbo",
///     "attributes": {"enabled": true}
/// }"#).unwrap();
/// assert_eq!(item.name(), Some("api-tls"));
/// assert_eq!(item.attributes.enabled, Some(true));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateItem {
    /// `https://{host}/certificates/{name}` (with `/{version}` in version lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// base64url SHA-1 thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x5t: Option<String>,
    /// Attributes.
    #[serde(default)]
    pub attributes: CertificateAttributes,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

impl CertificateItem {
    /// Certificate name taken from `id`.
    pub fn name(&self) -> Option<&str> {
        id_segments(self.id.as_deref()?).map(|(n, _)| n)
    }
}

/// A soft-deleted certificate.
///
/// ```
/// let deleted: coffer_client::certificates::DeletedCertificateBundle = serde_json::from_str(r#"{
///     "id": "https://vault.example/certificates/api-tls/5b1f0c2e",
///     "recoveryId": "https://vault.example/deletedcertificates/api-tls",
///     "scheduledPurgeDate": 1772323200
/// }"#).unwrap();
/// assert_eq!(deleted.certificate.name(), Some("api-tls"));
/// assert_eq!(deleted.deletion.scheduled_purge_date, Some(1772323200));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeletedCertificateBundle {
    /// The certificate as it was when deleted.
    #[serde(flatten)]
    pub certificate: CertificateBundle,
    /// Deletion data.
    #[serde(flatten)]
    pub deletion: DeletionInfo,
}

/// The error of a failed certificate operation.
///
/// ```
/// use coffer_client::certificates::CertificateOperation;
///
/// let op: CertificateOperation = serde_json::from_str(r#"{
///     "id": "https://vault.example/certificates/api-tls/pending",
///     "status": "failed",
///     "error": {"code": "BadParameter", "message": "unknown issuer"}
/// }"#).unwrap();
/// let err = op.error.expect("a failed operation says why");
/// assert_eq!((err.code.as_str(), err.message.as_str()), ("BadParameter", "unknown issuer"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationError {
    /// Error code.
    #[serde(default)]
    pub code: String,
    /// Error text.
    #[serde(default)]
    pub message: String,
}

/// A certificate operation (`/certificates/{name}/pending`).
///
/// ```
/// use coffer_client::certificates::CertificateOperation;
///
/// let op: CertificateOperation = serde_json::from_str(r#"{
///     "id": "https://vault.example/certificates/api-tls/pending",
///     "status": "inProgress",
///     "status_details": "Pending certificate created.",
///     "cancellation_requested": false
/// }"#).unwrap();
/// assert!(op.in_progress());
///
/// let done = CertificateOperation { status: "completed".into(), ..op };
/// assert!(!done.in_progress());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateOperation {
    /// `https://{host}/certificates/{name}/pending`.
    #[serde(default)]
    pub id: String,
    /// `inProgress`, `completed`, `failed` or `cancelled`.
    #[serde(default)]
    pub status: String,
    /// Human-readable status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_details: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
    /// The certificate once completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The CSR (base64) for an external issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    /// Whether cancellation was asked for.
    #[serde(default)]
    pub cancellation_requested: bool,
}

impl CertificateOperation {
    /// Whether the operation still runs.
    pub fn in_progress(&self) -> bool {
        self.status.eq_ignore_ascii_case("inProgress")
    }
}

/// A certificate (and optionally its key) to import.
///
/// ```no_run
/// # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
/// use coffer_client::certificates::ImportCertificate;
///
/// // A PEM chain followed by its private key.
/// let pem = std::fs::read("api-tls.pem")
///     .map_err(|e| coffer_client::ClientError::Config(e.to_string()))?;
/// let cert = ImportCertificate { value: pem, pem: true, ..ImportCertificate::default() };
/// let bundle = client.certificates().import("api-tls", &cert).await?;
/// assert_eq!(bundle.name(), Some("api-tls"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ImportCertificate {
    /// PKCS#12 bytes, or the PEM text of the certificate chain and key.
    pub value: Vec<u8>,
    /// Whether `value` is PEM (else PKCS#12).
    pub pem: bool,
    /// PKCS#12 password.
    pub password: Option<String>,
    /// Policy (its `secret_props.contentType` should match `pem`).
    pub policy: Option<CertificatePolicy>,
    /// Enabled flag.
    pub enabled: Option<bool>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct CreateBody<'a> {
    policy: &'a CertificatePolicy,
}

#[derive(Serialize)]
struct ImportBody<'a> {
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pwd: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a CertificatePolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<CertificateAttributes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a BTreeMap<String, String>>,
}

/// Handle on the certificates API; obtained with [`Client::certificates`].
///
/// ```no_run
/// # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
/// use coffer_client::certificates::CertificatePolicy;
///
/// let certs = client.certificates();
/// let policy = CertificatePolicy::self_signed("CN=api.internal", &["api.internal"]);
/// let op = certs.create("api-tls", &policy).await?;
/// if op.in_progress() {
///     println!("{}", certs.operation("api-tls").await?.status);
/// }
/// let cert = certs.get("api-tls", None).await?;
/// let der = cert.der()?;
/// # let _ = der; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Certificates<'a> {
    scope: Scope<'a>,
}

impl Client {
    /// The Key Vault certificates API of the default vault, with failover.
    pub fn certificates(&self) -> Certificates<'_> {
        Certificates {
            scope: Scope::new(self),
        }
    }
}

impl<'a> Certificates<'a> {
    scope_builders!();

    /// `POST /certificates/{name}/create`: starts making a new version.
    pub async fn create(
        &self,
        name: &str,
        policy: &CertificatePolicy,
    ) -> Result<CertificateOperation, ClientError> {
        let req = Request::post(path(&["certificates", check(name)?, "create"], None))
            .json(&CreateBody { policy })?;
        self.scope.json(req).await
    }

    /// `GET /certificates/{name}/pending`.
    pub async fn operation(&self, name: &str) -> Result<CertificateOperation, ClientError> {
        let req = Request::get(path(&["certificates", check(name)?, "pending"], None));
        self.scope.json(req).await
    }

    /// [`Certificates::create`], then polls the operation until it ends
    /// (or `wait` passes) and returns the new certificate. A failed or
    /// cancelled operation is an error with its code and message.
    pub async fn create_and_wait(
        &self,
        name: &str,
        policy: &CertificatePolicy,
        wait: Duration,
    ) -> Result<CertificateBundle, ClientError> {
        let started = Instant::now();
        let mut op = self.create(name, policy).await?;
        while op.in_progress() {
            if started.elapsed() >= wait {
                return Err(ClientError::Deadline {
                    elapsed: started.elapsed(),
                });
            }
            tokio::time::sleep(POLL_EVERY).await;
            op = self.operation(name).await?;
        }
        if !op.status.eq_ignore_ascii_case("completed") {
            let err = op.error.unwrap_or_default();
            return Err(ClientError::Http {
                status: 200,
                code: Some(err.code),
                inner_code: Some(op.status),
                message: err.message,
            });
        }
        self.get(name, None).await
    }

    /// `POST /certificates/{name}/import`.
    pub async fn import(
        &self,
        name: &str,
        cert: &ImportCertificate,
    ) -> Result<CertificateBundle, ClientError> {
        let value = if cert.pem {
            String::from_utf8(cert.value.clone())
                .map_err(|_| ClientError::Config("the PEM is not UTF-8".into()))?
        } else {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(&cert.value)
        };
        let attributes = cert.enabled.map(|enabled| CertificateAttributes {
            enabled: Some(enabled),
            ..CertificateAttributes::default()
        });
        let body = ImportBody {
            value,
            pwd: cert.password.as_deref(),
            policy: cert.policy.as_ref(),
            attributes,
            tags: cert.tags.as_ref(),
        };
        let req =
            Request::post(path(&["certificates", check(name)?, "import"], None)).json(&body)?;
        self.scope.json(req).await
    }

    /// `GET /certificates/{name}/{version}`; `None` reads the latest.
    pub async fn get(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<CertificateBundle, ClientError> {
        let version = checked_version(version)?;
        let req = Request::get(path(&["certificates", check(name)?, version], None));
        self.scope.json(req).await
    }

    /// `GET /certificates/{name}/policy`.
    pub async fn policy(&self, name: &str) -> Result<CertificatePolicy, ClientError> {
        let req = Request::get(path(&["certificates", check(name)?, "policy"], None));
        self.scope.json(req).await
    }

    /// `GET /certificates` as a stream.
    pub fn list_stream(
        &self,
        max_results: Option<u32>,
    ) -> impl Stream<Item = Result<CertificateItem, ClientError>> + 'a {
        self.scope.stream(path(&["certificates"], max_results))
    }

    /// `GET /certificates`, every page.
    pub async fn list(
        &self,
        max_results: Option<u32>,
    ) -> Result<Vec<CertificateItem>, ClientError> {
        self.scope
            .collect(path(&["certificates"], max_results))
            .await
    }

    /// `GET /certificates/{name}/versions`, every page.
    pub async fn versions(
        &self,
        name: &str,
        max_results: Option<u32>,
    ) -> Result<Vec<CertificateItem>, ClientError> {
        self.scope
            .collect(path(
                &["certificates", check(name)?, "versions"],
                max_results,
            ))
            .await
    }

    /// `DELETE /certificates/{name}`: soft-deletes it with its key and secret.
    pub async fn delete(&self, name: &str) -> Result<DeletedCertificateBundle, ClientError> {
        let req = Request::delete(path(&["certificates", check(name)?], None));
        self.scope.json(req).await
    }

    /// `GET /deletedcertificates/{name}`.
    pub async fn get_deleted(&self, name: &str) -> Result<DeletedCertificateBundle, ClientError> {
        let req = Request::get(path(&["deletedcertificates", check(name)?], None));
        self.scope.json(req).await
    }

    /// `POST /deletedcertificates/{name}/recover`.
    pub async fn recover(&self, name: &str) -> Result<CertificateBundle, ClientError> {
        let req = Request::post(path(
            &["deletedcertificates", check(name)?, "recover"],
            None,
        ));
        self.scope.json(req).await
    }

    /// `DELETE /deletedcertificates/{name}`: removes it for good.
    pub async fn purge(&self, name: &str) -> Result<(), ClientError> {
        let req = Request::delete(path(&["deletedcertificates", check(name)?], None));
        self.scope.call(req).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_decodes_standard_base64_cer() {
        let json = r#"{"id":"https://h/certificates/c/0f","kid":"https://h/keys/c/0f","cer":"MIIB+w==","attributes":{"enabled":true},"policy":{"id":"https://h/certificates/c/policy","issuer":{"name":"Self"}}}"#;
        let b: CertificateBundle = serde_json::from_str(json).unwrap();
        assert_eq!((b.name(), b.version()), (Some("c"), Some("0f")));
        assert_eq!(b.der().unwrap(), vec![0x30, 0x82, 0x01, 0xfb]);
        assert_eq!(b.policy.unwrap().issuer.unwrap()["name"], "Self");
    }

    #[test]
    fn operations_report_progress() {
        let op: CertificateOperation = serde_json::from_str(
            r#"{"id":"x","status":"inProgress","cancellation_requested":false}"#,
        )
        .unwrap();
        assert!(op.in_progress());
        let op: CertificateOperation = serde_json::from_str(
            r#"{"id":"x","status":"failed","error":{"code":"BadParameter","message":"no"}}"#,
        )
        .unwrap();
        assert!(!op.in_progress());
        assert_eq!(op.error.unwrap().code, "BadParameter");
    }
}
