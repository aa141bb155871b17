//! The cluster KEK ceremony: create the KEK in one device, then move it to
//! each other device wrapped under an RSA-3072 transport key generated
//! inside the receiving device, so the KEK never exists in plaintext
//! outside a device.
//!
//! Steps: (a) [`Pkcs11Hsm::create_kek`] on the first node; (b)
//! [`Pkcs11Hsm::transport_key`] on the receiving node; (c)
//! [`Pkcs11Hsm::export_kek`] on a holding node; (d) [`Pkcs11Hsm::import_kek`]
//! on the receiving node, which destroys the transport key.
//!
//! OAEP hash: SHA-256 when both devices accept SHA-256 OAEP parameters,
//! otherwise SHA-1 (SoftHSM2 2.6 accepts only SHA-1 for
//! `CKM_RSA_PKCS_OAEP`). OAEP with SHA-1 remains a sound wrapping scheme:
//! OAEP's security does not rest on SHA-1's collision resistance.

use cryptoki::error::Error as CkError;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use super::pool::OpError;
use super::{bit_length, classify, find_kek, no_kek, oaep, Pkcs11Hsm, KEK_LABEL};
pub use crate::hsm::{KekExport, KekInfo, OaepHash, TransportKey};
use crate::CryptoError;

/// Label of the receiving device's transport key pair.
pub const TRANSPORT_LABEL: &str = "coffer-kek-transport";
/// Transport keys are RSA of this size.
pub const TRANSPORT_BITS: u32 = 3072;

/// A check value for the KEK, equal on every device holding the same KEK:
/// the first 8 bytes of `CKM_AES_KEY_WRAP` (deterministic, RFC 3394) of 16
/// zero bytes under it, the usual "encrypt zeros" KCV. Computed rather than
/// read from `CKA_CHECK_VALUE` because SoftHSM2 sets that only on generated
/// keys, not on unwrapped ones.
pub(super) fn check_value(s: &Session, kek: ObjectHandle) -> Option<String> {
    let zeros = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(CkKeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Value(vec![0; 16]),
        ])
        .ok()?;
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrap, kek, zeros);
    let _ = s.destroy_object(zeros);
    wrapped.ok().map(|w| hex::encode(&w[..w.len().min(8)]))
}

fn kek_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(CkKeyType::AES),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        // Needed to wrap the KEK for the next device; see the module docs of
        // `pkcs11` on CKA_WRAP_WITH_TRUSTED.
        Attribute::Extractable(true),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Label(KEK_LABEL.as_bytes().to_vec()),
    ]
}

fn already_has_kek() -> OpError {
    OpError::Crypto(CryptoError::BadInput(format!(
        "this device already holds the cluster KEK ({KEK_LABEL})"
    )))
}

fn find_transport(s: &Session, class: ObjectClass) -> Result<Vec<ObjectHandle>, CkError> {
    s.find_objects(&[
        Attribute::Class(class),
        Attribute::Label(TRANSPORT_LABEL.as_bytes().to_vec()),
    ])
}

fn destroy_transport(s: &Session) -> Result<(), CkError> {
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        for h in find_transport(s, class)? {
            s.destroy_object(h)?;
        }
    }
    Ok(())
}

/// Drops the cached KEK handle when a KEK-changing step ends, however it ends.
struct ForgetKek<'a>(&'a super::Open);

impl Drop for ForgetKek<'_> {
    fn drop(&mut self) {
        self.0.forget_kek();
    }
}

impl Pkcs11Hsm {
    /// (a) Generates the cluster KEK in this device. Refuses if present.
    pub fn create_kek(&self) -> Result<KekInfo, CryptoError> {
        let open = self.open_device()?;
        // The KEK object changes: look its handle up afresh afterwards.
        let _forget = ForgetKek(open);
        open.device
            .with_session(|s| {
                if find_kek(s)?.is_some() {
                    return Err(already_has_kek());
                }
                let mut template = kek_template();
                template.push(Attribute::ValueLen(32.into()));
                let kek = s.generate_key(&Mechanism::AesKeyGen, &template)?;
                Ok(KekInfo {
                    check_value: check_value(s, kek),
                })
            })
            .map_err(classify)
    }

    /// The KEK's check value, or `None` when this device holds no KEK.
    pub fn kek_info(&self) -> Result<Option<KekInfo>, CryptoError> {
        let open = self.open_device()?;
        open.device
            .with_session(|s| {
                Ok(find_kek(s)?.map(|kek| KekInfo {
                    check_value: check_value(s, kek),
                }))
            })
            .map_err(classify)
    }

