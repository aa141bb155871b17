use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::mem_store::MemStore;
use crate::names::is_valid_version;
use crate::store::{Store, StoreError};
use crate::vaults::VaultsEngine;

const T0: u64 = 1_700_000_000;

struct Fixture {
    store: Arc<MemStore>,
    now: Arc<AtomicU64>,
    secrets: SecretsEngine,
}

async fn fixture_with(store: MemStore) -> Fixture {
    let store = Arc::new(store);
    let now = Arc::new(AtomicU64::new(T0));
    let n = now.clone();
    let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
    VaultsEngine::new(store.clone())
        .create("v", None)
        .await
        .unwrap();
    let secrets = SecretsEngine::with_clock(store.clone(), clock);
    Fixture {
        store,
        now,
        secrets,
    }
}

async fn fixture() -> Fixture {
    fixture_with(MemStore::new()).await
}

fn val(v: &str) -> SetSecret {
    SetSecret {
        value: v.into(),
        ..Default::default()
    }
}

fn version_keys(store: &MemStore, name: &str) -> usize {
    let prefix = format!("sv/v/{name}/");
    store
        .keys()
        .iter()
        .filter(|k| k.starts_with(prefix.as_bytes()))
        .count()
}

#[tokio::test]
async fn set_creates_versions_and_latest_wins() {
    let f = fixture().await;
    let a = f
        .secrets
        .set("v", "MySecret", val("one"), None)
        .await
        .unwrap();
    let b = f
        .secrets
        .set("v", "mysecret", val("two"), None)
        .await
        .unwrap();
    assert!(is_valid_version(&a.properties.version));
    assert_ne!(a.properties.version, b.properties.version);
    // The first spelling is kept for ids.
    assert_eq!(b.properties.name, "MySecret");
    let latest = f.secrets.get("v", "MYSECRET", None).await.unwrap();
    assert_eq!(latest.value, "two");
    let latest_empty = f.secrets.get("v", "MYSECRET", Some("")).await.unwrap();
    assert_eq!(latest_empty.properties.version, b.properties.version);
    let old = f
        .secrets
        .get("v", "mysecret", Some(&a.properties.version))
        .await
        .unwrap();
    assert_eq!(old.value, "one");
    assert_eq!(old.properties.created, T0);
    assert!(old.properties.enabled);
    let missing = f
        .secrets
        .get("v", "mysecret", Some("0123456789abcdef0123456789abcdef"))
        .await;
    assert!(matches!(
        missing,
        Err(EngineError::NotFound {
            kind: ObjectKind::Secret,
            ..
        })
    ));
    assert!(matches!(
        f.secrets.get("v", "nope", None).await,
        Err(EngineError::NotFound { .. })
    ));
}

#[tokio::test]
async fn unknown_vault_is_reported_for_every_operation() {
    let f = fixture().await;
    assert!(matches!(
        f.secrets.set("w", "a", val("x"), None).await,
        Err(EngineError::VaultNotFound(_))
    ));
    assert!(matches!(
        f.secrets.get("w", "a", None).await,
        Err(EngineError::VaultNotFound(_))
    ));
    assert!(matches!(
        f.secrets.list("w", None, None).await,
        Err(EngineError::VaultNotFound(_))
    ));
    assert!(matches!(
        f.secrets.delete("w", "a", None).await,
        Err(EngineError::VaultNotFound(_))
    ));
    assert!(matches!(
        f.secrets.list_deleted("w", None, None).await,
        Err(EngineError::VaultNotFound(_))
    ));
    assert!(matches!(
        f.secrets.get("bad/vault", "a", None).await,
        Err(EngineError::VaultNotFound(_))
    ));
}

