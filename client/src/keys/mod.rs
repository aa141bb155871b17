//! Typed Key Vault keys API (`/keys`, `/deletedkeys`): lifecycle,
//! cryptographic operations, rotation and rotation policies.
//!
//! Operations take a version (`None`: the latest). Binary inputs and
//! outputs are bytes; the base64url of the wire format stays inside.
//!
//! ```no_run
//! # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
//! use coffer_client::keys::CreateKeyOptions;
//!
//! let keys = client.keys();
//! keys.create("signer", &CreateKeyOptions::ec("P-256")).await?;
//! let digest = [7u8; 32]; // SHA-256 of the message
//! let signature = keys.sign("signer", None, "ES256", &digest).await?;
//! assert!(keys.verify("signer", None, "ES256", &digest, &signature).await?);
//! let rotated = keys.rotate("signer").await?;
//! # let _ = rotated; Ok(()) }
//! ```

mod types;

use std::collections::BTreeMap;

use futures::Stream;
use serde::{Deserialize, Serialize};

pub use types::{
    Action, CipherParams, CreateKeyOptions, DeletedKeyBundle, DeletedKeyItem, JsonWebKey,
    KeyAttributes, KeyBundle, KeyItem, KeyOperationResult, KeyProperties, LifetimeAction,
    RotationPolicy, RotationPolicyAttributes, Trigger,
};

use crate::kv::{b64, check, path, scope_builders, unb64, version as checked_version};
use crate::kv::{BlobBody, Scope};
use crate::{Client, ClientError, Request};

/// Handle on the keys API; obtained with [`Client::keys`].
///
/// Builder methods pick the vault (`Host`), pin one node, or fix the request
/// id so a write can be repeated with the same idempotency key.
///
/// ```no_run
/// # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
/// use coffer_client::keys::CreateKeyOptions;
///
/// let keys = client.keys();
/// let key = keys.create("signer", &CreateKeyOptions::ec("P-256")).await?;
/// let digest = [7u8; 32]; // SHA-256 of the message
/// let signature = keys.sign("signer", key.version(), "ES256", &digest).await?;
/// assert!(keys.verify("signer", key.version(), "ES256", &digest, &signature).await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Keys<'a> {
    scope: Scope<'a>,
}

impl Client {
    /// The Key Vault keys API of the default vault, with failover.
    pub fn keys(&self) -> Keys<'_> {
        Keys {
            scope: Scope::new(self),
        }
    }
}

#[derive(Serialize)]
struct CreateBody<'a> {
    kty: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_exponent: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_ops: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<KeyAttributes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct ImportBody<'a> {
    key: &'a JsonWebKey,
    #[serde(rename = "Hsm", skip_serializing_if = "Option::is_none")]
    hsm: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<KeyAttributes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct UpdateBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key_ops: Option<&'a Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<KeyAttributes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<&'a BTreeMap<String, String>>,
}

#[derive(Serialize)]
struct OperationBody<'a> {
    alg: &'a str,
    value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    iv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aad: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
}

#[derive(Serialize)]
struct VerifyBody<'a> {
    alg: &'a str,
    digest: String,
    value: String,
}

#[derive(Deserialize)]
struct OperationAnswer {
    #[serde(default)]
    kid: String,
    value: String,
    #[serde(default)]
    iv: Option<String>,
    #[serde(default)]
    tag: Option<String>,
}

impl OperationAnswer {
    fn decode(self) -> Result<KeyOperationResult, ClientError> {
        Ok(KeyOperationResult {
            value: unb64(&self.value, "the operation's value")?,
            iv: self.iv.map(|v| unb64(&v, "iv")).transpose()?,
            tag: self.tag.map(|v| unb64(&v, "tag")).transpose()?,
            kid: self.kid,
        })
    }
}

#[derive(Deserialize)]
struct VerifyAnswer {
    value: bool,
}

impl<'a> Keys<'a> {
    scope_builders!();

