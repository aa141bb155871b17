//! Changing and listing role definitions and assignments, under the
//! separation-of-duties rules: assigning needs `roleAssignments/write`
//! (restricted holders only for the roles they may delegate), nobody grants
//! more than they hold, and no change leaves a vault without a holder of
//! assignment rights.

use std::sync::Mutex;

use super::evaluate::Refusal;
use super::roles::{
    self, Permission, RoleDefinition, RoleType, ASSIGNMENTS_DELETE, ASSIGNMENTS_WRITE,
    DEFINITIONS_DELETE, DEFINITIONS_WRITE,
};
use super::{
    assignment_key, definition_key, parts, version_key, Actor, AuthzEngine, AuthzError, Grants,
    RoleAssignment, ScopePath, CLUSTER,
};
use crate::cas::{decode, encode, write, Plan};
use crate::error::EngineError;
use crate::network::canonical_ranges;
use crate::store::{Compare, Mutation, Txn};
use crate::validate::normalize_vault;
use crate::view::VaultView;

/// At most this many actions per permission list of a custom role.
const MAX_ACTIONS: usize = 100;

/// What a client asks a new assignment to be.
#[derive(Clone, Debug)]
pub struct AssignmentSpec {
    /// Scope path inside the vault (`/`, `/keys`, `/keys/k1`).
    pub scope: String,
    /// Object id of the user, application or group.
    pub principal_id: String,
    /// The role: its GUID, or an id ending in `/roleDefinitions/{guid}`.
    pub role_definition_id: String,
    /// Only tokens with a second factor use it.
    pub require_mfa: bool,
    /// Only requests from these address ranges (IPv4 or IPv6 addresses or
    /// CIDRs) use it; empty: from anywhere. A Coffer extension, like
    /// `require_mfa`.
    pub source_cidrs: Vec<String>,
}

/// What a client asks a custom role to be.
#[derive(Clone, Debug, Default)]
pub struct DefinitionSpec {
    /// Display name.
    pub role_name: String,
    /// Free text.
    pub description: String,
    /// Permission blocks.
    pub permissions: Vec<Permission>,
    /// Must be `/` (or empty: `/`).
    pub assignable_scopes: Vec<String>,
}

/// Which assignments a listing returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssignmentFilter {
    /// At the scope, above it or below it.
    Related,
    /// `atScope()`: at the scope or above it.
    AtScope,
    /// `principalId eq '{id}'`: that principal's, related to the scope.
    Principal(String),
}

impl AuthzEngine {
    /// The built-in roles and the custom roles of `vault` (cluster-wide
    /// custom roles too), after a read fence.
    pub async fn list_definitions(
        &self,
        vault: Option<&str>,
    ) -> Result<Vec<RoleDefinition>, AuthzError> {
        let vault = norm(vault)?;
        self.store.read_fence().await?;
        let grants = self.grants_local(vault.as_deref())?;
        let mut all: Vec<RoleDefinition> = roles::built_ins().to_vec();
        all.extend(grants.custom);
        Ok(all)
    }

    /// One role definition by GUID.
    pub async fn get_definition(
        &self,
        vault: Option<&str>,
        id: &str,
    ) -> Result<RoleDefinition, AuthzError> {
        let vault = norm(vault)?;
        self.store.read_fence().await?;
        let grants = self.grants_local(vault.as_deref())?;
        grants
            .role(&guid(id)?)
            .cloned()
            .ok_or_else(|| AuthzError::NotFound(format!("Role definition {id}")))
    }

    /// Creates or replaces the custom role `id` of `vault`.
    pub async fn put_definition(
        &self,
        actor: &Actor,
        vault: Option<&str>,
        id: &str,
        spec: DefinitionSpec,
    ) -> Result<RoleDefinition, AuthzError> {
        let vault = norm(vault)?;
        let id = guid(id)?;
        if roles::built_in(&id).is_some() {
            return Err(AuthzError::BadRequest(
                "Built-in role definitions cannot be changed".into(),
            ));
        }
        let def = check_definition(&id, spec)?;
        let part = vault.as_deref().unwrap_or(CLUSTER);
        let key = definition_key(part, &id);
        self.change(vault.as_deref(), |grants| {
            let root = ScopePath::root();
            if let Actor::Principal(caller) = actor {
                if !grants.allows(caller, &root, DEFINITIONS_WRITE) {
                    return Err(lacks(DEFINITIONS_WRITE));
                }
                grants
                    .holds_all(caller, &root, &def)
                    .map_err(|r| refused(DEFINITIONS_WRITE, r))?;
            }
            let mut after = grants.clone();
            after.custom.retain(|d| d.id != def.id);
            after.custom.push(def.clone());
            keeps_an_administrator(actor, grants, &after, vault.as_deref())?;
            Ok((
                vec![Mutation::Put {
                    key: key.clone(),
                    value: encode(&def)?,
                }],
                def.clone(),
            ))
        })
        .await
    }

