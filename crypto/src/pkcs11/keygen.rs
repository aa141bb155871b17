//! Key generation and import inside the device: every new key is a
//! transient session object, wrapped under the KEK and destroyed.

use super::*;

/// Attributes every freshly generated or imported key carries: a session
/// object, sensitive, extractable only so it can be wrapped under the KEK.
pub(super) fn transient_private() -> Vec<Attribute> {
    vec![
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(true),
    ]
}

pub(super) fn generate_rsa(
    s: &Session,
    kek: ObjectHandle,
    bits: u32,
    public_exponent: u32,
) -> Result<HsmKey, OpError> {
    if ![2048, 3072, 4096].contains(&bits) {
        return Err(bad_input(format!("RSA key size {bits} is not 2048, 3072 or 4096")).into());
    }
    if public_exponent < 3 || public_exponent.is_multiple_of(2) {
        return Err(bad_input(format!("public exponent {public_exponent} is invalid")).into());
    }
    let e = minimal_be(public_exponent);
    let mut private_t = transient_private();
    private_t.extend([
        Attribute::Sign(true),
        Attribute::Decrypt(true),
        Attribute::Unwrap(true),
    ]);
    let (public, private) = s.generate_key_pair(
        &Mechanism::RsaPkcsKeyPairGen,
        &[
            Attribute::Token(false),
            Attribute::ModulusBits(u64::from(bits).into()),
            Attribute::PublicExponent(e),
            Attribute::Verify(true),
            Attribute::Encrypt(true),
        ],
        &private_t,
    )?;
    let read = read_rsa_public(s, public);
    let wrapped = wrap_and_destroy(s, kek, private, Some(public))?;
    Ok(HsmKey {
        kty: KeyType::RsaHsm,
        wrapped,
        public: read?,
        bits,
    })
}

pub(super) fn read_rsa_public(s: &Session, public: ObjectHandle) -> Result<PublicKey, OpError> {
    let attrs = s.get_attributes(
        public,
        &[AttributeType::Modulus, AttributeType::PublicExponent],
    )?;
    let (mut n, mut e) = (None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            _ => {}
        }
    }
    match (n, e) {
        (Some(n), Some(e)) => Ok(PublicKey::Rsa { n, e }),
        _ => Err(internal("device returned no RSA public key").into()),
    }
}

pub(super) fn generate_ec(s: &Session, kek: ObjectHandle, curve: Curve) -> Result<HsmKey, OpError> {
    let mut private_t = transient_private();
    private_t.push(Attribute::Sign(true));
    let (public, private) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(false),
                Attribute::EcParams(mechanisms::curve_params(curve).to_vec()),
                Attribute::Verify(true),
            ],
            &private_t,
        )
        .map_err(|e| curve_error(e, curve))?;
    let point = s.get_attributes(public, &[AttributeType::EcPoint]);
    let wrapped = wrap_and_destroy(s, kek, private, Some(public))?;
    let (x, y) = point?
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => mechanisms::parse_ec_point(&p, curve),
            _ => None,
        })
        .ok_or_else(|| internal("device returned no usable EC point"))?;
    Ok(HsmKey {
        kty: KeyType::EcHsm,
        wrapped,
        public: PublicKey::Ec { curve, x, y },
        bits: mechanisms::curve_bits(curve),
    })
}

pub(super) fn curve_error(e: CkError, curve: Curve) -> OpError {
    match e {
        CkError::Pkcs11(
            RvError::CurveNotSupported
            | RvError::DomainParamsInvalid
            | RvError::AttributeValueInvalid,
            _,
        ) => OpError::Crypto(CryptoError::Unsupported(format!("curve {curve:?}"))),
        other => OpError::Device(other),
    }
}