#[tokio::test]
async fn retried_set_after_lost_answer_creates_one_version() {
    for store in [MemStore::new(), MemStore::remembering_failures()] {
        let f = fixture_with(store).await;
        f.store.lose_next_answers(1);
        let first = f.secrets.set("v", "s", val("x"), Some("req-1")).await;
        assert!(matches!(
            first,
            Err(EngineError::Store(StoreError::Unavailable(_)))
        ));
        let retry = f
            .secrets
            .set("v", "s", val("x"), Some("req-1"))
            .await
            .unwrap();
        let again = f
            .secrets
            .set("v", "s", val("x"), Some("req-1"))
            .await
            .unwrap();
        assert_eq!(retry.properties.version, again.properties.version);
        assert_eq!(version_keys(&f.store, "s"), 1);
        let got = f.secrets.get("v", "s", None).await.unwrap();
        assert_eq!(got.properties.version, retry.properties.version);
        // A different request id is a different write.
        f.secrets
            .set("v", "s", val("y"), Some("req-2"))
            .await
            .unwrap();
        assert_eq!(version_keys(&f.store, "s"), 2);
    }
}

/// The answer a set keeps with its request id (and that its log entry
/// carries) has no value: a 25 KiB secret is stored once, in its version.
/// A retry still answers with the value.
#[tokio::test]
async fn a_sets_kept_answer_leaves_the_value_out_and_a_retry_still_gets_it() {
    let f = fixture().await;
    let value = "v".repeat(crate::secrets::MAX_VALUE_BYTES);
    let first = f
        .secrets
        .set("v", "big", val(&value), Some("req-big"))
        .await
        .unwrap();
    assert_eq!(first.value, value);
    let kept = crate::cas::replay_if_applied(&*f.store, Some("req-big"))
        .await
        .unwrap()
        .expect("the set's answer is kept");
    assert!(
        kept.result.len() < 1024,
        "kept answer is {} bytes",
        kept.result.len()
    );
    assert!(!kept
        .result
        .windows(64)
        .any(|w| w == &value.as_bytes()[..64]));
    let retry = f
        .secrets
        .set("v", "big", val(&value), Some("req-big"))
        .await
        .unwrap();
    assert_eq!(retry.properties, first.properties);
    assert_eq!(retry.value, value);
    assert_eq!(version_keys(&f.store, "big"), 1);
}

/// A set retried after an upgrade finds the whole secret that the older
/// build kept as its answer, and reads it as the new answer.
#[test]
fn the_answer_older_builds_kept_still_decodes() {
    let old = Secret {
        properties: SecretProperties {
            name: "s".into(),
            version: "0123456789abcdef0123456789abcdef".into(),
            content_type: None,
            enabled: true,
            nbf: None,
            exp: Some(5),
            created: 1,
            updated: 2,
            tags: None,
            kid: None,
            managed: None,
        },
        value: "x".into(),
    };
    // Older builds wrote every field, `null`s included.
    let json = serde_json::to_vec(&serde_json::json!({
        "properties": {
            "name": "s", "version": "0123456789abcdef0123456789abcdef",
            "content_type": null, "enabled": true, "nbf": null, "exp": 5,
            "created": 1, "updated": 2, "tags": null, "kid": null, "managed": null
        },
        "value": "x"
    }))
    .unwrap();
    let answer: SetAnswer = serde_json::from_slice(&json).unwrap();
    assert_eq!(answer.properties, old.properties);
}

#[tokio::test]
async fn concurrent_sets_all_succeed_with_distinct_versions() {
    for store in [MemStore::new(), MemStore::remembering_failures()] {
        let f = Arc::new(fixture_with(store).await);
        let mut tasks = Vec::new();
        for i in 0..8 {
            let f = f.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("req-{i}");
                f.secrets
                    .set("v", "s", val(&format!("v{i}")), Some(&id))
                    .await
            }));
        }
        let mut versions = std::collections::BTreeSet::new();
        for t in tasks {
            versions.insert(t.await.unwrap().unwrap().properties.version);
        }
        assert_eq!(versions.len(), 8);
        assert_eq!(version_keys(&f.store, "s"), 8);
        // The writers really raced: some compare-and-set attempts lost.
        assert!(f.store.commit_count() > 1 + 8, "no contention exercised");
        let page = f.secrets.list_versions("v", "s", None, None).await.unwrap();
        assert_eq!(page.items.len(), 8);
    }
}

