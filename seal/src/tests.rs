//! Unit tests of the seal manager, init and the seal records.

use super::*;

fn submit_all(
    m: &SealManager,
    shares: &[&Zeroizing<String>],
    stored: &StoredSeal,
) -> Result<SealStatus, SealError> {
    let mut last = Err(SealError::Sealed);
    for s in shares {
        last = Ok(m.submit_share(s, stored)?);
    }
    last
}

#[test]
fn init_5_of_3_unseals_with_any_three_shares() {
    let init = initialize(5, 3).unwrap();
    assert_eq!(init.shares.len(), 5);
    let ct = init.barrier.encrypt(b"s/v/name", b"top secret").unwrap();
    for pick in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
        let m = SealManager::new();
        let shares: Vec<_> = pick.iter().map(|&i| &init.shares[i]).collect();
        let st = submit_all(&m, &shares, &init.stored).unwrap();
        assert!(!st.sealed);
        assert_eq!((st.progress, st.nonce), (0, None));
        let b = m.barrier().expect("unsealed");
        assert_eq!(&b.decrypt(b"s/v/name", &ct).unwrap()[..], b"top secret");
    }
}

#[test]
fn below_threshold_stays_sealed_with_progress() {
    let init = initialize(5, 3).unwrap();
    let m = SealManager::new();
    let st = submit_all(&m, &[&init.shares[0], &init.shares[3]], &init.stored).unwrap();
    assert_eq!(
        (st.sealed, st.progress, st.threshold, st.shares),
        (true, 2, 3, 5)
    );
    assert!(st.nonce.is_some());
    assert!(m.is_sealed() && m.barrier().is_none());
}

#[test]
fn duplicate_share_is_not_counted_twice() {
    let init = initialize(3, 2).unwrap();
    let m = SealManager::new();
    m.submit_share(&init.shares[1], &init.stored).unwrap();
    // Same share, different spelling.
    let again = m
        .submit_share(
            &format!(" {} ", init.shares[1].to_uppercase()),
            &init.stored,
        )
        .unwrap();
    assert_eq!((again.sealed, again.progress), (true, 1));
    assert!(
        !m.submit_share(&init.shares[2], &init.stored)
            .unwrap()
            .sealed
    );
}

#[test]
fn mixed_share_sets_are_rejected_and_reset() {
    let a = initialize(5, 3).unwrap();
    let b = initialize(5, 3).unwrap();
    let m = SealManager::new();
    submit_all(&m, &[&a.shares[0], &a.shares[1]], &a.stored).unwrap();
    let nonce = m.status(Some(&a.stored.config)).nonce;
    let err = m.submit_share(&b.shares[2], &a.stored).unwrap_err();
    assert_eq!(err, SealError::WrongShares);
    assert_eq!(
        err.to_string(),
        "the submitted shares do not reconstruct the unseal key: wrong or mixed share set; progress has been reset"
    );
    let st = m.status(Some(&a.stored.config));
    assert_eq!((st.sealed, st.progress), (true, 0));
    assert_ne!(st.nonce, nonce);
    // A full, consistent set of the other seal cannot open this one either.
    let err = submit_all(&m, &[&b.shares[0], &b.shares[1], &b.shares[2]], &a.stored);
    assert_eq!(err.unwrap_err(), SealError::WrongShares);
    assert!(m.is_sealed());
    assert_eq!(m.status(Some(&a.stored.config)).progress, 0);
    // Progress works normally afterwards.
    assert!(
        !submit_all(&m, &[&a.shares[2], &a.shares[3], &a.shares[4]], &a.stored)
            .unwrap()
            .sealed
    );
}

