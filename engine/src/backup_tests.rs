use std::collections::HashMap;
use std::sync::Mutex;

use coffer_crypto::KeyType;

use super::*;
use crate::keys::{CreateKey, KeyAttributes};
use crate::mem_store::MemStore;
use crate::secrets::SetSecret;
use crate::vaults::VaultsEngine;

/// A folder in memory.
#[derive(Default)]
struct MemDir(Mutex<HashMap<String, Vec<u8>>>);

impl BackupTarget for MemDir {
    fn write(&self, path: &str, bytes: &[u8]) -> Result<(), String> {
        self.0.lock().unwrap().insert(path.into(), bytes.to_vec());
        Ok(())
    }
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.0
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .ok_or_else(|| format!("{path}: no such file"))
    }
}

struct Fixture {
    secrets: Arc<SecretsEngine>,
    keys: Arc<KeysEngine>,
    backup: BackupEngine,
}

async fn fixture() -> Fixture {
    let store = Arc::new(MemStore::new());
    VaultsEngine::new(store.clone())
        .create("v", None)
        .await
        .unwrap();
    let secrets = Arc::new(SecretsEngine::new(store.clone()));
    let keys = Arc::new(KeysEngine::new(store.clone(), None));
    let certificates = Arc::new(CertificatesEngine::new(
        store.clone(),
        keys.clone(),
        secrets.clone(),
    ));
    let backup = BackupEngine::new(secrets.clone(), keys.clone(), certificates);
    Fixture {
        secrets,
        keys,
        backup,
    }
}

fn ec() -> CreateKey {
    CreateKey {
        kty: KeyType::Ec,
        key_size: None,
        curve: None,
        public_exponent: None,
        attributes: KeyAttributes::default(),
    }
}

fn set(value: &str) -> SetSecret {
    SetSecret {
        value: value.into(),
        ..SetSecret::default()
    }
}

#[tokio::test]
async fn a_full_backup_restores_every_object_and_version_after_a_purge() {
    let f = fixture().await;
    f.secrets.set("v", "S1", set("one"), None).await.unwrap();
    f.secrets.set("v", "S1", set("two"), None).await.unwrap();
    f.secrets.set("v", "gone", set("x"), None).await.unwrap();
    f.secrets.delete("v", "gone", None).await.unwrap();
    f.keys.create("v", "k1", ec(), None).await.unwrap();
    let dir = MemDir::default();
    let manifest = f.backup.backup("v", 1_700_000_000, &dir).await.unwrap();
    // The soft-deleted secret is not in a backup of live objects.
    assert_eq!(manifest.len(), 2);
    assert_eq!(manifest.secrets[0].name, "S1");
    assert!(dir.read(MANIFEST).is_ok());

    let versions = |vault| {
        let s = f.secrets.clone();
        async move {
            let page = s.list_versions(vault, "S1", None, None).await.unwrap();
            page.items.len()
        }
    };
    assert_eq!(versions("v").await, 2);
    // Purge everything, then restore.
    f.secrets.delete("v", "S1", None).await.unwrap();
    f.secrets.purge("v", "S1", None).await.unwrap();
    f.keys.delete("v", "k1", None).await.unwrap();
    f.keys.purge("v", "k1", None).await.unwrap();
    let report = f.backup.restore("v", &dir, None, "r1").await.unwrap();
    assert_eq!(
        report,
        RestoreReport {
            restored: 2,
            failed: vec![]
        }
    );
    assert_eq!(
        f.secrets.get("v", "S1", None).await.unwrap().value.as_str(),
        "two"
    );
    assert_eq!(versions("v").await, 2);
    // Restoring again: every name is taken, each reported, none changed.
    let again = f.backup.restore("v", &dir, None, "r2").await.unwrap();
    assert_eq!(again.restored, 0);
    assert_eq!(again.failed.len(), 2, "{:?}", again.failed);
}

#[tokio::test]
async fn selective_key_restore_and_damaged_folders() {
    let f = fixture().await;
    f.keys.create("v", "k1", ec(), None).await.unwrap();
    f.keys.create("v", "k2", ec(), None).await.unwrap();
    let dir = MemDir::default();
    f.backup.backup("v", 1, &dir).await.unwrap();
    for k in ["k1", "k2"] {
        f.keys.delete("v", k, None).await.unwrap();
        f.keys.purge("v", k, None).await.unwrap();
    }
    let one = f.backup.restore("v", &dir, Some("K2"), "r1").await.unwrap();
    assert_eq!(one.restored, 1);
    assert!(f.keys.get("v", "k2", None).await.is_ok());
    assert!(f.keys.get("v", "k1", None).await.is_err());
    assert!(matches!(
        f.backup.restore("v", &dir, Some("nope"), "r2").await,
        Err(BackupError::Invalid(_))
    ));
    // A changed blob is refused by its digest, the rest still restored.
    dir.write("keys/k2.blob", b"tampered").unwrap();
    f.keys.delete("v", "k2", None).await.unwrap();
    f.keys.purge("v", "k2", None).await.unwrap();
    let report = f.backup.restore("v", &dir, None, "r3").await.unwrap();
    assert_eq!(report.restored, 1);
    assert!(report.failed[0].contains("SHA-256"), "{:?}", report.failed);
    // No manifest: not a backup.
    assert!(matches!(
        f.backup.restore("v", &MemDir::default(), None, "r4").await,
        Err(BackupError::Target(_))
    ));
}