pub(super) fn generate_oct(s: &Session, kek: ObjectHandle, bits: u32) -> Result<HsmKey, OpError> {
    if ![128, 192, 256].contains(&bits) {
        return Err(bad_input(format!("AES key size {bits} is not 128, 192 or 256")).into());
    }
    let mut template = transient_private();
    template.extend([
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(CkKeyType::AES),
        Attribute::ValueLen(u64::from(bits / 8).into()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
    ]);
    let key = s.generate_key(&Mechanism::AesKeyGen, &template)?;
    let wrapped = wrap_and_destroy(s, kek, key, None)?;
    Ok(HsmKey {
        kty: KeyType::OctHsm,
        wrapped,
        public: PublicKey::Oct,
        bits,
    })
}

/// Creates a transient session object from private material (the template's
/// secret values are wiped afterwards) and wraps it.
pub(super) fn import_key(
    s: &Session,
    kek: ObjectHandle,
    key: &PrivateKey,
) -> Result<HsmKey, OpError> {
    let (mut template, kty, public, bits) = import_template(key)?;
    let created = s.create_object(&template);
    wipe(&mut template);
    let handle = created.map_err(|e| match e {
        CkError::Pkcs11(
            RvError::AttributeValueInvalid
            | RvError::TemplateInconsistent
            | RvError::TemplateIncomplete,
            _,
        ) => OpError::Crypto(CryptoError::BadInput(
            "the device rejected the key material".into(),
        )),
        other => OpError::Device(other),
    })?;
    let wrapped = wrap_and_destroy(s, kek, handle, None)?;
    Ok(HsmKey {
        kty,
        wrapped,
        public,
        bits,
    })
}

pub(super) type ImportParts = (Vec<Attribute>, KeyType, PublicKey, u32);

pub(super) fn import_template(key: &PrivateKey) -> Result<ImportParts, OpError> {
    let mut t = transient_private();
    match key {
        PrivateKey::Rsa {
            n,
            e,
            d,
            p,
            q,
            dp,
            dq,
            qi,
        } => {
            let bits = bit_length(n);
            if bits < 2048 {
                return Err(bad_input("RSA keys must be at least 2048 bits".into()).into());
            }
            t.extend([
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(CkKeyType::RSA),
                Attribute::Sign(true),
                Attribute::Decrypt(true),
                Attribute::Unwrap(true),
                Attribute::Modulus(n.clone()),
                Attribute::PublicExponent(e.clone()),
                Attribute::PrivateExponent(d.to_vec()),
                Attribute::Prime1(p.to_vec()),
                Attribute::Prime2(q.to_vec()),
                Attribute::Exponent1(dp.to_vec()),
                Attribute::Exponent2(dq.to_vec()),
                Attribute::Coefficient(qi.to_vec()),
            ]);
            let public = PublicKey::Rsa {
                n: n.clone(),
                e: e.clone(),
            };
            Ok((t, KeyType::RsaHsm, public, bits))
        }
        PrivateKey::Ec { curve, d, x, y } => {
            let size = mechanisms::curve_bytes(*curve);
            let d = mechanisms::left_pad(d, size)
                .ok_or_else(|| bad_input("EC private scalar is too long".into()))?;
            let x = mechanisms::left_pad(x, size)
                .ok_or_else(|| bad_input("EC x is too long".into()))?;
            let y = mechanisms::left_pad(y, size)
                .ok_or_else(|| bad_input("EC y is too long".into()))?;
            t.extend([
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(CkKeyType::EC),
                Attribute::Sign(true),
                Attribute::EcParams(mechanisms::curve_params(*curve).to_vec()),
                Attribute::Value(d.to_vec()),
            ]);
            let public = PublicKey::Ec {
                curve: *curve,
                x: x.to_vec(),
                y: y.to_vec(),
            };
            Ok((t, KeyType::EcHsm, public, mechanisms::curve_bits(*curve)))
        }
        PrivateKey::Oct { k } => {
            if ![16, 24, 32].contains(&k.len()) {
                return Err(bad_input("AES keys are 128, 192 or 256 bits".into()).into());
            }
            t.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(CkKeyType::AES),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Value(k.to_vec()),
            ]);
            Ok((t, KeyType::OctHsm, PublicKey::Oct, k.len() as u32 * 8))
        }
    }
}

/// Overwrites the secret values a template carried.
pub(super) fn wipe(template: &mut [Attribute]) {
    for a in template {
        match a {
            Attribute::Value(v)
            | Attribute::PrivateExponent(v)
            | Attribute::Prime1(v)
            | Attribute::Prime2(v)
            | Attribute::Exponent1(v)
            | Attribute::Exponent2(v)
            | Attribute::Coefficient(v) => v.zeroize(),
            _ => {}
        }
    }
}
