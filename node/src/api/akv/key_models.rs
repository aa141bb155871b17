//! JSON shapes of the Key Vault keys API and their rendering from engine
//! views. Binary fields are base64url without padding; padded input is
//! accepted too.

use std::collections::BTreeMap;

use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::errors::ApiError;
use super::models::AttributesIn;
use crate::crypto::software::curve_name;
use crate::crypto::{Curve, KeyType, PrivateKey, PublicKey};
use crate::engine::keys::{
    Key, KeyAttributes, KeyOp, KeyProperties, OpOutput, UpdateKey, RECOVERABLE_DAYS, RECOVERY_LEVEL,
};
use crate::engine::rotation::RotationPolicy;

/// base64url, padding optional.
const B64: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a base64url field; the error names the field, never its value.
pub fn b64(field: &str, s: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(s.trim())
        .map_err(|_| ApiError::bad_parameter(format!("The {field} field is not valid base64url")))
}

fn b64_opt(field: &str, s: Option<&String>) -> Result<Option<Vec<u8>>, ApiError> {
    s.map(|v| b64(field, v)).transpose()
}

/// Encodes base64url without padding.
pub fn enc(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// Body of `POST /keys/{name}/create`.
#[derive(Deserialize)]
pub struct CreateKeyBody {
    /// Key type.
    pub kty: KeyType,
    /// Key size.
    pub key_size: Option<u32>,
    /// RSA public exponent.
    pub public_exponent: Option<u32>,
    /// Permitted operations.
    pub key_ops: Option<Vec<KeyOp>>,
    /// Attributes.
    pub attributes: Option<KeyAttributesIn>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Curve.
    pub crv: Option<Curve>,
    /// Release policy (unsupported).
    pub release_policy: Option<serde_json::Value>,
}

/// Key attributes as clients send them.
#[derive(Debug, Default, Deserialize)]
pub struct KeyAttributesIn {
    /// Common attributes.
    #[serde(flatten)]
    pub common: AttributesIn,
    /// `exportable` (only false is supported).
    pub exportable: Option<bool>,
}

/// Builds engine attributes from the common body fields.
pub fn attributes(
    key_ops: Option<Vec<KeyOp>>,
    a: Option<KeyAttributesIn>,
    tags: Option<BTreeMap<String, String>>,
    release_policy: bool,
) -> KeyAttributes {
    let a = a.unwrap_or_default();
    KeyAttributes {
        key_ops,
        enabled: a.common.enabled,
        nbf: a.common.nbf,
        exp: a.common.exp,
        tags,
        exportable: a.exportable,
        release_policy,
    }
}

/// A JSON Web Key as clients send it (import).
#[derive(Deserialize)]
pub struct JwkIn {
    /// Key type.
    pub kty: KeyType,
    /// Permitted operations.
    pub key_ops: Option<Vec<KeyOp>>,
    /// RSA / EC / oct fields (base64url).
    pub n: Option<String>,
    #[allow(missing_docs)]
    pub e: Option<String>,
    #[allow(missing_docs)]
    pub d: Option<String>,
    #[allow(missing_docs)]
    pub dp: Option<String>,
    #[allow(missing_docs)]
    pub dq: Option<String>,
    #[allow(missing_docs)]
    pub qi: Option<String>,
    #[allow(missing_docs)]
    pub p: Option<String>,
    #[allow(missing_docs)]
    pub q: Option<String>,
    #[allow(missing_docs)]
    pub k: Option<String>,
    #[allow(missing_docs)]
    pub crv: Option<Curve>,
    #[allow(missing_docs)]
    pub x: Option<String>,
    #[allow(missing_docs)]
    pub y: Option<String>,
}

/// Body of `PUT /keys/{name}` (import).
#[derive(Deserialize)]
pub struct ImportKeyBody {
    /// Import into the HSM.
    #[serde(rename = "Hsm")]
    pub hsm: Option<bool>,
    /// The key.
    pub key: JwkIn,
    /// Attributes.
    pub attributes: Option<KeyAttributesIn>,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Release policy (unsupported).
    pub release_policy: Option<serde_json::Value>,
}

impl JwkIn {
    /// The private key the JWK carries.
    pub fn private_key(&self) -> Result<PrivateKey, ApiError> {
        let need = |field: &str, v: Option<&String>| -> Result<Vec<u8>, ApiError> {
            let v = v.ok_or_else(|| {
                ApiError::bad_parameter(format!("The imported key needs the {field} field"))
            })?;
            b64(field, v)
        };
        let secret = |field: &str, v: &Option<String>| -> Result<Zeroizing<Vec<u8>>, ApiError> {
            need(field, v.as_ref()).map(Zeroizing::new)
        };
        Ok(match self.kty {
            KeyType::Rsa | KeyType::RsaHsm => PrivateKey::Rsa {
                n: need("n", self.n.as_ref())?,
                e: need("e", self.e.as_ref())?,
                d: secret("d", &self.d)?,
                p: secret("p", &self.p)?,
                q: secret("q", &self.q)?,
                dp: secret("dp", &self.dp)?,
                dq: secret("dq", &self.dq)?,
                qi: secret("qi", &self.qi)?,
            },
            KeyType::Ec | KeyType::EcHsm => PrivateKey::Ec {
                curve: self.crv.ok_or_else(|| {
                    ApiError::bad_parameter("The imported key needs the crv field")
                })?,
                d: secret("d", &self.d)?,
                x: need("x", self.x.as_ref())?,
                y: need("y", self.y.as_ref())?,
            },
            KeyType::Oct | KeyType::OctHsm => PrivateKey::Oct {
                k: secret("k", &self.k)?,
            },
        })
    }
}

/// Body of `PATCH /keys/{name}/{version}`.
#[derive(Deserialize)]
pub struct UpdateKeyBody {
    /// New key_ops.
    pub key_ops: Option<Vec<KeyOp>>,
    /// Attribute changes.
    pub attributes: Option<KeyAttributesIn>,
    /// New tags.
    pub tags: Option<BTreeMap<String, String>>,
    /// Release policy (unsupported).
    pub release_policy: Option<serde_json::Value>,
}

impl UpdateKeyBody {
    /// The engine patch.
    pub fn patch(self) -> Result<UpdateKey, ApiError> {
        let a = self.attributes.unwrap_or_default();
        if a.exportable == Some(true) || self.release_policy.is_some() {
            return Err(ApiError::not_supported(
                "Exportable keys and key release policies are not supported by Coffer",
            ));
        }
        Ok(UpdateKey {
            key_ops: self.key_ops,
            enabled: a.common.enabled,
            nbf: a.common.nbf,
            exp: a.common.exp,
            tags: self.tags,
        })
    }
}

/// Body of encrypt, decrypt, wrapKey, unwrapKey.
#[derive(Deserialize)]
pub struct OperationBody {
    /// Algorithm.
    pub alg: String,
    /// Input (base64url).
    pub value: String,
    /// IV (base64url).
    pub iv: Option<String>,
    /// AAD (base64url).
    pub aad: Option<String>,
    /// GCM tag (base64url).
    pub tag: Option<String>,
}

impl OperationBody {
    /// Decoded `(value, iv, aad, tag)`.
    #[allow(clippy::type_complexity)]
    pub fn decode(
        &self,
    ) -> Result<
        (
            Zeroizing<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
            Option<Vec<u8>>,
        ),
        ApiError,
    > {
        Ok((
            Zeroizing::new(b64("value", &self.value)?),
            b64_opt("iv", self.iv.as_ref())?,
            b64_opt("aad", self.aad.as_ref())?,
            b64_opt("tag", self.tag.as_ref())?,
        ))
    }
}

/// Body of sign.
#[derive(Deserialize)]
pub struct SignBody {
    /// Algorithm.
    pub alg: String,
    /// Digest (base64url).
    pub value: String,
}

/// Body of verify.
#[derive(Deserialize)]
pub struct VerifyBody {
    /// Algorithm.
    pub alg: String,
    /// Digest (base64url).
    pub digest: String,
    /// Signature (base64url).
    pub value: String,
}

/// Body of `/rng`.
#[derive(Deserialize)]
pub struct RandomBody {
    /// How many bytes.
    pub count: i64,
}

/// `{"value": …}` of backup, restore, random bytes.
#[derive(Deserialize, Serialize)]
pub struct ValueBody {
    /// base64url.
    pub value: String,
}

/// `{"value": bool}` of verify.
#[derive(Serialize)]
pub struct VerifyResult {
    /// Whether the signature is valid.
    pub value: bool,
}

/// KeyOperationResult.
#[derive(Serialize)]
pub struct KeyOperationResult {
    /// Key id with version.
    pub kid: String,
    /// Output (base64url).
    pub value: String,
    /// IV.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iv: Option<String>,
    /// GCM tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// AAD echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aad: Option<String>,
}

/// Renders an operation result.
pub fn op_result(base: &str, out: &OpOutput, aad: Option<&[u8]>) -> KeyOperationResult {
    KeyOperationResult {
        kid: format!("{base}/keys/{}/{}", out.name, out.version),
        value: enc(&out.value),
        iv: out.iv.as_deref().map(enc),
        tag: out.tag.as_deref().map(enc),
        aad: aad.map(enc),
    }
}

/// The public JsonWebKey of responses (never private fields).
#[derive(Serialize)]
pub struct JwkOut {
    kid: String,
    kty: KeyType,
    key_ops: Vec<KeyOp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crv: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
}

/// Key attributes of responses.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyAttributesOut {
    enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    created: u64,
    updated: u64,
    recovery_level: &'static str,
    recoverable_days: u64,
    exportable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    hsm_platform: Option<&'static str>,
}

