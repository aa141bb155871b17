use super::*;
use crate::Curve;
use aws_lc_rs::digest;

fn sha(alg: SignAlg, msg: &[u8]) -> Vec<u8> {
    let d = match digest_len(alg).unwrap() {
        32 => &digest::SHA256,
        48 => &digest::SHA384,
        _ => &digest::SHA512,
    };
    digest::digest(d, msg).as_ref().to_vec()
}

fn rsa2048() -> SoftwareKey {
    generate(&KeySpec::Rsa {
        bits: 2048,
        public_exponent: 65537,
    })
    .unwrap()
}

fn ec(curve: Curve) -> SoftwareKey {
    generate(&KeySpec::Ec { curve }).unwrap()
}

fn oct(bits: u32) -> SoftwareKey {
    generate(&KeySpec::Oct { bits }).unwrap()
}

#[test]
fn rsa_sizes_generate_and_exponent_is_checked() {
    for bits in [2048, 3072, 4096] {
        let k = generate(&KeySpec::Rsa {
            bits,
            public_exponent: 65537,
        })
        .unwrap();
        let PublicKey::Rsa { n, e } = &k.public else {
            panic!()
        };
        assert_eq!(n.len() * 8, bits as usize);
        assert_eq!(e, &vec![1, 0, 1]);
    }
    assert!(matches!(
        generate(&KeySpec::Rsa {
            bits: 2048,
            public_exponent: 3
        }),
        Err(CryptoError::BadInput(_))
    ));
    assert!(matches!(
        generate(&KeySpec::Rsa {
            bits: 1024,
            public_exponent: 65537
        }),
        Err(CryptoError::BadInput(_))
    ));
}

#[test]
fn rsa_signatures_roundtrip_and_detect_tampering() {
    let k = rsa2048();
    use SignAlg::*;
    for alg in [RS256, RS384, RS512, PS256, PS384, PS512] {
        let d = sha(alg, b"hello");
        let sig = k.sign(alg, &d).unwrap();
        assert_eq!(sig.len(), 256);
        assert!(verify(&k.public, alg, &d, &sig).unwrap(), "{alg:?}");
        let other = sha(alg, b"hellp");
        assert!(!verify(&k.public, alg, &other, &sig).unwrap(), "{alg:?}");
    }
    // PKCS#1 v1.5 is deterministic; PSS is randomised.
    let d = sha(RS256, b"x");
    assert_eq!(k.sign(RS256, &d).unwrap(), k.sign(RS256, &d).unwrap());
    assert_ne!(k.sign(PS256, &d).unwrap(), k.sign(PS256, &d).unwrap());
}

#[test]
fn ec_signatures_roundtrip_on_every_curve() {
    use SignAlg::*;
    for (curve, alg, sig_len) in [
        (Curve::P256, ES256, 64),
        (Curve::P384, ES384, 96),
        (Curve::P521, ES512, 132),
        (Curve::P256K, ES256K, 64),
    ] {
        let k = ec(curve);
        let d = sha(alg, b"msg");
        let sig = k.sign(alg, &d).unwrap();
        assert_eq!(sig.len(), sig_len, "{alg:?}");
        assert!(k.verify(alg, &d, &sig).unwrap());
        let mut bad = sig.clone();
        bad[3] ^= 1;
        assert!(!k.verify(alg, &d, &bad).unwrap());
    }
}

#[test]
fn wrong_digest_length_is_bad_input() {
    let k = rsa2048();
    assert!(matches!(
        k.sign(SignAlg::RS256, &[0; 48]),
        Err(CryptoError::BadInput(_))
    ));
    assert!(matches!(
        k.sign(SignAlg::PS512, &[0; 32]),
        Err(CryptoError::BadInput(_))
    ));
    let e = ec(Curve::P521);
    assert!(matches!(
        e.sign(SignAlg::ES512, &[0; 66]),
        Err(CryptoError::BadInput(_))
    ));
    assert!(matches!(
        verify(&e.public, SignAlg::ES512, &[0; 32], &[0; 132]),
        Err(CryptoError::BadInput(_))
    ));
}

