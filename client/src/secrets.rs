//! Typed Key Vault secrets API (`/secrets`, `/deletedsecrets`).
//!
//! ```no_run
//! # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
//! use futures::TryStreamExt as _;
//! use coffer_client::secrets::SetOptions;
//!
//! client.secrets().set("db-password", "hunter2", &SetOptions::default()).await?;
//! let names: Vec<_> = client.secrets().list_stream(Some(25))
//!     .map_ok(|item| item.name().unwrap_or_default().to_owned())
//!     .try_collect().await?;
//! # let _ = names; Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use futures::Stream;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::kv::{
    check, id_segments, path, scope_builders, version as checked_version, BlobBody, Scope,
};
pub use crate::kv::{DeletionInfo, Page};
use crate::{Client, ClientError, Request};

/// Secret attributes as Key Vault returns them (times are Unix seconds):
/// the [`Attributes`](crate::Attributes) every object kind shares.
///
/// ```
/// use coffer_client::secrets::SecretAttributes;
///
/// let attrs: SecretAttributes = serde_json::from_str(r#"{
///     "enabled": true, "exp": 1767225600, "created": 1764547200,
///     "recoverableDays": 90, "recoveryLevel": "Recoverable+Purgeable"
/// }"#).unwrap();
/// assert_eq!(attrs.enabled, Some(true));
/// assert_eq!(attrs.recoverable_days, Some(90));
/// assert_eq!(attrs.nbf, None);
/// ```
pub type SecretAttributes = crate::Attributes;

/// A secret version with its value (`SecretBundle`).
///
/// ```
/// use coffer_client::secrets::SecretBundle;
///
/// let bundle: SecretBundle = serde_json::from_str(r#"{
///     "value": "hunter2",
///     "id": "https://vault.example/secrets/db-password/4387e9f3d6e14c459867679a90fd0f79",
///     "contentType": "text/plain",
///     "attributes": {"enabled": true}
/// }"#).unwrap();
/// assert_eq!(bundle.name(), Some("db-password"));
/// assert_eq!(bundle.version(), Some("4387e9f3d6e14c459867679a90fd0f79"));
/// assert_eq!(bundle.value.as_deref(), Some("hunter2"));
/// // Debug output never shows the value.
/// assert!(!format!("{bundle:?}").contains("hunter2"));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretBundle {
    /// The secret value; zeroized on drop, never shown by `Debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `https://{host}/secrets/{name}/{version}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Free-form content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Attributes.
    #[serde(default)]
    pub attributes: SecretAttributes,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Key id when the secret backs a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Whether the secret is managed by a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
}

impl fmt::Debug for SecretBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBundle")
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .field("id", &self.id)
            .field("content_type", &self.content_type)
            .field("attributes", &self.attributes)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl Drop for SecretBundle {
    fn drop(&mut self) {
        if let Some(v) = self.value.as_mut() {
            v.zeroize();
        }
    }
}

impl SecretBundle {
    /// Secret name taken from `id`.
    pub fn name(&self) -> Option<&str> {
        id_segments(self.id.as_deref()?).map(|(n, _)| n)
    }

    /// Version taken from `id`.
    pub fn version(&self) -> Option<&str> {
        id_segments(self.id.as_deref()?).and_then(|(_, v)| v)
    }
}

/// A secret without its value, as in lists (`SecretItem`).
///
/// ```
/// use coffer_client::secrets::SecretItem;
///
/// let item: SecretItem = serde_json::from_str(r#"{
///     "id": "https://vault.example/secrets/db-password",
///     "attributes": {"enabled": true, "updated": 1764547200},
///     "tags": {"team": "payments"}
/// }"#).unwrap();
/// assert_eq!(item.name(), Some("db-password"));
/// assert_eq!(item.version(), None); // list ids carry no version
/// assert_eq!(item.tags.unwrap()["team"], "payments");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretItem {
    /// `https://{host}/secrets/{name}` (or with `/{version}` in version lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Attributes.
    #[serde(default)]
    pub attributes: SecretAttributes,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Whether the secret is managed by a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
}

impl SecretItem {
    /// Secret name taken from `id`.
    pub fn name(&self) -> Option<&str> {
        id_segments(self.id.as_deref()?).map(|(n, _)| n)
    }

    /// Version taken from `id`, if the id has one.
    pub fn version(&self) -> Option<&str> {
        id_segments(self.id.as_deref()?).and_then(|(_, v)| v)
    }
}

/// A soft-deleted secret (`DeletedSecretBundle`).
///
/// Key Vault sends the secret and its deletion data side by side in one
/// object; they land in `secret` and `deletion`.
///
/// ```
/// use coffer_client::secrets::DeletedSecretBundle;
///
/// let deleted: DeletedSecretBundle = serde_json::from_str(r#"{
///     "id": "https://vault.example/secrets/db-password/4387e9f3d6e14c459867679a90fd0f79",
///     "attributes": {"enabled": true},
///     "recoveryId": "https://vault.example/deletedsecrets/db-password",
///     "deletedDate": 1764547200,
///     "scheduledPurgeDate": 1772323200
/// }"#).unwrap();
/// assert_eq!(deleted.secret.name(), Some("db-password"));
/// assert_eq!(
///     deleted.deletion.recovery_id.as_deref(),
///     Some("https://vault.example/deletedsecrets/db-password")
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedSecretBundle {
    /// The secret as it was when deleted.
    #[serde(flatten)]
    pub secret: SecretBundle,
    /// Deletion data.
    #[serde(flatten)]
    pub deletion: DeletionInfo,
}

