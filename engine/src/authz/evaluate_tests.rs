//! The evaluator and role table, without a store.

use super::roles::*;
use super::tests::{assignment, caller, grants, path, v};
use super::*;

#[test]
fn wildcards_match_path_segments_case_insensitively() {
    assert!(matches(
        "Microsoft.KeyVault/vaults/*",
        &v("keys/sign/action")
    ));
    assert!(matches(&v("*/read"), &v("keys/read")));
    assert!(matches(&v("*/read"), &v("keyrotationpolicies/read")));
    assert!(!matches(&v("*/read"), &v("secrets/getSecret/action")));
    assert!(!matches(&v("*/read"), &v("secrets/readMetadata/action")));
    assert!(matches(&v("secrets/*"), &v("secrets/delete")));
    assert!(!matches(&v("secrets/*"), &v("keys/delete")));
    assert!(matches(
        "microsoft.keyvault/VAULTS/keys/SIGN/action",
        &v("keys/sign/action")
    ));
    assert!(!matches(&v("keys/read"), &v("keys/read/action")));
    assert!(!matches(&v("keys/sign"), &v("keys/sign/action")));
    assert!(matches("*", "anything/at/all"));
}

/// The allowed data actions of each vault built-in, written out from the
/// service's documentation, not derived from the definitions under test.
#[test]
fn vault_built_ins_allow_exactly_their_documented_data_actions() {
    let expect: &[(&str, &[&str])] = &[
        (ADMINISTRATOR, VAULT_DATA_ACTIONS),
        (
            READER,
            &[
                "secrets/readMetadata/action",
                "keys/read",
                "keyrotationpolicies/read",
                "certificates/read",
                "certificatecas/read",
            ],
        ),
        (
            SECRETS_OFFICER,
            &[
                "secrets/getSecret/action",
                "secrets/setSecret/action",
                "secrets/readMetadata/action",
                "secrets/update/action",
                "secrets/backup/action",
                "secrets/restore/action",
                "secrets/recover/action",
                "secrets/purge/action",
                "secrets/delete",
            ],
        ),
        (
            SECRETS_USER,
            &["secrets/getSecret/action", "secrets/readMetadata/action"],
        ),
        (
            CRYPTO_USER,
            &[
                "keys/read",
                "keys/update/action",
                "keys/backup/action",
                "keys/encrypt/action",
                "keys/decrypt/action",
                "keys/wrap/action",
                "keys/unwrap/action",
                "keys/sign/action",
                "keys/verify/action",
            ],
        ),
        (
            CRYPTO_SERVICE_ENCRYPTION_USER,
            &["keys/read", "keys/wrap/action", "keys/unwrap/action"],
        ),
        (CRYPTO_SERVICE_RELEASE_USER, &["keys/release/action"]),
        (
            CERTIFICATE_USER,
            &[
                "certificates/read",
                "secrets/getSecret/action",
                "secrets/readMetadata/action",
                "keys/read",
            ],
        ),
        (DATA_ACCESS_ADMINISTRATOR, &[]),
    ];
    for (id, allowed) in expect {
        let role = built_in(id).unwrap();
        for action in VAULT_DATA_ACTIONS {
            assert_eq!(
                role.grants(&v(action)),
                allowed.contains(action),
                "{} / {action}",
                role.role_name
            );
        }
    }
    // Coffer's revocation action: certificate managers hold it, the
    // Certificate User (read only) does not.
    let revoke = v("certificates/revoke/action");
    assert!(built_in(CERTIFICATES_OFFICER).unwrap().grants(&revoke));
    assert!(!built_in(CERTIFICATE_USER).unwrap().grants(&revoke));
    let officer = built_in(CRYPTO_OFFICER).unwrap();
    let granted: Vec<_> = VAULT_DATA_ACTIONS
        .iter()
        .filter(|a| officer.grants(&v(a)))
        .collect();
    assert_eq!(
        granted.len(),
        19,
        "17 key actions and 2 rotation-policy actions"
    );
    assert!(granted.iter().all(|a| a.starts_with("key")));
}

