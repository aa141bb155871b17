//! The key operations of the device (sign, decrypt, encrypt, key wrap) and
//! the [`HsmProvider`]/[`HsmAdmin`] implementations over them.

use super::*;

/// The sign mechanism and input for `alg` on `key`, after checking the
/// digest length and key type.
pub(super) fn sign_input(
    key: &HsmKey,
    alg: SignAlg,
    digest: &[u8],
) -> Result<(Mechanism<'static>, Vec<u8>), CryptoError> {
    let (hash, len) = mechanisms::sign_hash(alg).ok_or_else(|| mismatch(alg, key.kty))?;
    if digest.len() != len {
        return Err(bad_input(format!(
            "{alg:?} needs a {len}-byte digest, got {} bytes",
            digest.len()
        )));
    }
    use SignAlg::*;
    match (key.kty, alg) {
        (KeyType::RsaHsm, RS256 | RS384 | RS512) => {
            let prefix = mechanisms::digest_info_prefix(len).ok_or_else(|| internal("digest"))?;
            Ok((Mechanism::RsaPkcs, [prefix, digest].concat()))
        }
        (KeyType::RsaHsm, PS256 | PS384 | PS512) => {
            let mgf = match len {
                32 => PkcsMgfType::MGF1_SHA256,
                48 => PkcsMgfType::MGF1_SHA384,
                _ => PkcsMgfType::MGF1_SHA512,
            };
            let params = PkcsPssParams {
                hash_alg: hash,
                mgf,
                s_len: (len as u64).into(),
            };
            Ok((Mechanism::RsaPkcsPss(params), digest.to_vec()))
        }
        (KeyType::EcHsm, ES256 | ES384 | ES512 | ES256K) => {
            let want = mechanisms::sign_alg_curve(alg);
            match &key.public {
                PublicKey::Ec { curve, .. } if Some(*curve) == want => {
                    Ok((Mechanism::Ecdsa, digest.to_vec()))
                }
                _ => Err(mismatch(alg, key.kty)),
            }
        }
        _ => Err(mismatch(alg, key.kty)),
    }
}

/// AES key size an `A…` algorithm requires (None: any size).
pub(super) fn aes_bits(alg: EncAlg) -> Option<u32> {
    use EncAlg::*;
    match alg {
        A128GCM | A128KW | A128CBC | A128CBCPAD => Some(128),
        A192GCM | A192KW | A192CBC | A192CBCPAD => Some(192),
        A256GCM | A256KW | A256CBC | A256CBCPAD => Some(256),
        _ => None,
    }
}

pub(super) fn check_oct(key: &HsmKey, alg: EncAlg) -> Result<(), CryptoError> {
    if key.kty != KeyType::OctHsm {
        return Err(mismatch(alg, key.kty));
    }
    match aes_bits(alg) {
        Some(bits) if bits != key.bits => Err(mismatch(alg, key.kty)),
        _ => Ok(()),
    }
}

pub(super) fn iv16(params: &SymParams) -> Result<[u8; 16], CryptoError> {
    params
        .iv
        .as_deref()
        .and_then(|iv| <[u8; 16]>::try_from(iv).ok())
        .ok_or_else(|| bad_input("CBC needs a 16-byte iv".into()))
}

/// Symmetric mechanisms of `C_Encrypt`/`C_Decrypt` (not key wrap).
pub(super) enum SymKind {
    Gcm,
    Cbc,
    CbcPad,
    Kw(Mechanism<'static>),
}

pub(super) fn sym_kind(alg: EncAlg) -> Option<SymKind> {
    use EncAlg::*;
    match alg {
        A128GCM | A192GCM | A256GCM => Some(SymKind::Gcm),
        A128CBC | A192CBC | A256CBC => Some(SymKind::Cbc),
        A128CBCPAD | A192CBCPAD | A256CBCPAD => Some(SymKind::CbcPad),
        A128KW | A192KW | A256KW | CkmAesKeyWrap => Some(SymKind::Kw(Mechanism::AesKeyWrap)),
        CkmAesKeyWrapPad => Some(SymKind::Kw(Mechanism::AesKeyWrapPad)),
        RsaOaep | RsaOaep256 | Rsa15 => None,
    }
}

/// Wraps caller-supplied key bytes with `key` (A*KW wrapKey).
pub(super) fn wrap_bytes(
    s: &Session,
    key: ObjectHandle,
    mech: &Mechanism,
    bytes: &[u8],
) -> Result<Vec<u8>, OpError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(CkKeyType::GENERIC_SECRET),
        Attribute::Token(false),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
        Attribute::Value(bytes.to_vec()),
    ];
    let created = s.create_object(&template);
    wipe(&mut template);
    let obj = created?;
    let wrapped = s.wrap_key(mech, key, obj);
    let _ = s.destroy_object(obj);
    Ok(wrapped?)
}