/// KeyBundle.
#[derive(Serialize)]
pub struct KeyBundle {
    key: JwkOut,
    attributes: KeyAttributesOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    managed: Option<bool>,
}

/// KeyItem of lists.
#[derive(Serialize)]
pub struct KeyItem {
    kid: String,
    attributes: KeyAttributesOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    managed: Option<bool>,
}

fn key_attributes(p: &KeyProperties) -> KeyAttributesOut {
    KeyAttributesOut {
        enabled: p.enabled,
        nbf: p.nbf,
        exp: p.exp,
        created: p.created,
        updated: p.updated,
        recovery_level: RECOVERY_LEVEL,
        recoverable_days: RECOVERABLE_DAYS,
        exportable: false,
        hsm_platform: p.hsm.then_some("coffer-pkcs11"),
    }
}

/// `{base}/keys/{name}/{version}`.
pub fn kid(base: &str, p: &KeyProperties) -> String {
    format!("{base}/keys/{}/{}", p.name, p.version)
}

/// Renders a KeyBundle.
pub fn bundle(base: &str, k: &Key) -> KeyBundle {
    let p = &k.properties;
    let mut jwk = JwkOut {
        kid: kid(base, p),
        kty: p.kty,
        key_ops: p.key_ops.clone(),
        n: None,
        e: None,
        crv: None,
        x: None,
        y: None,
    };
    match &k.public {
        PublicKey::Rsa { n, e } => {
            jwk.n = Some(enc(n));
            jwk.e = Some(enc(e));
        }
        PublicKey::Ec { curve, x, y } => {
            jwk.crv = Some(curve_name(*curve));
            jwk.x = Some(enc(x));
            jwk.y = Some(enc(y));
        }
        PublicKey::Oct => {}
    }
    KeyBundle {
        key: jwk,
        attributes: key_attributes(p),
        tags: p.tags.clone(),
        managed: p.managed,
    }
}

/// A list item; versioned kids for version lists, bare for name lists.
pub fn item(base: &str, p: &KeyProperties, versioned: bool) -> KeyItem {
    KeyItem {
        kid: if versioned {
            kid(base, p)
        } else {
            format!("{base}/keys/{}", p.name)
        },
        attributes: key_attributes(p),
        tags: p.tags.clone(),
        managed: p.managed,
    }
}

/// Rotation policy of responses: the stored policy plus its `id`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyOut {
    id: String,
    #[serde(flatten)]
    policy: RotationPolicy,
}

/// Renders a rotation policy of key `name`.
pub fn policy_out(base: &str, name: &str, policy: RotationPolicy) -> PolicyOut {
    PolicyOut {
        id: format!("{base}/keys/{name}/rotationpolicy"),
        policy,
    }
}
