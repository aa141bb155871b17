use std::sync::Arc;

use super::roles::*;
use super::*;
use crate::identity::principals::template;
use crate::identity::Kind;
use crate::mem_store::MemStore;
use crate::vaults::VaultsEngine;

pub(super) fn v(action: &str) -> String {
    format!("{VAULT_PREFIX}{action}")
}

pub(super) fn caller(oid: &str) -> Caller {
    Caller {
        oid: oid.to_owned(),
        ..Caller::default()
    }
}

pub(super) fn assignment(
    vault: Option<&str>,
    scope: &str,
    principal: &str,
    role: &str,
) -> RoleAssignment {
    RoleAssignment {
        name: uuid::Uuid::new_v4().to_string(),
        vault: vault.map(str::to_owned),
        scope: ScopePath::parse(scope).unwrap().as_str().to_owned(),
        principal_id: principal.to_owned(),
        role_definition_id: role.to_owned(),
        require_mfa: false,
        source_cidrs: Vec::new(),
        created: 0,
    }
}

pub(super) fn grants(assignments: Vec<RoleAssignment>) -> Grants {
    Grants {
        assignments,
        custom: Vec::new(),
    }
}

pub(super) fn path(s: &str) -> ScopePath {
    ScopePath::parse(s).unwrap()
}

// The engine over a store; the evaluator's own tests are in evaluate_tests.rs.

struct Fixture {
    store: Arc<MemStore>,
    authz: AuthzEngine,
    identity: Arc<IdentityEngine>,
}

async fn fixture() -> Fixture {
    let store = Arc::new(MemStore::new());
    let identity = Arc::new(IdentityEngine::new(store.clone(), "contoso"));
    VaultsEngine::new(store.clone())
        .create("dev", None)
        .await
        .unwrap();
    VaultsEngine::new(store.clone())
        .create("prod", None)
        .await
        .unwrap();
    Fixture {
        authz: AuthzEngine::new(store.clone(), identity.clone()),
        store,
        identity,
    }
}

impl Fixture {
    async fn user(&self, name: &str) -> Caller {
        let p = self
            .identity
            .create_principal(template(Kind::User, name))
            .await
            .unwrap();
        caller(&p.object_id)
    }

    async fn assign(
        &self,
        actor: &Actor,
        vault: &str,
        scope: &str,
        who: &Caller,
        role: &str,
    ) -> Result<RoleAssignment, AuthzError> {
        self.authz
            .put_assignment(
                actor,
                Some(vault),
                &uuid::Uuid::new_v4().to_string(),
                AssignmentSpec {
                    scope: scope.into(),
                    principal_id: who.oid.clone(),
                    role_definition_id: format!(
                        "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/{role}"
                    ),
                    require_mfa: false,
                    source_cidrs: Vec::new(),
                },
            )
            .await
    }

    fn allows(&self, who: &Caller, vault: &str, scope: &str, action: &str) -> bool {
        self.authz
            .decide_local(who, vault, &path(scope), action)
            .unwrap()
            == Decision::Allow
    }
}

fn claims(oid: &str) -> crate::identity::AccessClaims {
    serde_json::from_value(serde_json::json!({
        "aud": "a", "iss": "i", "iat": 0, "nbf": 0, "exp": 0, "tid": "t", "oid": oid,
        "sub": oid, "idtyp": "user", "appid": "x", "azp": "x", "appidacr": "0",
        "azpacr": "0", "amr": ["pwd"], "uti": "u", "ver": "2.0"
    }))
    .unwrap()
}

