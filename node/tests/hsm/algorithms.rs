//! Every algorithm of the HSM tier on SoftHSM2, checked against software:
//! RSA PKCS#1/PSS/OAEP, EC on every curve, oct GCM/CBC/key wrap.

use super::*;

#[test]
fn rsa_keys_sign_pkcs1_and_pss_and_decrypt_what_software_encrypted() {
    let hsm = device_with_kek("t-keys");
    let msg = b"coffer hsm rsa";
    for bits in [2048u32, 3072, 4096] {
        let key = hsm
            .generate(&KeySpec::Rsa {
                bits,
                public_exponent: 65537,
            })
            .unwrap();
        assert_eq!(key.kty, KeyType::RsaHsm);
        assert_eq!(key.bits, bits);
        let algs: &[SignAlg] = if bits == 2048 {
            &[
                SignAlg::RS256,
                SignAlg::RS384,
                SignAlg::RS512,
                SignAlg::PS256,
                SignAlg::PS384,
                SignAlg::PS512,
            ]
        } else {
            &[SignAlg::RS256, SignAlg::PS256]
        };
        for &alg in algs {
            let d = match alg {
                SignAlg::RS256 | SignAlg::PS256 => sha(&digest::SHA256, msg),
                SignAlg::RS384 | SignAlg::PS384 => sha(&digest::SHA384, msg),
                _ => sha(&digest::SHA512, msg),
            };
            let sig = hsm.sign(&key, alg, &d).unwrap();
            verify(&key, alg, msg, &sig);
        }
        assert!(matches!(
            hsm.sign(&key, SignAlg::RS256, &[0; 20]),
            Err(CryptoError::BadInput(_))
        ));
    }

    let key = hsm
        .generate(&KeySpec::Rsa {
            bits: 2048,
            public_exponent: 65537,
        })
        .unwrap();
    let oaep = OaepPublicEncryptingKey::new(rsa_public(&key)).unwrap();
    let mut ct = vec![0u8; oaep.ciphertext_size()];
    let ct = oaep
        .encrypt(&OAEP_SHA1_MGF1SHA1, b"secret", &mut ct, None)
        .unwrap()
        .to_vec();
    let pt = hsm
        .decrypt(&key, EncAlg::RsaOaep, &ct, &SymParams::default())
        .unwrap();
    assert_eq!(pt.as_slice(), b"secret");

    let pkcs1 = Pkcs1PublicEncryptingKey::new(rsa_public(&key)).unwrap();
    let mut ct = vec![0u8; pkcs1.ciphertext_size()];
    let ct = pkcs1.encrypt(b"legacy", &mut ct).unwrap().to_vec();
    let pt = hsm
        .decrypt(&key, EncAlg::Rsa15, &ct, &SymParams::default())
        .unwrap();
    assert_eq!(pt.as_slice(), b"legacy");

    // Tampered ciphertext is a plain decryption failure.
    let mut bad = ct.clone();
    bad[10] ^= 1;
    assert!(matches!(
        hsm.decrypt(&key, EncAlg::RsaOaep, &bad, &SymParams::default()),
        Err(CryptoError::DecryptFailed)
    ));
}

