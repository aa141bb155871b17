use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aws_lc_rs::digest;

use super::*;
use crate::error::KeyRefusal;
use crate::mem_store::MemStore;
use crate::rotation;
use crate::vaults::VaultsEngine;
use coffer_crypto::hsm::{HsmKey, HsmStatus};
use coffer_crypto::software::{self, SoftwareKey};
use coffer_crypto::{Ciphertext, CryptoError, EncAlg, KeySpec, PrivateKey, SignAlg, SymParams};

mod devices_and_policies;

const T0: u64 = 1_700_000_000;
const DAY: u64 = 86_400;

/// A software-backed stand-in for a PKCS#11 device: the "wrapped" blob is
/// the software key's JSON (tests only).
#[derive(Default)]
struct FakeHsm {
    calls: AtomicUsize,
}

impl FakeHsm {
    fn unwrap(key: &HsmKey) -> SoftwareKey {
        serde_json::from_slice(&key.wrapped).unwrap()
    }
    fn wrap(k: SoftwareKey) -> HsmKey {
        let kty = match k.kty {
            KeyType::Rsa => KeyType::RsaHsm,
            KeyType::Ec => KeyType::EcHsm,
            _ => KeyType::OctHsm,
        };
        HsmKey {
            kty,
            wrapped: serde_json::to_vec(&k).unwrap(),
            public: k.public.clone(),
            bits: k.bits,
        }
    }
}

impl HsmProvider for FakeHsm {
    fn status(&self) -> HsmStatus {
        HsmStatus {
            available: true,
            ..Default::default()
        }
    }
    fn generate(&self, spec: &KeySpec) -> Result<HsmKey, CryptoError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Self::wrap(software::generate(spec)?))
    }
    fn import(&self, key: &PrivateKey) -> Result<HsmKey, CryptoError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Self::wrap(software::import(key)?))
    }
    fn sign(&self, key: &HsmKey, alg: SignAlg, digest: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Self::unwrap(key).sign(alg, digest)
    }
    fn decrypt(
        &self,
        key: &HsmKey,
        alg: EncAlg,
        ct: &[u8],
        p: &SymParams,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Self::unwrap(key).decrypt(alg, ct, p)
    }
    fn encrypt(
        &self,
        key: &HsmKey,
        alg: EncAlg,
        pt: &[u8],
        p: &SymParams,
    ) -> Result<Ciphertext, CryptoError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Self::unwrap(key).encrypt(alg, pt, p)
    }
}

struct Fixture {
    store: Arc<MemStore>,
    now: Arc<AtomicU64>,
    keys: KeysEngine,
    hsm: Arc<FakeHsm>,
}

async fn fixture() -> Fixture {
    let store = Arc::new(MemStore::new());
    let now = Arc::new(AtomicU64::new(T0));
    let n = now.clone();
    let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
    VaultsEngine::new(store.clone())
        .create("v", None)
        .await
        .unwrap();
    let hsm = Arc::new(FakeHsm::default());
    let keys = KeysEngine::with_clock(
        store.clone(),
        Some(hsm.clone() as Arc<dyn HsmProvider>),
        clock,
    );
    Fixture {
        store,
        now,
        keys,
        hsm,
    }
}

fn create(kty: KeyType) -> CreateKey {
    CreateKey {
        kty,
        key_size: None,
        curve: None,
        public_exponent: None,
        attributes: KeyAttributes::default(),
    }
}

fn sha256(m: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, m).as_ref().to_vec()
}

fn dump(store: &MemStore) -> usize {
    store.keys().len()
}