    /// Deletes the custom role `id` of `vault`; refused while assigned.
    pub async fn delete_definition(
        &self,
        actor: &Actor,
        vault: Option<&str>,
        id: &str,
    ) -> Result<RoleDefinition, AuthzError> {
        let vault = norm(vault)?;
        let id = guid(id)?;
        if roles::built_in(&id).is_some() {
            return Err(AuthzError::BadRequest(
                "Built-in role definitions cannot be deleted".into(),
            ));
        }
        let part = vault.as_deref().unwrap_or(CLUSTER);
        let key = definition_key(part, &id);
        self.change(vault.as_deref(), |grants| {
            if let Actor::Principal(caller) = actor {
                if !grants.allows(caller, &ScopePath::root(), DEFINITIONS_DELETE) {
                    return Err(lacks(DEFINITIONS_DELETE));
                }
            }
            let Some(entry) = self.store.get(&key)? else {
                return Err(AuthzError::NotFound(format!("Role definition {id}")));
            };
            let def: RoleDefinition = decode(&entry.value)?;
            if grants
                .assignments
                .iter()
                .any(|a| a.role_definition_id == id)
            {
                return Err(AuthzError::Conflict(format!(
                    "Role definition {id} is still assigned: delete its assignments first"
                )));
            }
            Ok((vec![Mutation::Delete { key: key.clone() }], def))
        })
        .await
    }

    /// The assignments of `vault` (the cluster-wide ones for `None`) that
    /// `filter` selects relative to `scope`, after a read fence.
    pub async fn list_assignments(
        &self,
        vault: Option<&str>,
        scope: &ScopePath,
        filter: &AssignmentFilter,
    ) -> Result<Vec<RoleAssignment>, AuthzError> {
        let vault = norm(vault)?;
        self.store.read_fence().await?;
        let grants = self.grants_local(vault.as_deref())?;
        Ok(grants
            .assignments
            .into_iter()
            .filter(|a| a.vault == vault)
            .filter(|a| {
                let at = a.scope_path();
                match filter {
                    AssignmentFilter::AtScope => at.covers(scope),
                    AssignmentFilter::Related => at.covers(scope) || scope.covers(&at),
                    AssignmentFilter::Principal(p) => {
                        a.principal_id.eq_ignore_ascii_case(p)
                            && (at.covers(scope) || scope.covers(&at))
                    }
                }
            })
            .collect())
    }

    /// One assignment of `vault` by name.
    pub async fn get_assignment(
        &self,
        vault: Option<&str>,
        name: &str,
    ) -> Result<RoleAssignment, AuthzError> {
        let vault = norm(vault)?;
        self.store.read_fence().await?;
        let key = assignment_key(vault.as_deref().unwrap_or(CLUSTER), name);
        match self.store.get(&key)? {
            Some(e) => Ok(decode(&e.value)?),
            None => Err(AuthzError::NotFound(format!("Role assignment {name}"))),
        }
    }

