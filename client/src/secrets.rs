//! Typed Key Vault secrets API (`/secrets`, `/deletedsecrets`).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use hyper::header::{HeaderValue, HOST};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::{Client, ClientError, Request, Response, KEY_VAULT_API_VERSION};

/// Secret attributes as Key Vault returns them (times are Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretAttributes {
    /// Whether the secret can be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Not valid before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Last update time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
    /// Soft-delete retention in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recoverable_days: Option<i64>,
    /// e.g. `Recoverable+Purgeable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_level: Option<String>,
}

/// A secret version with its value (`SecretBundle`).
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

/// Soft-delete information shared by deleted bundles and items.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionInfo {
    /// `https://{host}/deletedsecrets/{name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<String>,
    /// When the secret will be purged (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_purge_date: Option<i64>,
    /// When the secret was deleted (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<i64>,
}

/// A soft-deleted secret (`DeletedSecretBundle`).
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedSecretItem {
    /// The secret as it was when deleted.
    #[serde(flatten)]
    pub item: SecretItem,
    /// Deletion data.
    #[serde(flatten)]
    pub deletion: DeletionInfo,
}

/// One page of a Key Vault list.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    /// Items of this page.
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    /// Absolute URL of the next page.
    #[serde(rename = "nextLink", default)]
    pub next_link: Option<String>,
}

/// Options of [`Secrets::set`].
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

#[derive(Serialize, Deserialize)]
struct BlobBody {
    value: String,
}

/// Handle on the secrets API; obtained with [`Client::secrets`].
///
/// Builder methods pick the vault (`Host`), pin one node, or fix the request
/// id so a test can repeat a write with the same idempotency key.
#[derive(Debug, Clone)]
pub struct Secrets<'a> {
    client: &'a Client,
    host: Option<String>,
    pinned: Option<usize>,
    request_id: Option<String>,
}

impl Client {
    /// The Key Vault secrets API of the default vault, with failover.
    pub fn secrets(&self) -> Secrets<'_> {
        Secrets {
            client: self,
            host: None,
            pinned: None,
            request_id: None,
        }
    }
}

impl<'a> Secrets<'a> {
    /// Sends `Host: {host}` so the server picks the vault `{vault}.{domain}`.
    /// Only effective over HTTP/1.1 (`ClientConfig::http2 = false`): over
    /// HTTP/2 the server sees the endpoint URL's authority instead.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Sends every request to endpoint `index` only (no failover).
    pub fn pinned(mut self, index: usize) -> Self {
        self.pinned = Some(index);
        self
    }

    /// Uses `id` as `x-ms-client-request-id` for the calls of this handle.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// `PUT /secrets/{name}`: creates a new version.
    pub async fn set(
        &self,
        name: &str,
        value: &str,
        opts: &SetOptions,
    ) -> Result<SecretBundle, ClientError> {
        let req = Request::put(path(&["secrets", check(name)?], None))
            .json(&SetBody::new(Some(value), opts))?;
        self.call(req).await?.json()
    }

    /// `GET /secrets/{name}/{version}`; `None` reads the latest version.
    pub async fn get(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<SecretBundle, ClientError> {
        let version = version.map(check).transpose()?.unwrap_or("");
        let req = Request::get(path(&["secrets", check(name)?, version], None));
        self.call(req).await?.json()
    }

    /// `PATCH /secrets/{name}/{version}`: updates attributes, tags, content type.
    pub async fn update(
        &self,
        name: &str,
        version: Option<&str>,
        opts: &SetOptions,
    ) -> Result<SecretBundle, ClientError> {
        let version = version.map(check).transpose()?.unwrap_or("");
        let req = Request::patch(path(&["secrets", check(name)?, version], None))
            .json(&SetBody::new(None, opts))?;
        self.call(req).await?.json()
    }

    /// `GET /secrets`, following `nextLink`; `max_results` is the page size.
    pub async fn list(&self, max_results: Option<u32>) -> Result<Vec<SecretItem>, ClientError> {
        self.collect(path(&["secrets"], max_results)).await
    }

    /// `GET /secrets/{name}/versions`, following `nextLink`.
    pub async fn versions(
        &self,
        name: &str,
        max_results: Option<u32>,
    ) -> Result<Vec<SecretItem>, ClientError> {
        self.collect(path(&["secrets", check(name)?, "versions"], max_results))
            .await
    }

    /// `DELETE /secrets/{name}`: soft-deletes every version.
    pub async fn delete(&self, name: &str) -> Result<DeletedSecretBundle, ClientError> {
        let req = Request::delete(path(&["secrets", check(name)?], None));
        self.call(req).await?.json()
    }

    /// `GET /deletedsecrets/{name}`.
    pub async fn get_deleted(&self, name: &str) -> Result<DeletedSecretBundle, ClientError> {
        let req = Request::get(path(&["deletedsecrets", check(name)?], None));
        self.call(req).await?.json()
    }

    /// `GET /deletedsecrets`, following `nextLink`.
    pub async fn list_deleted(
        &self,
        max_results: Option<u32>,
    ) -> Result<Vec<DeletedSecretItem>, ClientError> {
        self.collect(path(&["deletedsecrets"], max_results)).await
    }

    /// `POST /deletedsecrets/{name}/recover`.
    pub async fn recover(&self, name: &str) -> Result<SecretBundle, ClientError> {
        let req = Request::post(path(&["deletedsecrets", check(name)?, "recover"], None));
        self.call(req).await?.json()
    }

    /// `DELETE /deletedsecrets/{name}`: removes a soft-deleted secret for good.
    pub async fn purge(&self, name: &str) -> Result<(), ClientError> {
        let req = Request::delete(path(&["deletedsecrets", check(name)?], None));
        self.call(req).await.map(drop)
    }

    /// `POST /secrets/{name}/backup`: returns the decoded backup blob.
    pub async fn backup(&self, name: &str) -> Result<Vec<u8>, ClientError> {
        let req = Request::post(path(&["secrets", check(name)?, "backup"], None));
        let blob: BlobBody = self.call(req).await?.json()?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(blob.value.trim_end_matches('='))
            .map_err(|_| ClientError::Decode("backup blob is not base64url".into()))
    }

    /// `POST /secrets/restore` with a blob from [`Secrets::backup`].
    pub async fn restore(&self, blob: &[u8]) -> Result<SecretBundle, ClientError> {
        let body = BlobBody {
            value: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob),
        };
        let req = Request::post(path(&["secrets", "restore"], None)).json(&body)?;
        self.call(req).await?.json()
    }