/// RSA-OAEP-256 works on SoftHSM2 (which refuses SHA-256 OAEP parameters)
/// through raw RSA in the device and OAEP decoding on the host: every
/// message length aws-lc-rs can encrypt decrypts, and every tampered
/// ciphertext is the same plain decryption failure.
#[test]
fn rsa_oaep_256_decrypts_every_length_and_rejects_every_bit_flip() {
    let hsm = device_with_kek("t-keys");
    assert!(hsm
        .status()
        .notes
        .iter()
        .any(|n| n.starts_with("RSA-OAEP-256") && !n.contains("unsupported")));
    for bits in [2048u32, 3072] {
        let key = hsm
            .generate(&KeySpec::Rsa {
                bits,
                public_exponent: 65537,
            })
            .unwrap();
        let oaep = OaepPublicEncryptingKey::new(rsa_public(&key)).unwrap();
        let max = oaep.max_plaintext_size(&OAEP_SHA256_MGF1SHA256);
        assert_eq!(max, bits as usize / 8 - 66);
        for len in [0usize, 1, 32, 33, max - 1, max] {
            let msg: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(13) | 1).collect();
            let mut ct = vec![0u8; oaep.ciphertext_size()];
            let ct = oaep
                .encrypt(&OAEP_SHA256_MGF1SHA256, &msg, &mut ct, None)
                .unwrap()
                .to_vec();
            let pt = hsm
                .decrypt(&key, EncAlg::RsaOaep256, &ct, &SymParams::default())
                .unwrap();
            assert_eq!(pt.as_slice(), msg.as_slice(), "{bits} bits, len {len}");
        }
    }
    let key = hsm
        .generate(&KeySpec::Rsa {
            bits: 2048,
            public_exponent: 65537,
        })
        .unwrap();
    let oaep = OaepPublicEncryptingKey::new(rsa_public(&key)).unwrap();
    let mut ct = vec![0u8; oaep.ciphertext_size()];
    let ct = oaep
        .encrypt(&OAEP_SHA256_MGF1SHA256, b"k", &mut ct, None)
        .unwrap()
        .to_vec();
    for bit in 0..ct.len() * 8 {
        let mut bad = ct.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        match hsm.decrypt(&key, EncAlg::RsaOaep256, &bad, &SymParams::default()) {
            Err(CryptoError::DecryptFailed) => {}
            other => panic!("bit {bit}: {other:?}"),
        }
    }
    // Wrong lengths and a SHA-1 OAEP ciphertext fail the same way.
    for bad in [
        ct[1..].to_vec(),
        [&[0u8][..], &ct].concat(),
        vec![0xff; ct.len()],
    ] {
        assert!(matches!(
            hsm.decrypt(&key, EncAlg::RsaOaep256, &bad, &SymParams::default()),
            Err(CryptoError::DecryptFailed)
        ));
    }
    let mut sha1 = vec![0u8; oaep.ciphertext_size()];
    let sha1 = oaep
        .encrypt(&OAEP_SHA1_MGF1SHA1, b"k", &mut sha1, None)
        .unwrap()
        .to_vec();
    assert!(matches!(
        hsm.decrypt(&key, EncAlg::RsaOaep256, &sha1, &SymParams::default()),
        Err(CryptoError::DecryptFailed)
    ));
}

/// Private keys under the cluster KEK (CKM_AES_KEY_WRAP_PAD of their PKCS#8
/// DER) whose DER length is not a multiple of 8 still unwrap to a working
/// key, also in a fresh provider (nothing cached).
#[test]
fn kek_wrapped_rsa_key_with_unaligned_der_unwraps_and_works() {
    use aws_lc_rs::encoding::{AsDer as _, Pkcs8V1Der};
    use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
    let (private, der_len) = loop {
        let p = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let der: Pkcs8V1Der = p.as_der().unwrap();
        let len = der.as_ref().len();
        if len % 8 != 0 {
            break (p, len);
        }
    };
    let der: Pkcs8V1Der = private.as_der().unwrap();
    let jwk = rsa_components(der.as_ref());
    let hsm = device_with_kek("t-import");
    let key = hsm.import(&jwk).unwrap();
    // KWP output: the DER rounded up to 8 bytes plus the 8-byte AIV.
    assert_eq!(key.wrapped.len(), der_len.div_ceil(8) * 8 + 8);
    let fresh = device_with_kek("t-import");
    let d = sha(&digest::SHA256, b"unaligned");
    let sig = fresh.sign(&key, SignAlg::RS256, &d).unwrap();
    verify(&key, SignAlg::RS256, b"unaligned", &sig);
    let oaep = OaepPublicEncryptingKey::new(rsa_public(&key)).unwrap();
    let mut ct = vec![0u8; oaep.ciphertext_size()];
    let ct = oaep
        .encrypt(&OAEP_SHA256_MGF1SHA256, b"exact", &mut ct, None)
        .unwrap()
        .to_vec();
    let pt = fresh
        .decrypt(&key, EncAlg::RsaOaep256, &ct, &SymParams::default())
        .unwrap();
    assert_eq!(pt.as_slice(), b"exact");
}

/// The RSA private key fields of a PKCS#8 DER (minimal DER walk).
fn rsa_components(pkcs8: &[u8]) -> PrivateKey {
    fn tlv(b: &[u8]) -> (&[u8], &[u8]) {
        let (len, hdr) = match b[1] {
            l if l < 0x80 => (l as usize, 2),
            0x81 => (b[2] as usize, 3),
            0x82 => (((b[2] as usize) << 8) | b[3] as usize, 4),
            _ => panic!("DER too long"),
        };
        (&b[hdr..hdr + len], &b[hdr + len..])
    }
    let (info, _) = tlv(pkcs8);
    let (_version, rest) = tlv(info);
    let (_alg, rest) = tlv(rest);
    let (octets, _) = tlv(rest);
    let (seq, _) = tlv(octets);
    let mut fields = Vec::new();
    let mut rest = seq;
    while !rest.is_empty() {
        let (v, r) = tlv(rest);
        let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
        fields.push(v[first..].to_vec());
        rest = r;
    }
    let z = |i: usize| Zeroizing::new(fields[i].clone());
    PrivateKey::Rsa {
        n: fields[1].clone(),
        e: fields[2].clone(),
        d: z(3),
        p: z(4),
        q: z(5),
        dp: z(6),
        dq: z(7),
        qi: z(8),
    }
}