    /// (b) Generates a fresh RSA-3072 transport key pair in this device (the
    /// private half a non-extractable token object that can only unwrap,
    /// replacing any earlier one) and returns its public half.
    pub fn transport_key(&self) -> Result<TransportKey, CryptoError> {
        let open = self.open_device()?;
        let oaep_sha256 = open.caps.oaep_sha256;
        open.device
            .with_session(|s| {
                if find_kek(s)?.is_some() {
                    return Err(already_has_kek());
                }
                destroy_transport(s)?;
                let label = Attribute::Label(TRANSPORT_LABEL.as_bytes().to_vec());
                let (public, _private) = s.generate_key_pair(
                    &Mechanism::RsaPkcsKeyPairGen,
                    &[
                        Attribute::Token(false),
                        Attribute::ModulusBits(u64::from(TRANSPORT_BITS).into()),
                        Attribute::PublicExponent(vec![1, 0, 1]),
                        Attribute::Wrap(true),
                        label.clone(),
                    ],
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Unwrap(true),
                        Attribute::Decrypt(false),
                        Attribute::Sign(false),
                        label,
                    ],
                )?;
                let read = super::read_rsa_public(s, public);
                let _ = s.destroy_object(public);
                match read? {
                    crate::PublicKey::Rsa { n, e } => Ok(TransportKey { n, e, oaep_sha256 }),
                    _ => Err(OpError::Crypto(CryptoError::Internal(
                        "transport key is not RSA".into(),
                    ))),
                }
            })
            .map_err(classify)
    }

    /// (c) Wraps this device's KEK under a receiving device's transport key.
    pub fn export_kek(&self, transport: &TransportKey) -> Result<KekExport, CryptoError> {
        if bit_length(&transport.n) < TRANSPORT_BITS {
            return Err(CryptoError::BadInput(format!(
                "transport keys must be RSA-{TRANSPORT_BITS} or larger"
            )));
        }
        let open = self.open_device()?;
        let oaep_hash = if open.caps.oaep_sha256 && transport.oaep_sha256 {
            OaepHash::Sha256
        } else {
            OaepHash::Sha1
        };
        open.device
            .with_session(|s| {
                let kek = find_kek(s)?.ok_or_else(no_kek)?;
                let public = s.create_object(&[
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::KeyType(CkKeyType::RSA),
                    Attribute::Token(false),
                    Attribute::Wrap(true),
                    Attribute::Modulus(transport.n.clone()),
                    Attribute::PublicExponent(transport.e.clone()),
                ])?;
                let wrapped = s.wrap_key(&oaep(hash_mech(oaep_hash)), public, kek);
                let _ = s.destroy_object(public);
                Ok(KekExport {
                    wrapped: wrapped?,
                    oaep_hash,
                })
            })
            .map_err(classify)
    }

    /// (d) Unwraps the KEK into this device as a token object with the
    /// transport key generated in step (b), then destroys the transport key.
    pub fn import_kek(&self, export: &KekExport) -> Result<KekInfo, CryptoError> {
        let open = self.open_device()?;
        // The KEK object changes: look its handle up afresh afterwards.
        let _forget = ForgetKek(open);
        open.device
            .with_session(|s| {
                if find_kek(s)?.is_some() {
                    return Err(already_has_kek());
                }
                let private = match find_transport(s, ObjectClass::PRIVATE_KEY)?.as_slice() {
                    [one] => *one,
                    _ => {
                        return Err(OpError::Crypto(CryptoError::BadInput(
                            "this device has no (single) transport key; request one first".into(),
                        )))
                    }
                };
                let kek = s
                    .unwrap_key(
                        &oaep(hash_mech(export.oaep_hash)),
                        private,
                        &export.wrapped,
                        &kek_template(),
                    )
                    .map_err(|e| match classify(OpError::Device(e)) {
                        CryptoError::DecryptFailed => OpError::Crypto(CryptoError::BadInput(
                            "the KEK was not wrapped for this device's current transport key"
                                .into(),
                        )),
                        other => OpError::Crypto(other),
                    })?;
                destroy_transport(s)?;
                Ok(KekInfo {
                    check_value: check_value(s, kek),
                })
            })
            .map_err(classify)
    }
}

fn hash_mech(h: OaepHash) -> MechanismType {
    match h {
        OaepHash::Sha1 => MechanismType::SHA1,
        OaepHash::Sha256 => MechanismType::SHA256,
    }
}
