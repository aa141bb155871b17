//! User sessions: the device authorization grant (a device asks for a
//! code, the user approves it at the node's page with password and TOTP,
//! the device polls for its tokens) and refresh tokens. Only SHA-256 hashes
//! of device codes and refresh tokens are stored; both are single use.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::principals::{Kind, Principal};
use super::signing::Proof;
use super::{put, rev};
use super::{IdentityEngine, IdentityError};
use crate::cas::{decode, encode, write, Plan};
use crate::store::{Mutation, Txn};

/// How long a device code can be approved.
pub const DEVICE_CODE_SECS: u64 = 900;
/// How long a refresh token lives (unused).
pub const REFRESH_SECS: u64 = 24 * 3600;
/// Seconds between polls the client is asked to keep.
pub const POLL_INTERVAL_SECS: u64 = 2;
/// Letters of user codes: no look-alikes (0/O, 1/I/L).
const USER_CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A pending or approved device authorization.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceGrant {
    /// The client that asked.
    pub client_id: String,
    /// The requested resource.
    pub audience: String,
    /// What the user types (`ABCD-EFGH`).
    pub user_code: String,
    /// Unix second after which it is void.
    pub expires: u64,
    /// Set once a user approved: their object id and whether they gave a
    /// second factor.
    pub approved: Option<Approval>,
}

/// Who approved a device code.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Approval {
    /// The user's object id.
    pub object_id: String,
    /// A TOTP code was given.
    pub mfa: bool,
}

/// A refresh token's record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RefreshGrant {
    /// The user's object id.
    pub object_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Whether the original sign-in had a second factor.
    pub mfa: bool,
    /// Unix second after which it is void.
    pub expires: u64,
}

/// What a device-code poll found.
#[derive(Debug)]
pub enum DevicePoll {
    /// Not approved yet.
    Pending,
    /// Approved: the user, the proof, the resource (the code is consumed).
    Approved(Box<Principal>, Proof, String),
}