#[tokio::test]
async fn separation_of_duties_through_the_store() {
    let f = fixture().await;
    let (lead, daa, dev) = (
        f.user("lead").await,
        f.user("daa").await,
        f.user("dev").await,
    );
    let lead_a = Actor::Principal(lead.clone());
    let daa_a = Actor::Principal(daa.clone());
    let dev_a = Actor::Principal(dev.clone());
    f.assign(&Actor::BreakGlass, "dev", "/", &lead, ADMINISTRATOR)
        .await
        .unwrap();
    f.assign(&lead_a, "dev", "/", &daa, DATA_ACCESS_ADMINISTRATOR)
        .await
        .unwrap();
    f.assign(&daa_a, "dev", "/secrets", &dev, SECRETS_USER)
        .await
        .unwrap();
    assert!(f.allows(&dev, "dev", "/secrets/s", &v("secrets/getSecret/action")));
    assert!(!f.allows(&dev, "dev", "/secrets/s", &v("secrets/setSecret/action")));
    // Rights in dev say nothing about prod.
    assert!(!f.allows(&dev, "prod", "/secrets/s", &v("secrets/getSecret/action")));
    assert!(!f.allows(&lead, "prod", "/", &v("keys/read")));

    let err = f
        .assign(&daa_a, "dev", "/", &daa, ADMINISTRATOR)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthzError::Forbidden { ref action, .. } if action == ASSIGNMENTS_WRITE));
    let err = f
        .assign(&dev_a, "dev", "/", &dev, SECRETS_OFFICER)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthzError::Forbidden { .. }));
    let err = f
        .assign(&lead_a, "prod", "/", &dev, SECRETS_USER)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthzError::Forbidden { .. }), "{err}");

    // The lead is the last holder of unrestricted assignment rights... but
    // the Data Access Administrator also holds roleAssignments/write.
    let all = f
        .authz
        .list_assignments(Some("dev"), &ScopePath::root(), &AssignmentFilter::AtScope)
        .await
        .unwrap();
    let daa_assignment = all
        .iter()
        .find(|a| a.principal_id == daa.oid)
        .unwrap()
        .clone();
    let lead_assignment = all
        .iter()
        .find(|a| a.principal_id == lead.oid)
        .unwrap()
        .clone();
    // DAA cannot remove the administrator (not a data role).
    let err = f
        .authz
        .delete_assignment(&daa_a, Some("dev"), &lead_assignment.name)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthzError::Forbidden { .. }), "{err}");
    f.authz
        .delete_assignment(&lead_a, Some("dev"), &daa_assignment.name)
        .await
        .unwrap();
    // Now the lead is the last holder and cannot remove themselves.
    let before = f.store.keys().len();
    let err = f
        .authz
        .delete_assignment(&lead_a, Some("dev"), &lead_assignment.name)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthzError::Conflict(ref m) if m.contains("last holder")),
        "{err}"
    );
    assert_eq!(f.store.keys().len(), before);
    assert!(f.allows(&lead, "dev", "/", ASSIGNMENTS_WRITE));
    // Break-glass may.
    f.authz
        .delete_assignment(&Actor::BreakGlass, Some("dev"), &lead_assignment.name)
        .await
        .unwrap();
    assert!(!f.allows(&lead, "dev", "/", ASSIGNMENTS_WRITE));
}

#[tokio::test]
async fn a_revocation_is_in_force_on_a_lagging_replica() {
    let f = fixture().await;
    let dev = f.user("dev").await;
    let a = f
        .assign(&Actor::BreakGlass, "dev", "/", &dev, SECRETS_USER)
        .await
        .unwrap();
    let granted = f.store.snapshot();
    f.authz
        .delete_assignment(&Actor::BreakGlass, Some("dev"), &a.name)
        .await
        .unwrap();
    // This replica has not applied the delete yet: a local read still sees
    // the grant, the fenced check does not.
    f.store.lag_behind(granted);
    let get = v("secrets/getSecret/action");
    assert!(f.allows(&dev, "dev", "/secrets/s", &get));
    let d = f
        .authz
        .decide(&claims(&dev.oid), None, "dev", &path("/secrets/s"), &get)
        .await
        .unwrap();
    assert_eq!(d, Decision::Deny);
}

