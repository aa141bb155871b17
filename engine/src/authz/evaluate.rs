//! The evaluator: given the assignments and custom roles that bear on one
//! vault, decide whether a caller may perform an action at a scope, and
//! whether a role change respects separation of duties. Pure functions
//! over a snapshot, so every rule is unit-tested without a store.

use std::net::IpAddr;

use super::roles::{self, RoleDefinition, ASSIGNMENTS_WRITE};
use super::scope::ScopePath;
use super::RoleAssignment;
use crate::network;

/// Who is asking: the token's `oid`, the groups it belongs to, whether it
/// proved a second factor, and the client address the request came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// Object id of the principal (`oid`).
    pub oid: String,
    /// Object ids of the groups the principal is a member of (transitively).
    pub groups: Vec<String>,
    /// Whether the token's `amr` contains `mfa`.
    pub mfa: bool,
    /// The request's client address, as the API layer resolved it (the TCP
    /// peer, or a trusted proxy's `X-Forwarded-For`). Per request, never
    /// cached. `None`: unknown, and no assignment limited to a source
    /// network applies (fail closed).
    pub addr: Option<IpAddr>,
}

/// Whether an assignment's conditions hold for a caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Conditions {
    /// They hold (or it has none): the assignment counts.
    Met,
    /// It requires a second factor the token lacks (the address is fine):
    /// stepping up would make it count.
    NeedsMfa,
    /// The client address is outside its source networks: nothing the
    /// caller can do with this token makes it count.
    OutsideNetwork,
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

    /// Whether `a`'s conditions (MFA, source networks) hold for this
    /// request: the one rule the data-action decision and the control
    /// check of role changes both apply. An assignment whose conditions
    /// do not hold contributes nothing.
    fn meets(&self, a: &RoleAssignment) -> Conditions {
        let network_ok = a.source_cidrs.is_empty()
            || self
                .addr
                .is_some_and(|addr| network::binding_allows(&a.source_cidrs, addr));
        if !network_ok {
            Conditions::OutsideNetwork
        } else if a.require_mfa && !self.mfa {
            Conditions::NeedsMfa
        } else {
            Conditions::Met
        }
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
    /// Only an assignment limited to source networks would grant it, and
    /// the client address is outside them (stepping up would not help).
    OutsideNetwork,
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

    /// The caller's assignments at `scope` or above, with their roles,
    /// whatever their conditions (the callers check [`Caller::meets`]).
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
    /// roles assigned at the scope or above whose conditions hold, each its
    /// actions minus its exclusions. When none holds but one would grant
    /// the action, the answer says which condition failed (a second factor
    /// first: stepping up is something the caller can do).
    pub fn decide(&self, caller: &Caller, scope: &ScopePath, action: &str) -> Decision {
        let mut step_up = false;
        let mut outside = false;
        for (a, role) in self.applicable(caller, scope) {
            if !role.grants(action) {
                continue;
            }
            match caller.meets(a) {
                Conditions::Met => return Decision::Allow,
                Conditions::NeedsMfa => step_up = true,
                Conditions::OutsideNetwork => outside = true,
            }
        }
        if step_up {
            Decision::StepUp
        } else if outside {
            Decision::OutsideNetwork
        } else {
            Decision::Deny
        }
    }

    /// Whether the caller is allowed `action` at `scope` (conditioned
    /// assignments count only where their conditions hold).
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
    ///
    /// Conditions are judged for this request, like the data actions: a
    /// conditioned assignment (MFA, source networks) counts in full while
    /// its conditions hold and not at all otherwise — for holding
    /// `control` and for what the caller holds. Conditions restrict how
    /// and from where an assignment is used, not what it may grant: a
    /// holder inside its network may make an assignment without one, as
    /// an MFA holder with a second factor may make one without MFA.
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
            if !r.grants(control) || caller.meets(a) != Conditions::Met {
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
    ///
    /// An assignment limited to source networks does not count: its holder
    /// can be locked out by no act of their own (the network renumbered,
    /// the proxy replaced, the holder elsewhere), so it cannot be the last
    /// line that keeps a vault administrable. An MFA-conditioned one
    /// counts: the second factor goes with its holder, who can always
    /// step up.
    pub fn admin_holders(&self, vault: Option<&str>) -> usize {
        self.assignments
            .iter()
            .filter(|a| {
                (a.vault.is_none() || a.vault.as_deref() == vault)
                    && a.source_cidrs.is_empty()
                    && a.scope_path().is_root()
                    && self
                        .role(&a.role_definition_id)
                        .is_some_and(|r| r.grants(ASSIGNMENTS_WRITE))
            })
            .count()
    }
}
