//! Principals (applications, users, groups) and their one lifecycle:
//! create, find by name or id, list, update under compare-and-set, delete.
//!
//! Storage: `idn/p/{object_id}` holds the record; `idn/name/{kind}/{name}`
//! (lower-case) maps a name to its object id and makes names unique per
//! kind; `idn/client/{client_id}` maps an application's client id.

use serde::{Deserialize, Serialize};

use super::credentials::{AppCertificate, ClientSecret, FederatedCredential, TotpEnrolment};
use super::{new_guid, IdentityEngine, IdentityError};
use super::{put, rev};
use crate::cas::{decode, encode, write, Plan};
use crate::store::{Mutation, Txn};

const PRINCIPAL_PREFIX: &str = "idn/p/";

/// What a principal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An application / service principal (client credentials).
    App,
    /// A person (password, TOTP).
    User,
    /// A set of principals.
    Group,
}

impl Kind {
    /// Lower-case name used in keys, messages and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::User => "user",
            Kind::Group => "group",
        }
    }
}

/// Application-specific data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// The client id (a GUID) the app signs in with.
    pub client_id: String,
    /// Client secrets (hashed).
    #[serde(default)]
    pub secrets: Vec<ClientSecret>,
    /// Certificates, by SHA-1 thumbprint.
    #[serde(default)]
    pub certificates: Vec<AppCertificate>,
    /// Trusted external issuers (workload identity federation).
    #[serde(default)]
    pub federated: Vec<FederatedCredential>,
    /// Address ranges the application may get and use tokens from (Vault's
    /// `token_bound_cidrs`), canonical CIDRs; empty: from anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_cidrs: Vec<String>,
}

/// User-specific data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// TOTP enrolment, when the user has a second factor.
    #[serde(default)]
    pub totp: Option<TotpEnrolment>,
}

/// Group-specific data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Object ids of the members.
    #[serde(default)]
    pub members: Vec<String>,
}

/// One principal of the tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Object id (GUID), the `oid` claim.
    pub object_id: String,
    /// What it is.
    pub kind: Kind,
    /// Unique (per kind, case-insensitive) display name; users sign in with it.
    pub name: String,
    /// Disabled principals cannot sign in and their tokens stop working.
    pub enabled: bool,
    /// Unix seconds.
    pub created: u64,
    /// Present for applications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    /// Present for users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// Present for groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
}

impl Principal {
    /// A copy without any verifier (secret hashes, password hash, TOTP
    /// seed), for display.
    pub fn redacted(&self) -> Principal {
        let mut p = self.clone();
        if let Some(app) = &mut p.app {
            for s in &mut app.secrets {
                s.hash.clear();
            }
        }
        if let Some(user) = &mut p.user {
            user.password_hash.clear();
            if let Some(t) = &mut user.totp {
                t.secret.clear();
            }
        }
        p
    }

    /// Whether the principal may get or use a token from `addr`: an
    /// application bound to CIDRs only from inside them; anyone else from
    /// anywhere.
    pub fn allows_address(&self, addr: std::net::IpAddr) -> bool {
        self.app
            .as_ref()
            .is_none_or(|a| crate::network::binding_allows(&a.bound_cidrs, addr))
    }

    /// The application data, or `BadRequest` for another kind.
    pub fn app_mut(&mut self) -> Result<&mut App, IdentityError> {
        self.app
            .as_mut()
            .ok_or_else(|| IdentityError::BadRequest(format!("{} is not an app", self.name)))
    }

    /// The user data, or `BadRequest` for another kind.
    pub fn user_mut(&mut self) -> Result<&mut User, IdentityError> {
        self.user
            .as_mut()
            .ok_or_else(|| IdentityError::BadRequest(format!("{} is not a user", self.name)))
    }
}

/// `idn/p/{object_id}`.
pub(crate) fn principal_key(object_id: &str) -> Vec<u8> {
    format!("{PRINCIPAL_PREFIX}{object_id}").into_bytes()
}

fn name_key(kind: Kind, name: &str) -> Vec<u8> {
    format!("idn/name/{}/{}", kind.as_str(), name.to_lowercase()).into_bytes()
}

fn client_key(client_id: &str) -> Vec<u8> {
    format!("idn/client/{}", client_id.to_lowercase()).into_bytes()
}

/// An application's bound CIDRs, checked and canonical.
fn bound_cidrs(cidrs: &[String]) -> Result<Vec<String>, IdentityError> {
    crate::network::canonical_ranges("bound CIDRs", cidrs.iter().map(String::as_str)).map_err(|e| {
        match e {
            crate::EngineError::BadParameter(m) => IdentityError::BadRequest(m),
            e => IdentityError::Engine(e),
        }
    })
}