#[tokio::test]
async fn group_membership_grants_and_its_removal_revokes() {
    let f = fixture().await;
    let dev = f.user("dev").await;
    let g = f
        .identity
        .create_principal(template(Kind::Group, "devs"))
        .await
        .unwrap();
    f.identity
        .set_group_member(&g.object_id, &dev.oid, true)
        .await
        .unwrap();
    f.assign(
        &Actor::BreakGlass,
        "dev",
        "/keys",
        &caller(&g.object_id),
        CRYPTO_USER,
    )
    .await
    .unwrap();
    let sign = v("keys/sign/action");
    let (who, at) = (claims(&dev.oid), path("/keys/k"));
    let decide = || f.authz.decide(&who, None, "dev", &at, &sign);
    assert_eq!(decide().await.unwrap(), Decision::Allow);
    f.identity
        .set_group_member(&g.object_id, &dev.oid, false)
        .await
        .unwrap();
    assert_eq!(decide().await.unwrap(), Decision::Deny);
    // Groups are found through their name index: a disabled or deleted
    // group grants nothing, a group created later does.
    f.identity
        .set_group_member(&g.object_id, &dev.oid, true)
        .await
        .unwrap();
    assert_eq!(decide().await.unwrap(), Decision::Allow);
    f.identity
        .set_enabled(Kind::Group, &g.object_id, false)
        .await
        .unwrap();
    assert_eq!(decide().await.unwrap(), Decision::Deny);
    f.identity.delete(Kind::Group, "devs").await.unwrap();
    assert_eq!(decide().await.unwrap(), Decision::Deny);
    let later = f
        .identity
        .create_principal(template(Kind::Group, "later"))
        .await
        .unwrap();
    f.identity
        .set_group_member(&later.object_id, &dev.oid, true)
        .await
        .unwrap();
    f.assign(
        &Actor::BreakGlass,
        "dev",
        "/keys",
        &caller(&later.object_id),
        CRYPTO_USER,
    )
    .await
    .unwrap();
    assert_eq!(decide().await.unwrap(), Decision::Allow);
}

#[tokio::test]
async fn custom_roles_and_bad_input() {
    let f = fixture().await;
    let lead = f.user("lead").await;
    let lead_a = Actor::Principal(lead.clone());
    f.assign(&Actor::BreakGlass, "dev", "/", &lead, ADMINISTRATOR)
        .await
        .unwrap();
    let id = "33333333-3333-3333-3333-333333333333";
    let spec = DefinitionSpec {
        role_name: "Reader without certs".into(),
        description: "d".into(),
        permissions: vec![Permission {
            data_actions: vec![v("*/read")],
            not_data_actions: vec![v("certificates/*")],
            ..Permission::default()
        }],
        assignable_scopes: vec!["/".into()],
    };
    let def = f
        .authz
        .put_definition(&lead_a, Some("dev"), id, spec.clone())
        .await
        .unwrap();
    assert_eq!(def.role_type, RoleType::Custom);
    assert_eq!(f.authz.get_definition(Some("dev"), id).await.unwrap(), def);
    // Custom roles of dev do not exist in prod.
    assert!(matches!(
        f.authz.get_definition(Some("prod"), id).await,
        Err(AuthzError::NotFound(_))
    ));
    let n = f.authz.list_definitions(Some("dev")).await.unwrap().len();
    assert_eq!(n, built_ins().len() + 1);
    let reader = f.user("reader").await;
    let a = f.assign(&lead_a, "dev", "/", &reader, id).await.unwrap();
    assert!(f.allows(&reader, "dev", "/keys/k", &v("keys/read")));
    assert!(!f.allows(&reader, "dev", "/", &v("certificates/read")));
    let err = f
        .authz
        .delete_definition(&lead_a, Some("dev"), id)
        .await
        .unwrap_err();
    assert!(matches!(err, AuthzError::Conflict(_)), "{err}");
    f.authz
        .delete_assignment(&lead_a, Some("dev"), &a.name)
        .await
        .unwrap();
    f.authz
        .delete_definition(&lead_a, Some("dev"), id)
        .await
        .unwrap();

    let before = f.store.keys().len();
    let bad_specs = [
        ("/vaults", lead.oid.clone(), SECRETS_USER.to_owned()),
        ("/", "not-a-guid".into(), SECRETS_USER.to_owned()),
        ("/", lead.oid.clone(), "nope".into()),
        (
            "/",
            uuid::Uuid::new_v4().to_string(),
            SECRETS_USER.to_owned(),
        ),
        ("/", lead.oid.clone(), uuid::Uuid::new_v4().to_string()),
    ];
    for (scope, principal_id, role) in bad_specs {
        let err = f
            .authz
            .put_assignment(
                &lead_a,
                Some("dev"),
                "44444444-4444-4444-4444-444444444444",
                AssignmentSpec {
                    scope: scope.into(),
                    principal_id,
                    role_definition_id: role,
                    require_mfa: false,
                    source_cidrs: Vec::new(),
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, AuthzError::BadRequest(_)), "{scope}: {err}");
    }
    let err = f
        .authz
        .put_definition(&lead_a, Some("dev"), ADMINISTRATOR, spec.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, AuthzError::BadRequest(_)));
    let mut bad = spec;
    bad.permissions[0].data_actions = vec!["keys read".into()];
    assert!(matches!(
        f.authz.put_definition(&lead_a, Some("dev"), id, bad).await,
        Err(AuthzError::BadRequest(_))
    ));
    assert_eq!(f.store.keys().len(), before);
}

