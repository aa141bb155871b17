//! Key Vault key shapes: bundles, items, options, operation results and
//! rotation policies.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::kv::{id_segments, DeletionInfo};

/// Key attributes as Key Vault returns them (times are Unix seconds): the
/// [`Attributes`](crate::Attributes) every object kind shares.
///
/// ```
/// let attrs: coffer_client::keys::KeyAttributes = serde_json::from_str(
///     r#"{"enabled": true, "created": 1764547200, "exportable": false, "recoverableDays": 90}"#,
/// ).unwrap();
/// assert_eq!((attrs.enabled, attrs.exportable), (Some(true), Some(false)));
/// assert_eq!(attrs.exp, None);
/// ```
pub type KeyAttributes = crate::Attributes;

/// A JSON Web Key. Answers carry public members only; the private members
/// are for [`Keys::import`](crate::Keys::import), zeroized on drop and never
/// shown by `Debug`.
///
/// ```
/// use coffer_client::keys::JsonWebKey;
///
/// // A public EC key as the server returns it.
/// let jwk: JsonWebKey = serde_json::from_str(r#"{
///     "kid": "https://vault.example/keys/signer/0f2b5c0e1a8d4b7e9c3f6a2d5e8b1c4f",
///     "kty": "EC", "crv": "P-256", "key_ops": ["sign", "verify"],
///     "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
///     "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
/// }"#).unwrap();
/// assert_eq!(jwk.crv.as_deref(), Some("P-256"));
/// assert_eq!(jwk.key_ops, ["sign", "verify"]);
///
/// // Key material for import (the type zeroizes on drop, so it is filled
/// // in place rather than with `..Default::default()`): Debug hides the
/// // private member.
/// let mut secret = JsonWebKey::default();
/// secret.kty = "oct".into();
/// secret.k = Some("GawgguFyGrWKav7AX4VKUg".into());
/// assert!(!format!("{secret:?}").contains("GawgguFyGrWKav7AX4VKUg"));
/// assert_eq!(serde_json::to_value(&secret).unwrap()["k"], "GawgguFyGrWKav7AX4VKUg");
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonWebKey {
    /// `https://{host}/keys/{name}/{version}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `RSA`, `RSA-HSM`, `EC`, `EC-HSM`, `oct`, `oct-HSM`.
    #[serde(default)]
    pub kty: String,
    /// Permitted operations (`sign`, `verify`, `encrypt`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_ops: Vec<String>,
    /// RSA modulus (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC curve (`P-256`, `P-384`, `P-521`, `P-256K`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Private exponent / EC private key (import only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
    /// RSA CRT member (import only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<String>,
    /// RSA CRT member (import only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dq: Option<String>,
    /// RSA CRT member (import only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qi: Option<String>,
    /// RSA prime (import only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    /// RSA prime (import only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Symmetric key (import only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<String>,
}

impl fmt::Debug for JsonWebKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let private = [
            &self.d, &self.dp, &self.dq, &self.qi, &self.p, &self.q, &self.k,
        ]
        .iter()
        .any(|m| m.is_some());
        f.debug_struct("JsonWebKey")
            .field("kid", &self.kid)
            .field("kty", &self.kty)
            .field("key_ops", &self.key_ops)
            .field("crv", &self.crv)
            .field("private", &private.then_some("<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Drop for JsonWebKey {
    fn drop(&mut self) {
        for m in [
            &mut self.d,
            &mut self.dp,
            &mut self.dq,
            &mut self.qi,
            &mut self.p,
            &mut self.q,
            &mut self.k,
        ]
        .into_iter()
        .flatten()
        {
            m.zeroize();
        }
    }
}

/// A key version (`KeyBundle`).
///
/// ```
/// let bundle: coffer_client::keys::KeyBundle = serde_json::from_str(r#"{
///     "key": {"kid": "https://vault.example/keys/signer/0f2b5c0e1a8d4b7e", "kty": "RSA",
///             "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1Wl", "e": "AQAB"},
///     "attributes": {"enabled": true},
///     "tags": {"purpose": "jwt"}
/// }"#).unwrap();
/// assert_eq!(bundle.name(), Some("signer"));
/// assert_eq!(bundle.version(), Some("0f2b5c0e1a8d4b7e"));
/// assert_eq!(bundle.key.kty, "RSA");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBundle {
    /// The public key.
    #[serde(default)]
    pub key: JsonWebKey,
    /// Attributes.
    #[serde(default)]
    pub attributes: KeyAttributes,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Whether the key backs a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
}