/// Unwraps caller data with `key` (A*KW unwrapKey) and reads the bytes back.
pub(super) fn unwrap_bytes(
    s: &Session,
    key: ObjectHandle,
    mech: &Mechanism,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpError> {
    let obj = s.unwrap_key(
        mech,
        key,
        wrapped,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(CkKeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ],
    )?;
    let attrs = s.get_attributes(obj, &[AttributeType::Value]);
    let _ = s.destroy_object(obj);
    let value = attrs?.into_iter().find_map(|a| match a {
        Attribute::Value(v) => Some(Zeroizing::new(v)),
        _ => None,
    });
    value.ok_or_else(|| internal("device returned no unwrapped value").into())
}

impl HsmAdmin for Pkcs11Hsm {
    fn create_kek(&self) -> Result<KekInfo, CryptoError> {
        Pkcs11Hsm::create_kek(self)
    }

    fn transport_key(&self) -> Result<TransportKey, CryptoError> {
        Pkcs11Hsm::transport_key(self)
    }

    fn export_kek(&self, transport: &TransportKey) -> Result<KekExport, CryptoError> {
        Pkcs11Hsm::export_kek(self, transport)
    }

    fn import_kek(&self, export: &KekExport) -> Result<KekInfo, CryptoError> {
        Pkcs11Hsm::import_kek(self, export)
    }
}

impl HsmProvider for Pkcs11Hsm {
    fn status(&self) -> HsmStatus {
        let open = match &self.state {
            Ok(open) => open,
            Err(e) => {
                return HsmStatus {
                    available: false,
                    error: Some(e.clone()),
                    token_label: self.token_label.clone(),
                    kek_present: false,
                    notes: Vec::new(),
                }
            }
        };
        let mut notes = open.caps.notes();
        let kek = open.device.with_session(|s| {
            let found = find_kek(s)?;
            // Status looks anyway: keep the cached handle in step with it.
            *open.kek_slot() = found;
            let Some(kek) = found else {
                return Ok(None);
            };
            Ok(Some(ceremony::check_value(s, kek)))
        });
        let (kek_present, error) = match kek {
            Ok(Some(kcv)) => {
                if let Some(kcv) = kcv {
                    notes.push(format!("cluster KEK check value: {kcv}"));
                }
                (true, None)
            }
            Ok(None) => (false, None),
            Err(e) => (false, Some(classify(e).to_string())),
        };
        notes.push(format!(
            "session pool: up to {} sessions",
            open.device.max_sessions()
        ));
        HsmStatus {
            available: error.is_none(),
            error,
            token_label: self.token_label.clone(),
            kek_present,
            notes,
        }
    }

    fn generate(&self, spec: &KeySpec) -> Result<HsmKey, CryptoError> {
        self.with_kek(|_, s, kek| match spec {
            KeySpec::Rsa {
                bits,
                public_exponent,
            } => generate_rsa(s, kek, *bits, *public_exponent),
            KeySpec::Ec { curve } => generate_ec(s, kek, *curve),
            KeySpec::Oct { bits } => generate_oct(s, kek, *bits),
        })
    }

    fn import(&self, key: &PrivateKey) -> Result<HsmKey, CryptoError> {
        self.with_kek(|_, s, kek| import_key(s, kek, key))
    }

    fn sign(&self, key: &HsmKey, alg: SignAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open_device()?;
        let (mech, input) = sign_input(key, alg, digest)?;
        self.with_key(key, |s, h| Ok(s.sign(&mech, h, &input)?))
    }

    fn decrypt(
        &self,
        key: &HsmKey,
        alg: EncAlg,
        ciphertext: &[u8],
        params: &SymParams,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if key.kty == KeyType::RsaHsm {
            return self.rsa_decrypt(key, alg, ciphertext);
        }
        check_oct(key, alg)?;
        let kind = sym_kind(alg).ok_or_else(|| mismatch(alg, key.kty))?;
        let aad = params.aad.clone().unwrap_or_default();
        let input = match kind {
            SymKind::Gcm => {
                let tag = params
                    .tag
                    .as_deref()
                    .filter(|t| t.len() == 16)
                    .ok_or_else(|| bad_input("GCM decryption needs a 16-byte tag".into()))?;
                [ciphertext, tag].concat()
            }
            _ => ciphertext.to_vec(),
        };
        let iv = params.iv.clone().unwrap_or_default();
        if matches!(kind, SymKind::Gcm) && iv.is_empty() {
            return Err(bad_input("GCM decryption needs the iv".into()));
        }
        let cbc_iv = match kind {
            SymKind::Cbc | SymKind::CbcPad => Some(iv16(params)?),
            _ => None,
        };
        self.with_key(key, |s, h| {
            let out = match &kind {
                SymKind::Gcm => {
                    let mut iv = iv.clone();
                    let gcm = GcmParams::new(&mut iv, &aad, 128.into())?;
                    s.decrypt(&Mechanism::AesGcm(gcm), h, &input)?
                }
                SymKind::Cbc => {
                    s.decrypt(&Mechanism::AesCbc(cbc_iv.unwrap_or_default()), h, &input)?
                }
                SymKind::CbcPad => {
                    s.decrypt(&Mechanism::AesCbcPad(cbc_iv.unwrap_or_default()), h, &input)?
                }
                SymKind::Kw(mech) => return unwrap_bytes(s, h, mech, &input),
            };
            Ok(Zeroizing::new(out))
        })
        .map_err(|e| match e {
            CryptoError::Internal(_) | CryptoError::BadInput(_) => CryptoError::DecryptFailed,
            other => other,
        })
    }

    fn encrypt(
        &self,
        key: &HsmKey,
        alg: EncAlg,
        plaintext: &[u8],
        params: &SymParams,
    ) -> Result<Ciphertext, CryptoError> {
        if key.kty != KeyType::OctHsm {
            return Err(bad_input(
                "RSA encryption uses only the public key and is done in software".into(),
            ));
        }
        check_oct(key, alg)?;
        let kind = sym_kind(alg).ok_or_else(|| mismatch(alg, key.kty))?;
        let aad = params.aad.clone().unwrap_or_default();
        match &kind {
            SymKind::Cbc if !plaintext.len().is_multiple_of(16) => {
                return Err(bad_input(
                    "CBC without padding needs a multiple of 16 bytes".into(),
                ))
            }
            SymKind::Kw(Mechanism::AesKeyWrap)
                if !plaintext.len().is_multiple_of(8) || plaintext.len() < 16 =>
            {
                return Err(bad_input(
                    "AES key wrap needs at least 16 bytes in multiples of 8".into(),
                ))
            }
            SymKind::Kw(Mechanism::AesKeyWrapPad)
                if plaintext.is_empty() || u32::try_from(plaintext.len()).is_err() =>
            {
                return Err(bad_input(
                    "AES key wrap with padding needs 1 to 2^32-1 bytes".into(),
                ))
            }
            _ => {}
        }
        let host_kwp = {
            let caps = &self.open_device()?.caps;
            !caps.kwp_wrap_exact && caps.has(MechanismType::AES_ECB)
        };
        match &kind {
            SymKind::Kw(Mechanism::AesKeyWrapPad)
                if host_kwp && !plaintext.len().is_multiple_of(8) =>
            {
                return self.with_key(key, |s, h| {
                    let value = kwp::wrap_pad(plaintext, |block| {
                        let out = Zeroizing::new(s.encrypt(&Mechanism::AesEcb, h, block)?);
                        <[u8; 16]>::try_from(out.as_slice())
                            .map_err(|_| OpError::from(internal("AES-ECB output is not one block")))
                    })?;
                    Ok(Ciphertext {
                        value,
                        iv: None,
                        tag: None,
                    })
                });
            }
            _ => {}
        }
        let cbc_iv = match kind {
            SymKind::Cbc | SymKind::CbcPad => Some(iv16(params)?),
            SymKind::Gcm => {
                refuse_caller_gcm_iv(params)?;
                None
            }
            _ => None,
        };
        self.with_key(key, |s, h| match &kind {
            SymKind::Gcm => {
                let mut iv = s.generate_random_vec(12)?;
                let used_iv = iv.clone();
                let gcm = GcmParams::new(&mut iv, &aad, 128.into())?;
                let mut out = s.encrypt(&Mechanism::AesGcm(gcm), h, plaintext)?;
                if out.len() < 16 {
                    return Err(internal("GCM output shorter than its tag").into());
                }
                let tag = out.split_off(out.len() - 16);
                Ok(Ciphertext {
                    value: out,
                    iv: Some(used_iv),
                    tag: Some(tag),
                })
            }
            SymKind::Cbc | SymKind::CbcPad => {
                let iv = cbc_iv.unwrap_or_default();
                let mech = if matches!(kind, SymKind::Cbc) {
                    Mechanism::AesCbc(iv)
                } else {
                    Mechanism::AesCbcPad(iv)
                };
                Ok(Ciphertext {
                    value: s.encrypt(&mech, h, plaintext)?,
                    iv: Some(iv.to_vec()),
                    tag: None,
                })
            }
            SymKind::Kw(mech) => Ok(Ciphertext {
                value: wrap_bytes(s, h, mech, plaintext)?,
                iv: None,
                tag: None,
            }),
        })
    }
}

impl Pkcs11Hsm {
    fn rsa_decrypt(
        &self,
        key: &HsmKey,
        alg: EncAlg,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mech = match alg {
            EncAlg::RsaOaep => oaep(MechanismType::SHA1),
            EncAlg::RsaOaep256 => {
                let caps = &self.open_device()?.caps;
                if !caps.oaep_sha256 {
                    if caps.has(MechanismType::RSA_X_509) {
                        return self.rsa_oaep256_emulated(key, ciphertext);
                    }
                    return Err(CryptoError::Unsupported(
                        "RSA-OAEP-256 (the device has neither SHA-256 OAEP parameters \
                         nor CKM_RSA_X_509)"
                            .into(),
                    ));
                }
                oaep(MechanismType::SHA256)
            }
            EncAlg::Rsa15 => Mechanism::RsaPkcs,
            other => return Err(mismatch(other, key.kty)),
        };
        self.with_key(key, |s, h| {
            s.decrypt(&mech, h, ciphertext)
                .map(Zeroizing::new)
                .map_err(OpError::from)
        })
        .map_err(|e| match e {
            CryptoError::Internal(_) | CryptoError::BadInput(_) => CryptoError::DecryptFailed,
            other => other,
        })
    }
}

impl Pkcs11Hsm {
    /// RSA-OAEP-256 as raw RSA (`CKM_RSA_X_509`) in the device and
    /// constant-time EME-OAEP decoding on the host. Every failure, from
    /// the device or the decoder, is [`CryptoError::DecryptFailed`].
    fn rsa_oaep256_emulated(
        &self,
        key: &HsmKey,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let PublicKey::Rsa { n, .. } = &key.public else {
            return Err(mismatch(EncAlg::RsaOaep256, key.kty));
        };
        let k = (bit_length(n) as usize).div_ceil(8);
        // Public check (RFC 8017 §7.1.2 step 1b).
        if ciphertext.len() != k {
            return Err(CryptoError::DecryptFailed);
        }
        let em = self
            .with_key(key, |s, h| {
                let raw = Zeroizing::new(s.decrypt(&Mechanism::RsaX509, h, ciphertext)?);
                Ok(oaep::left_align(&raw, k)?)
            })
            .map_err(|e| match e {
                CryptoError::HsmUnavailable(_) => e,
                _ => CryptoError::DecryptFailed,
            })?;
        oaep::decode_sha256(&em)
    }
}