#[tokio::test]
async fn the_same_assignment_twice_is_answered_and_a_different_one_conflicts() {
    let f = fixture().await;
    let dev = f.user("dev").await;
    let spec = |role: &str| AssignmentSpec {
        scope: "/secrets".into(),
        principal_id: dev.oid.clone(),
        role_definition_id: role.into(),
        require_mfa: false,
        source_cidrs: Vec::new(),
    };
    let name = "55555555-5555-5555-5555-555555555555";
    let a = f
        .authz
        .put_assignment(&Actor::BreakGlass, Some("dev"), name, spec(SECRETS_USER))
        .await
        .unwrap();
    let again = f
        .authz
        .put_assignment(&Actor::BreakGlass, Some("dev"), name, spec(SECRETS_USER))
        .await
        .unwrap();
    assert_eq!(a, again);
    assert!(matches!(
        f.authz
            .put_assignment(&Actor::BreakGlass, Some("dev"), name, spec(SECRETS_OFFICER))
            .await,
        Err(AuthzError::Conflict(_))
    ));
    assert!(matches!(
        f.authz
            .put_assignment(&Actor::BreakGlass, Some("dev"), "other", spec(SECRETS_USER))
            .await,
        Err(AuthzError::Conflict(_))
    ));
    // The source-network condition is part of what an assignment is: the
    // same ranges written differently (order, host bits, a bare address)
    // are the same assignment; other ranges are another one.
    let limited = |cidrs: &[&str]| AssignmentSpec {
        source_cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
        ..spec(SECRETS_USER)
    };
    let net = "66666666-6666-6666-6666-666666666666";
    let b = f
        .authz
        .put_assignment(
            &Actor::BreakGlass,
            Some("dev"),
            net,
            limited(&["2001:db8::/32", "10.1.2.3/24", "192.0.2.7"]),
        )
        .await
        .unwrap();
    assert_eq!(
        b.source_cidrs,
        ["10.1.2.0/24", "192.0.2.7/32", "2001:db8::/32"]
    );
    let again = f
        .authz
        .put_assignment(
            &Actor::BreakGlass,
            Some("dev"),
            net,
            limited(&["192.0.2.7/32", "2001:db8::1/32", "10.1.2.0/24"]),
        )
        .await
        .unwrap();
    assert_eq!(b, again);
    assert!(matches!(
        f.authz
            .put_assignment(
                &Actor::BreakGlass,
                Some("dev"),
                net,
                limited(&["10.1.2.0/24"])
            )
            .await,
        Err(AuthzError::Conflict(_))
    ));
    let third = f
        .authz
        .put_assignment(
            &Actor::BreakGlass,
            Some("dev"),
            "77777777-7777-7777-7777-777777777777",
            limited(&["10.1.2.0/24"]),
        )
        .await
        .unwrap();
    assert_eq!(third.source_cidrs, ["10.1.2.0/24"]);
    // A range that does not parse: a bad request naming it, nothing stored.
    let before = f.store.keys().len();
    for bad in ["10.0.0.0/33", "fe80::/129", "corp-net", ""] {
        let err = f
            .authz
            .put_assignment(
                &Actor::BreakGlass,
                Some("dev"),
                "88888888-8888-8888-8888-888888888888",
                limited(&["10.1.2.0/24", bad]),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AuthzError::Engine(EngineError::BadParameter(m)) if m.contains("sourceCidrs") && m.contains(&format!("{bad:?}"))),
            "{bad}: {err}"
        );
    }
    assert_eq!(f.store.keys().len(), before);
    assert!(f
        .authz
        .get_assignment(Some("dev"), "88888888-8888-8888-8888-888888888888")
        .await
        .is_err());
}