#[test]
fn ec_keys_sign_on_every_curve_and_verify_in_software() {
    let hsm = device_with_kek("t-keys");
    let msg = b"coffer hsm ec";
    for (curve, alg, dalg) in [
        (Curve::P256, SignAlg::ES256, &digest::SHA256),
        (Curve::P384, SignAlg::ES384, &digest::SHA384),
        (Curve::P521, SignAlg::ES512, &digest::SHA512),
        (Curve::P256K, SignAlg::ES256K, &digest::SHA256),
    ] {
        let key = hsm.generate(&KeySpec::Ec { curve }).unwrap();
        assert_eq!(key.kty, KeyType::EcHsm);
        let sig = hsm.sign(&key, alg, &sha(dalg, msg)).unwrap();
        verify(&key, alg, msg, &sig);
        let wrong = if alg == SignAlg::ES256 {
            SignAlg::ES384
        } else {
            SignAlg::ES256
        };
        assert!(hsm.sign(&key, wrong, &sha(&digest::SHA256, msg)).is_err());
    }
}

#[test]
fn oct_keys_round_trip_gcm_cbc_and_key_wrap() {
    let hsm = device_with_kek("t-oct");
    for bits in [128u32, 192, 256] {
        let key = hsm.generate(&KeySpec::Oct { bits }).unwrap();
        let (gcm, cbc, cbcpad, kw) = match bits {
            128 => (
                EncAlg::A128GCM,
                EncAlg::A128CBC,
                EncAlg::A128CBCPAD,
                EncAlg::A128KW,
            ),
            192 => (
                EncAlg::A192GCM,
                EncAlg::A192CBC,
                EncAlg::A192CBCPAD,
                EncAlg::A192KW,
            ),
            _ => (
                EncAlg::A256GCM,
                EncAlg::A256CBC,
                EncAlg::A256CBCPAD,
                EncAlg::A256KW,
            ),
        };
        let params = SymParams {
            aad: Some(b"hdr".to_vec()),
            ..Default::default()
        };
        let ct = hsm.encrypt(&key, gcm, b"hello gcm", &params).unwrap();
        assert_eq!(ct.iv.as_ref().unwrap().len(), 12);
        let dec = SymParams {
            iv: ct.iv.clone(),
            aad: params.aad.clone(),
            tag: ct.tag.clone(),
        };
        assert_eq!(
            hsm.decrypt(&key, gcm, &ct.value, &dec).unwrap().as_slice(),
            b"hello gcm"
        );
        let mut bad = dec.clone();
        bad.aad = Some(b"other".to_vec());
        assert!(matches!(
            hsm.decrypt(&key, gcm, &ct.value, &bad),
            Err(CryptoError::DecryptFailed)
        ));
        // The device draws the iv: never the same twice, never the caller's.
        let again = hsm.encrypt(&key, gcm, b"hello gcm", &params).unwrap();
        assert_ne!((&again.iv, &again.value), (&ct.iv, &ct.value));
        let chosen = SymParams {
            iv: Some(vec![0; 12]),
            ..params.clone()
        };
        assert!(matches!(
            hsm.encrypt(&key, gcm, b"hello gcm", &chosen),
            Err(CryptoError::BadInput(_))
        ));

        let iv = SymParams {
            iv: Some(vec![7; 16]),
            ..Default::default()
        };
        let ct = hsm.encrypt(&key, cbc, &[1; 32], &iv).unwrap();
        assert_eq!(
            hsm.decrypt(&key, cbc, &ct.value, &iv).unwrap().as_slice(),
            &[1; 32]
        );
        let ct = hsm.encrypt(&key, cbcpad, b"odd length", &iv).unwrap();
        assert_eq!(
            hsm.decrypt(&key, cbcpad, &ct.value, &iv)
                .unwrap()
                .as_slice(),
            b"odd length"
        );

        let wrapped = hsm
            .encrypt(&key, kw, &[9; 32], &SymParams::default())
            .unwrap();
        assert_eq!(wrapped.value.len(), 40);
        let unwrapped = hsm
            .decrypt(&key, kw, &wrapped.value, &SymParams::default())
            .unwrap();
        assert_eq!(unwrapped.as_slice(), &[9; 32]);
        let wrong_size = if bits == 256 {
            EncAlg::A128GCM
        } else {
            EncAlg::A256GCM
        };
        assert!(matches!(
            hsm.encrypt(&key, wrong_size, b"x", &SymParams::default()),
            Err(CryptoError::AlgorithmMismatch { .. })
        ));
    }
}