    async fn collect<T: DeserializeOwned>(&self, first: String) -> Result<Vec<T>, ClientError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        while let Some(p) = next.take() {
            let page: Page<T> = self.call(Request::get(p)).await?.json()?;
            items.extend(page.value);
            next = page.next_link.map(|l| path_of_link(&l)).transpose()?;
        }
        Ok(items)
    }

    async fn call(&self, mut req: Request) -> Result<Response, ClientError> {
        if let Some(host) = &self.host {
            let value = HeaderValue::from_str(host)
                .map_err(|_| ClientError::Config(format!("invalid host {host:?}")))?;
            req.headers.insert(HOST, value);
        }
        if let Some(id) = &self.request_id {
            req.request_id = Some(id.clone());
        }
        let resp = match self.pinned {
            Some(idx) => self.client.send_to(idx, req).await?,
            None => self.client.send(req).await?,
        };
        resp.error_for_status()
    }
}

/// Rejects names that are not Key Vault object names, so a name can never
/// change the request path.
fn check(segment: &str) -> Result<&str, ClientError> {
    let ok = !segment.is_empty()
        && segment.len() <= 127
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(segment)
    } else {
        Err(ClientError::Config(format!(
            "invalid object name {segment:?}: use 1-127 letters, digits and '-'"
        )))
    }
}

fn path(segments: &[&str], max_results: Option<u32>) -> String {
    let mut p = String::new();
    for s in segments {
        p.push('/');
        p.push_str(s);
    }
    p.push_str("?api-version=");
    p.push_str(KEY_VAULT_API_VERSION);
    if let Some(m) = max_results {
        p.push_str(&format!("&maxresults={m}"));
    }
    p
}

/// The path and query of an absolute `nextLink`; the host is dropped because
/// the next page may be fetched from any node.
fn path_of_link(link: &str) -> Result<String, ClientError> {
    let url = url::Url::parse(link)
        .map_err(|_| ClientError::Decode(format!("invalid nextLink {link:?}")))?;
    Ok(match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    })
}

/// `(name, version)` of `https://host/{collection}/{name}[/{version}]`.
fn id_segments(id: &str) -> Option<(&str, Option<&str>)> {
    let rest = id.split_once("://").map_or(id, |(_, r)| r);
    let mut parts = rest.split('/').skip(2);
    let name = parts.next().filter(|s| !s.is_empty())?;
    let version = parts.next().filter(|s| !s.is_empty());
    Some((name, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_carry_api_version_and_page_size() {
        assert_eq!(
            path(&["secrets", "a", ""], None),
            "/secrets/a/?api-version=2026-04-01"
        );
        assert_eq!(
            path(&["secrets"], Some(5)),
            "/secrets?api-version=2026-04-01&maxresults=5"
        );
    }

    #[test]
    fn names_cannot_escape_the_path() {
        assert!(check("db-password-1").is_ok());
        assert!(check("../sys").is_err());
        assert!(check("a?b").is_err());
        assert!(check("").is_err());
    }

    #[test]
    fn next_link_keeps_path_and_query() {
        let p = path_of_link(
            "https://vault.example:8453/secrets?api-version=2026-04-01&$skiptoken=abc",
        )
        .unwrap();
        assert_eq!(p, "/secrets?api-version=2026-04-01&$skiptoken=abc");
    }

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