/// Principal names: 1–128 printable characters without `/`, spaces or
/// control characters (user names are typically `alice@example.com`).
fn check_name(name: &str) -> Result<(), IdentityError> {
    let ok = (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != '/');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadRequest(
            "names are 1-128 characters without spaces, '/' or control characters".into(),
        ))
    }
}

impl IdentityEngine {
    /// Creates a principal of `kind` named `name` with the kind-specific
    /// data already filled in `template` (its object id, name, kind and
    /// creation time are set here).
    pub async fn create_principal(
        &self,
        mut template: Principal,
    ) -> Result<Principal, IdentityError> {
        check_name(&template.name)?;
        if let Some(app) = &mut template.app {
            app.bound_cidrs = bound_cidrs(&app.bound_cidrs)?;
        }
        self.ensure_tenant().await?;
        template.object_id = new_guid();
        template.created = self.now();
        let kind = template.kind;
        let nkey = name_key(kind, &template.name);
        let pkey = principal_key(&template.object_id);
        let client = template.app.as_ref().map(|a| client_key(&a.client_id));
        let what = format!("{} {}", kind.as_str(), template.name);
        let created = write(self.store.as_ref(), None, || {
            if self.store.get(&nkey)?.is_some() {
                return Ok(Plan::Refuse(exists(&what)));
            }
            let bytes = encode(&template)?;
            let mut compare = vec![rev(nkey.clone(), 0), rev(pkey.clone(), 0)];
            let mut mutations = vec![
                put(nkey.clone(), template.object_id.clone().into_bytes()),
                put(pkey.clone(), bytes.clone()),
            ];
            if let Some(ck) = &client {
                compare.push(rev(ck.clone(), 0));
                mutations.push(put(ck.clone(), template.object_id.clone().into_bytes()));
            }
            Ok(Plan::Commit(Txn {
                compare,
                mutations,
                result: bytes,
            }))
        })
        .await
        .map_err(|e| match e {
            crate::EngineError::Conflict(m) => IdentityError::Exists(m),
            e => e.into(),
        })?;
        Ok(created)
    }

    /// The principal's object id for a name, object id or (apps) client id,
    /// from local state.
    fn lookup_id(&self, kind: Kind, name_or_id: &str) -> Result<Option<String>, IdentityError> {
        let mut keys = vec![name_key(kind, name_or_id)];
        if kind == Kind::App {
            keys.push(client_key(name_or_id));
        }
        for key in keys {
            if let Some(e) = self.store.get(&key)? {
                return Ok(Some(String::from_utf8_lossy(&e.value).into_owned()));
            }
        }
        if uuid::Uuid::parse_str(name_or_id).is_ok() {
            let id = name_or_id.to_lowercase();
            if let Some(p) = self.get_local(&id)? {
                if p.kind == kind {
                    return Ok(Some(id));
                }
            }
        }
        Ok(None)
    }

    /// A principal by object id from local state (request path: no fence).
    pub fn get_local(&self, object_id: &str) -> Result<Option<Principal>, IdentityError> {
        match self.store.get(&principal_key(object_id))? {
            Some(e) => Ok(Some(decode(&e.value)?)),
            None => Ok(None),
        }
    }

    /// Whether principal `object_id` may use a token from `addr` (its
    /// application's bound CIDRs), from local state: call after a read
    /// fence, so a binding set through any node is in force. A principal
    /// that is gone may not.
    pub fn allows_address_local(
        &self,
        object_id: &str,
        addr: std::net::IpAddr,
    ) -> Result<bool, IdentityError> {
        Ok(self
            .get_local(object_id)?
            .is_some_and(|p| p.allows_address(addr)))
    }

    /// An application by client id from local state (request path).
    pub fn app_by_client_id(&self, client_id: &str) -> Result<Option<Principal>, IdentityError> {
        match self.store.get(&client_key(client_id))? {
            Some(e) => self.get_local(&String::from_utf8_lossy(&e.value)),
            None => Ok(None),
        }
    }

    /// A user by sign-in name from local state (request path).
    pub fn user_by_name(&self, name: &str) -> Result<Option<Principal>, IdentityError> {
        match self.lookup_id(Kind::User, name)? {
            Some(id) => self.get_local(&id),
            None => Ok(None),
        }
    }

    /// A principal by name, object id or (apps) client id, after a read
    /// fence.
    pub async fn find(&self, kind: Kind, name_or_id: &str) -> Result<Principal, IdentityError> {
        self.store.read_fence().await?;
        self.lookup_id(kind, name_or_id)?
            .map(|id| self.get_local(&id))
            .transpose()?
            .flatten()
            .ok_or_else(|| not_found(kind, name_or_id))
    }