    /// `POST /keys/{name}/create`: a new key, or a new version of `name`.
    pub async fn create(
        &self,
        name: &str,
        opts: &CreateKeyOptions,
    ) -> Result<KeyBundle, ClientError> {
        let body = CreateBody {
            kty: &opts.kty,
            key_size: opts.key_size,
            public_exponent: opts.public_exponent,
            crv: opts.crv.as_deref(),
            key_ops: opts.key_ops.as_ref(),
            attributes: opts.properties.attributes(),
            tags: opts.properties.tags.as_ref(),
        };
        let req = Request::post(path(&["keys", check(name)?, "create"], None)).json(&body)?;
        self.scope.json(req).await
    }

    /// `PUT /keys/{name}`: imports key material as a new version; `hsm`
    /// asks for an HSM-protected key.
    pub async fn import(
        &self,
        name: &str,
        key: &JsonWebKey,
        hsm: Option<bool>,
        props: &KeyProperties,
    ) -> Result<KeyBundle, ClientError> {
        let body = ImportBody {
            key,
            hsm,
            attributes: props.attributes(),
            tags: props.tags.as_ref(),
        };
        let req = Request::put(path(&["keys", check(name)?], None)).json(&body)?;
        self.scope.json(req).await
    }

    /// `GET /keys/{name}/{version}`; `None` reads the latest version.
    pub async fn get(&self, name: &str, version: Option<&str>) -> Result<KeyBundle, ClientError> {
        let version = checked_version(version)?;
        let req = Request::get(path(&["keys", check(name)?, version], None));
        self.scope.json(req).await
    }

    /// `PATCH /keys/{name}/{version}`: operations, attributes and tags.
    pub async fn update(
        &self,
        name: &str,
        version: Option<&str>,
        key_ops: Option<&Vec<String>>,
        props: &KeyProperties,
    ) -> Result<KeyBundle, ClientError> {
        let version = checked_version(version)?;
        let body = UpdateBody {
            key_ops,
            attributes: props.attributes(),
            tags: props.tags.as_ref(),
        };
        let req = Request::patch(path(&["keys", check(name)?, version], None)).json(&body)?;
        self.scope.json(req).await
    }