    /// Creates the assignment `name` of `vault` (cluster-wide for `None`).
    /// The same assignment again is answered with the existing one; a
    /// different one under the same name, or the same principal, role and
    /// scope under another name, is a conflict.
    pub async fn put_assignment(
        &self,
        actor: &Actor,
        vault: Option<&str>,
        name: &str,
        spec: AssignmentSpec,
    ) -> Result<RoleAssignment, AuthzError> {
        let vault = norm(vault)?;
        check_assignment_name(name)?;
        let scope = ScopePath::parse(&spec.scope)?;
        let principal_id = guid(&spec.principal_id)?;
        let role_id = guid(&spec.role_definition_id)?;
        // Canonical and sorted, so the same ranges written differently make
        // the same assignment.
        let mut source_cidrs =
            canonical_ranges("sourceCidrs", spec.source_cidrs.iter().map(String::as_str))?;
        source_cidrs.sort();
        let part = vault.as_deref().unwrap_or(CLUSTER);
        let key = assignment_key(part, name);
        let now = self.now();
        self.change(vault.as_deref(), |grants| {
            if let Some(v) = &vault {
                VaultView::open(self.store.as_ref(), v)?;
            }
            if self.identity.get_local(&principal_id)?.is_none() {
                return Err(AuthzError::BadRequest(format!(
                    "Principal {principal_id} does not exist in this tenant"
                )));
            }
            let role = grants.role(&role_id).ok_or_else(|| {
                AuthzError::BadRequest(format!("Role definition {role_id} does not exist"))
            })?;
            if let Actor::Principal(caller) = actor {
                grants
                    .may_change(caller, &scope, ASSIGNMENTS_WRITE, role)
                    .map_err(|r| refused(ASSIGNMENTS_WRITE, r))?;
            }
            let wanted = RoleAssignment {
                name: name.to_ascii_lowercase(),
                vault: vault.clone(),
                scope: scope.as_str().to_owned(),
                principal_id: principal_id.clone(),
                role_definition_id: role_id.clone(),
                require_mfa: spec.require_mfa,
                source_cidrs: source_cidrs.clone(),
                created: now,
            };
            let same = |a: &RoleAssignment| {
                a.scope == wanted.scope
                    && a.principal_id == wanted.principal_id
                    && a.role_definition_id == wanted.role_definition_id
                    && a.require_mfa == wanted.require_mfa
                    && a.source_cidrs == wanted.source_cidrs
            };
            let mine = grants.assignments.iter().filter(|a| a.vault == vault);
            for a in mine {
                match (a.name == wanted.name, same(a)) {
                    (true, true) => return Ok((Vec::new(), a.clone())),
                    (true, false) => {
                        return Err(AuthzError::Conflict(format!(
                            "The role assignment {name} already exists with other properties"
                        )))
                    }
                    (false, true) => {
                        return Err(AuthzError::Conflict(format!(
                            "The role assignment already exists as {}",
                            a.name
                        )))
                    }
                    (false, false) => {}
                }
            }
            Ok((
                vec![Mutation::Put {
                    key: key.clone(),
                    value: encode(&wanted)?,
                }],
                wanted,
            ))
        })
        .await
    }

    /// Deletes the assignment `name` of `vault`.
    pub async fn delete_assignment(
        &self,
        actor: &Actor,
        vault: Option<&str>,
        name: &str,
    ) -> Result<RoleAssignment, AuthzError> {
        let vault = norm(vault)?;
        let part = vault.as_deref().unwrap_or(CLUSTER);
        let key = assignment_key(part, name);
        self.change(vault.as_deref(), |grants| {
            let Some(entry) = self.store.get(&key)? else {
                return Err(AuthzError::NotFound(format!("Role assignment {name}")));
            };
            let gone: RoleAssignment = decode(&entry.value)?;
            if let Actor::Principal(caller) = actor {
                // A role that no longer exists can be unassigned by anyone
                // holding unrestricted assignment rights.
                let stub;
                let role = match grants.role(&gone.role_definition_id) {
                    Some(r) => r,
                    None => {
                        stub = RoleDefinition {
                            id: gone.role_definition_id.clone(),
                            role_name: String::new(),
                            description: String::new(),
                            role_type: RoleType::Custom,
                            permissions: Vec::new(),
                            assignable_scopes: Vec::new(),
                        };
                        &stub
                    }
                };
                grants
                    .may_change(caller, &gone.scope_path(), ASSIGNMENTS_DELETE, role)
                    .map_err(|r| refused(ASSIGNMENTS_DELETE, r))?;
            }
            let mut after = grants.clone();
            after
                .assignments
                .retain(|a| !(a.vault == gone.vault && a.name == gone.name));
            keeps_an_administrator(actor, grants, &after, vault.as_deref())?;
            Ok((vec![Mutation::Delete { key: key.clone() }], gone))
        })
        .await
    }

    /// Runs one change of the records bearing on `vault` under
    /// compare-and-set: `plan` sees the current grants and returns the
    /// mutations and the answer (no mutations: answer without writing).
    /// The change compares and bumps the version keys, so two changes that
    /// each passed the separation-of-duties checks cannot both apply.
    async fn change<T, P>(&self, vault: Option<&str>, mut plan: P) -> Result<T, AuthzError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        P: FnMut(&Grants) -> Result<(Vec<Mutation>, T), AuthzError>,
    {
        let own = version_key(vault.unwrap_or(CLUSTER));
        // The plan's typed refusal; `write` only carries engine errors.
        let refusal: Mutex<Option<AuthzError>> = Mutex::new(None);
        let result = write(self.store.as_ref(), None, || {
            let mut compare = Vec::new();
            for part in parts(vault) {
                let key = version_key(part);
                let revision = self.store.get(&key)?.map_or(0, |e| e.revision);
                compare.push(Compare::Revision { key, revision });
            }
            let grants = match self.grants_local(vault) {
                Ok(g) => g,
                Err(AuthzError::Engine(e)) => return Err(e),
                Err(e) => return Err(EngineError::Corrupt(e.to_string())),
            };
            let (mut mutations, answer) = match plan(&grants) {
                Ok(x) => x,
                Err(AuthzError::Engine(e)) => return Err(e),
                Err(e) => {
                    let message = e.to_string();
                    *refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return Ok(Plan::Refuse(EngineError::Conflict(message)));
                }
            };
            if mutations.is_empty() {
                return Ok(Plan::Answer(answer));
            }
            let _ = refusal.lock().unwrap_or_else(|p| p.into_inner()).take();
            mutations.push(Mutation::Put {
                key: own.clone(),
                value: b"1".to_vec(),
            });
            Ok(Plan::Commit(Txn {
                compare,
                mutations,
                result: encode(&answer)?,
            }))
        })
        .await;
        match result {
            Ok(answer) => Ok(answer),
            Err(e) => Err(refusal
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or(AuthzError::Engine(e))),
        }
    }
}