impl KeyBundle {
    /// Key name taken from `key.kid`.
    pub fn name(&self) -> Option<&str> {
        id_segments(self.key.kid.as_deref()?).map(|(n, _)| n)
    }

    /// Version taken from `key.kid`.
    pub fn version(&self) -> Option<&str> {
        id_segments(self.key.kid.as_deref()?).and_then(|(_, v)| v)
    }
}

/// A key in a list (`KeyItem`).
///
/// ```
/// let item: coffer_client::keys::KeyItem = serde_json::from_str(
///     r#"{"kid": "https://vault.example/keys/signer", "attributes": {"enabled": true}}"#,
/// ).unwrap();
/// assert_eq!(item.name(), Some("signer"));
/// assert_eq!(item.version(), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyItem {
    /// `https://{host}/keys/{name}` (with `/{version}` in version lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Attributes.
    #[serde(default)]
    pub attributes: KeyAttributes,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// Whether the key backs a certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<bool>,
}

impl KeyItem {
    /// Key name taken from `kid`.
    pub fn name(&self) -> Option<&str> {
        id_segments(self.kid.as_deref()?).map(|(n, _)| n)
    }

    /// Version taken from `kid`, if it has one.
    pub fn version(&self) -> Option<&str> {
        id_segments(self.kid.as_deref()?).and_then(|(_, v)| v)
    }
}

/// A soft-deleted key (`DeletedKeyBundle`).
///
/// ```
/// let deleted: coffer_client::keys::DeletedKeyBundle = serde_json::from_str(r#"{
///     "key": {"kid": "https://vault.example/keys/signer/0f2b5c0e", "kty": "EC", "crv": "P-256"},
///     "attributes": {"enabled": true},
///     "recoveryId": "https://vault.example/deletedkeys/signer",
///     "scheduledPurgeDate": 1772323200
/// }"#).unwrap();
/// assert_eq!(deleted.key.name(), Some("signer"));
/// assert_eq!(deleted.deletion.scheduled_purge_date, Some(1772323200));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedKeyBundle {
    /// The key as it was when deleted.
    #[serde(flatten)]
    pub key: KeyBundle,
    /// Deletion data.
    #[serde(flatten)]
    pub deletion: DeletionInfo,
}

/// A soft-deleted key in a list (`DeletedKeyItem`).
///
/// ```
/// let deleted: coffer_client::keys::DeletedKeyItem = serde_json::from_str(r#"{
///     "kid": "https://vault.example/keys/signer",
///     "recoveryId": "https://vault.example/deletedkeys/signer",
///     "deletedDate": 1764547200
/// }"#).unwrap();
/// assert_eq!(deleted.item.name(), Some("signer"));
/// assert_eq!(deleted.deletion.deleted_date, Some(1764547200));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedKeyItem {
    /// The key as it was when deleted.
    #[serde(flatten)]
    pub item: KeyItem,
    /// Deletion data.
    #[serde(flatten)]
    pub deletion: DeletionInfo,
}

/// What [`Keys::create`](crate::Keys::create) makes.
///
/// ```
/// use coffer_client::keys::CreateKeyOptions;
///
/// let opts = CreateKeyOptions::ec("P-256");
/// assert_eq!(opts.kty, "EC");
/// let rsa = CreateKeyOptions { key_size: Some(3072), ..CreateKeyOptions::rsa() };
/// assert_eq!(rsa.key_size, Some(3072));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateKeyOptions {
    /// `RSA`, `RSA-HSM`, `EC`, `EC-HSM`, `oct`, `oct-HSM`.
    pub kty: String,
    /// RSA bits (2048, 3072, 4096) or oct bits (128, 192, 256).
    pub key_size: Option<u32>,
    /// RSA public exponent.
    pub public_exponent: Option<u32>,
    /// EC curve.
    pub crv: Option<String>,
    /// Permitted operations; default: all the key type allows.
    pub key_ops: Option<Vec<String>>,
    /// Key attributes and tags.
    pub properties: KeyProperties,
}