/// A soft-deleted secret in a list (`DeletedSecretItem`).
///
/// ```
/// use coffer_client::secrets::DeletedSecretItem;
///
/// let deleted: DeletedSecretItem = serde_json::from_str(r#"{
///     "id": "https://vault.example/secrets/api-key",
///     "attributes": {"enabled": false},
///     "recoveryId": "https://vault.example/deletedsecrets/api-key",
///     "scheduledPurgeDate": 1772323200
/// }"#).unwrap();
/// assert_eq!(deleted.item.name(), Some("api-key"));
/// assert_eq!(deleted.item.attributes.enabled, Some(false));
/// assert_eq!(deleted.deletion.scheduled_purge_date, Some(1772323200));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedSecretItem {
    /// The secret as it was when deleted.
    #[serde(flatten)]
    pub item: SecretItem,
    /// Deletion data.
    #[serde(flatten)]
    pub deletion: DeletionInfo,
}

/// Options of [`Secrets::set`].
///
/// All fields are optional; unset ones are not sent.
///
/// ```no_run
/// # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
/// use std::collections::BTreeMap;
/// use coffer_client::secrets::SetOptions;
///
/// let opts = SetOptions {
///     content_type: Some("text/plain".into()),
///     tags: Some(BTreeMap::from([("team".to_owned(), "payments".to_owned())])),
///     exp: Some(1767225600),
///     ..SetOptions::default()
/// };
/// let bundle = client.secrets().set("db-password", "hunter2", &opts).await?;
/// assert_eq!(bundle.content_type.as_deref(), Some("text/plain"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct SetOptions {
    /// Content type.
    pub content_type: Option<String>,
    /// Tags (≤ 15).
    pub tags: Option<BTreeMap<String, String>>,
    /// Enabled flag.
    pub enabled: Option<bool>,
    /// Not before (Unix seconds).
    pub nbf: Option<i64>,
    /// Expiry (Unix seconds).
    pub exp: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SetBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<SecretAttributes>,
}

impl<'a> SetBody<'a> {
    fn new(value: Option<&'a str>, opts: &'a SetOptions) -> Self {
        let attrs = SecretAttributes {
            enabled: opts.enabled,
            nbf: opts.nbf,
            exp: opts.exp,
            ..SecretAttributes::default()
        };
        Self {
            value,
            content_type: opts.content_type.as_deref(),
            tags: opts.tags.as_ref(),
            attributes: (attrs != SecretAttributes::default()).then_some(attrs),
        }
    }
}

/// Handle on the secrets API; obtained with [`Client::secrets`].
///
/// Builder methods pick the vault (`Host`), pin one node, or fix the request
/// id so a test can repeat a write with the same idempotency key.
///
/// ```no_run
/// # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
/// use coffer_client::secrets::SetOptions;
///
/// // The `payments` vault, one idempotency key for a write that may be retried.
/// let secrets = client
///     .secrets()
///     .with_host("payments.vault.example")
///     .with_request_id("5d2e4c1a-7b3f-4e9a-8c6d-0f1e2d3c4b5a");
/// secrets.set("db-password", "hunter2", &SetOptions::default()).await?;
/// let deleted = client.secrets().delete("old-password").await?;
/// println!("purged after {:?}", deleted.deletion.scheduled_purge_date);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Secrets<'a> {
    scope: Scope<'a>,
}

impl Client {
    /// The Key Vault secrets API of the default vault, with failover.
    pub fn secrets(&self) -> Secrets<'_> {
        Secrets {
            scope: Scope::new(self),
        }
    }
}

impl<'a> Secrets<'a> {
    scope_builders!();

    /// `PUT /secrets/{name}`: creates a new version.
    pub async fn set(
        &self,
        name: &str,
        value: &str,
        opts: &SetOptions,
    ) -> Result<SecretBundle, ClientError> {
        let req = Request::put(path(&["secrets", check(name)?], None))
            .json(&SetBody::new(Some(value), opts))?;
        self.scope.json(req).await
    }