/// The vault name in storage form; `None` stays the cluster.
fn norm(vault: Option<&str>) -> Result<Option<String>, AuthzError> {
    vault
        .map(normalize_vault)
        .transpose()
        .map_err(AuthzError::Engine)
}

/// A GUID in lower case; the last path segment of an id such as
/// `Microsoft.KeyVault/providers/Microsoft.Authorization/roleDefinitions/{guid}`.
fn guid(id: &str) -> Result<String, AuthzError> {
    let last = id
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    uuid::Uuid::parse_str(last)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| AuthzError::BadRequest(format!("{id:?} is not a valid id (a GUID)")))
}

/// Assignment names: 1-64 characters of letters, digits and `-` (clients
/// use GUIDs).
fn check_assignment_name(name: &str) -> Result<(), AuthzError> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(AuthzError::BadRequest(format!(
            "The role assignment name {name:?} is invalid: use a GUID"
        )))
    }
}

/// Validates a custom role and builds its definition.
fn check_definition(id: &str, spec: DefinitionSpec) -> Result<RoleDefinition, AuthzError> {
    if spec.role_name.chars().count() > 512 || spec.description.chars().count() > 2048 {
        return Err(AuthzError::BadRequest(
            "roleName is limited to 512 characters and description to 2048".into(),
        ));
    }
    if spec.permissions.is_empty() || spec.permissions.len() > 10 {
        return Err(AuthzError::BadRequest(
            "A role definition needs 1 to 10 permission blocks".into(),
        ));
    }
    for p in &spec.permissions {
        for list in [
            &p.actions,
            &p.not_actions,
            &p.data_actions,
            &p.not_data_actions,
        ] {
            if list.len() > MAX_ACTIONS {
                return Err(AuthzError::BadRequest(format!(
                    "At most {MAX_ACTIONS} actions per list"
                )));
            }
            for a in list {
                let ok = (1..=256).contains(&a.len())
                    && a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "./*_-".contains(c));
                if !ok {
                    return Err(AuthzError::BadRequest(format!(
                        "The action {a:?} is invalid"
                    )));
                }
            }
        }
    }
    let scopes = if spec.assignable_scopes.is_empty() {
        vec!["/".to_owned()]
    } else {
        spec.assignable_scopes
    };
    if scopes.iter().any(|s| s != "/") {
        return Err(AuthzError::BadRequest(
            "Custom roles are assignable at scope / only".into(),
        ));
    }
    Ok(RoleDefinition {
        id: id.to_owned(),
        role_name: spec.role_name,
        description: spec.description,
        role_type: RoleType::Custom,
        permissions: spec.permissions,
        assignable_scopes: scopes,
    })
}

/// Refuses a change that would leave nobody able to assign roles on the
/// vault (or cluster-wide) when somebody could before. The root token may.
fn keeps_an_administrator(
    actor: &Actor,
    before: &Grants,
    after: &Grants,
    vault: Option<&str>,
) -> Result<(), AuthzError> {
    if matches!(actor, Actor::BreakGlass) {
        return Ok(());
    }
    if before.admin_holders(vault) > 0 && after.admin_holders(vault) == 0 {
        return Err(AuthzError::Conflict(
            "This change would remove the last holder of role-assignment rights; assign them to someone else first".into(),
        ));
    }
    Ok(())
}

fn lacks(action: &str) -> AuthzError {
    refused(action, Refusal::Lacks(action.to_owned()))
}

/// A separation-of-duties refusal as an error naming the action.
fn refused(action: &str, refusal: Refusal) -> AuthzError {
    let message = match refusal {
        Refusal::Lacks(a) => format!("The caller does not hold '{a}' at this scope"),
        Refusal::NotDelegable(role) => format!(
            "The caller's assignment rights do not extend to the role '{role}'"
        ),
        Refusal::Exceeds(a) => format!(
            "The role grants '{a}', which the caller does not hold at this scope: nobody grants more than they hold"
        ),
    };
    AuthzError::Forbidden {
        action: action.to_owned(),
        message,
    }
}