#[test]
fn built_ins_carry_the_real_ids_and_names() {
    assert_eq!(built_ins().len(), 20);
    assert_eq!(
        built_in("4633458B-17DE-408A-B874-0445C86B69E6")
            .unwrap()
            .role_name,
        "Key Vault Secrets User"
    );
    assert_eq!(
        built_in("a290e904-7015-4bba-90c8-60543313cdb4")
            .unwrap()
            .role_name,
        "Managed HSM Administrator"
    );
    let policy = built_in("4bd23610-cdcf-4971-bdee-bdc562cc28e4").unwrap();
    assert!(policy.grants("Microsoft.KeyVault/managedHsm/roleAssignments/write/action"));
    assert!(!policy.grants(ASSIGNMENTS_WRITE));
    assert!(!policy.grants(&v("keys/read")));
    // Role administration is part of the vault administrator's `*` and the
    // Data Access Administrator's rights, of no other vault role.
    for id in VAULT_BUILT_INS {
        let may = built_in(id).unwrap().grants(ASSIGNMENTS_WRITE);
        assert_eq!(
            may,
            [ADMINISTRATOR, DATA_ACCESS_ADMINISTRATOR].contains(id),
            "{id}"
        );
    }
}

#[test]
fn assignments_apply_at_their_scope_and_below_only() {
    let alice = "a1";
    let g = grants(vec![assignment(
        Some("dev"),
        "/keys/k1",
        alice,
        CRYPTO_USER,
    )]);
    let me = caller(alice);
    let sign = v("keys/sign/action");
    assert!(g.allows(&me, &path("/keys/k1"), &sign));
    assert!(g.allows(&me, &path("/KEYS/K1/"), &sign));
    assert!(!g.allows(&me, &path("/keys/k2"), &sign));
    assert!(!g.allows(&me, &path("/keys/k10"), &sign));
    assert!(!g.allows(&me, &path("/keys"), &sign));
    assert!(!g.allows(&me, &path("/"), &sign));
    assert!(!g.allows(&caller("b2"), &path("/keys/k1"), &sign));

    let g = grants(vec![assignment(Some("dev"), "/keys", alice, CRYPTO_USER)]);
    assert!(g.allows(&me, &path("/keys/any"), &sign));
    assert!(!g.allows(&me, &path("/secrets/any"), &sign));
    let g = grants(vec![assignment(Some("dev"), "/", alice, CRYPTO_USER)]);
    assert!(g.allows(&me, &path("/keys/any"), &sign));
    assert!(!g.allows(&me, &path("/keys/any"), &v("keys/delete")));
}

#[test]
fn not_data_actions_subtract_per_role_and_roles_unite() {
    let custom = RoleDefinition {
        id: "11111111-1111-1111-1111-111111111111".into(),
        role_name: "No purge".into(),
        description: String::new(),
        role_type: RoleType::Custom,
        permissions: vec![Permission {
            data_actions: vec![v("secrets/*")],
            not_data_actions: vec![v("secrets/purge/action"), v("*/delete")],
            ..Permission::default()
        }],
        assignable_scopes: vec!["/".into()],
    };
    let mut g = grants(vec![assignment(Some("dev"), "/", "a", &custom.id)]);
    g.custom.push(custom);
    let me = caller("a");
    assert!(g.allows(&me, &path("/secrets/s"), &v("secrets/setSecret/action")));
    assert!(!g.allows(&me, &path("/secrets/s"), &v("secrets/purge/action")));
    assert!(!g.allows(&me, &path("/secrets/s"), &v("secrets/delete")));
    // Another role granting purge makes it allowed: an exclusion is not a deny.
    g.assignments
        .push(assignment(Some("dev"), "/secrets/s", "a", SECRETS_OFFICER));
    assert!(g.allows(&me, &path("/secrets/s"), &v("secrets/purge/action")));
    assert!(!g.allows(&me, &path("/secrets/t"), &v("secrets/purge/action")));
}