#[tokio::test]
async fn validation_errors_change_nothing() {
    let f = fixture().await;
    f.secrets.set("v", "s", val("keep"), None).await.unwrap();
    let keys = f.store.keys();
    let commits = f.store.commit_count();
    let big = val(&"x".repeat(MAX_VALUE_BYTES + 1));
    assert!(matches!(
        f.secrets.set("v", "s", big, None).await,
        Err(EngineError::BadParameter(_))
    ));
    let tags16: BTreeMap<_, _> = (0..16)
        .map(|i| (format!("t{i}"), "v".to_string()))
        .collect();
    let with_tags = SetSecret {
        tags: Some(tags16.clone()),
        ..val("x")
    };
    assert!(matches!(
        f.secrets.set("v", "s", with_tags, None).await,
        Err(EngineError::BadParameter(_))
    ));
    let long_tag = SetSecret {
        tags: Some([("k".to_string(), "v".repeat(257))].into()),
        ..val("x")
    };
    assert!(matches!(
        f.secrets.set("v", "s", long_tag, None).await,
        Err(EngineError::BadParameter(_))
    ));
    assert!(matches!(
        f.secrets.set("v", "bad_name", val("x"), None).await,
        Err(EngineError::BadParameter(_))
    ));
    assert!(matches!(
        f.secrets.set("v", &"a".repeat(128), val("x"), None).await,
        Err(EngineError::BadParameter(_))
    ));
    let patch = UpdateSecret {
        tags: Some(tags16),
        ..Default::default()
    };
    assert!(matches!(
        f.secrets.update("v", "s", None, patch, None).await,
        Err(EngineError::BadParameter(_))
    ));
    assert!(matches!(
        f.secrets.list("v", Some(0), None).await,
        Err(EngineError::BadParameter(_))
    ));
    assert!(matches!(
        f.secrets.list("v", Some(26), None).await,
        Err(EngineError::BadParameter(_))
    ));
    assert_eq!(f.store.keys(), keys);
    assert_eq!(f.store.commit_count(), commits);
    // Exactly at the limits is fine.
    let edge = SetSecret {
        tags: Some(
            (0..15)
                .map(|i| (format!("{i}{}", "k".repeat(250)), "v".repeat(256)))
                .collect(),
        ),
        ..val(&"é".repeat(MAX_VALUE_BYTES / 2))
    };
    f.secrets.set("v", "s", edge, None).await.unwrap();
}

#[tokio::test]
async fn disabled_version_cannot_be_read_but_window_is_not_enforced() {
    let f = fixture().await;
    let s = SetSecret {
        enabled: Some(false),
        nbf: Some((T0 + 1000) as i64),
        ..val("x")
    };
    let created = f.secrets.set("v", "s", s, None).await.unwrap();
    assert!(!created.properties.enabled);
    assert!(matches!(
        f.secrets.get("v", "s", None).await,
        Err(EngineError::Disabled { .. })
    ));
    let patch = UpdateSecret {
        enabled: Some(true),
        ..Default::default()
    };
    f.now.store(T0 + 5, Ordering::SeqCst);
    let updated = f
        .secrets
        .update("v", "s", None, patch, Some("u1"))
        .await
        .unwrap();
    assert!(updated.enabled);
    assert_eq!(updated.updated, T0 + 5);
    assert_eq!(updated.created, T0);
    // Before nbf, get still works (as in Key Vault).
    assert_eq!(f.secrets.get("v", "s", None).await.unwrap().value, "x");
}

