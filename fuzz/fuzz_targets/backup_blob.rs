//! Backup blobs on the restore path, and the keyring record below them.
//!
//! Input: `mode kind\n{payload}`.
//! - `sealed`: the payload is the plaintext inside the barrier (the backup
//!   JSON); the harness seals it with the fixed test barrier, so the decoder
//!   after the barrier sees arbitrary content.
//! - `raw`: the payload is the blob itself (`term | nonce | ct+tag`): the
//!   outer envelope and its authentication.
//! - kind `key` / `secret` picks the engine; kind `keyring` decodes a
//!   keyring record instead (`sealed`: postcard plaintext under the test
//!   root key; `raw`: the record bytes).
//!
//! Invariants beyond "no panic": a refused blob is a client error (never a
//! 500); an accepted one restores what it answered, survives backup →
//! restore into another vault unchanged, and its rotation policy can be run
//! by the lifecycle task; a keyring that parses has its active term and
//! round-trips through its record.
#![no_main]

use axum::http::StatusCode;
use coffer::api::akv::errors::ApiError;
use coffer::crypto::KeyType;
use coffer::engine::{keys, secrets, EngineError};
use coffer::seal::Keyring;
use coffer_fuzz::app::{with_app, App, VAULT, VAULT2};
use coffer_fuzz::keyring::{test_barrier, test_keyring_record, TEST_ROOT_KEY};
use coffer_fuzz::split_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (header, payload) = split_header(data);
    let mut words = header.split(|&b| b == b' ');
    let sealed = words.next() != Some(b"raw");
    let kind = words.next().unwrap_or_default();
    if kind == b"keyring" {
        return keyring(sealed, payload);
    }
    let purpose = if kind == b"secret" {
        secrets::BACKUP_PURPOSE
    } else {
        keys::BACKUP_PURPOSE
    };
    let blob = if sealed {
        test_barrier()
            .encrypt(purpose, payload)
            .expect("barrier encryption of a fuzz input")
    } else {
        payload.to_vec()
    };
    with_app(|app| async move {
        if kind == b"secret" {
            restore_secret(&app, &blob).await;
        } else {
            restore_key(&app, &blob).await;
        }
    });
});

/// A refused restore is the client's fault, with a Key Vault error.
fn refused(e: EngineError) {
    let shown = format!("{e}");
    let api = ApiError::from(e);
    assert!(
        api.status().is_client_error(),
        "restore refused with {} ({shown})",
        api.status()
    );
    assert!(
        api.status() == StatusCode::BAD_REQUEST || api.status() == StatusCode::CONFLICT,
        "restore refused with unexpected {}",
        api.status()
    );
}

async fn restore_key(app: &App, blob: &[u8]) {
    let restored = match app.keys.restore(VAULT, blob, None).await {
        Ok(k) => k,
        Err(e) => return refused(e),
    };
    let name = restored.properties.name.clone();
    let got = app
        .keys
        .get(VAULT, &name, None)
        .await
        .expect("restored key readable");
    assert_eq!(got, restored, "restore answered another key than it stored");
    let versions = app
        .keys
        .list_versions(VAULT, &name, Some(25), None)
        .await
        .expect("versions of the restored key");
    // Backup → restore elsewhere gives the same key.
    let again = app
        .keys
        .backup(VAULT, &name)
        .await
        .expect("backup of a restored key");
    let copy = app
        .keys
        .restore(VAULT2, &again, None)
        .await
        .expect("restore of our own backup");
    assert_eq!(copy, restored, "backup/restore changed the key");
    let copy_versions = app
        .keys
        .list_versions(VAULT2, &name, Some(25), None)
        .await
        .expect("versions of the copy");
    assert_eq!(
        copy_versions.items, versions.items,
        "backup/restore changed versions"
    );
    let _ = app.keys.get_rotation_policy(VAULT, &name).await;
    // The lifecycle task runs restored policies; RSA generation would take
    // seconds here, so RSA keys skip it (their policy parses the same way).
    if restored.properties.kty != KeyType::Rsa {
        let _ = app.keys.run_rotation_policies(now() + 400 * 86_400).await;
    }
}

async fn restore_secret(app: &App, blob: &[u8]) {
    let restored = match app.secrets.restore(VAULT, blob, None).await {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let name = restored.name.clone();
    let versions = app
        .secrets
        .list_versions(VAULT, &name, Some(25), None)
        .await
        .expect("versions of the restored secret");
    assert!(
        versions.items.contains(&restored),
        "restore answered a version it did not store"
    );
    let latest = app.secrets.get(VAULT, &name, None).await;
    let again = app
        .secrets
        .backup(VAULT, &name)
        .await
        .expect("backup of a restored secret");
    let copy = app
        .secrets
        .restore(VAULT2, &again, None)
        .await
        .expect("restore of our own backup");
    assert_eq!(copy, restored, "backup/restore changed the secret");
    let copy_versions = app
        .secrets
        .list_versions(VAULT2, &name, Some(25), None)
        .await
        .expect("versions of the copy");
    assert_eq!(
        copy_versions.items, versions.items,
        "backup/restore changed versions"
    );
    let copy_latest = app.secrets.get(VAULT2, &name, None).await;
    match (latest, copy_latest) {
        (Ok(a), Ok(b)) => assert!(a.value == b.value, "backup/restore changed the value"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("backup/restore changed whether the secret is readable"),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn keyring(sealed: bool, payload: &[u8]) {
    let record = if sealed {
        test_keyring_record(payload)
    } else {
        payload.to_vec()
    };
    let Ok(ring) = Keyring::decrypt(&TEST_ROOT_KEY, &record) else {
        return;
    };
    let terms = ring.terms();
    assert!(terms.contains(&ring.active_term()), "active term missing");
    let again = ring.encrypt(&TEST_ROOT_KEY).expect("re-encrypt keyring");
    let back = Keyring::decrypt(&TEST_ROOT_KEY, &again).expect("own keyring record parses");
    assert_eq!(back.terms(), terms, "keyring record round trip lost terms");
    assert_eq!(back.active_term(), ring.active_term());
    for t in terms {
        assert_eq!(back.key(t), ring.key(t), "keyring round trip changed a key");
    }
}