#[test]
fn group_assignments_apply_to_members_and_mfa_conditions_ask_for_step_up() {
    let mut member = caller("u1");
    member.groups = vec!["g1".into()];
    let mut a = assignment(Some("dev"), "/", "g1", SECRETS_USER);
    a.require_mfa = true;
    let g = grants(vec![a]);
    let get = v("secrets/getSecret/action");
    assert_eq!(
        g.decide(&member, &path("/secrets/s"), &get),
        Decision::StepUp
    );
    member.mfa = true;
    assert_eq!(
        g.decide(&member, &path("/secrets/s"), &get),
        Decision::Allow
    );
    assert_eq!(
        g.decide(&member, &path("/secrets/s"), &v("secrets/setSecret/action")),
        Decision::Deny
    );
    assert_eq!(g.decide(&caller("u2"), &path("/"), &get), Decision::Deny);
}

#[test]
fn separation_of_duties_rules() {
    let admin = caller("admin");
    let daa = caller("daa");
    let g = grants(vec![
        assignment(Some("dev"), "/", "admin", ADMINISTRATOR),
        assignment(Some("dev"), "/", "daa", DATA_ACCESS_ADMINISTRATOR),
        assignment(Some("dev"), "/", "so", SECRETS_OFFICER),
    ]);
    let root = path("/");
    let role = |id| built_in(id).unwrap();
    // The administrator holds everything, so may grant anything.
    for id in VAULT_BUILT_INS {
        assert_eq!(
            g.may_change(&admin, &root, ASSIGNMENTS_WRITE, role(id)),
            Ok(())
        );
    }
    // The Data Access Administrator: the eight data roles only.
    for id in VAULT_BUILT_INS {
        let result = g.may_change(&daa, &root, ASSIGNMENTS_WRITE, role(id));
        assert_eq!(result.is_ok(), DATA_ROLES.contains(id), "{id}");
    }
    assert!(matches!(
        g.may_change(&daa, &root, ASSIGNMENTS_WRITE, role(ADMINISTRATOR)),
        Err(Refusal::NotDelegable(_))
    ));
    // A Secrets Officer cannot assign at all.
    assert!(matches!(
        g.may_change(&caller("so"), &root, ASSIGNMENTS_WRITE, role(SECRETS_USER)),
        Err(Refusal::Lacks(_))
    ));
    // An administrator of one object cannot grant at the vault.
    let g2 = grants(vec![assignment(
        Some("dev"),
        "/keys/k",
        "admin",
        ADMINISTRATOR,
    )]);
    assert!(g2
        .may_change(
            &admin,
            &path("/keys/k"),
            ASSIGNMENTS_WRITE,
            role(CRYPTO_USER)
        )
        .is_ok());
    assert!(g2
        .may_change(&admin, &root, ASSIGNMENTS_WRITE, role(CRYPTO_USER))
        .is_err());
}

#[test]
fn nobody_grants_more_than_they_hold() {
    let granter = RoleDefinition {
        id: "22222222-2222-2222-2222-222222222222".into(),
        role_name: "Secrets delegate".into(),
        description: String::new(),
        role_type: RoleType::Custom,
        permissions: vec![Permission {
            data_actions: vec![ASSIGNMENTS_WRITE.into(), v("secrets/*")],
            ..Permission::default()
        }],
        assignable_scopes: vec!["/".into()],
    };
    let mut g = grants(vec![assignment(Some("dev"), "/", "d", &granter.id)]);
    g.custom.push(granter);
    let d = caller("d");
    let root = path("/");
    assert_eq!(
        g.may_change(
            &d,
            &root,
            ASSIGNMENTS_WRITE,
            built_in(SECRETS_USER).unwrap()
        ),
        Ok(())
    );
    assert!(matches!(
        g.may_change(&d, &root, ASSIGNMENTS_WRITE, built_in(CRYPTO_USER).unwrap()),
        Err(Refusal::Exceeds(a)) if a.contains("keys/")
    ));
    assert!(matches!(
        g.may_change(
            &d,
            &root,
            ASSIGNMENTS_WRITE,
            built_in(CERTIFICATE_USER).unwrap()
        ),
        Err(Refusal::Exceeds(_))
    ));
}