#[test]
fn assignments_stored_before_the_network_condition_load_unconditioned() {
    let stored = serde_json::json!({
        "name": "a1", "vault": "dev", "scope": "/", "principal_id": "p1",
        "role_definition_id": SECRETS_USER, "require_mfa": false, "created": 1,
    });
    let a: RoleAssignment = serde_json::from_value(stored.clone()).unwrap();
    assert!(a.source_cidrs.is_empty());
    // And an unconditioned one is written exactly as before.
    assert_eq!(serde_json::to_value(&a).unwrap(), stored);
}

#[test]
fn administration_actions_are_the_operation_tables() {
    use crate::operation::Operation;
    assert_eq!(
        ASSIGNMENTS_WRITE,
        Operation::RoleAssignmentCreate.data_action()
    );
    assert_eq!(
        ASSIGNMENTS_DELETE,
        Operation::RoleAssignmentDelete.data_action()
    );
    assert_eq!(
        DEFINITIONS_WRITE,
        Operation::RoleDefinitionSet.data_action()
    );
    assert_eq!(
        DEFINITIONS_DELETE,
        Operation::RoleDefinitionDelete.data_action()
    );
}

/// Decisions are served from cached grants: a change made through another
/// engine over the same state (another node's change, once applied here)
/// must be in force on the next decision, for a vault's own assignments
/// and for cluster-wide ones alike, granting and revoking.
#[tokio::test]
async fn cached_grants_follow_changes_made_elsewhere() {
    let f = fixture().await;
    let elsewhere = AuthzEngine::new(f.store.clone(), f.identity.clone());
    let dev = f.user("dev").await;
    let get = v("secrets/getSecret/action");
    assert!(!f.allows(&dev, "dev", "/secrets/s", &get));
    let own = f
        .assign(&Actor::BreakGlass, "dev", "/secrets", &dev, SECRETS_USER)
        .await
        .unwrap();
    assert!(f.allows(&dev, "dev", "/secrets/s", &get));
    elsewhere
        .delete_assignment(&Actor::BreakGlass, Some("dev"), &own.name)
        .await
        .unwrap();
    assert!(!f.allows(&dev, "dev", "/secrets/s", &get));
    assert!(!f.allows(&dev, "prod", "/secrets/s", &get));

    let everywhere = elsewhere
        .put_assignment(
            &Actor::BreakGlass,
            None,
            &uuid::Uuid::new_v4().to_string(),
            AssignmentSpec {
                scope: "/".into(),
                principal_id: dev.oid.clone(),
                role_definition_id: format!(
                    "Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_USER}"
                ),
                require_mfa: false,
                source_cidrs: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert!(f.allows(&dev, "dev", "/secrets/s", &get));
    assert!(f.allows(&dev, "prod", "/secrets/s", &get));
    elsewhere
        .delete_assignment(&Actor::BreakGlass, None, &everywhere.name)
        .await
        .unwrap();
    assert!(!f.allows(&dev, "dev", "/secrets/s", &get));
    assert!(!f.allows(&dev, "prod", "/secrets/s", &get));
}

/// Source-network conditions through the store and the grants cache: the
/// same cached grants answer differently per request address, the control
/// check of a change is judged from where the caller is, and an
/// administrator limited to a network is never the one left holding a
/// vault's assignment rights (an MFA-conditioned one may be).
#[tokio::test]
async fn network_conditions_through_the_store_and_the_last_holder_rule() {
    let f = fixture().await;
    let (lead, office, dev) = (
        f.user("lead").await,
        f.user("office").await,
        f.user("dev").await,
    );
    let lead_a = Actor::Principal(lead.clone());
    let lead_assignment = f
        .assign(&Actor::BreakGlass, "dev", "/", &lead, ADMINISTRATOR)
        .await
        .unwrap();
    let spec = |who: &Caller, role: &str, cidrs: &[&str]| AssignmentSpec {
        scope: "/".into(),
        principal_id: who.oid.clone(),
        role_definition_id: role.into(),
        require_mfa: false,
        source_cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
    };
    f.authz
        .put_assignment(
            &lead_a,
            Some("dev"),
            "office-admin",
            spec(&office, ADMINISTRATOR, &["10.0.0.0/8", "2001:db8::/32"]),
        )
        .await
        .unwrap();

    // Per request, from the same cached grants.
    let at = |addr: &str| Some(addr.parse().unwrap());
    let get = v("secrets/getSecret/action");
    let secrets = path("/secrets/s");
    let who = claims(&office.oid);
    for (addr, want) in [
        ("10.1.2.3", Decision::Allow),
        ("192.0.2.1", Decision::OutsideNetwork),
        ("2001:db8::9", Decision::Allow),
        ("2001:db9::9", Decision::OutsideNetwork),
        ("10.1.2.3", Decision::Allow),
    ] {
        let d = f
            .authz
            .decide(&who, at(addr), "dev", &secrets, &get)
            .await
            .unwrap();
        assert_eq!(d, want, "{addr}");
    }
    assert_eq!(
        f.authz
            .decide(&who, None, "dev", &secrets, &get)
            .await
            .unwrap(),
        Decision::OutsideNetwork
    );

    // Granting: from inside the network, yes; from outside, it holds no
    // assignment rights.
    let office_in = f.authz.caller(&who, at("10.9.9.9")).unwrap();
    let office_out = f.authz.caller(&who, at("192.0.2.1")).unwrap();
    f.authz
        .put_assignment(
            &Actor::Principal(office_in.clone()),
            Some("dev"),
            "dev-reads",
            spec(&dev, SECRETS_USER, &[]),
        )
        .await
        .unwrap();
    let err = f
        .authz
        .put_assignment(
            &Actor::Principal(office_out.clone()),
            Some("dev"),
            "dev-writes",
            spec(&dev, SECRETS_OFFICER, &[]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AuthzError::Forbidden { ref action, .. } if action == ASSIGNMENTS_WRITE),
        "{err}"
    );

    // The network-limited administrator does not count as a holder: the
    // lead cannot remove themselves, nor can the office administrator
    // remove the lead, even from inside its network.
    for actor in [lead_a.clone(), Actor::Principal(office_in.clone())] {
        let err = f
            .authz
            .delete_assignment(&actor, Some("dev"), &lead_assignment.name)
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthzError::Conflict(ref m) if m.contains("last holder")),
            "{err}"
        );
    }
    // An MFA-conditioned administrator counts: then the lead may go.
    let mut mfa_admin = spec(&dev, ADMINISTRATOR, &[]);
    mfa_admin.require_mfa = true;
    f.authz
        .put_assignment(&Actor::BreakGlass, Some("dev"), "mfa-admin", mfa_admin)
        .await
        .unwrap();
    f.authz
        .delete_assignment(&lead_a, Some("dev"), &lead_assignment.name)
        .await
        .unwrap();
}
