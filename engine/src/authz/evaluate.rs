//! The evaluator: given the assignments and custom roles that bear on one
//! vault, decide whether a caller may perform an action at a scope, and
//! whether a role change respects separation of duties. Pure functions
//! over a snapshot, so every rule is unit-tested without a store.

use super::roles::{self, RoleDefinition, ASSIGNMENTS_WRITE};
use super::scope::ScopePath;
use super::RoleAssignment;

/// Who is asking: the token's `oid`, the groups it belongs to, and whether
/// it proved a second factor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// Object id of the principal (`oid`).
    pub oid: String,
    /// Object ids of the groups the principal is a member of (transitively).
    pub groups: Vec<String>,
    /// Whether the token's `amr` contains `mfa`.
    pub mfa: bool,
}

impl Caller {
    /// Whether an assignment to `principal_id` applies to this caller.
    pub fn is(&self, principal_id: &str) -> bool {
        self.oid.eq_ignore_ascii_case(principal_id)
            || self
                .groups
                .iter()
                .any(|g| g.eq_ignore_ascii_case(principal_id))
    }
}

/// The answer of an authorization check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// An assignment at the scope or above grants the action.
    Allow,
    /// Only an assignment that requires MFA would grant it, and the token
    /// has no second factor: the caller should step up.
    StepUp,
    /// Nothing grants it.
    Deny,
}

/// Why a role change was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The caller lacks the control action itself.
    Lacks(String),
    /// The caller's assignment rights do not extend to this role (Data
    /// Access Administrator and a role outside the data roles).
    NotDelegable(String),
    /// The role grants an action the caller does not hold at that scope.
    Exceeds(String),
}

/// The assignments (vault and cluster-wide) and custom roles that bear on
/// one vault.
#[derive(Clone, Debug, Default)]
pub struct Grants {
    /// Every assignment of the vault and every cluster-wide one.
    pub assignments: Vec<RoleAssignment>,
    /// Custom roles usable in the vault.
    pub custom: Vec<RoleDefinition>,
}

impl Grants {
    /// The definition with this GUID: a built-in or a custom role.
    pub fn role(&self, id: &str) -> Option<&RoleDefinition> {
        roles::built_in(id).or_else(|| self.custom.iter().find(|d| d.id.eq_ignore_ascii_case(id)))
    }

    /// The caller's assignments at `scope` or above, with their roles;
    /// `mfa_ok`: include those that require MFA only when the caller has it.
    fn applicable<'a>(
        &'a self,
        caller: &'a Caller,
        scope: &'a ScopePath,
    ) -> impl Iterator<Item = (&'a RoleAssignment, &'a RoleDefinition)> + 'a {
        self.assignments
            .iter()
            .filter(move |a| caller.is(&a.principal_id) && a.scope_path().covers(scope))
            .filter_map(move |a| self.role(&a.role_definition_id).map(|r| (a, r)))
    }

    /// Whether `caller` may perform `action` at `scope`: the union of the
    /// roles assigned at the scope or above, each its actions minus its
    /// exclusions.
    pub fn decide(&self, caller: &Caller, scope: &ScopePath, action: &str) -> Decision {
        let mut step_up = false;
        for (a, role) in self.applicable(caller, scope) {
            if !role.grants(action) {
                continue;
            }
            if a.require_mfa && !caller.mfa {
                step_up = true;
            } else {
                return Decision::Allow;
            }
        }
        if step_up {
            Decision::StepUp
        } else {
            Decision::Deny
        }
    }

    /// Whether the caller is allowed `action` at `scope` (MFA-conditioned
    /// assignments count only with a second factor).
    pub fn allows(&self, caller: &Caller, scope: &ScopePath, action: &str) -> bool {
        self.decide(caller, scope, action) == Decision::Allow
    }

    /// Separation of duties for adding (`control` = roleAssignments/write)
    /// or removing (`roleAssignments/delete`) an assignment of `role` at
    /// `scope`: some assignment of the caller at the scope or above must
    /// grant `control`; a restricted one (Data Access Administrator) only
    /// for the roles it may delegate, an unrestricted one only when the
    /// caller itself holds everything `role` grants there (checked for
    /// additions: nobody grants more than they hold).
    pub fn may_change(
        &self,
        caller: &Caller,
        scope: &ScopePath,
        control: &str,
        role: &RoleDefinition,
    ) -> Result<(), Refusal> {
        let mut holds_control = false;
        let mut unrestricted = false;
        for (a, r) in self.applicable(caller, scope) {
            if !r.grants(control) || (a.require_mfa && !caller.mfa) {
                continue;
            }
            holds_control = true;
            match r.delegable_roles() {
                Some(list) if list.iter().any(|id| id.eq_ignore_ascii_case(&role.id)) => {
                    return Ok(())
                }
                Some(_) => {}
                None => unrestricted = true,
            }
        }
        if !holds_control {
            return Err(Refusal::Lacks(control.to_owned()));
        }
        if !unrestricted {
            return Err(Refusal::NotDelegable(role.role_name.clone()));
        }
        if control == ASSIGNMENTS_WRITE {
            self.holds_all(caller, scope, role)?;
        }
        Ok(())
    }

    /// `Ok` when the caller holds at `scope` every action `role` grants.
    pub fn holds_all(
        &self,
        caller: &Caller,
        scope: &ScopePath,
        role: &RoleDefinition,
    ) -> Result<(), Refusal> {
        match roles::all_actions()
            .iter()
            .find(|action| role.grants(action) && !self.allows(caller, scope, action))
        {
            Some(action) => Err(Refusal::Exceeds(action.clone())),
            None => Ok(()),
        }
    }

    /// How many assignments give someone the right to add assignments to
    /// the whole of `vault` (at its root, or cluster-wide; `None`: the
    /// cluster-wide ones only). Separation of duties keeps this from
    /// dropping to zero.
    pub fn admin_holders(&self, vault: Option<&str>) -> usize {
        self.assignments
            .iter()
            .filter(|a| {
                (a.vault.is_none() || a.vault.as_deref() == vault)
                    && a.scope_path().is_root()
                    && self
                        .role(&a.role_definition_id)
                        .is_some_and(|r| r.grants(ASSIGNMENTS_WRITE))
            })
            .count()
    }
}
