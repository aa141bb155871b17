//! The one place a certificate version is written: the certificate, its
//! key and its secret (same name, same version, the key and secret marked
//! managed) as one fragment, for create, import, merge and renewal.

use std::collections::BTreeMap;

use super::issue::secret_value;
use super::policy::Policy;
use super::records::CertVersionRecord;
use super::{x509, CertificatesEngine};
use crate::error::EngineError;
use crate::key_records::KeyMaterial;
use crate::keys::{KeyOp, KeysEngine};
use crate::object::Meta;
use crate::secret_records::VersionRecord;
use crate::view::{Fragment, VaultView};

/// What a new version is made of.
pub(super) struct NewVersion<'a> {
    /// Name as requested.
    pub name: &'a str,
    /// The (completed) policy.
    pub policy: &'a Policy,
    /// The key of the certificate.
    pub material: &'a KeyMaterial,
    /// DER certificates, leaf first.
    pub chain: &'a [Vec<u8>],
    /// Enabled flag.
    pub enabled: bool,
    /// Tags.
    pub tags: Option<BTreeMap<String, String>>,
}

/// The PKCS#8 of a software key (`None` for an HSM key).
pub(super) fn pkcs8_of(material: &KeyMaterial) -> Option<&[u8]> {
    match material {
        KeyMaterial::Software(k) => k.pkcs8_der(),
        KeyMaterial::Hsm(_) => None,
    }
}

/// Key operations a certificate's key usages allow (Key Vault's mapping).
pub(super) fn key_ops_of(policy: &Policy) -> Vec<KeyOp> {
    let mut ops = Vec::new();
    let usages = policy
        .x509_props
        .as_ref()
        .and_then(|x| x.key_usage.clone())
        .unwrap_or_default();
    for u in &usages {
        let add: &[KeyOp] = match u.as_str() {
            "digitalSignature" | "nonRepudiation" | "keyCertSign" | "cRLSign" => {
                &[KeyOp::Sign, KeyOp::Verify]
            }
            "keyEncipherment" => &[KeyOp::WrapKey, KeyOp::UnwrapKey],
            "dataEncipherment" => &[KeyOp::Encrypt, KeyOp::Decrypt],
            "encipherOnly" => &[KeyOp::Encrypt],
            "decipherOnly" => &[KeyOp::Decrypt],
            _ => &[],
        };
        for op in add {
            if !ops.contains(op) {
                ops.push(*op);
            }
        }
    }
    ops
}

impl CertificatesEngine {
    /// The fragment writing `nv` as the newest version of the certificate
    /// `lower`, its key and its secret, and the version made. Refused (as
    /// an `Err` the caller turns into a refusal) while the certificate is
    /// deleted or when the key or secret name belongs to an object no
    /// certificate manages.
    pub(super) fn version_fragment(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        nv: &NewVersion<'_>,
        now: u64,
    ) -> Result<(Fragment, CertVersionRecord, String), EngineError> {
        let cert_meta = self.certs.meta(view, lower)?;
        if cert_meta
            .as_ref()
            .is_some_and(|m| m.record.deleted.is_some())
        {
            return Err(EngineError::Conflict(format!(
                "Certificate {} is currently being deleted and cannot be re-created; retry later.",
                nv.name
            )));
        }
        let key_meta = self.keys.meta(view, lower)?;
        let secret_meta = self.secrets.meta(view, lower)?;
        for (what, meta) in [("key", &key_meta), ("secret", &secret_meta)] {
            if meta.as_ref().is_some_and(|m| !m.record.managed) {
                return Err(EngineError::Conflict(format!(
                    "A {what} named {} already exists and is not managed by a certificate: the certificate cannot use its name",
                    nv.name
                )));
            }
        }
        let leaf = nv.chain.first().ok_or_else(|| {
            EngineError::BadParameter("A certificate chain needs at least one certificate".into())
        })?;
        let info = x509::info(leaf)?;
        let version = uuid::Uuid::new_v4().simple().to_string();
        let display = display_name(cert_meta.as_ref(), nv.name);
        let cert = CertVersionRecord {
            version: version.clone(),
            cer: leaf.clone(),
            enabled: nv.enabled,
            nbf: info.nbf,
            exp: info.exp,
            created: now,
            updated: now,
            tags: nv.tags.clone(),
        };
        let key = KeysEngine::certificate_key_record(
            version.clone(),
            now,
            nv.material,
            key_ops_of(nv.policy),
            Some(info.nbf),
            Some(info.exp),
            nv.tags.clone(),
        );
        let key = crate::key_records::KeyVersionRecord {
            enabled: nv.enabled,
            ..key
        };
        let exported = pkcs8_of(nv.material).filter(|_| nv.policy.exportable());
        let value = secret_value(nv.policy.content_type(), exported, nv.chain)?;
        let key_display = display_name(key_meta.as_ref(), nv.name);
        let secret = VersionRecord {
            version: version.clone(),
            value: value.to_string(),
            content_type: Some(nv.policy.content_type().to_owned()),
            enabled: nv.enabled,
            nbf: Some(info.nbf),
            exp: Some(info.exp),
            created: now,
            updated: now,
            tags: nv.tags.clone(),
            // Relative: the API layer knows the vault's URL.
            kid: Some(format!("/keys/{key_display}/{version}")),
            managed: Some(true),
        };
        let frag = self
            .certs
            .new_version_fragment(view, lower, cert_meta.as_ref(), &display, &cert)?
            .and(self.keys.managed_version_fragment(
                view,
                lower,
                key_meta.as_ref(),
                &key_display,
                &key,
            )?)
            .and(self.secrets.managed_version_fragment(
                view,
                lower,
                secret_meta.as_ref(),
                &display_name(secret_meta.as_ref(), nv.name),
                &secret,
            )?);
        Ok((frag, cert, display))
    }
}

fn display_name(meta: Option<&Meta>, asked: &str) -> String {
    meta.map_or_else(|| asked.to_owned(), |m| m.record.name.clone())
}