#[test]
fn malformed_share_is_invalid_and_keeps_progress() {
    let init = initialize(5, 3).unwrap();
    let m = SealManager::new();
    m.submit_share(&init.shares[0], &init.stored).unwrap();
    let mut garbled = init.shares[1].to_string();
    garbled.replace_range(10..12, "zz");
    for bad in [garbled.as_str(), &init.shares[1][..100], "", "not a share"] {
        let err = m.submit_share(bad, &init.stored).unwrap_err();
        assert!(matches!(err, SealError::InvalidShare(_)), "{err:?}");
        if bad.len() > 20 {
            assert!(
                !err.to_string().contains(&bad[..20]),
                "error echoes the share"
            );
        }
    }
    assert_eq!(m.status(Some(&init.stored.config)).progress, 1);
}

#[test]
fn one_of_one_dev_mode() {
    let init = initialize(1, 1).unwrap();
    assert_eq!(init.shares.len(), 1);
    let m = SealManager::new();
    let st = m.submit_share(&init.shares[0], &init.stored).unwrap();
    assert!(!st.sealed);
    let ct = init.barrier.encrypt(b"k", b"v").unwrap();
    assert_eq!(&m.barrier().unwrap().decrypt(b"k", &ct).unwrap()[..], b"v");

    // The key of another 1-of-1 seal is rejected, never accepted as a wrong key.
    let other = initialize(1, 1).unwrap();
    let m2 = SealManager::new();
    let err = m2.submit_share(&other.shares[0], &init.stored).unwrap_err();
    assert_eq!(err, SealError::WrongShares);
    assert!(m2.is_sealed());

    // A tampered key (still valid hex) is rejected too.
    let mut bytes = hex::decode(init.shares[0].as_str()).unwrap();
    bytes[7] ^= 0x40;
    let err = m2
        .submit_share(&hex::encode(bytes), &init.stored)
        .unwrap_err();
    assert_eq!(err, SealError::WrongShares);
    assert!(m2.is_sealed());
}

#[test]
fn seal_drops_barrier_and_requires_shares_again() {
    let init = initialize(3, 2).unwrap();
    let m = SealManager::new();
    m.unseal_with(&init);
    assert!(m.barrier().is_some());
    assert_eq!(m.status(Some(&init.stored.config)).nonce, None);
    m.seal();
    assert!(m.barrier().is_none() && m.is_sealed());
    assert_eq!(m.rotate_keyring().unwrap_err(), SealError::Sealed);
    assert_eq!(
        m.reload_keyring(&init.stored.keyring_record).unwrap_err(),
        SealError::Sealed
    );
    let st = submit_all(&m, &[&init.shares[0], &init.shares[2]], &init.stored).unwrap();
    assert!(!st.sealed);
}

#[test]
fn reset_clears_progress_and_changes_nonce() {
    let init = initialize(5, 3).unwrap();
    let m = SealManager::new();
    m.submit_share(&init.shares[0], &init.stored).unwrap();
    let before = m.status(Some(&init.stored.config));
    assert_eq!(before.progress, 1);
    m.reset();
    let after = m.status(Some(&init.stored.config));
    assert_eq!(after.progress, 0);
    assert!(after.nonce.is_some());
    assert_ne!(after.nonce, before.nonce);
}

#[test]
fn status_without_config_reports_zero_parameters() {
    let m = SealManager::new();
    let st = m.status(None);
    assert_eq!(
        (st.sealed, st.threshold, st.shares, st.progress),
        (true, 0, 0, 0)
    );
}

