//! What the device can do, detected once at open, and the encodings the
//! raw mechanisms need (DigestInfo prefixes, curve OIDs, EC points).
//!
//! No operation here hashes on the host: Key Vault's `sign` takes a digest,
//! so the host only prefixes it (RS*) or hands it over as is (PS*, ES*).

use std::collections::BTreeSet;

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::MechanismType;
use cryptoki::slot::Slot;

use crate::{Curve, SignAlg};

/// `CK_MECHANISM_TYPE` as a portable integer (it is `u32` on some platforms).
#[allow(clippy::useless_conversion)]
fn mech_id(m: MechanismType) -> u64 {
    u64::from(*m)
}

/// Mechanisms of one device that the HSM tier uses.
#[derive(Clone, Debug, Default)]
pub(crate) struct Capabilities {
    mechanisms: BTreeSet<u64>,
    /// `CKM_RSA_PKCS_OAEP` accepts SHA-256 / MGF1-SHA-256 parameters
    /// (probed with a throwaway key: SoftHSM2 2.6 accepts SHA-1 only).
    pub(crate) oaep_sha256: bool,
    /// `C_WrapKey` with `CKM_AES_KEY_WRAP_PAD` wraps values that are not a
    /// multiple of 8 bytes so they unwrap to their exact length (probed:
    /// SoftHSM2 2.6.1 zero-pads them first).
    pub(crate) kwp_wrap_exact: bool,
}

impl Capabilities {
    /// Reads the mechanism list of `slot`.
    pub(crate) fn detect(ctx: &Pkcs11, slot: Slot) -> Self {
        let mechanisms = ctx
            .get_mechanism_list(slot)
            .unwrap_or_default()
            .into_iter()
            .map(mech_id)
            .collect();
        Self {
            mechanisms,
            oaep_sha256: false,
            kwp_wrap_exact: false,
        }
    }

    /// Whether the device lists `m`.
    pub(crate) fn has(&self, m: MechanismType) -> bool {
        self.mechanisms.contains(&mech_id(m))
    }

    /// Human-readable notes for `status().notes`: what is native, what is
    /// encoded on the host, what is missing.
    pub(crate) fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let mut need = |m: MechanismType, what: &str| {
            if !self.has(m) {
                notes.push(format!("{what}: device lacks {m}, unsupported"));
            }
        };
        need(MechanismType::AES_KEY_WRAP_PAD, "cluster KEK wrapping");
        need(MechanismType::RSA_PKCS_KEY_PAIR_GEN, "RSA-HSM keys");
        need(MechanismType::ECC_KEY_PAIR_GEN, "EC-HSM keys");
        need(MechanismType::AES_KEY_GEN, "oct-HSM keys");
        need(MechanismType::AES_GCM, "A*GCM");
        need(MechanismType::AES_CBC, "A*CBC");
        need(MechanismType::AES_CBC_PAD, "A*CBCPAD");
        need(MechanismType::AES_KEY_WRAP, "A*KW");
        need(MechanismType::RSA_PKCS_PSS, "PS*");
        need(MechanismType::ECDSA, "ES*");
        notes.push(
            "RS256/384/512: DigestInfo prefix added on the host to the caller's digest, \
             signed with raw CKM_RSA_PKCS (no host hashing)"
                .into(),
        );
        notes.push(
            "PS256/384/512: CKM_RSA_PKCS_PSS on the caller's digest with hash/MGF1 params, \
             salt length = digest length"
                .into(),
        );
        if !self.has(MechanismType::ECDSA_SHA256) {
            notes.push(
                "ES256/384/512/256K: device lacks CKM_ECDSA_SHA*; raw CKM_ECDSA on the \
                 caller's digest (signature r||s as returned by the device)"
                    .into(),
            );
        }
        notes.push(if self.oaep_sha256 {
            "RSA-OAEP-256: native CKM_RSA_PKCS_OAEP with SHA-256/MGF1-SHA-256".into()
        } else if self.has(MechanismType::RSA_X_509) {
            "RSA-OAEP-256: device refuses SHA-256 OAEP parameters; raw RSA \
             (CKM_RSA_X_509) inside the device, constant-time OAEP decoding on the host"
                .into()
        } else {
            "RSA-OAEP-256: device refuses SHA-256 OAEP parameters and lacks \
             CKM_RSA_X_509; decrypt/unwrap answer unsupported"
                .into()
        });
        if !self.kwp_wrap_exact {
            notes.push(if self.has(MechanismType::AES_ECB) {
                "CKM_AES_KEY_WRAP_PAD wrapKey: the device's C_WrapKey zero-pads values \
                 before wrapping; RFC 5649 wrapping on the host over the device's \
                 AES-ECB block (unwrap native)"
                    .into()
            } else {
                "CKM_AES_KEY_WRAP_PAD wrapKey: the device's C_WrapKey zero-pads values \
                 and it lacks CKM_AES_ECB; values not a multiple of 8 bytes unwrap \
                 with trailing zeros"
                    .into()
            });
        }
        notes.push("RSA-OAEP: native CKM_RSA_PKCS_OAEP with SHA-1/MGF1-SHA-1".into());
        notes.push(
            "A*KW wrapKey/unwrapKey: the key bytes become a transient generic-secret \
             session object wrapped/unwrapped with CKM_AES_KEY_WRAP inside the device"
                .into(),
        );
        notes
    }
}

/// The hash a signature algorithm expects, as a mechanism and a length.
pub(crate) fn sign_hash(alg: SignAlg) -> Option<(MechanismType, usize)> {
    use SignAlg::*;
    match alg {
        RS256 | PS256 | ES256 | ES256K => Some((MechanismType::SHA256, 32)),
        RS384 | PS384 | ES384 => Some((MechanismType::SHA384, 48)),
        RS512 | PS512 | ES512 => Some((MechanismType::SHA512, 64)),
        HS256 | HS384 | HS512 => None,
    }
}