    /// `GET /secrets/{name}/{version}`; `None` reads the latest version.
    pub async fn get(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<SecretBundle, ClientError> {
        let version = checked_version(version)?;
        let req = Request::get(path(&["secrets", check(name)?, version], None));
        self.scope.json(req).await
    }

    /// `PATCH /secrets/{name}/{version}`: updates attributes, tags, content type.
    pub async fn update(
        &self,
        name: &str,
        version: Option<&str>,
        opts: &SetOptions,
    ) -> Result<SecretBundle, ClientError> {
        let version = checked_version(version)?;
        let req = Request::patch(path(&["secrets", check(name)?, version], None))
            .json(&SetBody::new(None, opts))?;
        self.scope.json(req).await
    }

    /// `GET /secrets`, following `nextLink`; `max_results` is the page size.
    pub async fn list(&self, max_results: Option<u32>) -> Result<Vec<SecretItem>, ClientError> {
        self.scope.collect(path(&["secrets"], max_results)).await
    }

    /// `GET /secrets` as a stream: the next page is fetched when the items
    /// of the previous one have been read.
    pub fn list_stream(
        &self,
        max_results: Option<u32>,
    ) -> impl Stream<Item = Result<SecretItem, ClientError>> + 'a {
        self.scope.stream(path(&["secrets"], max_results))
    }

    /// `GET /secrets/{name}/versions`, following `nextLink`.
    pub async fn versions(
        &self,
        name: &str,
        max_results: Option<u32>,
    ) -> Result<Vec<SecretItem>, ClientError> {
        self.scope
            .collect(path(&["secrets", check(name)?, "versions"], max_results))
            .await
    }

    /// `DELETE /secrets/{name}`: soft-deletes every version.
    pub async fn delete(&self, name: &str) -> Result<DeletedSecretBundle, ClientError> {
        let req = Request::delete(path(&["secrets", check(name)?], None));
        self.scope.json(req).await
    }

    /// `GET /deletedsecrets/{name}`.
    pub async fn get_deleted(&self, name: &str) -> Result<DeletedSecretBundle, ClientError> {
        let req = Request::get(path(&["deletedsecrets", check(name)?], None));
        self.scope.json(req).await
    }

    /// `GET /deletedsecrets`, following `nextLink`.
    pub async fn list_deleted(
        &self,
        max_results: Option<u32>,
    ) -> Result<Vec<DeletedSecretItem>, ClientError> {
        self.scope
            .collect(path(&["deletedsecrets"], max_results))
            .await
    }

    /// `POST /deletedsecrets/{name}/recover`.
    pub async fn recover(&self, name: &str) -> Result<SecretBundle, ClientError> {
        let req = Request::post(path(&["deletedsecrets", check(name)?, "recover"], None));
        self.scope.json(req).await
    }

    /// `DELETE /deletedsecrets/{name}`: removes a soft-deleted secret for good.
    pub async fn purge(&self, name: &str) -> Result<(), ClientError> {
        let req = Request::delete(path(&["deletedsecrets", check(name)?], None));
        self.scope.call(req).await.map(drop)
    }

    /// `POST /secrets/{name}/backup`: returns the decoded backup blob.
    pub async fn backup(&self, name: &str) -> Result<Vec<u8>, ClientError> {
        let req = Request::post(path(&["secrets", check(name)?, "backup"], None));
        let blob: BlobBody = self.scope.json(req).await?;
        crate::kv::unb64(&blob.value, "the backup blob")
    }

    /// `POST /secrets/restore` with a blob from [`Secrets::backup`].
    pub async fn restore(&self, blob: &[u8]) -> Result<SecretBundle, ClientError> {
        let body = BlobBody {
            value: crate::kv::b64(blob),
        };
        let req = Request::post(path(&["secrets", "restore"], None)).json(&body)?;
        self.scope.json(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_give_name_and_version() {
        let b: SecretBundle =
            serde_json::from_str(r#"{"id":"https://h:1/secrets/Name/0123abcd"}"#).unwrap();
        assert_eq!(b.name(), Some("Name"));
        assert_eq!(b.version(), Some("0123abcd"));
        let i = SecretItem {
            id: Some("https://h/secrets/x".into()),
            ..SecretItem::default()
        };
        assert_eq!((i.name(), i.version()), (Some("x"), None));
    }

    #[test]
    fn deleted_bundle_decodes_and_debug_hides_value() {
        let json = r#"{"value":"hunter2","id":"https://h/secrets/a/v1","attributes":{"enabled":true,"recoveryLevel":"Recoverable+Purgeable"},"recoveryId":"https://h/deletedsecrets/a","deletedDate":10,"scheduledPurgeDate":20}"#;
        let d: DeletedSecretBundle = serde_json::from_str(json).unwrap();
        assert_eq!(d.secret.value.as_deref(), Some("hunter2"));
        assert_eq!(d.deletion.scheduled_purge_date, Some(20));
        assert_eq!(
            d.secret.attributes.recovery_level.as_deref(),
            Some("Recoverable+Purgeable")
        );
        assert!(!format!("{d:?}").contains("hunter2"));
    }

    #[test]
    fn set_body_omits_empty_attributes() {
        let opts = SetOptions::default();
        let body = serde_json::to_value(SetBody::new(Some("v"), &opts)).unwrap();
        assert_eq!(body, serde_json::json!({"value": "v"}));
        let opts = SetOptions {
            enabled: Some(false),
            content_type: Some("text/plain".into()),
            ..SetOptions::default()
        };
        let body = serde_json::to_value(SetBody::new(None, &opts)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"contentType": "text/plain", "attributes": {"enabled": false}})
        );
    }
}