#[test]
fn scopes_parse_strictly() {
    assert_eq!(path("").as_str(), "/");
    assert_eq!(path("/Keys/").as_str(), "/keys");
    assert_eq!(path("/secrets/My-Secret").as_str(), "/secrets/my-secret");
    for bad in [
        "/vaults",
        "/keys/a/b",
        "/keys/bad_name",
        "/../keys",
        "/keys//x",
    ] {
        assert!(ScopePath::parse(bad).is_err(), "{bad}");
    }
    assert!(!ScopePath::nothing().covers(&path("/")));
    assert!(!path("/keys/a").covers(&ScopePath::nothing()));
}

/// `caller(oid)` making its request from `addr`.
fn from(oid: &str, addr: &str) -> Caller {
    Caller {
        addr: Some(addr.parse().unwrap()),
        ..caller(oid)
    }
}

/// `assignment(…)` limited to `cidrs` (canonical, as the engine stores them).
fn limited(scope: &str, principal: &str, role: &str, cidrs: &[&str]) -> RoleAssignment {
    let mut a = assignment(Some("dev"), scope, principal, role);
    a.source_cidrs =
        crate::network::canonical_ranges("sourceCidrs", cidrs.iter().copied()).unwrap();
    a
}

#[test]
fn a_source_network_condition_admits_only_addresses_inside_it() {
    let g = grants(vec![limited(
        "/secrets",
        "app",
        SECRETS_USER,
        &["10.20.0.0/16", "2001:db8:20::/48"],
    )]);
    let get = v("secrets/getSecret/action");
    let at = path("/secrets/s");
    for inside in [
        "10.20.0.1",
        "10.20.255.254",
        "2001:db8:20::7",
        "::ffff:10.20.3.4",
    ] {
        assert_eq!(
            g.decide(&from("app", inside), &at, &get),
            Decision::Allow,
            "{inside}"
        );
    }
    for outside in [
        "10.21.0.1",
        "127.0.0.1",
        "2001:db8:21::7",
        "::1",
        "::ffff:10.21.3.4",
    ] {
        assert_eq!(
            g.decide(&from("app", outside), &at, &get),
            Decision::OutsideNetwork,
            "{outside}"
        );
    }
    // No address known (a request that did not come through a listener):
    // the condition cannot be shown to hold.
    assert_eq!(
        g.decide(&caller("app"), &at, &get),
        Decision::OutsideNetwork
    );
    // The condition says nothing about actions the role does not grant, or
    // other principals: those are plain denials.
    let inside = from("app", "10.20.0.1");
    assert_eq!(
        g.decide(&inside, &at, &v("secrets/setSecret/action")),
        Decision::Deny
    );
    assert_eq!(
        g.decide(&from("other", "10.21.0.1"), &at, &get),
        Decision::Deny
    );
    // An unconditioned assignment next to it lets the caller in from
    // anywhere: roles unite, the condition belongs to one assignment.
    let mut both = g.clone();
    both.assignments
        .push(assignment(Some("dev"), "/secrets/s", "app", SECRETS_USER));
    assert_eq!(
        both.decide(&from("app", "192.0.2.1"), &at, &get),
        Decision::Allow
    );
    assert_eq!(
        both.decide(&from("app", "192.0.2.1"), &path("/secrets/t"), &get),
        Decision::OutsideNetwork
    );
}

#[test]
fn network_and_mfa_conditions_combine_on_groups() {
    // A group's assignment requiring both a second factor and the office
    // network.
    let mut a = limited("/", "g1", CRYPTO_USER, &["192.0.2.0/24"]);
    a.require_mfa = true;
    let g = grants(vec![a]);
    let sign = v("keys/sign/action");
    let at = path("/keys/k1");
    let member = |addr: &str, mfa: bool| Caller {
        groups: vec!["g1".into()],
        mfa,
        ..from("u1", addr)
    };
    assert_eq!(
        g.decide(&member("192.0.2.9", true), &at, &sign),
        Decision::Allow
    );
    // In the network without the factor: stepping up helps.
    assert_eq!(
        g.decide(&member("192.0.2.9", false), &at, &sign),
        Decision::StepUp
    );
    // Outside, with or without it: stepping up would not.
    assert_eq!(
        g.decide(&member("198.51.100.1", false), &at, &sign),
        Decision::OutsideNetwork
    );
    assert_eq!(
        g.decide(&member("198.51.100.1", true), &at, &sign),
        Decision::OutsideNetwork
    );
    // Not a member: nothing matched.
    assert_eq!(
        g.decide(&from("u2", "192.0.2.9"), &at, &sign),
        Decision::Deny
    );
    // An MFA-only assignment elsewhere makes stepping up the way in.
    let mut g2 = g.clone();
    let mut mfa_only = assignment(Some("dev"), "/keys", "u1", CRYPTO_USER);
    mfa_only.require_mfa = true;
    g2.assignments.push(mfa_only);
    assert_eq!(
        g2.decide(&member("198.51.100.1", false), &at, &sign),
        Decision::StepUp
    );
}