/// DER `DigestInfo` header for RSASSA-PKCS1-v1_5 (RFC 8017 §9.2 note 1).
pub(crate) fn digest_info_prefix(digest_len: usize) -> Option<&'static [u8]> {
    const SHA256: &[u8] = &[
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    const SHA384: &[u8] = &[
        0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
        0x05, 0x00, 0x04, 0x30,
    ];
    const SHA512: &[u8] = &[
        0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
        0x05, 0x00, 0x04, 0x40,
    ];
    match digest_len {
        32 => Some(SHA256),
        48 => Some(SHA384),
        64 => Some(SHA512),
        _ => None,
    }
}

/// DER OID of a named curve, as `CKA_EC_PARAMS` wants it.
pub(crate) fn curve_params(curve: Curve) -> &'static [u8] {
    match curve {
        Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        Curve::P521 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
        Curve::P256K => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a],
    }
}

/// Field size in bytes (length of x, y, d and of r and s).
pub(crate) fn curve_bytes(curve: Curve) -> usize {
    match curve {
        Curve::P256 | Curve::P256K => 32,
        Curve::P384 => 48,
        Curve::P521 => 66,
    }
}

/// Key size in bits as Key Vault reports it for a curve.
pub(crate) fn curve_bits(curve: Curve) -> u32 {
    match curve {
        Curve::P256 | Curve::P256K => 256,
        Curve::P384 => 384,
        Curve::P521 => 521,
    }
}

/// The curve an `ES*` algorithm requires.
pub(crate) fn sign_alg_curve(alg: SignAlg) -> Option<Curve> {
    match alg {
        SignAlg::ES256 => Some(Curve::P256),
        SignAlg::ES384 => Some(Curve::P384),
        SignAlg::ES512 => Some(Curve::P521),
        SignAlg::ES256K => Some(Curve::P256K),
        _ => None,
    }
}

/// Splits `CKA_EC_POINT` (a DER OCTET STRING holding `04 || x || y`; some
/// devices omit the OCTET STRING) into x and y.
pub(crate) fn parse_ec_point(der: &[u8], curve: Curve) -> Option<(Vec<u8>, Vec<u8>)> {
    let n = curve_bytes(curve);
    let raw = if der.len() == 1 + 2 * n {
        der
    } else {
        unwrap_octet_string(der)?
    };
    if raw.len() != 1 + 2 * n || raw[0] != 0x04 {
        return None;
    }
    Some((raw[1..1 + n].to_vec(), raw[1 + n..].to_vec()))
}

fn unwrap_octet_string(der: &[u8]) -> Option<&[u8]> {
    let (&tag, rest) = der.split_first()?;
    if tag != 0x04 {
        return None;
    }
    let (&len0, rest) = rest.split_first()?;
    let (len, body) = match len0 {
        l if l < 0x80 => (l as usize, rest),
        0x81 => (*rest.first()? as usize, &rest[1..]),
        0x82 => (
            ((*rest.first()? as usize) << 8) | *rest.get(1)? as usize,
            &rest[2..],
        ),
        _ => return None,
    };
    (body.len() == len).then_some(body)
}

/// `04 || x || y` wrapped in a DER OCTET STRING, for `CKA_EC_POINT`.
#[cfg(test)]
pub(crate) fn encode_ec_point(x: &[u8], y: &[u8]) -> Vec<u8> {
    let len = 1 + x.len() + y.len();
    let mut out = vec![0x04];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.extend([0x81, len as u8]);
    }
    out.push(0x04);
    out.extend_from_slice(x);
    out.extend_from_slice(y);
    out
}

/// Left-pads big-endian `bytes` to `len` (JWK scalars may drop leading zeros).
pub(crate) fn left_pad(bytes: &[u8], len: usize) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let trimmed = {
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        &bytes[first..]
    };
    if trimmed.len() > len {
        return None;
    }
    let mut out = zeroize::Zeroizing::new(vec![0u8; len - trimmed.len()]);
    out.extend_from_slice(trimmed);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_points_round_trip_for_every_curve() {
        for curve in [Curve::P256, Curve::P384, Curve::P521, Curve::P256K] {
            let n = curve_bytes(curve);
            let x = vec![0x11; n];
            let y = vec![0x22; n];
            let der = encode_ec_point(&x, &y);
            assert_eq!(parse_ec_point(&der, curve), Some((x, y)));
        }
    }

    #[test]
    fn rejects_points_of_the_wrong_size() {
        let der = encode_ec_point(&[1; 32], &[2; 32]);
        assert_eq!(parse_ec_point(&der, Curve::P384), None);
    }

    #[test]
    fn digest_info_prefixes_announce_the_digest_length() {
        for len in [32usize, 48, 64] {
            let prefix = digest_info_prefix(len).unwrap();
            assert_eq!(*prefix.last().unwrap() as usize, len);
            assert_eq!(prefix[1] as usize, prefix.len() - 2 + len);
        }
        assert!(digest_info_prefix(20).is_none());
    }

    #[test]
    fn left_pad_restores_dropped_zeros_and_refuses_overlong() {
        assert_eq!(left_pad(&[1, 2], 4).unwrap().as_slice(), &[0, 0, 1, 2]);
        assert_eq!(
            left_pad(&[0, 0, 0, 1, 2], 4).unwrap().as_slice(),
            &[0, 0, 1, 2]
        );
        assert!(left_pad(&[1, 2, 3], 2).is_none());
    }
}
