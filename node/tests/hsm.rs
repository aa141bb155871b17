//! The PKCS#11 HSM tier against a real SoftHSM2 (`apt-get install softhsm2`,
//! done by scripts/test.sh). All tokens live in one temporary token dir per
//! test process, created before the module is first initialised (SoftHSM2
//! reads `SOFTHSM2_CONF` once per process).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsBigEndian as _;
use aws_lc_rs::rsa::{
    OaepPublicEncryptingKey, Pkcs1PublicEncryptingKey, PublicEncryptingKey, PublicKeyComponents,
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};
use coffer::config::HsmConfig;
use coffer::crypto::hsm::{HsmKey, HsmProvider};
use coffer::crypto::pkcs11::{Pkcs11Hsm, Pkcs11SealKey};
use coffer::crypto::seal_device::SealDevice;
use coffer::crypto::{
    CryptoError, Curve, EncAlg, KeySpec, KeyType, PrivateKey, PublicKey, SignAlg, SymParams,
};
use zeroize::Zeroizing;

#[path = "hsm/algorithms.rs"]
mod algorithms;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "4321-user";
const SO_PIN: &str = "8765-so";
const TOKENS: &[&str] = &[
    "t-open",
    "t-keys",
    "t-cer-a",
    "t-cer-b",
    "t-conc",
    "t-oct",
    "t-import",
    "t-nokek",
    "t-seal",
    "t-seal-pin",
];

struct Env {
    _dir: tempfile::TempDir,
    pin_file: PathBuf,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        assert!(
            Path::new(MODULE).exists(),
            "{MODULE} missing: install softhsm2 (scripts/test.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        // Set before any module initialisation in this process.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        for label in TOKENS {
            let status = Command::new("softhsm2-util")
                .args([
                    "--init-token",
                    "--free",
                    "--label",
                    label,
                    "--pin",
                    PIN,
                    "--so-pin",
                    SO_PIN,
                ])
                .env("SOFTHSM2_CONF", &conf)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "softhsm2-util --init-token {label}");
        }
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        Env {
            _dir: dir,
            pin_file,
        }
    })
}

fn config(label: &str) -> HsmConfig {
    HsmConfig {
        module: MODULE.into(),
        token_label: label.into(),
        pin_file: Some(env().pin_file.clone()),
        pin_env: None,
        max_sessions: 4,
        key_cache: 64,
    }
}

/// Opens `label` and makes sure it holds a KEK.
fn device_with_kek(label: &str) -> Pkcs11Hsm {
    let hsm = Pkcs11Hsm::open(&config(label));
    let status = hsm.status();
    assert!(status.available, "{label}: {:?}", status.error);
    if !status.kek_present {
        hsm.create_kek().unwrap();
    }
    hsm
}

fn sha(alg: &'static digest::Algorithm, msg: &[u8]) -> Vec<u8> {
    digest::digest(alg, msg).as_ref().to_vec()
}

fn verify(key: &HsmKey, alg: SignAlg, msg: &[u8], sig: &[u8]) {
    match &key.public {
        PublicKey::Rsa { n, e } => {
            let params: &signature::RsaParameters = match alg {
                SignAlg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                SignAlg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                SignAlg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                SignAlg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                SignAlg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                SignAlg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                other => panic!("{other:?}"),
            };
            signature::RsaPublicKeyComponents { n, e }
                .verify(params, msg, sig)
                .unwrap_or_else(|_| panic!("{alg:?} signature does not verify"));
        }
        PublicKey::Ec { curve, x, y } => {
            let params = match curve {
                Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
                Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
                Curve::P521 => &signature::ECDSA_P521_SHA512_FIXED,
                Curve::P256K => &signature::ECDSA_P256K1_SHA256_FIXED,
            };
            let point = [&[4u8][..], x, y].concat();
            UnparsedPublicKey::new(params, point)
                .verify(msg, sig)
                .unwrap_or_else(|_| panic!("{alg:?} signature does not verify"));
        }
        PublicKey::Oct => panic!("oct keys do not sign"),
    }
}