#[test]
fn the_control_check_honours_the_network_condition_and_limited_admins_are_not_last_holders() {
    let g = grants(vec![
        limited("/", "admin", ADMINISTRATOR, &["10.0.0.0/8"]),
        limited("/", "daa", DATA_ACCESS_ADMINISTRATOR, &["fd00::/8"]),
    ]);
    let root = path("/");
    let role = |id| built_in(id).unwrap();
    // Inside its network the administrator grants anything, the Data
    // Access Administrator the data roles.
    assert_eq!(
        g.may_change(
            &from("admin", "10.1.1.1"),
            &root,
            ASSIGNMENTS_WRITE,
            role(ADMINISTRATOR)
        ),
        Ok(())
    );
    assert_eq!(
        g.may_change(
            &from("daa", "fd00::5"),
            &root,
            ASSIGNMENTS_WRITE,
            role(SECRETS_USER)
        ),
        Ok(())
    );
    // Outside it, it holds no assignment rights at all: neither to add nor
    // to remove.
    for control in [ASSIGNMENTS_WRITE, ASSIGNMENTS_DELETE] {
        assert!(matches!(
            g.may_change(&from("admin", "192.0.2.1"), &root, control, role(SECRETS_USER)),
            Err(Refusal::Lacks(a)) if a == control
        ));
        assert!(matches!(
            g.may_change(&from("daa", "fe80::5"), &root, control, role(SECRETS_USER)),
            Err(Refusal::Lacks(_))
        ));
    }
    // The data-action decision of roleAssignments/write says why.
    assert_eq!(
        g.decide(&from("admin", "192.0.2.1"), &root, ASSIGNMENTS_WRITE),
        Decision::OutsideNetwork
    );
    // Nobody grants more than they hold, judged from where they are: a
    // delegate with unconditioned assignment rights whose secrets rights
    // hold only in the office grants Secrets User from there, not from
    // elsewhere.
    let granter = RoleDefinition {
        id: "33333333-3333-3333-3333-333333333333".into(),
        role_name: "Assigner".into(),
        description: String::new(),
        role_type: RoleType::Custom,
        permissions: vec![Permission {
            data_actions: vec![ASSIGNMENTS_WRITE.into()],
            ..Permission::default()
        }],
        assignable_scopes: vec!["/".into()],
    };
    let mut split = grants(vec![
        assignment(Some("dev"), "/", "lead", &granter.id),
        limited("/", "lead", SECRETS_OFFICER, &["10.0.0.0/8"]),
    ]);
    split.custom.push(granter);
    assert_eq!(
        split.may_change(
            &from("lead", "10.0.0.1"),
            &root,
            ASSIGNMENTS_WRITE,
            role(SECRETS_USER)
        ),
        Ok(())
    );
    assert!(matches!(
        split.may_change(&from("lead", "192.0.2.1"), &root, ASSIGNMENTS_WRITE, role(SECRETS_USER)),
        Err(Refusal::Exceeds(a)) if a.contains("secrets/")
    ));
    // Last holders: a network-limited administrator does not count, an
    // MFA-conditioned one does.
    assert_eq!(g.admin_holders(Some("dev")), 0);
    let mut mfa_admin = assignment(Some("dev"), "/", "m", ADMINISTRATOR);
    mfa_admin.require_mfa = true;
    let g3 = grants(vec![
        limited("/", "admin", ADMINISTRATOR, &["10.0.0.0/8"]),
        mfa_admin,
    ]);
    assert_eq!(g3.admin_holders(Some("dev")), 1);
}
