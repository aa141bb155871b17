//! JSON shapes of the Key Vault secrets API, and their rendering from engine
//! views.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::secrets::{
    Secret, SecretProperties, SetSecret, UpdateSecret, RECOVERABLE_DAYS, RECOVERY_LEVEL,
};

/// Attributes as clients send them (server-owned fields are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct AttributesIn {
    /// Whether the version can be read.
    pub enabled: Option<bool>,
    /// Not-before, Unix seconds.
    pub nbf: Option<i64>,
    /// Expiry, Unix seconds.
    pub exp: Option<i64>,
}

/// Body of `PUT /secrets/{name}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetSecretBody {
    /// The secret value (required).
    pub value: String,
    /// Content type.
    pub content_type: Option<String>,
    /// Attributes.
    pub attributes: Option<AttributesIn>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
}

impl From<SetSecretBody> for SetSecret {
    fn from(b: SetSecretBody) -> Self {
        let a = b.attributes.unwrap_or_default();
        SetSecret {
            value: b.value,
            content_type: b.content_type,
            enabled: a.enabled,
            nbf: a.nbf,
            exp: a.exp,
            tags: b.tags,
        }
    }
}

/// Body of `PATCH /secrets/{name}/{version}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSecretBody {
    /// New content type.
    pub content_type: Option<String>,
    /// Attribute changes.
    pub attributes: Option<AttributesIn>,
    /// New tags (replace all).
    pub tags: Option<BTreeMap<String, String>>,
}

impl From<UpdateSecretBody> for UpdateSecret {
    fn from(b: UpdateSecretBody) -> Self {
        let a = b.attributes.unwrap_or_default();
        UpdateSecret {
            content_type: b.content_type,
            enabled: a.enabled,
            nbf: a.nbf,
            exp: a.exp,
            tags: b.tags,
        }
    }
}

/// Body of `POST /secrets/restore` and of a backup response.
#[derive(Deserialize, Serialize)]
pub struct BlobBody {
    /// base64url of the backup blob.
    pub value: String,
}

/// `attributes` of responses.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributesOut {
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub created: u64,
    pub updated: u64,
    pub recovery_level: &'static str,
    pub recoverable_days: u64,
}

/// SecretBundle (and, with `value: None`, the value-less bundles of update,
/// recover and restore).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretBundle {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    pub attributes: AttributesOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
}

/// SecretItem of lists (never a value).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretItem {
    pub id: String,
    pub attributes: AttributesOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
}

/// Deleted-object fields added to a bundle or item.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deleted<T> {
    pub recovery_id: String,
    pub deleted_date: u64,
    pub scheduled_purge_date: u64,
    #[serde(flatten)]
    pub inner: T,
}

/// A page of a list.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResult<T> {
    pub value: Vec<T>,
    pub next_link: Option<String>,
}

fn attributes(p: &SecretProperties) -> AttributesOut {
    AttributesOut {
        enabled: p.enabled,
        nbf: p.nbf,
        exp: p.exp,
        created: p.created,
        updated: p.updated,
        recovery_level: RECOVERY_LEVEL,
        recoverable_days: RECOVERABLE_DAYS,
    }
}

/// `{base}/secrets/{name}/{version}`.
pub fn secret_id(base: &str, p: &SecretProperties) -> String {
    format!("{base}/secrets/{}/{}", p.name, p.version)
}

/// A bundle without value.
pub fn bundle(base: &str, p: &SecretProperties) -> SecretBundle {
    SecretBundle {
        value: None,
        id: secret_id(base, p),
        content_type: p.content_type.clone(),
        attributes: attributes(p),
        tags: p.tags.clone(),
        // A certificate's secret stores its key id relative to the vault.
        kid: p.kid.as_ref().map(|k| {
            if k.starts_with('/') {
                format!("{base}{k}")
            } else {
                k.clone()
            }
        }),
        managed: p.managed,
    }
}

/// A bundle with the value.
pub fn bundle_with_value(base: &str, s: Secret) -> SecretBundle {
    SecretBundle {
        value: Some(s.value),
        ..bundle(base, &s.properties)
    }
}

/// A list item; `versioned` ids for version lists, bare ids for name lists.
pub fn item(base: &str, p: &SecretProperties, versioned: bool) -> SecretItem {
    SecretItem {
        id: if versioned {
            secret_id(base, p)
        } else {
            format!("{base}/secrets/{}", p.name)
        },
        attributes: attributes(p),
        tags: p.tags.clone(),
        content_type: p.content_type.clone(),
        managed: p.managed,
    }
}