#[test]
fn rotation_is_applied_through_reload_on_every_node() {
    let init = initialize(3, 2).unwrap();
    let leader = SealManager::new();
    leader.unseal_with(&init);
    let follower = SealManager::new();
    submit_all(&follower, &[&init.shares[0], &init.shares[1]], &init.stored).unwrap();
    let old_ct = leader.barrier().unwrap().encrypt(b"k", b"old").unwrap();

    let (record, term) = leader.rotate_keyring().unwrap();
    assert_eq!(term, 2);
    // Not active until the replicated record is applied.
    assert_eq!(leader.barrier().unwrap().active_term(), 1);
    for node in [&leader, &follower] {
        node.reload_keyring(&record).unwrap();
        let b = node.barrier().unwrap();
        assert_eq!(b.active_term(), 2);
        assert_eq!(&b.decrypt(b"k", &old_ct).unwrap()[..], b"old");
    }
    let new_ct = follower.barrier().unwrap().encrypt(b"k", b"new").unwrap();
    assert_eq!(&new_ct[..4], &2u32.to_be_bytes());
    assert_eq!(
        &leader.barrier().unwrap().decrypt(b"k", &new_ct).unwrap()[..],
        b"new"
    );

    // Reloading the same record again is harmless.
    follower.reload_keyring(&record).unwrap();
    // A stale record does not roll the keyring back.
    follower
        .reload_keyring(&init.stored.keyring_record)
        .unwrap();
    assert_eq!(follower.barrier().unwrap().active_term(), 2);
    // A competing rotation from the old keyring (same term, other key) is refused.
    let racer = SealManager::new();
    racer.unseal_with(&init);
    let (conflicting, term) = racer.rotate_keyring().unwrap();
    assert_eq!(term, 2);
    assert!(matches!(
        follower.reload_keyring(&conflicting),
        Err(SealError::Corrupt(_))
    ));
    assert_eq!(
        &follower.barrier().unwrap().decrypt(b"k", &new_ct).unwrap()[..],
        b"new"
    );
    // A record under another root key is rejected.
    let other = initialize(1, 1).unwrap();
    assert!(matches!(
        follower.reload_keyring(&other.stored.keyring_record),
        Err(SealError::Corrupt(_))
    ));
}

#[test]
fn invalid_parameters_are_rejected() {
    for (n, k) in [(0, 0), (0, 1), (3, 0), (3, 4)] {
        assert!(
            matches!(initialize(n, k), Err(SealError::InvalidConfig(_))),
            "{n}/{k}"
        );
    }
    let bad = StoredSeal {
        config: SealConfig {
            shares: 2,
            threshold: 3,
            seal_type: SealType::Shamir,
        },
        ..initialize(1, 1).unwrap().stored
    };
    let share = initialize(1, 1).unwrap().shares[0].clone();
    assert!(matches!(
        SealManager::new().submit_share(&share, &bad),
        Err(SealError::InvalidConfig(_))
    ));
}

#[test]
fn damaged_root_key_record_is_corrupt_not_wrong_shares() {
    let init = initialize(1, 1).unwrap();
    let mut stored = init.stored.clone();
    stored.root_key_record.truncate(10);
    let err = SealManager::new()
        .submit_share(&init.shares[0], &stored)
        .unwrap_err();
    assert!(matches!(err, SealError::Corrupt(_)), "{err:?}");
}

#[test]
fn seal_config_json_roundtrip() {
    let c = SealConfig {
        shares: 5,
        threshold: 3,
        seal_type: SealType::Pkcs11,
    };
    let json = c.to_json().unwrap();
    assert_eq!(SealConfig::from_json(&json).unwrap(), c);
    // Records written before seal types existed are Shamir.
    let old = SealConfig::from_json(br#"{"shares":5,"threshold":3}"#).unwrap();
    assert_eq!(old.seal_type, SealType::Shamir);
    assert!(SealConfig::from_json(br#"{"shares":2,"threshold":3}"#).is_err());
}

#[test]
fn debug_output_has_no_key_material() {
    let init = initialize(3, 2).unwrap();
    let m = SealManager::new();
    m.unseal_with(&init);
    let dbg = format!("{init:?} {init:#?} {:?} {m:?}", init.barrier);
    assert!(!debug_leaks(&dbg, &init.root_key[..]));
    let data_key = init.barrier.keyring().key(1).unwrap();
    assert!(!debug_leaks(&dbg, data_key));
    for s in &init.shares {
        assert!(!dbg.contains(&s[..16]));
    }
    assert!(dbg.contains("redacted"));
}