#[test]
fn algorithm_key_mismatches_are_refused() {
    let r = rsa2048();
    let e = ec(Curve::P256);
    let o = oct(256);
    let mm =
        |r: Result<Vec<u8>, CryptoError>| matches!(r, Err(CryptoError::AlgorithmMismatch { .. }));
    assert!(mm(r.sign(SignAlg::ES256, &[0; 32])));
    assert!(mm(e.sign(SignAlg::RS256, &[0; 32])));
    assert!(mm(e.sign(SignAlg::ES384, &[0; 48])));
    assert!(mm(e.sign(SignAlg::ES256K, &[0; 32])));
    assert!(mm(o.sign(SignAlg::RS256, &[0; 32])));
    assert!(mm(r.sign(SignAlg::HS256, &[0; 32])));
    let p = SymParams::default();
    assert!(matches!(
        r.encrypt(EncAlg::A256GCM, b"x", &p),
        Err(CryptoError::AlgorithmMismatch { .. })
    ));
    assert!(matches!(
        e.encrypt(EncAlg::RsaOaep, b"x", &p),
        Err(CryptoError::AlgorithmMismatch { .. })
    ));
    assert!(matches!(
        o.encrypt(EncAlg::RsaOaep, b"x", &p),
        Err(CryptoError::AlgorithmMismatch { .. })
    ));
    assert!(matches!(
        o.encrypt(EncAlg::A128GCM, b"x", &p),
        Err(CryptoError::AlgorithmMismatch { .. })
    ));
    assert!(matches!(
        oct(128).encrypt(EncAlg::A256KW, &[0; 16], &p),
        Err(CryptoError::AlgorithmMismatch { .. })
    ));
}

#[test]
fn rsa_encryption_roundtrips_for_each_padding() {
    let k = rsa2048();
    for alg in [EncAlg::RsaOaep, EncAlg::RsaOaep256, EncAlg::Rsa15] {
        let ct = k
            .encrypt(alg, b"secret bytes", &SymParams::default())
            .unwrap();
        assert_eq!(ct.value.len(), 256);
        assert_eq!(
            &*k.decrypt(alg, &ct.value, &SymParams::default()).unwrap(),
            b"secret bytes"
        );
        let mut bad = ct.value.clone();
        bad[10] ^= 1;
        assert!(k.decrypt(alg, &bad, &SymParams::default()).is_err());
    }
    // OAEP-SHA1 ciphertext does not decrypt as OAEP-SHA256.
    let ct = k
        .encrypt(EncAlg::RsaOaep, b"a", &SymParams::default())
        .unwrap();
    assert!(matches!(
        k.decrypt(EncAlg::RsaOaep256, &ct.value, &SymParams::default()),
        Err(CryptoError::DecryptFailed)
    ));
    assert!(matches!(
        k.encrypt(EncAlg::RsaOaep, &[0; 300], &SymParams::default()),
        Err(CryptoError::BadInput(_))
    ));
}

#[test]
fn aes_gcm_roundtrips_with_aad_and_rejects_tampering() {
    for (bits, alg) in [
        (128, EncAlg::A128GCM),
        (192, EncAlg::A192GCM),
        (256, EncAlg::A256GCM),
    ] {
        let k = oct(bits);
        let p = SymParams {
            aad: Some(b"hdr".to_vec()),
            ..Default::default()
        };
        let ct = k.encrypt(alg, b"plain", &p).unwrap();
        assert_eq!(ct.iv.as_ref().unwrap().len(), 12);
        assert_eq!(ct.tag.as_ref().unwrap().len(), 16);
        let dp = SymParams {
            iv: ct.iv.clone(),
            aad: Some(b"hdr".to_vec()),
            tag: ct.tag.clone(),
        };
        assert_eq!(&*k.decrypt(alg, &ct.value, &dp).unwrap(), b"plain");
        let wrong_aad = SymParams {
            aad: Some(b"hdx".to_vec()),
            ..dp.clone()
        };
        assert!(matches!(
            k.decrypt(alg, &ct.value, &wrong_aad),
            Err(CryptoError::DecryptFailed)
        ));
        let no_tag = SymParams {
            tag: None,
            ..dp.clone()
        };
        assert!(matches!(
            k.decrypt(alg, &ct.value, &no_tag),
            Err(CryptoError::BadInput(_))
        ));
    }
}

#[test]
fn aes_gcm_draws_a_fresh_iv_every_time_and_refuses_the_callers() {
    let k = oct(256);
    let none = SymParams::default();
    let a = k
        .encrypt(EncAlg::A256GCM, b"same plaintext", &none)
        .unwrap();
    let b = k
        .encrypt(EncAlg::A256GCM, b"same plaintext", &none)
        .unwrap();
    assert_ne!(a.iv, b.iv);
    assert_ne!(a.value, b.value);
    for ct in [&a, &b] {
        let dp = SymParams {
            iv: ct.iv.clone(),
            tag: ct.tag.clone(),
            aad: None,
        };
        assert_eq!(
            &*k.decrypt(EncAlg::A256GCM, &ct.value, &dp).unwrap(),
            b"same plaintext"
        );
    }
    let chosen = SymParams {
        iv: Some(vec![0; 12]),
        ..Default::default()
    };
    match k.encrypt(EncAlg::A256GCM, b"x", &chosen) {
        Err(CryptoError::BadInput(m)) => assert!(m.contains("takes no iv"), "{m}"),
        other => panic!("a caller iv must be refused, got {:?}", other.map(|c| c.iv)),
    }
    let empty = SymParams {
        iv: Some(Vec::new()),
        ..Default::default()
    };
    assert!(k.encrypt(EncAlg::A256GCM, b"x", &empty).is_ok());
}