fn rsa_public(key: &HsmKey) -> PublicEncryptingKey {
    let PublicKey::Rsa { n, e } = &key.public else {
        panic!("not RSA")
    };
    PublicKeyComponents {
        n: n.as_slice(),
        e: e.as_slice(),
    }
    .try_into()
    .unwrap()
}

#[test]
fn opens_by_label_and_reports_mechanism_notes() {
    let hsm = Pkcs11Hsm::open(&config("t-open"));
    let status = hsm.status();
    assert!(status.available, "{:?}", status.error);
    assert_eq!(status.token_label, "t-open");
    assert!(!status.kek_present);
    assert!(status.notes.iter().any(|n| n.starts_with("RSA-OAEP-256")));
    assert!(hsm.max_sessions() >= 1);
    // Without a KEK the tier is unavailable for keys, with a clear reason.
    match hsm.generate(&KeySpec::Oct { bits: 256 }) {
        Err(CryptoError::HsmUnavailable(msg)) => assert!(msg.contains("KEK"), "{msg}"),
        other => panic!("expected HsmUnavailable, got {other:?}"),
    }
}

#[test]
fn wrong_pin_missing_token_and_missing_module_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-pin");
    std::fs::write(&wrong, "not-the-pin").unwrap();
    let mut cfg = config("t-nokek");
    cfg.pin_file = Some(wrong);
    let status = Pkcs11Hsm::open(&cfg).status();
    assert!(!status.available);
    let err = status.error.unwrap();
    assert!(err.contains("refused the PIN"), "{err}");
    assert!(!err.contains("not-the-pin"));

    let status = Pkcs11Hsm::open(&config("no-such-token")).status();
    assert!(status.error.unwrap().contains("no token labelled"));

    let mut cfg = config("t-nokek");
    cfg.module = "/nonexistent/libsofthsm2.so".into();
    let hsm = Pkcs11Hsm::open(&cfg);
    assert!(!hsm.status().available);
    assert!(matches!(
        hsm.sign(
            &HsmKey {
                kty: KeyType::EcHsm,
                wrapped: vec![1],
                public: PublicKey::Oct,
                bits: 256
            },
            SignAlg::ES256,
            &[0; 32]
        ),
        Err(CryptoError::HsmUnavailable(_))
    ));

    std::env::remove_var("COFFER_HSM_TEST_NO_PIN");
    let mut cfg = config("t-nokek");
    cfg.pin_file = None;
    cfg.pin_env = Some("COFFER_HSM_TEST_NO_PIN".into());
    assert!(Pkcs11Hsm::open(&cfg)
        .status()
        .error
        .unwrap()
        .contains("COFFER_HSM_TEST_NO_PIN"));
}

#[test]
fn imported_keys_work_and_blobs_do_not_contain_the_raw_key() {
    let hsm = device_with_kek("t-import");
    let k = [0x5au8, 0x17, 0xc3, 0x99].repeat(8);
    let key = hsm
        .import(&PrivateKey::Oct {
            k: Zeroizing::new(k.clone()),
        })
        .unwrap();
    assert_eq!((key.kty, key.bits), (KeyType::OctHsm, 256));
    assert!(!key.wrapped.windows(8).any(|w| k.windows(8).any(|x| x == w)));
    // What the device encrypts with the imported key decrypts in software
    // with the known key bytes.
    let ct = hsm
        .encrypt(&key, EncAlg::A256GCM, b"imported", &SymParams::default())
        .unwrap();
    let soft = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &k).unwrap());
    let nonce = Nonce::try_assume_unique_for_key(ct.iv.as_ref().unwrap()).unwrap();
    let mut buf = [ct.value.clone(), ct.tag.clone().unwrap()].concat();
    let pt = soft.open_in_place(nonce, Aad::empty(), &mut buf).unwrap();
    assert_eq!(pt, b"imported");

    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .unwrap();
    let d: aws_lc_rs::encoding::EcPrivateKeyBin = pair.private_key().as_be_bytes().unwrap();
    let d = d.as_ref().to_vec();
    let point = pair.public_key().as_ref().to_vec();
    let key = hsm
        .import(&PrivateKey::Ec {
            curve: Curve::P256,
            d: Zeroizing::new(d.clone()),
            x: point[1..33].to_vec(),
            y: point[33..].to_vec(),
        })
        .unwrap();
    assert!(!key
        .wrapped
        .windows(16)
        .any(|w| d.windows(16).any(|x| x == w)));
    let sig = hsm
        .sign(&key, SignAlg::ES256, &sha(&digest::SHA256, b"imp"))
        .unwrap();
    verify(&key, SignAlg::ES256, b"imp", &sig);
}