#[tokio::test]
async fn update_changes_only_given_fields_of_the_given_version() {
    let f = fixture().await;
    let first = SetSecret {
        content_type: Some("text/plain".into()),
        tags: Some([("a".to_string(), "1".to_string())].into()),
        exp: Some(99),
        ..val("one")
    };
    let a = f.secrets.set("v", "s", first, None).await.unwrap();
    let b = f.secrets.set("v", "s", val("two"), None).await.unwrap();
    let patch = UpdateSecret {
        tags: Some([("b".to_string(), "2".to_string())].into()),
        ..Default::default()
    };
    let p = f
        .secrets
        .update("v", "s", Some(&a.properties.version), patch, None)
        .await
        .unwrap();
    assert_eq!(p.version, a.properties.version);
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.exp, Some(99));
    assert_eq!(p.tags, Some([("b".to_string(), "2".to_string())].into()));
    let latest = f.secrets.get("v", "s", None).await.unwrap();
    assert_eq!(latest.properties.version, b.properties.version);
    assert_eq!(latest.properties.tags, None);
    assert_eq!(
        f.secrets
            .get("v", "s", Some(&a.properties.version))
            .await
            .unwrap()
            .value,
        "one"
    );
}

#[tokio::test]
async fn soft_delete_recover_and_purge() {
    let f = fixture().await;
    f.secrets.set("v", "Gone", val("x"), None).await.unwrap();
    f.secrets.set("v", "other", val("y"), None).await.unwrap();
    let d = f.secrets.delete("v", "gone", Some("d1")).await.unwrap();
    assert_eq!(d.properties.name, "Gone");
    assert_eq!(d.deleted_date, T0);
    assert_eq!(d.scheduled_purge_date, T0 + 90 * 86_400);
    assert!(matches!(
        f.secrets.get("v", "gone", None).await,
        Err(EngineError::NotFound { .. })
    ));
    assert!(matches!(
        f.secrets.set("v", "GONE", val("z"), Some("s9")).await,
        Err(EngineError::DeletedButRecoverable { .. })
    ));
    assert!(matches!(
        f.secrets.delete("v", "gone", Some("d2")).await,
        Err(EngineError::NotFound { .. })
    ));
    let live: Vec<_> = f.secrets.list("v", None, None).await.unwrap().items;
    assert_eq!(
        live.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["other"]
    );
    let deleted = f.secrets.list_deleted("v", None, None).await.unwrap().items;
    assert_eq!(deleted, vec![d.clone()]);
    assert_eq!(f.secrets.get_deleted("v", "GONE").await.unwrap(), d);
    assert!(matches!(
        f.secrets.get_deleted("v", "other").await,
        Err(EngineError::NotFound {
            kind: ObjectKind::DeletedSecret,
            ..
        })
    ));
    assert!(matches!(
        f.secrets.purge("v", "other", None).await,
        Err(EngineError::NotFound { .. })
    ));

    let r = f.secrets.recover("v", "gone", Some("r1")).await.unwrap();
    assert_eq!(r.name, "Gone");
    assert_eq!(f.secrets.get("v", "gone", None).await.unwrap().value, "x");
    assert!(matches!(
        f.secrets.get_deleted("v", "gone").await,
        Err(EngineError::NotFound { .. })
    ));

    f.secrets.delete("v", "gone", Some("d3")).await.unwrap();
    f.secrets.purge("v", "gone", Some("p1")).await.unwrap();
    assert!(f
        .store
        .keys()
        .iter()
        .all(|k| !k.ends_with(b"/gone") && !k.starts_with(b"sv/v/gone/")));
    // The name is free again.
    f.secrets.set("v", "gone", val("new"), None).await.unwrap();
}