    /// Every principal of `kind`, ordered by object id.
    pub async fn list(&self, kind: Kind) -> Result<Vec<Principal>, IdentityError> {
        self.store.read_fence().await?;
        let mut out = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let batch = self
                .store
                .scan(PRINCIPAL_PREFIX.as_bytes(), cursor.as_deref(), 256)?;
            for (_, e) in &batch {
                let p: Principal = decode(&e.value)?;
                if p.kind == kind {
                    out.push(p);
                }
            }
            match batch.last() {
                Some((k, _)) if batch.len() == 256 => cursor = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Object ids of the groups `object_id` belongs to, directly or through
    /// other groups, from local state (request path: the caller fences).
    pub fn groups_of_local(&self, object_id: &str) -> Result<Vec<String>, IdentityError> {
        // Through the groups' name index, not a scan of every principal:
        // every request resolves its caller's groups, and decrypting each
        // application and user record for it made a request's cost grow
        // with the number of principals.
        let prefix = name_key(Kind::Group, "");
        let mut groups: Vec<Principal> = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let batch = self.store.scan(&prefix, cursor.as_deref(), 256)?;
            for (_, e) in &batch {
                let id = String::from_utf8_lossy(&e.value);
                if let Some(p) = self.get_local(&id)? {
                    if p.kind == Kind::Group && p.enabled {
                        groups.push(p);
                    }
                }
            }
            match batch.last() {
                Some((k, _)) if batch.len() == 256 => cursor = Some(k.clone()),
                _ => break,
            }
        }
        // Fixed point over nesting; each round adds at least one group.
        let mut member_of: Vec<String> = Vec::new();
        loop {
            let before = member_of.len();
            for g in &groups {
                if member_of.contains(&g.object_id) {
                    continue;
                }
                let members = g
                    .group
                    .as_ref()
                    .map(|d| d.members.as_slice())
                    .unwrap_or(&[]);
                let hit = members.iter().any(|m| {
                    m.eq_ignore_ascii_case(object_id)
                        || member_of.iter().any(|o| m.eq_ignore_ascii_case(o))
                });
                if hit {
                    member_of.push(g.object_id.clone());
                }
            }
            if member_of.len() == before {
                return Ok(member_of);
            }
        }
    }

    /// Changes one principal under compare-and-set: `change` edits the
    /// record and returns the answer (re-run on a lost race).
    pub async fn update<T, F>(
        &self,
        kind: Kind,
        name_or_id: &str,
        mut change: F,
    ) -> Result<T, IdentityError>
    where
        T: Serialize + serde::de::DeserializeOwned,
        F: FnMut(&mut Principal) -> Result<T, IdentityError>,
    {
        // Identity errors raised inside the plan travel out through the
        // engine error type; keep the original to return it unchanged.
        let mut refused: Option<IdentityError> = None;
        let outcome = write(self.store.as_ref(), None, || {
            let (key, revision, mut p) = match self.current(kind, name_or_id)? {
                Ok(found) => found,
                Err(absent) => return Ok(absent),
            };
            let answer = match change(&mut p) {
                Ok(a) => a,
                Err(e) => {
                    refused = Some(e);
                    return Ok(Plan::Refuse(
                        crate::EngineError::BadParameter(String::new()),
                    ));
                }
            };
            Ok(Plan::Commit(Txn {
                compare: vec![rev(key.clone(), revision)],
                mutations: vec![put(key, encode(&p)?)],
                result: encode(&answer)?,
            }))
        })
        .await;
        match outcome {
            Ok(v) => Ok(v),
            Err(e) => Err(refused.take().unwrap_or_else(|| from_engine(e))),
        }
    }

    /// A principal's storage key, revision and record for a compare-and-set
    /// plan, or the plan's refusal when there is no such principal.
    #[allow(clippy::type_complexity)]
    fn current<T>(
        &self,
        kind: Kind,
        name_or_id: &str,
    ) -> Result<Result<(Vec<u8>, u64, Principal), Plan<T>>, crate::EngineError> {
        let absent = || Ok(Err(Plan::Refuse(not_found_engine(kind, name_or_id))));
        let Some(id) = self.lookup_id(kind, name_or_id).map_err(to_engine)? else {
            return absent();
        };
        let key = principal_key(&id);
        let Some(entry) = self.store.get(&key)? else {
            return absent();
        };
        let record = decode(&entry.value)?;
        Ok(Ok((key, entry.revision, record)))
    }

    /// Enables or disables a principal.
    pub async fn set_enabled(
        &self,
        kind: Kind,
        name_or_id: &str,
        enabled: bool,
    ) -> Result<Principal, IdentityError> {
        self.update(kind, name_or_id, |p| {
            p.enabled = enabled;
            Ok(p.redacted())
        })
        .await
    }

    /// Binds an application to address ranges (empty: unbound); its tokens
    /// are then issued and accepted only from inside them. Returns the app.
    pub async fn set_bound_cidrs(
        &self,
        app: &str,
        cidrs: &[String],
    ) -> Result<Principal, IdentityError> {
        let cidrs = bound_cidrs(cidrs)?;
        self.update(Kind::App, app, |p| {
            p.app_mut()?.bound_cidrs = cidrs.clone();
            Ok(p.redacted())
        })
        .await
    }

    /// Adds (`present`) or removes a member (any principal, by object id)
    /// of a group; returns the group.
    pub async fn set_group_member(
        &self,
        group: &str,
        member: &str,
        present: bool,
    ) -> Result<Principal, IdentityError> {
        let member = member.to_lowercase();
        if present {
            self.store.read_fence().await?;
            if self.get_local(&member)?.is_none() {
                return Err(IdentityError::NotFound(format!("principal {member}")));
            }
        }
        self.update(Kind::Group, group, |p| {
            let members = &mut p
                .group
                .as_mut()
                .ok_or_else(|| IdentityError::BadRequest(format!("{} is not a group", p.name)))?
                .members;
            members.retain(|m| *m != member);
            if present {
                members.push(member.clone());
            }
            Ok(p.redacted())
        })
        .await
    }

    /// Deletes a principal, its name (and client id) mapping, its lockout
    /// state and its group memberships.
    pub async fn delete(&self, kind: Kind, name_or_id: &str) -> Result<(), IdentityError> {
        let outcome = write(self.store.as_ref(), None, || {
            let (key, revision, p) = match self.current(kind, name_or_id)? {
                Ok(found) => found,
                Err(absent) => return Ok(absent),
            };
            let mut mutations = vec![
                Mutation::Delete { key: key.clone() },
                Mutation::Delete {
                    key: name_key(kind, &p.name),
                },
                Mutation::Delete {
                    key: super::lockout::lock_key(&p.object_id),
                },
            ];
            if let Some(app) = &p.app {
                mutations.push(Mutation::Delete {
                    key: client_key(&app.client_id),
                });
            }
            let mut compare = vec![rev(key, revision)];
            // No group keeps a member that no longer exists.
            for (gkey, entry) in self
                .store
                .scan(PRINCIPAL_PREFIX.as_bytes(), None, usize::MAX)?
            {
                let mut g: Principal = decode(&entry.value)?;
                let Some(group) = g.group.as_mut() else {
                    continue;
                };
                if group.members.contains(&p.object_id) {
                    group.members.retain(|m| *m != p.object_id);
                    compare.push(rev(gkey.clone(), entry.revision));
                    mutations.push(put(gkey, encode(&g)?));
                }
            }
            Ok(Plan::Commit(Txn {
                compare,
                mutations,
                result: b"null".to_vec(),
            }))
        })
        .await;
        outcome.map_err(from_engine)
    }
}

fn exists(what: &str) -> crate::EngineError {
    crate::EngineError::Conflict(what.to_owned())
}

fn not_found(kind: Kind, name: &str) -> IdentityError {
    IdentityError::NotFound(format!("{} {name}", kind.as_str()))
}

/// "Not found" carried through the CAS helper (which speaks `EngineError`).
fn not_found_engine(kind: Kind, name: &str) -> crate::EngineError {
    crate::EngineError::NotFound {
        kind: crate::ObjectKind::Secret,
        name: format!("{} {name}", kind.as_str()),
    }
}

fn to_engine(e: IdentityError) -> crate::EngineError {
    match e {
        IdentityError::Engine(e) => e,
        other => crate::EngineError::BadParameter(other.to_string()),
    }
}

/// Maps the CAS helper's errors back: its `NotFound` is ours.
fn from_engine(e: crate::EngineError) -> IdentityError {
    match e {
        crate::EngineError::NotFound { name, .. } => IdentityError::NotFound(name),
        e => IdentityError::Engine(e),
    }
}

/// A new principal record of `kind` with empty kind data (the caller fills
/// it in before [`IdentityEngine::create_principal`]).
pub fn template(kind: Kind, name: &str) -> Principal {
    Principal {
        object_id: String::new(),
        kind,
        name: name.to_owned(),
        enabled: true,
        created: 0,
        app: (kind == Kind::App).then(|| App {
            client_id: new_guid(),
            ..App::default()
        }),
        user: (kind == Kind::User).then(User::default),
        group: (kind == Kind::Group).then(Group::default),
    }
}