#[test]
fn ceremony_moves_the_kek_and_keys_from_a_work_on_b() {
    let a = device_with_kek("t-cer-a");
    let b = Pkcs11Hsm::open(&config("t-cer-b"));
    assert!(!b.status().kek_present);

    let transport = b.transport_key().unwrap();
    let export = a.export_kek(&transport).unwrap();
    let info = b.import_kek(&export).unwrap();
    assert!(b.status().kek_present);
    assert_eq!(info, a.kek_info().unwrap().unwrap(), "same KEK check value");
    // The transport key is gone: replaying the export fails cleanly.
    assert!(b.import_kek(&export).is_err());

    let key = a.generate(&KeySpec::Ec { curve: Curve::P384 }).unwrap();
    let sig = b
        .sign(&key, SignAlg::ES384, &sha(&digest::SHA384, b"moved"))
        .unwrap();
    verify(&key, SignAlg::ES384, b"moved", &sig);
    let oct = a.generate(&KeySpec::Oct { bits: 256 }).unwrap();
    let ct = a
        .encrypt(&oct, EncAlg::A256GCM, b"across", &SymParams::default())
        .unwrap();
    let params = SymParams {
        iv: ct.iv,
        aad: None,
        tag: ct.tag,
    };
    assert_eq!(
        b.decrypt(&oct, EncAlg::A256GCM, &ct.value, &params)
            .unwrap()
            .as_slice(),
        b"across"
    );

    // A device without the KEK cannot use the blob.
    let c = Pkcs11Hsm::open(&config("t-open"));
    assert!(matches!(
        c.sign(&key, SignAlg::ES384, &[0; 48]),
        Err(CryptoError::HsmUnavailable(_))
    ));
    // A second KEK is refused.
    assert!(matches!(b.create_kek(), Err(CryptoError::BadInput(_))));
}