impl CreateKeyOptions {
    /// An RSA key of the server's default size.
    pub fn rsa() -> Self {
        Self {
            kty: "RSA".into(),
            ..Self::default()
        }
    }

    /// An EC key on `curve`.
    pub fn ec(curve: &str) -> Self {
        Self {
            kty: "EC".into(),
            crv: Some(curve.into()),
            ..Self::default()
        }
    }
}

/// Attributes and tags given on create, import and update.
///
/// ```no_run
/// # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
/// use std::collections::BTreeMap;
/// use coffer_client::keys::{CreateKeyOptions, KeyProperties};
///
/// let properties = KeyProperties {
///     exp: Some(1767225600),
///     tags: Some(BTreeMap::from([("purpose".to_owned(), "jwt".to_owned())])),
///     ..KeyProperties::default()
/// };
/// let opts = CreateKeyOptions { properties, ..CreateKeyOptions::ec("P-256") };
/// let key = client.keys().create("signer", &opts).await?;
/// // Disable the version just made.
/// let off = KeyProperties { enabled: Some(false), ..KeyProperties::default() };
/// client.keys().update("signer", key.version(), None, &off).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyProperties {
    /// Enabled flag.
    pub enabled: Option<bool>,
    /// Not before (Unix seconds).
    pub nbf: Option<i64>,
    /// Expiry (Unix seconds).
    pub exp: Option<i64>,
    /// Tags (≤ 15).
    pub tags: Option<BTreeMap<String, String>>,
}

impl KeyProperties {
    pub(crate) fn attributes(&self) -> Option<KeyAttributes> {
        let attrs = KeyAttributes {
            enabled: self.enabled,
            nbf: self.nbf,
            exp: self.exp,
            ..KeyAttributes::default()
        };
        (attrs != KeyAttributes::default()).then_some(attrs)
    }
}

/// The result of encrypt, decrypt, wrap and unwrap, decoded.
///
/// ```
/// use coffer_client::keys::KeyOperationResult;
///
/// let mut out = KeyOperationResult::default();
/// out.kid = "https://vault.example/keys/k/1".into();
/// out.value = b"plaintext".to_vec();
/// // Debug shows the length, never the bytes.
/// let shown = format!("{out:?}");
/// assert!(shown.contains("<9 bytes>") && !shown.contains("plaintext"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyOperationResult {
    /// The key version that did the operation.
    pub kid: String,
    /// Output bytes (ciphertext, plaintext, wrapped or unwrapped key);
    /// zeroized on drop, never shown by `Debug`.
    pub value: Vec<u8>,
    /// AES-GCM/CBC initialisation vector, when the algorithm has one.
    pub iv: Option<Vec<u8>>,
    /// AES-GCM authentication tag.
    pub tag: Option<Vec<u8>>,
}

impl fmt::Debug for KeyOperationResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyOperationResult")
            .field("kid", &self.kid)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .finish_non_exhaustive()
    }
}

impl Drop for KeyOperationResult {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

/// Extra inputs of symmetric encryption (AES-GCM, AES-CBC).
///
/// ```no_run
/// # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
/// use coffer_client::keys::CipherParams;
///
/// let aad = CipherParams { aad: Some(b"order-42".to_vec()), ..CipherParams::default() };
/// let sealed = client.keys().encrypt("aes", None, "A256GCM", b"card data", &aad).await?;
/// // Decrypting needs the IV and tag the server picked, and the same AAD.
/// let params = CipherParams { iv: sealed.iv.clone(), tag: sealed.tag.clone(), ..aad };
/// let plain = client.keys().decrypt("aes", None, "A256GCM", &sealed.value, &params).await?;
/// assert_eq!(plain.value, b"card data");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CipherParams {
    /// Initialisation vector (CBC; GCM picks its own when absent).
    pub iv: Option<Vec<u8>>,
    /// Additional authenticated data (GCM).
    pub aad: Option<Vec<u8>>,
    /// Authentication tag (GCM decrypt).
    pub tag: Option<Vec<u8>>,
}