#[tokio::test]
async fn retried_delete_after_lost_answer_returns_first_result() {
    for store in [MemStore::new(), MemStore::remembering_failures()] {
        let f = fixture_with(store).await;
        f.secrets.set("v", "s", val("x"), None).await.unwrap();
        f.store.lose_next_answers(1);
        assert!(f.secrets.delete("v", "s", Some("d1")).await.is_err());
        let d = f.secrets.delete("v", "s", Some("d1")).await.unwrap();
        assert_eq!(d.deleted_date, T0);
        f.store.lose_next_answers(1);
        assert!(f.secrets.purge("v", "s", Some("p1")).await.is_err());
        f.secrets.purge("v", "s", Some("p1")).await.unwrap();
        assert!(matches!(
            f.secrets.purge("v", "s", Some("p2")).await,
            Err(EngineError::NotFound { .. })
        ));
    }
}

#[tokio::test]
async fn purge_expired_removes_only_due_secrets() {
    let f = fixture().await;
    f.secrets.set("v", "early", val("x"), None).await.unwrap();
    f.secrets.set("v", "late", val("x"), None).await.unwrap();
    f.secrets.set("v", "live", val("x"), None).await.unwrap();
    f.secrets.delete("v", "early", None).await.unwrap();
    f.now.store(T0 + 10, Ordering::SeqCst);
    f.secrets.delete("v", "late", None).await.unwrap();
    assert_eq!(
        f.secrets.purge_expired(T0 + 90 * 86_400 - 1).await.unwrap(),
        0
    );
    assert_eq!(f.secrets.purge_expired(T0 + 90 * 86_400).await.unwrap(), 1);
    assert!(f.secrets.get_deleted("v", "early").await.is_err());
    assert!(f.secrets.get_deleted("v", "late").await.is_ok());
    assert_eq!(f.secrets.purge_expired(u64::MAX / 2).await.unwrap(), 1);
    assert_eq!(version_keys(&f.store, "late"), 0);
    assert!(f.secrets.get("v", "live", None).await.is_ok());
}

