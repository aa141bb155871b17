//! What the Key Vault object APIs (secrets, keys, certificates) share: the
//! vault scope of a handle (vault by `Host`, pinned node, fixed request id),
//! paging as a [`Stream`], object names, paths and ids.

use futures::stream::{self, Stream, TryStreamExt as _};
use hyper::header::{HeaderValue, HOST};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Client, ClientError, Request, Response, KEY_VAULT_API_VERSION};

/// One page of a Key Vault list.
///
/// Lists come one page at a time; `next_link` is absent on the last page.
///
/// ```
/// use coffer_client::secrets::{Page, SecretItem};
///
/// let page: Page<SecretItem> = serde_json::from_str(r#"{
///     "value": [{"id": "https://vault.example/secrets/db-password", "attributes": {"enabled": true}}],
///     "nextLink": "https://vault.example/secrets?api-version=2026-04-01&$skiptoken=1"
/// }"#).unwrap();
/// assert_eq!(page.value[0].name(), Some("db-password"));
/// assert!(page.next_link.is_some());
///
/// let last: Page<SecretItem> = serde_json::from_str(r#"{"value": []}"#).unwrap();
/// assert!(last.value.is_empty() && last.next_link.is_none());
/// ```
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    /// Items of this page.
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    /// Absolute URL of the next page.
    #[serde(rename = "nextLink", default)]
    pub next_link: Option<String>,
}

/// The attributes of a secret, key or certificate version as Key Vault
/// returns them (times are Unix seconds): one type for the three kinds,
/// named `SecretAttributes`, `KeyAttributes` and `CertificateAttributes`
/// in their modules. `exportable` and `hsmPlatform` are only ever set on
/// keys.
///
/// ```
/// use coffer_client::keys::KeyAttributes;
/// use coffer_client::secrets::SecretAttributes;
///
/// let key: KeyAttributes = serde_json::from_str(
///     r#"{"enabled": true, "exportable": false, "hsmPlatform": "2"}"#,
/// ).unwrap();
/// assert_eq!(key.hsm_platform.as_deref(), Some("2"));
/// // What a secret never carries is not written back either.
/// let secret = SecretAttributes { enabled: Some(false), ..Default::default() };
/// assert_eq!(serde_json::to_string(&secret).unwrap(), r#"{"enabled":false}"#);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attributes {
    /// Whether the object can be read or used.
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
    /// Keys: whether the private key may be exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exportable: Option<bool>,
    /// Keys: the HSM platform of `*-HSM` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm_platform: Option<String>,
}

/// Soft-delete information shared by deleted bundles and items.
///
/// ```
/// use coffer_client::secrets::DeletionInfo;
///
/// let info: DeletionInfo = serde_json::from_str(r#"{
///     "recoveryId": "https://vault.example/deletedsecrets/db-password",
///     "scheduledPurgeDate": 1767225600,
///     "deletedDate": 1764547200
/// }"#).unwrap();
/// assert_eq!(info.scheduled_purge_date, Some(1767225600));
/// assert_eq!(info.deleted_date, Some(1764547200));
/// // Absent fields stay absent when written back.
/// assert_eq!(serde_json::to_string(&DeletionInfo::default()).unwrap(), "{}");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionInfo {
    /// `https://{host}/deleted{kind}/{name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_id: Option<String>,
    /// When the object will be purged (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_purge_date: Option<i64>,
    /// When the object was deleted (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<i64>,
}

/// `{"value": "<base64url>"}`: backup blobs and key operation inputs.
#[derive(Serialize, Deserialize)]
pub(crate) struct BlobBody {
    pub(crate) value: String,
}