/// What `devicecode` hands out.
#[derive(Debug)]
pub struct NewDeviceCode {
    /// The secret the device polls with.
    pub device_code: Zeroizing<String>,
    /// The code the user types on the page.
    pub user_code: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn device_key(device_code: &str) -> Vec<u8> {
    format!("idn/dev/{}", hash(device_code)).into_bytes()
}

fn user_code_key(user_code: &str) -> Vec<u8> {
    format!("idn/ucode/{}", normalize_user_code(user_code)).into_bytes()
}

fn refresh_key(token: &str) -> Vec<u8> {
    format!("idn/rt/{}", hash(token)).into_bytes()
}

/// Upper-case, without separators or spaces.
fn normalize_user_code(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn random_token(prefix: &str) -> Zeroizing<String> {
    let bytes: [u8; 32] = rand::random();
    Zeroizing::new(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

fn new_user_code() -> String {
    let bytes: [u8; 8] = rand::random();
    let letters: String = bytes
        .iter()
        .map(|b| USER_CODE_ALPHABET[usize::from(*b) % USER_CODE_ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &letters[..4], &letters[4..])
}

fn invalid_grant(msg: &str) -> IdentityError {
    IdentityError::InvalidCredentials(msg.to_owned())
}

impl IdentityEngine {
    /// Starts a device authorization for `client_id` and `audience`.
    pub async fn start_device_code(
        &self,
        client_id: &str,
        audience: &str,
    ) -> Result<NewDeviceCode, IdentityError> {
        let device_code = random_token("cfd.");
        let user_code = new_user_code();
        let grant = DeviceGrant {
            client_id: client_id.to_owned(),
            audience: audience.to_owned(),
            user_code: user_code.clone(),
            expires: self.now() + DEVICE_CODE_SECS,
            approved: None,
        };
        let dkey = device_key(&device_code);
        let ukey = user_code_key(&user_code);
        write::<(), _>(self.store.as_ref(), None, || {
            Ok(Plan::Commit(Txn {
                compare: vec![rev(dkey.clone(), 0), rev(ukey.clone(), 0)],
                mutations: vec![
                    put(dkey.clone(), encode(&grant)?),
                    put(ukey.clone(), dkey.clone()),
                ],
                result: b"null".to_vec(),
            }))
        })
        .await?;
        Ok(NewDeviceCode {
            device_code,
            user_code,
            expires_in: DEVICE_CODE_SECS,
        })
    }

    /// Deletes expired device codes and refresh tokens (leader work);
    /// returns how many records went.
    /// Creates the tenant if it does not exist yet: 1 if created, else 0.
    async fn tenant_at_start(&self) -> Result<usize, crate::EngineError> {
        let missing = matches!(self.tenant(), Ok(None));
        if !missing {
            return Ok(0);
        }
        match self.ensure_tenant().await {
            Ok(_) => Ok(1),
            Err(IdentityError::Engine(e)) => Err(e),
            // Only storage can fail here; anything else is a store fault.
            Err(e) => Err(crate::store::StoreError::Internal(e.to_string()).into()),
        }
    }

    pub async fn sweep_sessions(&self, now: u64) -> Result<usize, crate::EngineError> {
        let expired = self.expired_sessions(now)?;
        let count = expired.len();
        if count > 0 {
            // Deleting an expired grant is right whatever happened to it
            // meanwhile: no comparison needed.
            self.store
                .commit(
                    None,
                    Txn {
                        compare: Vec::new(),
                        mutations: expired,
                        result: Vec::new(),
                    },
                )
                .await?;
        }
        Ok(count)
    }

    /// Deletions of expired device and refresh grants (at most a few
    /// hundred per kind and sweep).
    fn expired_sessions(&self, now: u64) -> Result<Vec<Mutation>, crate::EngineError> {
        let mut out = Vec::new();
        let mut gone = std::collections::HashSet::new();
        for (key, e) in self.store.scan(b"idn/dev/", None, 256)? {
            if decode::<DeviceGrant>(&e.value).map_or(true, |g| g.expires < now) {
                gone.insert(key.clone());
                out.push(Mutation::Delete { key });
            }
        }
        // A user code goes with its device code (or when that is gone).
        for (key, e) in self.store.scan(b"idn/ucode/", None, 256)? {
            let device = e.value.to_vec();
            if gone.contains(&device) || self.store.get(&device)?.is_none() {
                out.push(Mutation::Delete { key });
            }
        }
        for (key, e) in self.store.scan(b"idn/rt/", None, 256)? {
            if decode::<RefreshGrant>(&e.value).map_or(true, |g| g.expires < now) {
                out.push(Mutation::Delete { key });
            }
        }
        Ok(out)
    }

    /// The user approves `user_code` by signing in (password, TOTP when
    /// enrolled). Returns the client id that will get the tokens.
    pub async fn approve_device_code(
        &self,
        user_code: &str,
        username: &str,
        password: &str,
        totp: Option<&str>,
    ) -> Result<String, IdentityError> {
        let ukey = user_code_key(user_code);
        let now = self.now();
        let unknown = || IdentityError::NotFound("this code is unknown or expired".into());
        // The code may have been handed out by another node a moment ago.
        self.store.read_fence().await?;
        let dkey = self.store.get(&ukey)?.ok_or_else(unknown)?.value.to_vec();
        let pending: DeviceGrant = decode(&self.store.get(&dkey)?.ok_or_else(unknown)?.value)?;
        if pending.expires < now || pending.approved.is_some() {
            return Err(unknown());
        }
        let (user, proof) = self.sign_in_user(username, password, totp).await?;
        let mfa = matches!(proof, Proof::Password { mfa: true });
        let approval = Approval {
            object_id: user.object_id.clone(),
            mfa,
        };
        write::<(), _>(self.store.as_ref(), None, || {
            let Some(e) = self.store.get(&dkey)? else {
                return Ok(Plan::Refuse(crate::EngineError::Conflict(
                    "the code expired".into(),
                )));
            };
            let mut grant: DeviceGrant = decode(&e.value)?;
            if grant.approved.is_some() {
                return Ok(Plan::Refuse(crate::EngineError::Conflict(
                    "the code was already used".into(),
                )));
            }
            grant.approved = Some(approval.clone());
            Ok(Plan::Commit(Txn {
                compare: vec![rev(dkey.clone(), e.revision)],
                mutations: vec![put(dkey.clone(), encode(&grant)?)],
                result: b"null".to_vec(),
            }))
        })
        .await
        .map_err(|_| unknown())?;
        tracing::info!(oid = %user.object_id, mfa, "device code approved");
        Ok(pending.client_id)
    }

    /// A device polls with its code: pending, or the approved user (the
    /// grant is consumed, so the tokens are handed out once).
    pub async fn poll_device_code(
        &self,
        client_id: &str,
        device_code: &str,
    ) -> Result<DevicePoll, IdentityError> {
        let dkey = device_key(device_code);
        let now = self.now();
        // The approval may have been given on another node.
        self.store.read_fence().await?;
        let Some(e) = self.store.get(&dkey)? else {
            return Err(invalid_grant("the device code is unknown, used or expired"));
        };
        let grant: DeviceGrant = decode(&e.value)?;
        if grant.expires < now || !grant.client_id.eq_ignore_ascii_case(client_id) {
            return Err(invalid_grant("the device code is unknown, used or expired"));
        }
        let Some(approval) = grant.approved.clone() else {
            return Ok(DevicePoll::Pending);
        };
        let ukey = user_code_key(&grant.user_code);
        write::<(), _>(self.store.as_ref(), None, || {
            match self.store.get(&dkey)? {
                Some(e) => Ok(Plan::Commit(Txn {
                    compare: vec![rev(dkey.clone(), e.revision)],
                    mutations: vec![
                        Mutation::Delete { key: dkey.clone() },
                        Mutation::Delete { key: ukey.clone() },
                    ],
                    result: b"null".to_vec(),
                })),
                None => Ok(Plan::Refuse(crate::EngineError::Conflict("used".into()))),
            }
        })
        .await
        .map_err(|_| invalid_grant("the device code was already redeemed"))?;
        let user = self
            .get_local(&approval.object_id)?
            .filter(|p| p.enabled && p.kind == Kind::User)
            .ok_or_else(|| invalid_grant("the user is disabled or deleted"))?;
        Ok(DevicePoll::Approved(
            Box::new(user),
            Proof::Password { mfa: approval.mfa },
            grant.audience,
        ))
    }

    /// Issues a refresh token for a signed-in user.
    pub async fn new_refresh_token(
        &self,
        user: &Principal,
        client_id: &str,
        mfa: bool,
    ) -> Result<Zeroizing<String>, IdentityError> {
        let token = random_token("cfr.");
        let key = refresh_key(&token);
        let grant = RefreshGrant {
            object_id: user.object_id.clone(),
            client_id: client_id.to_owned(),
            mfa,
            expires: self.now() + REFRESH_SECS,
        };
        write::<(), _>(self.store.as_ref(), None, || {
            Ok(Plan::Commit(Txn {
                compare: vec![rev(key.clone(), 0)],
                mutations: vec![put(key.clone(), encode(&grant)?)],
                result: b"null".to_vec(),
            }))
        })
        .await?;
        Ok(token)
    }

    /// Redeems a refresh token (single use: it is deleted; the caller
    /// issues a new one).
    pub async fn redeem_refresh_token(
        &self,
        client_id: &str,
        token: &str,
    ) -> Result<(Principal, Proof), IdentityError> {
        let key = refresh_key(token);
        let now = self.now();
        let refused = || invalid_grant("the refresh token is unknown, used or expired");
        let grant: RefreshGrant = write(self.store.as_ref(), None, || {
            let Some(e) = self.store.get(&key)? else {
                return Ok(Plan::Refuse(crate::EngineError::Conflict("unknown".into())));
            };
            Ok(Plan::Commit(Txn {
                compare: vec![rev(key.clone(), e.revision)],
                mutations: vec![Mutation::Delete { key: key.clone() }],
                result: e.value.to_vec(),
            }))
        })
        .await
        .map_err(|_| refused())?;
        if grant.expires < now || !grant.client_id.eq_ignore_ascii_case(client_id) {
            return Err(refused());
        }
        let user = self
            .get_local(&grant.object_id)?
            .filter(|p| p.enabled && p.kind == Kind::User)
            .ok_or_else(refused)?;
        Ok((user, Proof::Password { mfa: grant.mfa }))
    }
}

#[async_trait::async_trait]
impl crate::registry::Engine for IdentityEngine {
    async fn leader_work(&self, now: u64) -> Vec<crate::registry::Done> {
        vec![
            // The tenant exists from the first leader tick after the cluster
            // is unsealed (init cannot write it: the barrier is still sealed
            // then), so the 401 challenge names its GUID from the start.
            ("created the identity tenant", self.tenant_at_start().await),
            (
                "swept expired sign-in sessions",
                self.sweep_sessions(now).await,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_typeable() {
        let code = new_user_code();
        assert_eq!(code.len(), 9);
        assert_eq!(
            normalize_user_code(&code.to_lowercase()),
            code.replace('-', "")
        );
        assert!(code
            .bytes()
            .all(|b| b == b'-' || USER_CODE_ALPHABET.contains(&b)));
    }
}
