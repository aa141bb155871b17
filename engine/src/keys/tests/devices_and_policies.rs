//! Keys engine tests: the HSM tier, imports, rotation policies, optimistic
//! writes and the parsed-key cache.

use super::*;

#[tokio::test]
async fn hsm_keys_route_private_ops_to_the_device() {
    let f = fixture().await;
    let k = f
        .keys
        .create("v", "h", create(KeyType::RsaHsm), None)
        .await
        .unwrap();
    assert_eq!(k.properties.kty, KeyType::RsaHsm);
    assert!(k.properties.hsm);
    assert_eq!(f.hsm.calls.load(Ordering::SeqCst), 1);
    let d = sha256(b"m");
    let sig = f
        .keys
        .sign("v", "h", None, SignAlg::RS256, &d)
        .await
        .unwrap();
    assert_eq!(f.hsm.calls.load(Ordering::SeqCst), 2);
    // verify and RSA encrypt are software, from the public key.
    assert!(f
        .keys
        .verify("v", "h", None, SignAlg::RS256, &d, &sig.value)
        .await
        .unwrap());
    let ct = f
        .keys
        .encrypt("v", "h", None, EncAlg::RsaOaep, b"x", SymParams::default())
        .await
        .unwrap();
    assert_eq!(f.hsm.calls.load(Ordering::SeqCst), 2);
    let pt = f
        .keys
        .decrypt(
            "v",
            "h",
            None,
            EncAlg::RsaOaep,
            &ct.value,
            SymParams::default(),
        )
        .await
        .unwrap();
    assert_eq!(&*pt.value, b"x");
    assert_eq!(f.hsm.calls.load(Ordering::SeqCst), 3);
    // oct-HSM symmetric encryption goes to the device.
    f.keys
        .create("v", "o", create(KeyType::OctHsm), None)
        .await
        .unwrap();
    f.keys
        .encrypt("v", "o", None, EncAlg::A256GCM, b"x", SymParams::default())
        .await
        .unwrap();
    assert_eq!(f.hsm.calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn no_hsm_means_503_class_error_and_nothing_stored() {
    let f = fixture().await;
    let keys = KeysEngine::new(f.store.clone(), None);
    let before = dump(&f.store);
    let r = keys.create("v", "h", create(KeyType::EcHsm), None).await;
    assert!(matches!(
        r,
        Err(EngineError::Crypto(CryptoError::HsmUnavailable(_)))
    ));
    assert_eq!(dump(&f.store), before);
}

#[tokio::test]
async fn rotation_policy_rotates_and_notifies_once() {
    let f = fixture().await;
    let first = f
        .keys
        .create("v", "k", create(KeyType::Ec), None)
        .await
        .unwrap();
    let default = f.keys.get_rotation_policy("v", "k").await.unwrap();
    assert_eq!(default, rotation::default_policy());
    let policy: RotationPolicy = serde_json::from_str(
        r#"{"lifetimeActions":[{"trigger":{"timeAfterCreate":"P8D"},"action":{"type":"Rotate"}},
            {"trigger":{"timeBeforeExpiry":"P21D"},"action":{"type":"Notify"}}],
            "attributes":{"expiryTime":"P28D"}}"#,
    )
    .unwrap();
    let set = f
        .keys
        .set_rotation_policy("v", "k", policy, None)
        .await
        .unwrap();
    assert_eq!(set.attributes.created, Some(T0));
    let rotate_at = T0 + 8 * DAY;
    assert_eq!(
        f.keys.run_rotation_policies(rotate_at - 1).await.unwrap(),
        0
    );
    f.now.store(rotate_at, Ordering::SeqCst);
    assert_eq!(f.keys.run_rotation_policies(rotate_at).await.unwrap(), 1);
    assert_eq!(
        f.keys.run_rotation_policies(rotate_at).await.unwrap(),
        0,
        "not due again"
    );
    let latest = f.keys.get("v", "k", None).await.unwrap();
    assert_ne!(latest.properties.version, first.properties.version);
    assert_eq!(latest.properties.exp, Some((rotate_at + 28 * DAY) as i64));
    // 21 days before the new version's expiry (a day before its own
    // rotation is due): notified once.
    let t = rotate_at + 7 * DAY;
    assert_eq!(f.keys.run_rotation_policies(t).await.unwrap(), 0);
    assert_eq!(f.keys.run_rotation_policies(t).await.unwrap(), 0);
    let events = f
        .store
        .keys()
        .iter()
        .filter(|k| k.starts_with(b"sys/events/keys/v/k/"))
        .count();
    assert_eq!(events, 1);
    let bad: RotationPolicy = serde_json::from_str(
        r#"{"lifetimeActions":[{"trigger":{"timeAfterCreate":"1 day"},"action":{"type":"Rotate"}}]}"#,
    )
    .unwrap();
    assert!(matches!(
        f.keys.set_rotation_policy("v", "k", bad, None).await,
        Err(EngineError::BadParameter(_))
    ));
}