/// The vault scope of a handle; every object API call goes through it.
#[derive(Debug, Clone)]
pub(crate) struct Scope<'a> {
    pub(crate) client: &'a Client,
    pub(crate) host: Option<String>,
    pub(crate) pinned: Option<usize>,
    pub(crate) request_id: Option<String>,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(client: &'a Client) -> Self {
        Self {
            client,
            host: None,
            pinned: None,
            request_id: None,
        }
    }

    /// Sends `req` in this scope; a non-2xx answer is an error.
    pub(crate) async fn call(&self, mut req: Request) -> Result<Response, ClientError> {
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

    /// Sends `req` and decodes the JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(&self, req: Request) -> Result<T, ClientError> {
        self.call(req).await?.json()
    }

    /// The items of the list at `first`, page by page as the stream is
    /// read; each `nextLink` is fetched (from any node) only when needed.
    pub(crate) fn stream<T: DeserializeOwned + 'a>(
        &self,
        first: String,
    ) -> impl Stream<Item = Result<T, ClientError>> + 'a {
        let scope = self.clone();
        stream::try_unfold(Some(first), move |next| {
            let scope = scope.clone();
            async move {
                let Some(path) = next else {
                    return Ok(None);
                };
                let page: Page<T> = scope.json(Request::get(path)).await?;
                let next = page.next_link.map(|l| path_of_link(&l)).transpose()?;
                let items = page.value.into_iter().map(Ok::<T, ClientError>);
                Ok(Some((stream::iter(items), next)))
            }
        })
        .try_flatten()
    }

    /// Every item of the list at `first`.
    pub(crate) async fn collect<T: DeserializeOwned + 'a>(
        &self,
        first: String,
    ) -> Result<Vec<T>, ClientError> {
        self.stream(first).try_collect().await
    }
}

/// The builder methods every object handle has (one definition, expanded in
/// each handle's `impl`; the handle has a `scope: Scope` field).
macro_rules! scope_builders {
    () => {
        /// Sends `Host: {host}` so the server picks the vault `{vault}.{domain}`.
        /// Only effective over HTTP/1.1 (`ClientConfig::http2 = false`): over
        /// HTTP/2 the server sees the endpoint URL's authority instead.
        pub fn with_host(mut self, host: impl Into<String>) -> Self {
            self.scope.host = Some(host.into());
            self
        }

        /// Sends every request to endpoint `index` only (no failover).
        pub fn pinned(mut self, index: usize) -> Self {
            self.scope.pinned = Some(index);
            self
        }

        /// Uses `id` as `x-ms-client-request-id` for the calls of this
        /// handle: a write repeated with the same id is applied once.
        pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
            self.scope.request_id = Some(id.into());
            self
        }
    };
}
pub(crate) use scope_builders;

/// Rejects names that are not Key Vault object names, so a name can never
/// change the request path.
pub(crate) fn check(segment: &str) -> Result<&str, ClientError> {
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

/// A checked version, or `""` (the latest) for `None`.
pub(crate) fn version(version: Option<&str>) -> Result<&str, ClientError> {
    Ok(version.map(check).transpose()?.unwrap_or(""))
}

/// `/{segments…}?api-version=…[&maxresults=…]`.
pub(crate) fn path(segments: &[&str], max_results: Option<u32>) -> String {
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
pub(crate) fn path_of_link(link: &str) -> Result<String, ClientError> {
    let url = url::Url::parse(link)
        .map_err(|_| ClientError::Decode(format!("invalid nextLink {link:?}")))?;
    Ok(match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    })
}

/// `(name, version)` of `https://host/{collection}/{name}[/{version}]`.
pub(crate) fn id_segments(id: &str) -> Option<(&str, Option<&str>)> {
    let rest = id.split_once("://").map_or(id, |(_, r)| r);
    let mut parts = rest.split('/').skip(2);
    let name = parts.next().filter(|s| !s.is_empty())?;
    let version = parts.next().filter(|s| !s.is_empty());
    Some((name, version))
}

/// base64url without padding, as Key Vault writes binary values.
pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url (padded or not) or standard base64 (certificates'
/// `cer`); `what` names the field in the error.
pub(crate) fn unb64(text: &str, what: &str) -> Result<Vec<u8>, ClientError> {
    use base64::Engine as _;
    let trimmed = text.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .map_err(|_| ClientError::Decode(format!("{what} is not base64")))
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
        assert_eq!(version(None).unwrap(), "");
        assert!(version(Some("a/b")).is_err());
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
    fn base64_in_both_alphabets() {
        assert_eq!(unb64(&b64(&[0xfb, 0xff]), "v").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(unb64("+/8=", "v").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(unb64("-_8=", "v").unwrap(), vec![0xfb, 0xff]);
        assert!(unb64("*", "v").is_err());
    }
}