/// A key rotation policy.
///
/// ```
/// use coffer_client::keys::RotationPolicy;
///
/// let p = RotationPolicy::rotate_after("P90D", Some("P1Y"));
/// let json = serde_json::to_value(&p).unwrap();
/// assert_eq!(json["lifetimeActions"][0]["trigger"]["timeAfterCreate"], "P90D");
/// assert_eq!(json["lifetimeActions"][0]["action"]["type"], "Rotate");
/// assert_eq!(json["attributes"]["expiryTime"], "P1Y");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationPolicy {
    /// `https://{host}/keys/{name}/rotationpolicy` (answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What to do when.
    #[serde(default)]
    pub lifetime_actions: Vec<LifetimeAction>,
    /// Expiry of new versions; creation and update times.
    #[serde(default)]
    pub attributes: RotationPolicyAttributes,
}

impl RotationPolicy {
    /// Rotate `after` (ISO-8601 duration) each version's creation; new
    /// versions expire `expiry` after creation.
    pub fn rotate_after(after: &str, expiry: Option<&str>) -> Self {
        Self {
            id: None,
            lifetime_actions: vec![LifetimeAction {
                trigger: Trigger {
                    time_after_create: Some(after.into()),
                    time_before_expiry: None,
                },
                action: Action {
                    kind: "Rotate".into(),
                },
            }],
            attributes: RotationPolicyAttributes {
                expiry_time: expiry.map(Into::into),
                ..RotationPolicyAttributes::default()
            },
        }
    }
}

/// One lifetime action of a rotation policy.
///
/// ```
/// use coffer_client::keys::{Action, LifetimeAction, Trigger};
///
/// // Notify 30 days before the latest version expires.
/// let notify = LifetimeAction {
///     trigger: Trigger { time_before_expiry: Some("P30D".into()), ..Trigger::default() },
///     action: Action { kind: "Notify".into() },
/// };
/// assert_eq!(
///     serde_json::to_value(&notify).unwrap(),
///     serde_json::json!({"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "Notify"}})
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeAction {
    /// When.
    #[serde(default)]
    pub trigger: Trigger,
    /// What.
    #[serde(default)]
    pub action: Action,
}

/// When a lifetime action fires: exactly one of the two durations.
///
/// ```
/// let t: coffer_client::keys::Trigger =
///     serde_json::from_str(r#"{"timeAfterCreate": "P90D"}"#).unwrap();
/// assert_eq!(t.time_after_create.as_deref(), Some("P90D"));
/// assert_eq!(t.time_before_expiry, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    /// ISO-8601 duration after the latest version's creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_after_create: Option<String>,
    /// ISO-8601 duration before the latest version's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_before_expiry: Option<String>,
}

/// `Rotate` or `Notify`.
///
/// ```
/// let a: coffer_client::keys::Action = serde_json::from_str(r#"{"type": "Rotate"}"#).unwrap();
/// assert_eq!(a.kind, "Rotate");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// The action type.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// Attributes of a rotation policy.
///
/// ```
/// use coffer_client::keys::{RotationPolicy, RotationPolicyAttributes};
///
/// let answer: RotationPolicy = serde_json::from_str(r#"{
///     "id": "https://vault.example/keys/signer/rotationpolicy",
///     "lifetimeActions": [],
///     "attributes": {"expiryTime": "P1Y", "created": 1764547200, "updated": 1764547200}
/// }"#).unwrap();
/// let RotationPolicyAttributes { expiry_time, created, .. } = &answer.attributes;
/// assert_eq!(expiry_time.as_deref(), Some("P1Y"));
/// assert_eq!(*created, Some(1764547200));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationPolicyAttributes {
    /// ISO-8601 expiry of new versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_time: Option<String>,
    /// Creation time (answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Update time (answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
}