#[tokio::test]
async fn rotation_policies_below_key_vault_minimums_are_refused_unless_overridden() {
    let f = fixture().await;
    f.keys
        .create("v", "k", create(KeyType::Ec), None)
        .await
        .unwrap();
    let every_second: RotationPolicy = serde_json::from_str(
        r#"{"lifetimeActions":[{"trigger":{"timeAfterCreate":"PT1S"},"action":{"type":"Rotate"}}]}"#,
    )
    .unwrap();
    let before = dump(&f.store);
    assert!(matches!(
        f.keys.set_rotation_policy("v", "k", every_second.clone(), None).await,
        Err(EngineError::BadParameter(m)) if m.contains("P7D")
    ));
    assert_eq!(dump(&f.store), before, "nothing stored");
    let keys = KeysEngine::new(f.store.clone(), None)
        .with_rotation_limits(rotation::RotationLimits::unsafe_minimum(1));
    keys.set_rotation_policy("v", "k", every_second, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn import_software_and_hsm() {
    let f = fixture().await;
    let k = PrivateKey::Oct {
        k: Zeroizing::new(vec![3; 32]),
    };
    let imp = ImportKey {
        key: k.clone(),
        hsm: false,
        attributes: KeyAttributes::default(),
    };
    let a = f.keys.import("v", "i", imp, None).await.unwrap();
    assert_eq!(a.properties.kty, KeyType::Oct);
    let imp = ImportKey {
        key: k,
        hsm: true,
        attributes: KeyAttributes::default(),
    };
    let b = f.keys.import("v", "i", imp, None).await.unwrap();
    assert_eq!(b.properties.kty, KeyType::OctHsm);
    let w = f
        .keys
        .wrap_key(
            "v",
            "i",
            Some(&a.properties.version),
            EncAlg::A256KW,
            &[1; 16],
        )
        .await
        .unwrap();
    let u = f
        .keys
        .unwrap_key("v", "i", None, EncAlg::A256KW, &w.value)
        .await
        .unwrap();
    assert_eq!(&*u.value, &[1; 16], "same key material in both tiers");
}

#[tokio::test]
async fn key_writes_are_optimistic_but_never_refuse_from_stale_state() {
    let f = fixture().await;
    let fences = f.store.fence_count();
    f.keys
        .create("v", "k", create(KeyType::Ec), None)
        .await
        .unwrap();
    assert_eq!(f.store.fence_count(), fences, "fresh create needs no fence");
    f.keys.delete("v", "k", None).await.unwrap();
    let shows_deleted = f.store.snapshot();
    f.keys.recover("v", "k", None).await.unwrap();
    f.store.lag_behind(shows_deleted.clone());
    // The replica still shows the key deleted: a new version, not a 409.
    let k2 = f
        .keys
        .create("v", "k", create(KeyType::Ec), None)
        .await
        .unwrap();
    let got = f.keys.get("v", "k", None).await.unwrap();
    assert_eq!(got.properties.version, k2.properties.version);
    // A key created after the replica's snapshot is not a 404 for update.
    let before = f.store.snapshot();
    f.keys
        .create("v", "fresh", create(KeyType::Ec), None)
        .await
        .unwrap();
    f.store.lag_behind(before);
    f.keys
        .update("v", "fresh", None, UpdateKey::default(), None)
        .await
        .unwrap();
    // A vault created after the snapshot is not VaultNotFound either.
    let before_vault = f.store.snapshot();
    VaultsEngine::new(f.store.clone())
        .create("w", None)
        .await
        .unwrap();
    f.store.lag_behind(before_vault);
    f.keys
        .create("w", "k", create(KeyType::Ec), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn parsed_keys_are_reused_until_the_record_changes_or_the_cache_is_cleared() {
    let f = fixture().await;
    let k = f
        .keys
        .create("v", "r", create(KeyType::Rsa), None)
        .await
        .unwrap();
    let d = sha256(b"m");
    for _ in 0..3 {
        let sig = f
            .keys
            .sign("v", "r", None, SignAlg::RS256, &d)
            .await
            .unwrap();
        assert!(software::verify(&k.public, SignAlg::RS256, &d, &sig.value).unwrap());
    }
    assert_eq!(f.keys.loaded.len(), 1, "one parse kept for repeated signs");
    // Sealing clears it; the key still works once loaded again.
    f.keys.clear_key_cache();
    assert_eq!(f.keys.loaded.len(), 0);
    // Purge and restore under the same version id: signs with the restored
    // record (same id, new revision), never refuses or serves a stale entry.
    let blob = f.keys.backup("v", "r").await.unwrap();
    f.keys
        .sign("v", "r", None, SignAlg::RS256, &d)
        .await
        .unwrap();
    f.keys.delete("v", "r", None).await.unwrap();
    assert!(f
        .keys
        .sign("v", "r", None, SignAlg::RS256, &d)
        .await
        .is_err());
    f.keys.purge("v", "r", None).await.unwrap();
    f.keys.restore("v", &blob, None).await.unwrap();
    let sig = f
        .keys
        .sign("v", "r", None, SignAlg::RS256, &d)
        .await
        .unwrap();
    assert!(software::verify(&k.public, SignAlg::RS256, &d, &sig.value).unwrap());
    assert_eq!(f.keys.loaded.len(), 1);
}