#[tokio::test]
async fn paging_walks_every_item_once() {
    let f = fixture().await;
    for i in 0..30 {
        f.secrets
            .set("v", &format!("s{i:02}"), val("x"), None)
            .await
            .unwrap();
    }
    f.secrets.delete("v", "s05", None).await.unwrap();
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = f
            .secrets
            .list("v", Some(7), token.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 7);
        names.extend(page.items.into_iter().map(|p| p.name));
        pages += 1;
        match page.skiptoken {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 5);
    let expected: Vec<_> = (0..30)
        .filter(|i| *i != 5)
        .map(|i| format!("s{i:02}"))
        .collect();
    assert_eq!(names, expected);
    let all = f.secrets.list("v", None, None).await.unwrap();
    assert_eq!(all.items.len(), 25);
    assert!(all.skiptoken.is_some());
    assert!(matches!(
        f.secrets.list("v", None, Some("%%%")).await,
        Err(EngineError::BadParameter(_))
    ));

    for i in 0..5 {
        f.secrets
            .set("v", "multi", val(&i.to_string()), None)
            .await
            .unwrap();
    }
    let p1 = f
        .secrets
        .list_versions("v", "multi", Some(3), None)
        .await
        .unwrap();
    let p2 = f
        .secrets
        .list_versions("v", "multi", Some(3), p1.skiptoken.as_deref())
        .await
        .unwrap();
    assert_eq!((p1.items.len(), p2.items.len()), (3, 2));
    assert!(p2.skiptoken.is_none());
    assert!(f
        .secrets
        .list_versions("v", "absent", None, None)
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn backup_restore_roundtrip_and_conflicts() {
    let f = fixture().await;
    VaultsEngine::new(f.store.clone())
        .create("w", None)
        .await
        .unwrap();
    let a = f.secrets.set("v", "Bk", val("one"), None).await.unwrap();
    let b = f.secrets.set("v", "bk", val("two"), None).await.unwrap();
    let blob = f.secrets.backup("v", "bk").await.unwrap();
    assert!(
        !blob.windows(3).any(|w| w == b"two"),
        "backup must be opaque"
    );

    // Exists live → conflict; deleted → deleted-but-recoverable.
    assert!(matches!(
        f.secrets.restore("v", &blob, None).await,
        Err(EngineError::Conflict(_))
    ));
    f.secrets.delete("v", "bk", None).await.unwrap();
    assert!(matches!(
        f.secrets.restore("v", &blob, None).await,
        Err(EngineError::DeletedButRecoverable { .. })
    ));
    f.secrets.purge("v", "bk", None).await.unwrap();

    let restored = f.secrets.restore("v", &blob, Some("rs1")).await.unwrap();
    assert_eq!(restored.name, "Bk");
    assert_eq!(restored.version, b.properties.version);
    assert_eq!(f.secrets.get("v", "bk", None).await.unwrap().value, "two");
    assert_eq!(
        f.secrets
            .get("v", "bk", Some(&a.properties.version))
            .await
            .unwrap()
            .value,
        "one"
    );
    // A retry of the same restore is answered with the first result.
    assert_eq!(
        f.secrets.restore("v", &blob, Some("rs1")).await.unwrap(),
        restored
    );
    // Into another vault of the cluster.
    f.secrets.restore("w", &blob, None).await.unwrap();
    assert_eq!(f.secrets.get("w", "bk", None).await.unwrap().value, "two");

    let keys = f.store.keys();
    for bad in [
        &b"garbage"[..],
        &blob[..blob.len() - 1],
        &f.store.seal_blob(b"other", b"{}").unwrap(),
    ] {
        assert!(matches!(
            f.secrets.restore("v", bad, None).await,
            Err(EngineError::MalformedBackup)
        ));
    }
    let wrong_json = f.store.seal_blob(BACKUP_PURPOSE, b"{\"x\":1}").unwrap();
    assert!(matches!(
        f.secrets.restore("v", &wrong_json, None).await,
        Err(EngineError::MalformedBackup)
    ));
    // One version named twice: one record would be stored and the other
    // answered (found by fuzzing).
    let forged = crate::object::with_repeated_version(f.store.as_ref(), BACKUP_PURPOSE, &blob);
    assert!(matches!(
        f.secrets.restore("v", &forged, None).await,
        Err(EngineError::MalformedBackup)
    ));
    assert_eq!(f.store.keys(), keys);
    assert!(matches!(
        f.secrets.backup("v", "absent").await,
        Err(EngineError::NotFound { .. })
    ));
}

#[tokio::test]
async fn backup_refuses_more_than_500_versions() {
    let f = fixture().await;
    for _ in 0..=MAX_BACKUP_VERSIONS {
        f.secrets.set("v", "many", val("x"), None).await.unwrap();
    }
    assert!(matches!(
        f.secrets.backup("v", "many").await,
        Err(EngineError::BadParameter(_))
    ));
}

#[tokio::test]
async fn sealed_store_surfaces_as_store_error() {
    let f = fixture().await;
    f.store.set_sealed(true);
    assert!(matches!(
        f.secrets.get("v", "s", None).await,
        Err(EngineError::Store(StoreError::Sealed))
    ));
    assert!(matches!(
        f.secrets.restore("v", b"whatever", None).await,
        Err(EngineError::Store(StoreError::Sealed))
    ));
}

#[tokio::test]
async fn write_on_fresh_state_needs_no_read_fence() {
    let f = fixture().await;
    let fences = f.store.fence_count();
    f.secrets.set("v", "s", val("x"), Some("r1")).await.unwrap();
    f.secrets
        .update("v", "s", None, UpdateSecret::default(), Some("r2"))
        .await
        .unwrap();
    f.secrets.delete("v", "s", Some("r3")).await.unwrap();
    assert_eq!(f.store.fence_count(), fences);
}

#[tokio::test]
async fn write_built_on_stale_state_fences_and_retries() {
    for store in [MemStore::new(), MemStore::remembering_failures()] {
        let f = fixture_with(store).await;
        f.secrets.set("v", "s", val("one"), None).await.unwrap();
        let stale = f.store.snapshot();
        let two = f.secrets.set("v", "s", val("two"), None).await.unwrap();
        f.store.lag_behind(stale);
        let (fences, commits) = (f.store.fence_count(), f.store.commit_count());
        let three = f
            .secrets
            .set("v", "s", val("three"), Some("r"))
            .await
            .unwrap();
        // The stale plan lost its comparison; the write fenced and retried
        // (a store that remembers failed ids costs one more round).
        assert!(f.store.fence_count() > fences);
        assert!(f.store.commit_count() >= commits + 2);
        assert_eq!(version_keys(&f.store, "s"), 3);
        let got = f.secrets.get("v", "s", None).await.unwrap();
        assert_eq!(got.properties.version, three.properties.version);
        assert_ne!(got.properties.version, two.properties.version);
        assert_eq!(got.value, "three");
    }
}

#[tokio::test]
async fn state_derived_errors_are_not_answered_from_stale_state() {
    let f = fixture().await;
    f.secrets.set("v", "s", val("x"), None).await.unwrap();
    f.secrets.delete("v", "s", None).await.unwrap();
    let shows_deleted = f.store.snapshot();
    f.secrets.recover("v", "s", None).await.unwrap();
    f.store.lag_behind(shows_deleted.clone());
    // The lagging replica still shows the secret deleted: not a 409.
    f.secrets.set("v", "s", val("y"), None).await.unwrap();
    // Not a 404 for a secret the replica has not seen yet either.
    let before_new = f.store.snapshot();
    f.secrets.set("v", "fresh", val("z"), None).await.unwrap();
    f.store.lag_behind(before_new.clone());
    f.secrets
        .update("v", "fresh", None, UpdateSecret::default(), None)
        .await
        .unwrap();
    f.store.lag_behind(before_new);
    f.secrets.delete("v", "fresh", None).await.unwrap();
    // Nor VaultNotFound for a vault created after the replica's snapshot.
    let before_vault = f.store.snapshot();
    VaultsEngine::new(f.store.clone())
        .create("w", None)
        .await
        .unwrap();
    f.store.lag_behind(before_vault);
    f.secrets.set("w", "s", val("x"), None).await.unwrap();
    // A true state-derived error still comes back, after a fence.
    f.store.lag_behind(shows_deleted);
    let fences = f.store.fence_count();
    assert!(matches!(
        f.secrets.recover("v", "s", None).await,
        Err(EngineError::NotFound { .. })
    ));
    assert_eq!(f.store.fence_count(), fences + 1);
}

#[tokio::test]
async fn retried_request_id_on_stale_replica_returns_first_outcome() {
    for store in [MemStore::new(), MemStore::remembering_failures()] {
        let f = fixture_with(store).await;
        let before = f.store.snapshot();
        f.store.lose_next_answers(1);
        assert!(f.secrets.set("v", "s", val("x"), Some("r1")).await.is_err());
        // The retry lands on a replica that has not applied the first attempt.
        f.store.lag_behind(before.clone());
        let retry = f.secrets.set("v", "s", val("x"), Some("r1")).await.unwrap();
        assert_eq!(version_keys(&f.store, "s"), 1);
        let got = f.secrets.get("v", "s", None).await.unwrap();
        assert_eq!(got.properties.version, retry.properties.version);
        // A delete whose answer was lost, retried after the secret was
        // recovered, on a replica that still shows it deleted: first outcome.
        f.store.lose_next_answers(1);
        assert!(f.secrets.delete("v", "s", Some("d1")).await.is_err());
        let shows_deleted = f.store.snapshot();
        f.secrets.recover("v", "s", None).await.unwrap();
        f.store.lag_behind(shows_deleted);
        let again = f.secrets.delete("v", "s", Some("d1")).await.unwrap();
        assert_eq!(again.properties.version, retry.properties.version);
        assert!(
            f.secrets.get("v", "s", None).await.is_ok(),
            "not re-deleted"
        );
    }
}