    /// `GET /keys` as a stream: the next page is fetched when the items of
    /// the previous one have been read.
    pub fn list_stream(
        &self,
        max_results: Option<u32>,
    ) -> impl Stream<Item = Result<KeyItem, ClientError>> + 'a {
        self.scope.stream(path(&["keys"], max_results))
    }

    /// `GET /keys`, every page.
    pub async fn list(&self, max_results: Option<u32>) -> Result<Vec<KeyItem>, ClientError> {
        self.scope.collect(path(&["keys"], max_results)).await
    }

    /// `GET /keys/{name}/versions` as a stream.
    pub fn versions_stream(
        &self,
        name: &str,
        max_results: Option<u32>,
    ) -> Result<impl Stream<Item = Result<KeyItem, ClientError>> + 'a, ClientError> {
        Ok(self
            .scope
            .stream(path(&["keys", check(name)?, "versions"], max_results)))
    }

    /// `GET /keys/{name}/versions`, every page.
    pub async fn versions(
        &self,
        name: &str,
        max_results: Option<u32>,
    ) -> Result<Vec<KeyItem>, ClientError> {
        self.scope
            .collect(path(&["keys", check(name)?, "versions"], max_results))
            .await
    }

    /// `DELETE /keys/{name}`: soft-deletes every version.
    pub async fn delete(&self, name: &str) -> Result<DeletedKeyBundle, ClientError> {
        let req = Request::delete(path(&["keys", check(name)?], None));
        self.scope.json(req).await
    }

    /// `GET /deletedkeys/{name}`.
    pub async fn get_deleted(&self, name: &str) -> Result<DeletedKeyBundle, ClientError> {
        let req = Request::get(path(&["deletedkeys", check(name)?], None));
        self.scope.json(req).await
    }

    /// `GET /deletedkeys` as a stream.
    pub fn list_deleted_stream(
        &self,
        max_results: Option<u32>,
    ) -> impl Stream<Item = Result<DeletedKeyItem, ClientError>> + 'a {
        self.scope.stream(path(&["deletedkeys"], max_results))
    }

    /// `POST /deletedkeys/{name}/recover`.
    pub async fn recover(&self, name: &str) -> Result<KeyBundle, ClientError> {
        let req = Request::post(path(&["deletedkeys", check(name)?, "recover"], None));
        self.scope.json(req).await
    }

    /// `DELETE /deletedkeys/{name}`: removes a soft-deleted key for good.
    pub async fn purge(&self, name: &str) -> Result<(), ClientError> {
        let req = Request::delete(path(&["deletedkeys", check(name)?], None));
        self.scope.call(req).await.map(drop)
    }

    /// `POST /keys/{name}/backup`: the decoded backup blob.
    pub async fn backup(&self, name: &str) -> Result<Vec<u8>, ClientError> {
        let req = Request::post(path(&["keys", check(name)?, "backup"], None));
        let blob: BlobBody = self.scope.json(req).await?;
        unb64(&blob.value, "the backup blob")
    }

    /// `POST /keys/restore` with a blob from [`Keys::backup`].
    pub async fn restore(&self, blob: &[u8]) -> Result<KeyBundle, ClientError> {
        let body = BlobBody { value: b64(blob) };
        let req = Request::post(path(&["keys", "restore"], None)).json(&body)?;
        self.scope.json(req).await
    }

    /// `POST /keys/{name}/rotate`: a new version with the same parameters.
    pub async fn rotate(&self, name: &str) -> Result<KeyBundle, ClientError> {
        let req = Request::post(path(&["keys", check(name)?, "rotate"], None));
        self.scope.json(req).await
    }

    /// `GET /keys/{name}/rotationpolicy`.
    pub async fn rotation_policy(&self, name: &str) -> Result<RotationPolicy, ClientError> {
        let req = Request::get(path(&["keys", check(name)?, "rotationpolicy"], None));
        self.scope.json(req).await
    }

    /// `PUT /keys/{name}/rotationpolicy`; returns the stored policy.
    pub async fn set_rotation_policy(
        &self,
        name: &str,
        policy: &RotationPolicy,
    ) -> Result<RotationPolicy, ClientError> {
        let req =
            Request::put(path(&["keys", check(name)?, "rotationpolicy"], None)).json(policy)?;
        self.scope.json(req).await
    }

    /// `POST /keys/{name}/{version}/sign`: signs a `digest` (already hashed
    /// as `alg` says, e.g. SHA-256 for `ES256`/`RS256`/`PS256`).
    pub async fn sign(
        &self,
        name: &str,
        version: Option<&str>,
        alg: &str,
        digest: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let out = self
            .operation(name, version, "sign", alg, digest, &CipherParams::default())
            .await?;
        Ok(out.value.clone())
    }

    /// `POST /keys/{name}/{version}/verify`: whether `signature` signs `digest`.
    pub async fn verify(
        &self,
        name: &str,
        version: Option<&str>,
        alg: &str,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, ClientError> {
        let version = checked_version(version)?;
        let body = VerifyBody {
            alg,
            digest: b64(digest),
            value: b64(signature),
        };
        let req =
            Request::post(path(&["keys", check(name)?, version, "verify"], None)).json(&body)?;
        let answer: VerifyAnswer = self.scope.json(req).await?;
        Ok(answer.value)
    }

    /// `POST /keys/{name}/{version}/encrypt`.
    pub async fn encrypt(
        &self,
        name: &str,
        version: Option<&str>,
        alg: &str,
        plaintext: &[u8],
        params: &CipherParams,
    ) -> Result<KeyOperationResult, ClientError> {
        self.operation(name, version, "encrypt", alg, plaintext, params)
            .await
    }

    /// `POST /keys/{name}/{version}/decrypt`.
    pub async fn decrypt(
        &self,
        name: &str,
        version: Option<&str>,
        alg: &str,
        ciphertext: &[u8],
        params: &CipherParams,
    ) -> Result<KeyOperationResult, ClientError> {
        self.operation(name, version, "decrypt", alg, ciphertext, params)
            .await
    }

    /// `POST /keys/{name}/{version}/wrapkey`.
    pub async fn wrap(
        &self,
        name: &str,
        version: Option<&str>,
        alg: &str,
        key: &[u8],
    ) -> Result<KeyOperationResult, ClientError> {
        self.operation(name, version, "wrapkey", alg, key, &CipherParams::default())
            .await
    }

    /// `POST /keys/{name}/{version}/unwrapkey`.
    pub async fn unwrap(
        &self,
        name: &str,
        version: Option<&str>,
        alg: &str,
        wrapped: &[u8],
    ) -> Result<KeyOperationResult, ClientError> {
        self.operation(
            name,
            version,
            "unwrapkey",
            alg,
            wrapped,
            &CipherParams::default(),
        )
        .await
    }

    /// The `{alg, value, iv, aad, tag}` operations.
    async fn operation(
        &self,
        name: &str,
        version: Option<&str>,
        op: &str,
        alg: &str,
        value: &[u8],
        params: &CipherParams,
    ) -> Result<KeyOperationResult, ClientError> {
        let version = checked_version(version)?;
        let body = OperationBody {
            alg,
            value: b64(value),
            iv: params.iv.as_deref().map(b64),
            aad: params.aad.as_deref().map(b64),
            tag: params.tag.as_deref().map(b64),
        };
        let req = Request::post(path(&["keys", check(name)?, version, op], None)).json(&body)?;
        let answer: OperationAnswer = self.scope.json(req).await?;
        answer.decode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_is_the_wire_shape() {
        let opts = CreateKeyOptions {
            key_size: Some(2048),
            properties: KeyProperties {
                enabled: Some(false),
                ..KeyProperties::default()
            },
            ..CreateKeyOptions::rsa()
        };
        let body = CreateBody {
            kty: &opts.kty,
            key_size: opts.key_size,
            public_exponent: None,
            crv: None,
            key_ops: None,
            attributes: opts.properties.attributes(),
            tags: None,
        };
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            serde_json::json!({"kty": "RSA", "key_size": 2048, "attributes": {"enabled": false}})
        );
        assert_eq!(KeyProperties::default().attributes(), None);
    }

    #[test]
    fn bundles_decode_and_hide_private_members() {
        let json = r#"{"key":{"kid":"https://h/keys/k1/0a1b","kty":"EC","key_ops":["sign","verify"],"crv":"P-256","x":"AQ","y":"Ag"},"attributes":{"enabled":true,"created":1,"updated":1,"recoveryLevel":"Recoverable+Purgeable","recoverableDays":90,"exportable":false}}"#;
        let b: KeyBundle = serde_json::from_str(json).unwrap();
        assert_eq!((b.name(), b.version()), (Some("k1"), Some("0a1b")));
        assert_eq!(b.key.key_ops, vec!["sign", "verify"]);
        assert_eq!(b.attributes.recoverable_days, Some(90));
        let jwk: JsonWebKey =
            serde_json::from_str(r#"{"kty":"oct","k":"c2VjcmV0LWtleQ"}"#).unwrap();
        let shown = format!("{jwk:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn operation_answers_decode_to_bytes() {
        let a: OperationAnswer =
            serde_json::from_str(r#"{"kid":"https://h/keys/k/v","value":"AAEC","iv":"AQ"}"#)
                .unwrap();
        let r = a.decode().unwrap();
        assert_eq!(r.value, vec![0, 1, 2]);
        assert_eq!(r.iv, Some(vec![1]));
        assert!(!format!("{r:?}").contains("[0, 1, 2]"));
    }
}