#[tokio::test]
async fn create_get_rotate_and_versions() {
    let f = fixture().await;
    let a = f
        .keys
        .create("v", "MyKey", create(KeyType::Rsa), None)
        .await
        .unwrap();
    assert_eq!(a.properties.kty, KeyType::Rsa);
    assert_eq!(a.properties.key_ops.len(), 6);
    assert!(matches!(a.public, PublicKey::Rsa { ref n, .. } if n.len() == 256));
    let b = f.keys.rotate("v", "mykey", None).await.unwrap();
    assert_eq!(b.properties.name, "MyKey");
    assert_ne!(a.properties.version, b.properties.version);
    assert_ne!(a.public, b.public);
    let latest = f.keys.get("v", "MYKEY", None).await.unwrap();
    assert_eq!(latest.properties.version, b.properties.version);
    let old = f
        .keys
        .get("v", "mykey", Some(&a.properties.version))
        .await
        .unwrap();
    assert_eq!(old.public, a.public);
    let page = f
        .keys
        .list_versions("v", "mykey", None, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let page = f.keys.list("v", Some(1), None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.skiptoken.is_none());
    // A key's private material never appears in the public views.
    let json = serde_json::to_string(&latest).unwrap();
    assert!(!json.contains("material"));
}

#[tokio::test]
async fn bad_create_parameters_store_nothing() {
    let f = fixture().await;
    let before = dump(&f.store);
    let mut p = create(KeyType::Rsa);
    p.key_size = Some(1024);
    assert!(matches!(
        f.keys.create("v", "k", p, None).await,
        Err(EngineError::BadParameter(_))
    ));
    let mut p = create(KeyType::Rsa);
    p.public_exponent = Some(3);
    assert!(matches!(
        f.keys.create("v", "k", p, None).await,
        Err(EngineError::BadParameter(_))
    ));
    let mut p = create(KeyType::Oct);
    p.attributes.exportable = Some(true);
    assert!(matches!(
        f.keys.create("v", "k", p, None).await,
        Err(EngineError::NotSupported(_))
    ));
    assert_eq!(dump(&f.store), before);
}

#[tokio::test]
async fn sign_verify_encrypt_decrypt_software() {
    let f = fixture().await;
    f.keys
        .create("v", "r", create(KeyType::Rsa), None)
        .await
        .unwrap();
    let d = sha256(b"doc");
    let sig = f
        .keys
        .sign("v", "r", None, SignAlg::PS256, &d)
        .await
        .unwrap();
    assert!(f
        .keys
        .verify("v", "r", None, SignAlg::PS256, &d, &sig.value)
        .await
        .unwrap());
    assert!(!f
        .keys
        .verify(
            "v",
            "r",
            None,
            SignAlg::PS256,
            &sha256(b"other"),
            &sig.value
        )
        .await
        .unwrap());
    let ct = f
        .keys
        .encrypt(
            "v",
            "r",
            None,
            EncAlg::RsaOaep256,
            b"hi",
            SymParams::default(),
        )
        .await
        .unwrap();
    let pt = f
        .keys
        .decrypt(
            "v",
            "r",
            Some(&ct.version),
            EncAlg::RsaOaep256,
            &ct.value,
            SymParams::default(),
        )
        .await
        .unwrap();
    assert_eq!(&*pt.value, b"hi");

    let mut p = create(KeyType::Oct);
    p.key_size = Some(128);
    f.keys.create("v", "o", p, None).await.unwrap();
    let w = f
        .keys
        .wrap_key("v", "o", None, EncAlg::A128KW, &[7; 16])
        .await
        .unwrap();
    let u = f
        .keys
        .unwrap_key("v", "o", None, EncAlg::A128KW, &w.value)
        .await
        .unwrap();
    assert_eq!(&*u.value, &[7; 16]);
    let aad = SymParams {
        aad: Some(b"a".to_vec()),
        ..Default::default()
    };
    let ct = f
        .keys
        .encrypt("v", "o", None, EncAlg::A128GCM, b"x", aad)
        .await
        .unwrap();
    let back = SymParams {
        iv: ct.iv.clone(),
        tag: ct.tag.clone(),
        aad: Some(b"a".to_vec()),
    };
    assert_eq!(
        &*f.keys
            .decrypt("v", "o", None, EncAlg::A128GCM, &ct.value, back)
            .await
            .unwrap()
            .value,
        b"x"
    );
    // Algorithm not valid for the operation.
    assert!(matches!(
        f.keys
            .encrypt(
                "v",
                "o",
                None,
                EncAlg::A128KW,
                &[0; 16],
                SymParams::default()
            )
            .await,
        Err(EngineError::BadParameter(_))
    ));
}

#[tokio::test]
async fn bad_inputs_are_refused() {
    let f = fixture().await;
    let mut p = create(KeyType::Ec);
    p.curve = Some(Curve::P384);
    f.keys.create("v", "e", p, None).await.unwrap();
    let r = f.keys.sign("v", "e", None, SignAlg::ES256, &[0; 32]).await;
    assert!(matches!(
        r,
        Err(EngineError::Crypto(CryptoError::AlgorithmMismatch { .. }))
    ));
    let r = f.keys.sign("v", "e", None, SignAlg::ES384, &[0; 32]).await;
    assert!(matches!(
        r,
        Err(EngineError::Crypto(CryptoError::BadInput(_)))
    ));
    let r = f
        .keys
        .encrypt("v", "e", None, EncAlg::RsaOaep, b"x", SymParams::default())
        .await;
    assert!(matches!(
        r,
        Err(EngineError::KeyForbidden {
            reason: KeyRefusal::OperationNotAllowed,
            ..
        })
    ));
    f.keys
        .create("v", "o", create(KeyType::Oct), None)
        .await
        .unwrap();
    let big = vec![0u8; MAX_PAYLOAD_BYTES + 1];
    let r = f
        .keys
        .encrypt("v", "o", None, EncAlg::A256GCM, &big, SymParams::default())
        .await;
    assert!(matches!(r, Err(EngineError::BadParameter(_))));
    assert!(matches!(
        f.keys.random_bytes(0),
        Err(EngineError::BadParameter(_))
    ));
    assert!(matches!(
        f.keys.random_bytes(129),
        Err(EngineError::BadParameter(_))
    ));
    assert_eq!(f.keys.random_bytes(128).unwrap().len(), 128);
}

#[tokio::test]
async fn key_ops_enabled_and_validity_window_are_enforced() {
    let f = fixture().await;
    let mut p = create(KeyType::Rsa);
    p.attributes.key_ops = Some(vec![
        KeyOp::Sign,
        KeyOp::Verify,
        KeyOp::Encrypt,
        KeyOp::Decrypt,
    ]);
    p.attributes.exp = Some((T0 + 100) as i64);
    f.keys.create("v", "r", p, None).await.unwrap();
    let d = sha256(b"m");
    let r = f
        .keys
        .wrap_key("v", "r", None, EncAlg::RsaOaep, &[1; 32])
        .await;
    assert!(matches!(
        r,
        Err(EngineError::KeyForbidden {
            reason: KeyRefusal::OperationNotAllowed,
            ..
        })
    ));
    let sig = f
        .keys
        .sign("v", "r", None, SignAlg::RS256, &d)
        .await
        .unwrap();
    let ct = f
        .keys
        .encrypt("v", "r", None, EncAlg::RsaOaep, b"x", SymParams::default())
        .await
        .unwrap();
    // Past expiry: sign and encrypt refused; verify and decrypt still work.
    f.now.store(T0 + 100, Ordering::SeqCst);
    let r = f.keys.sign("v", "r", None, SignAlg::RS256, &d).await;
    assert!(matches!(
        r,
        Err(EngineError::KeyForbidden {
            reason: KeyRefusal::Expired,
            ..
        })
    ));
    let r = f
        .keys
        .encrypt("v", "r", None, EncAlg::RsaOaep, b"x", SymParams::default())
        .await;
    assert!(matches!(
        r,
        Err(EngineError::KeyForbidden {
            reason: KeyRefusal::Expired,
            ..
        })
    ));
    assert!(f
        .keys
        .verify("v", "r", None, SignAlg::RS256, &d, &sig.value)
        .await
        .unwrap());
    assert_eq!(
        &*f.keys
            .decrypt(
                "v",
                "r",
                None,
                EncAlg::RsaOaep,
                &ct.value,
                SymParams::default()
            )
            .await
            .unwrap()
            .value,
        b"x"
    );
    // Disabled: everything refused, get still works.
    let patch = UpdateKey {
        enabled: Some(false),
        exp: Some((T0 + 1000) as i64),
        ..Default::default()
    };
    let k = f.keys.update("v", "r", None, patch, None).await.unwrap();
    assert!(!k.properties.enabled);
    let r = f
        .keys
        .verify("v", "r", None, SignAlg::RS256, &d, &sig.value)
        .await;
    assert!(matches!(
        r,
        Err(EngineError::KeyForbidden {
            reason: KeyRefusal::Disabled,
            ..
        })
    ));
    assert!(f.keys.get("v", "r", None).await.is_ok());
    // Not yet valid.
    let patch = UpdateKey {
        enabled: Some(true),
        nbf: Some((T0 + 500) as i64),
        ..Default::default()
    };
    f.keys.update("v", "r", None, patch, None).await.unwrap();
    let r = f.keys.sign("v", "r", None, SignAlg::RS256, &d).await;
    assert!(matches!(
        r,
        Err(EngineError::KeyForbidden {
            reason: KeyRefusal::NotYetValid,
            ..
        })
    ));
}

#[tokio::test]
async fn delete_recover_purge_and_conflicts() {
    let f = fixture().await;
    f.keys
        .create("v", "k", create(KeyType::Ec), None)
        .await
        .unwrap();
    let d = f.keys.delete("v", "k", None).await.unwrap();
    assert_eq!(d.scheduled_purge_date, T0 + RECOVERABLE_DAYS * DAY);
    assert!(matches!(
        f.keys.get("v", "k", None).await,
        Err(EngineError::NotFound {
            kind: ObjectKind::Key,
            ..
        })
    ));
    assert!(matches!(
        f.keys.create("v", "k", create(KeyType::Ec), None).await,
        Err(EngineError::DeletedButRecoverable { .. })
    ));
    assert_eq!(
        f.keys
            .list_deleted("v", None, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    f.keys.get_deleted("v", "k").await.unwrap();
    f.keys.recover("v", "k", None).await.unwrap();
    f.keys.get("v", "k", None).await.unwrap();
    f.keys.delete("v", "k", None).await.unwrap();
    f.keys.purge("v", "k", None).await.unwrap();
    assert!(matches!(
        f.keys.get_deleted("v", "k").await,
        Err(EngineError::NotFound {
            kind: ObjectKind::DeletedKey,
            ..
        })
    ));
    assert!(!f.store.keys().iter().any(|k| k.starts_with(b"kv/")));
    // Expiry-driven purge.
    f.keys
        .create("v", "k2", create(KeyType::Ec), None)
        .await
        .unwrap();
    f.keys.delete("v", "k2", None).await.unwrap();
    assert_eq!(f.keys.purge_expired(T0).await.unwrap(), 0);
    assert_eq!(
        f.keys
            .purge_expired(T0 + RECOVERABLE_DAYS * DAY)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn request_ids_deduplicate_creates() {
    let f = fixture().await;
    let a = f
        .keys
        .create("v", "k", create(KeyType::Oct), Some("rid-1"))
        .await
        .unwrap();
    let b = f
        .keys
        .create("v", "k", create(KeyType::Oct), Some("rid-1"))
        .await
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(
        f.keys
            .list_versions("v", "k", None, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn backup_restore_roundtrip() {
    let f = fixture().await;
    let k = f
        .keys
        .create("v", "k", create(KeyType::Rsa), None)
        .await
        .unwrap();
    let d = sha256(b"m");
    let blob = f.keys.backup("v", "k").await.unwrap();
    assert!(matches!(
        f.keys.restore("v", &blob, None).await,
        Err(EngineError::Conflict(_))
    ));
    f.keys.delete("v", "k", None).await.unwrap();
    f.keys.purge("v", "k", None).await.unwrap();
    let r = f.keys.restore("v", &blob, None).await.unwrap();
    assert_eq!(r.properties.version, k.properties.version);
    let sig = f
        .keys
        .sign("v", "k", None, SignAlg::RS256, &d)
        .await
        .unwrap();
    assert!(software::verify(&k.public, SignAlg::RS256, &d, &sig.value).unwrap());
    assert!(matches!(
        f.keys.restore("v", b"garbage", None).await,
        Err(EngineError::MalformedBackup)
    ));
}

/// A backup naming one version twice is refused and writes nothing: it
/// would store one record and answer with the other (found by fuzzing).
#[tokio::test]
async fn a_backup_with_a_repeated_version_is_refused() {
    let f = fixture().await;
    f.keys
        .create("v", "k", create(KeyType::Ec), None)
        .await
        .unwrap();
    f.keys.rotate("v", "k", None).await.unwrap();
    let blob = f.keys.backup("v", "k").await.unwrap();
    let forged = crate::object::with_repeated_version(f.store.as_ref(), BACKUP_PURPOSE, &blob);
    f.keys.delete("v", "k", None).await.unwrap();
    f.keys.purge("v", "k", None).await.unwrap();
    let before = f.store.keys();
    assert!(matches!(
        f.keys.restore("v", &forged, None).await,
        Err(EngineError::MalformedBackup)
    ));
    assert_eq!(f.store.keys(), before);
    // The untouched backup still restores.
    f.keys.restore("v", &blob, None).await.unwrap();
}