#[test]
fn concurrent_signing_shares_the_session_pool() {
    let hsm = Arc::new(device_with_kek("t-conc"));
    let key = Arc::new(hsm.generate(&KeySpec::Ec { curve: Curve::P256 }).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (hsm, key) = (hsm.clone(), key.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    let msg = format!("thread {t} message {i}");
                    let sig = hsm
                        .sign(&key, SignAlg::ES256, &sha(&digest::SHA256, msg.as_bytes()))
                        .unwrap();
                    verify(&key, SignAlg::ES256, msg.as_bytes(), &sig);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(hsm.cached_keys(), 1, "one unwrap shared by every thread");
    assert_eq!(
        hsm.kek_lookups(),
        1,
        "the KEK handle is found once, then reused"
    );
    assert!(hsm.max_sessions() <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ceremony_gives_every_node_the_same_kek() {
    use jepsen_tests::cluster::{ClusterOptions, LocalCluster};
    let binary = Path::new(env!("CARGO_BIN_EXE_coffer"));
    let options = ClusterOptions {
        hsm: true,
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(binary, options).unwrap();
    cluster.init(0, 1, 1).await.unwrap();
    let mut check_values = Vec::new();
    for i in 0..cluster.nodes.len() {
        let client = cluster.node_client(i).unwrap();
        let resp = client
            .send_to(0, coffer_client::Request::get("/v1/sys/hsm/status"))
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        let status: serde_json::Value = resp.json().unwrap();
        assert_eq!(status["available"], true, "node {}: {status}", i + 1);
        assert_eq!(status["kek_present"], true, "node {}: {status}", i + 1);
        assert_eq!(status["token_label"], format!("coffer-node{}", i + 1));
        let kcv = status["notes"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|n| {
                n.as_str()
                    .unwrap()
                    .strip_prefix("cluster KEK check value: ")
                    .map(str::to_string)
            })
            .unwrap();
        check_values.push(kcv);
    }
    assert!(
        check_values.windows(2).all(|w| w[0] == w[1]),
        "{check_values:?}"
    );
    // A second KEK is refused through the API.
    let client = cluster.node_client(1).unwrap();
    let resp = client
        .send_to(0, coffer_client::Request::post("/v1/sys/hsm/kek/create"))
        .await
        .unwrap();
    assert_eq!(resp.status.as_u16(), 400);
}

/// KWP (RFC 5649) unwrap must return exactly the wrapped length: the
/// conformance run saw "thirteen byte" come back with three zero bytes.
#[test]
fn oct_key_wrap_pad_unwraps_to_the_exact_length() {
    use aws_lc_rs::key_wrap::{AesKek, KeyWrap as _, KeyWrapPadded as _, AES_128, AES_256};
    let hsm = device_with_kek("t-oct");
    for (cipher, alg, klen) in [
        (&AES_128, EncAlg::A128KW, 16usize),
        (&AES_256, EncAlg::A256KW, 32),
    ] {
        let k: Vec<u8> = (0..klen as u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        let key = hsm
            .import(&PrivateKey::Oct {
                k: Zeroizing::new(k.clone()),
            })
            .unwrap();
        for len in [1usize, 3, 7, 8, 9, 13, 16, 17, 31, 32, 33, 64, 100] {
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_add(1)).collect();
            let w = hsm
                .encrypt(&key, EncAlg::CkmAesKeyWrapPad, &data, &SymParams::default())
                .unwrap()
                .value;
            assert_eq!(w.len(), len.div_ceil(8).max(1) * 8 + 8, "len {len}");
            let mut out = vec![0u8; w.len()];
            let soft = AesKek::new(cipher, &k)
                .unwrap()
                .unwrap_with_padding(&w, &mut out)
                .unwrap()
                .to_vec();
            assert_eq!(soft, data, "software unwrap of device wrap, len {len}");
            let back = hsm
                .decrypt(&key, EncAlg::CkmAesKeyWrapPad, &w, &SymParams::default())
                .unwrap();
            assert_eq!(back.as_slice(), data.as_slice(), "device unwrap, len {len}");
            let mut sw = vec![0u8; len + 16];
            let sw = AesKek::new(cipher, &k)
                .unwrap()
                .wrap_with_padding(&data, &mut sw)
                .unwrap()
                .to_vec();
            let back = hsm
                .decrypt(&key, EncAlg::CkmAesKeyWrapPad, &sw, &SymParams::default())
                .unwrap();
            assert_eq!(back.as_slice(), data.as_slice(), "software wrap, len {len}");
            // Tampering anywhere is a plain decryption failure.
            for i in [0, sw.len() / 2, sw.len() - 1] {
                let mut bad = sw.clone();
                bad[i] ^= 0x01;
                assert!(matches!(
                    hsm.decrypt(&key, EncAlg::CkmAesKeyWrapPad, &bad, &SymParams::default()),
                    Err(CryptoError::DecryptFailed)
                ));
            }
        }
        // RFC 3394 (A*KW and CKM_AES_KEY_WRAP): exact length, interoperable.
        for len in [16usize, 24, 32, 40, 64] {
            let data = vec![0x3cu8; len];
            for a in [alg, EncAlg::CkmAesKeyWrap] {
                let w = hsm
                    .encrypt(&key, a, &data, &SymParams::default())
                    .unwrap()
                    .value;
                assert_eq!(w.len(), len + 8);
                let mut out = vec![0u8; len];
                let soft = AesKek::new(cipher, &k)
                    .unwrap()
                    .unwrap(&w, &mut out)
                    .unwrap();
                assert_eq!(soft, data.as_slice());
                let back = hsm.decrypt(&key, a, &w, &SymParams::default()).unwrap();
                assert_eq!(back.as_slice(), data.as_slice(), "{a:?} len {len}");
            }
        }
    }
}

/// The auto-unseal key: made inside the device as sensitive and not
/// extractable (as the device itself reports), AES-GCM with a fresh IV per
/// wrap, and every change to what it wrapped, the AAD, or the key refused.
#[test]
fn the_seal_key_stays_in_the_device_and_authenticates_what_it_wraps() {
    let hsm = Arc::new(Pkcs11Hsm::open(&config("t-seal")));
    let key = Pkcs11SealKey::new(hsm.clone(), "coffer-seal-key");
    // No key yet: unavailable, saying which key and how to create it.
    match key.decrypt(b"aad", &[0u8; 48]) {
        Err(CryptoError::HsmUnavailable(m)) => {
            assert!(
                m.contains("coffer-seal-key") && m.contains("seal-key create"),
                "{m}"
            )
        }
        other => panic!("expected HsmUnavailable, got {:?}", other.map(|_| ())),
    }
    assert!(key.create().unwrap(), "created");
    assert!(!key.create().unwrap(), "a second create leaves the key");
    let attrs = key.attributes().unwrap();
    assert!(!attrs.extractable, "the seal key must not be extractable");
    assert!(attrs.sensitive, "the seal key must be sensitive");

    let root: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    let wrapped = key.encrypt(b"coffer/seal", &root).unwrap();
    assert_eq!(wrapped.len(), 12 + 32 + 16);
    assert!(!wrapped.windows(8).any(|w| root.windows(8).any(|r| r == w)));
    assert_eq!(
        &key.decrypt(b"coffer/seal", &wrapped).unwrap()[..],
        &root[..]
    );
    assert_ne!(
        key.encrypt(b"coffer/seal", &root).unwrap(),
        wrapped,
        "fresh IV"
    );

    for i in [0, 11, 12, 30, wrapped.len() - 1] {
        let mut bad = wrapped.clone();
        bad[i] ^= 0x01;
        match key.decrypt(b"coffer/seal", &bad) {
            Err(CryptoError::DecryptFailed) => {}
            other => panic!("byte {i} flipped: {:?}", other.map(|_| ())),
        }
    }
    assert!(matches!(
        key.decrypt(b"coffer/other", &wrapped),
        Err(CryptoError::DecryptFailed)
    ));
    assert!(matches!(
        key.decrypt(b"coffer/seal", &wrapped[..20]),
        Err(CryptoError::DecryptFailed)
    ));
    let other = Pkcs11SealKey::new(hsm, "another-seal-key");
    other.create().unwrap();
    assert!(matches!(
        other.decrypt(b"coffer/seal", &wrapped),
        Err(CryptoError::DecryptFailed)
    ));

    // A refused PIN (on a token this process never logged in to: the
    // login is per process and token): unavailable, the PIN not in the message.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-pin");
    std::fs::write(&wrong, "not-the-pin").unwrap();
    let mut cfg = config("t-seal-pin");
    cfg.pin_file = Some(wrong);
    let locked = Pkcs11SealKey::new(Arc::new(Pkcs11Hsm::open(&cfg)), "coffer-seal-key");
    match locked.decrypt(b"coffer/seal", &wrapped) {
        Err(CryptoError::HsmUnavailable(m)) => assert!(!m.contains("not-the-pin"), "{m}"),
        other => panic!("expected HsmUnavailable, got {:?}", other.map(|_| ())),
    }
}
