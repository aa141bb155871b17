use super::*;

#[test]
fn bit_length_counts_from_the_top_set_bit() {
    assert_eq!(bit_length(&[0, 0x80, 0]), 16);
    assert_eq!(bit_length(&[0x01, 0xff]), 9);
    assert_eq!(bit_length(&[0, 0]), 0);
}

#[test]
fn minimal_exponent_encoding() {
    assert_eq!(minimal_be(65537), vec![1, 0, 1]);
    assert_eq!(minimal_be(3), vec![3]);
}

#[test]
fn sign_input_checks_digest_length_and_key_type() {
    let rsa = HsmKey {
        kty: KeyType::RsaHsm,
        wrapped: vec![],
        public: PublicKey::Rsa {
            n: vec![],
            e: vec![],
        },
        bits: 2048,
    };
    assert!(matches!(
        sign_input(&rsa, SignAlg::RS256, &[0; 48]),
        Err(CryptoError::BadInput(_))
    ));
    assert!(matches!(
        sign_input(&rsa, SignAlg::ES256, &[0; 32]),
        Err(CryptoError::AlgorithmMismatch { .. })
    ));
    let (_, input) = sign_input(&rsa, SignAlg::RS256, &[7; 32]).unwrap();
    assert_eq!(input.len(), 19 + 32);
    let ec = HsmKey {
        kty: KeyType::EcHsm,
        wrapped: vec![],
        public: PublicKey::Ec {
            curve: Curve::P256K,
            x: vec![],
            y: vec![],
        },
        bits: 256,
    };
    assert!(sign_input(&ec, SignAlg::ES256, &[0; 32]).is_err());
    assert!(sign_input(&ec, SignAlg::ES256K, &[0; 32]).is_ok());
}

fn stale() -> OpError {
    OpError::Device(CkError::Pkcs11(
        RvError::UnwrappingKeyHandleInvalid,
        cryptoki::context::Function::UnwrapKey,
    ))
}

#[test]
fn the_kek_handle_is_cached_and_looked_up_again_once_when_stale() {
    let slot = Mutex::new(None);
    let finds = std::cell::Cell::new(0);
    let find = |h: u32| {
        let finds = &finds;
        move || {
            finds.set(finds.get() + 1);
            Ok(Some(h))
        }
    };
    // First use looks up; later uses reuse the handle.
    assert_eq!(with_cached_kek(&slot, find(7), Ok).unwrap(), 7);
    assert_eq!(with_cached_kek(&slot, find(7), Ok).unwrap(), 7);
    assert_eq!(finds.get(), 1);
    // The device rejects the cached handle: one fresh lookup and retry.
    let out = with_cached_kek(
        &slot,
        find(9),
        |h| if h == 7 { Err(stale()) } else { Ok(h) },
    );
    assert_eq!(out.unwrap(), 9);
    assert_eq!((finds.get(), *slot.lock().unwrap()), (2, Some(9)));
    // A freshly found handle that is rejected is not retried forever.
    *slot.lock().unwrap() = None;
    let mut calls = 0;
    let out: Result<(), _> = with_cached_kek(&slot, find(9), |_| {
        calls += 1;
        Err(stale())
    });
    assert!(out.is_err() && calls == 1);
    // Other errors keep the handle.
    let out: Result<(), _> = with_cached_kek(&slot, find(9), |_| {
        Err(OpError::Crypto(CryptoError::DecryptFailed))
    });
    assert!(out.is_err());
    assert_eq!(*slot.lock().unwrap(), Some(9));
    // No KEK in the device: nothing cached, the ceremony error.
    *slot.lock().unwrap() = None;
    let out = with_cached_kek(&slot, || Ok(None::<u32>), Ok);
    assert!(matches!(
        out,
        Err(OpError::Crypto(CryptoError::HsmUnavailable(_)))
    ));
    assert_eq!(*slot.lock().unwrap(), None);
}

#[test]
fn open_with_a_missing_module_is_unavailable_not_a_panic() {
    let cfg = HsmConfig {
        module: "/nonexistent/libpkcs11.so".into(),
        token_label: "nothing".into(),
        pin_file: None,
        pin_env: Some("COFFER_TEST_PIN_UNSET_FOR_SURE".into()),
        max_sessions: 4,
        key_cache: 4,
    };
    let hsm = Pkcs11Hsm::open(&cfg);
    let status = hsm.status();
    assert!(!status.available);
    assert!(status.error.is_some());
    assert!(matches!(
        hsm.generate(&KeySpec::Oct { bits: 256 }),
        Err(CryptoError::HsmUnavailable(_))
    ));
}