#[test]
fn aes_cbc_and_cbcpad_roundtrip() {
    let cases = [
        (128, EncAlg::A128CBC, EncAlg::A128CBCPAD),
        (192, EncAlg::A192CBC, EncAlg::A192CBCPAD),
        (256, EncAlg::A256CBC, EncAlg::A256CBCPAD),
    ];
    for (bits, cbc, pad) in cases {
        let k = oct(bits);
        let iv = Some(vec![7u8; 16]);
        let p = SymParams {
            iv: iv.clone(),
            ..Default::default()
        };
        let ct = k.encrypt(cbc, &[1u8; 32], &p).unwrap();
        assert_eq!(ct.value.len(), 32);
        assert_eq!(ct.iv, iv);
        assert_eq!(&*k.decrypt(cbc, &ct.value, &p).unwrap(), &[1u8; 32]);
        assert!(matches!(
            k.encrypt(cbc, &[1u8; 17], &p),
            Err(CryptoError::BadInput(_))
        ));
        // CBCPAD: any length, IV generated when absent.
        let ct = k
            .encrypt(pad, b"seventeen bytes!!", &SymParams::default())
            .unwrap();
        assert_eq!(ct.value.len(), 32);
        let dp = SymParams {
            iv: ct.iv.clone(),
            ..Default::default()
        };
        assert_eq!(
            &*k.decrypt(pad, &ct.value, &dp).unwrap(),
            b"seventeen bytes!!"
        );
        assert!(matches!(
            k.decrypt(pad, &ct.value, &SymParams::default()),
            Err(CryptoError::BadInput(_))
        ));
        let short_iv = SymParams {
            iv: Some(vec![0; 8]),
            ..Default::default()
        };
        assert!(matches!(
            k.encrypt(pad, b"x", &short_iv),
            Err(CryptoError::BadInput(_))
        ));
    }
}

#[test]
fn aes_key_wrap_roundtrips() {
    for (bits, alg) in [
        (128, EncAlg::A128KW),
        (192, EncAlg::A192KW),
        (256, EncAlg::A256KW),
    ] {
        let k = oct(bits);
        let p = SymParams::default();
        let cek = [9u8; 32];
        let w = k.encrypt(alg, &cek, &p).unwrap();
        assert_eq!(w.value.len(), 40);
        assert_eq!(&*k.decrypt(alg, &w.value, &p).unwrap(), &cek);
        let w = k.encrypt(EncAlg::CkmAesKeyWrap, &cek, &p).unwrap();
        assert_eq!(
            &*k.decrypt(EncAlg::CkmAesKeyWrap, &w.value, &p).unwrap(),
            &cek
        );
        let w = k
            .encrypt(EncAlg::CkmAesKeyWrapPad, b"odd length key", &p)
            .unwrap();
        assert_eq!(
            &*k.decrypt(EncAlg::CkmAesKeyWrapPad, &w.value, &p).unwrap(),
            b"odd length key"
        );
        assert!(matches!(
            k.encrypt(alg, &[0; 12], &p),
            Err(CryptoError::BadInput(_))
        ));
    }
}

#[test]
fn imports_validate_components() {
    let e = ec(Curve::P384);
    let PublicKey::Ec { x, y, .. } = &e.public else {
        panic!()
    };
    // Importing a mismatched scalar fails cleanly.
    let bad = PrivateKey::Ec {
        curve: Curve::P384,
        d: Zeroizing::new(vec![1; 48]),
        x: x.clone(),
        y: y.clone(),
    };
    assert!(matches!(import(&bad), Err(CryptoError::BadInput(_))));
    let k = import(&PrivateKey::Oct {
        k: Zeroizing::new(vec![5; 24]),
    })
    .unwrap();
    assert_eq!(k.bits, 192);
    assert!(import(&PrivateKey::Oct {
        k: Zeroizing::new(vec![5; 20])
    })
    .is_err());
}

#[test]
fn stored_form_roundtrips_and_debug_redacts() {
    let k = ec(Curve::P256);
    let json = serde_json::to_string(&k).unwrap();
    let back: SoftwareKey = serde_json::from_str(&json).unwrap();
    let d = sha(SignAlg::ES256, b"m");
    let sig = back.sign(SignAlg::ES256, &d).unwrap();
    assert!(k.verify(SignAlg::ES256, &d, &sig).unwrap());
    assert!(format!("{k:?}").contains("redacted"));
}
