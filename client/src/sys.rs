//! Typed operator API (`/v1/sys/...`).
//!
//! Node-local operations (health, seal status, init, unseal, seal) always go
//! to one node: the pinned one, else the first endpoint. Failing over would
//! send unseal shares or a seal to a node the operator did not mean.
//! Cluster-wide operations (peers, membership, vaults) fail over.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::json;
use zeroize::Zeroize;

use crate::{Client, ClientError, Request, Response};

/// Body of `GET /v1/sys/health`.
///
/// ```
/// use coffer_client::sys::HealthBody;
///
/// let body: HealthBody = serde_json::from_str(r#"{
///     "initialized": true, "sealed": false, "standby": true,
///     "node_id": 2, "leader_id": 1, "term": 7, "commit_index": 1042,
///     "problems": [], "seal_type": "shamir"
/// }"#).unwrap();
/// assert!(body.standby && !body.sealed);
/// assert_eq!((body.node_id, body.leader_id), (Some(2), Some(1)));
/// // Fields the node does not send take their defaults.
/// assert_eq!(body.snapshots, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthBody {
    /// Whether the cluster has been initialised.
    pub initialized: bool,
    /// Whether this node is sealed.
    pub sealed: bool,
    /// Whether this node is a follower.
    pub standby: bool,
    /// This node's id.
    pub node_id: Option<u64>,
    /// Current leader, if known.
    pub leader_id: Option<u64>,
    /// Raft term.
    pub term: Option<u64>,
    /// Commit index.
    pub commit_index: Option<u64>,
    /// Applied index.
    pub applied_index: Option<u64>,
    /// Last log index covered by the node's snapshot.
    pub snapshot_index: Option<u64>,
    /// Server version.
    pub version: Option<String>,
    /// The cluster the node belongs to, once known.
    pub cluster_id: Option<String>,
    /// Why the node cannot serve (storage failure, no leader contact, lag).
    pub problems: Vec<String>,
    /// Automated snapshots taken by this node as leader, if any ran.
    pub snapshots: Option<AutoSnapshots>,
    /// How the cluster unseals (`shamir`, `pkcs11`), once initialised.
    pub seal_type: Option<String>,
    /// Why a node that should unseal itself from its device has not.
    pub seal_reason: Option<String>,
}

/// What the automated snapshots of a node did.
///
/// ```
/// use coffer_client::sys::HealthBody;
///
/// let body: HealthBody = serde_json::from_str(r#"{"initialized": true, "snapshots": {
///     "last_file": "/var/lib/coffer/snapshots/snap-00001042.bin",
///     "last_index": 1042, "last_success_unix_ms": 1764547200000
/// }}"#).unwrap();
/// let snaps = body.snapshots.unwrap();
/// assert_eq!(snaps.last_index, Some(1042));
/// assert_eq!(snaps.last_error, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoSnapshots {
    /// The last file written.
    pub last_file: Option<String>,
    /// Its log index.
    pub last_index: Option<u64>,
    /// When (Unix ms).
    pub last_success_unix_ms: Option<u64>,
    /// The last failure, if after the last success.
    pub last_error: Option<String>,
    /// When (Unix ms).
    pub last_error_unix_ms: Option<u64>,
}

/// Health answer: 200 leader, 429 standby, 501 not initialised, 503 sealed.
///
/// ```no_run
/// # async fn demo(client: coffer_client::Client) -> Result<(), coffer_client::ClientError> {
/// let health = client.sys().pinned(1).health().await?;
/// match health.status {
///     200 => println!("node 1 leads term {:?}", health.body.term),
///     429 => println!("node 1 follows leader {:?}", health.body.leader_id),
///     501 => println!("cluster not initialised"),
///     _ => println!("node 1 is sealed: {:?}", health.body.problems),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// HTTP status the node answered with.
    pub status: u16,
    /// Parsed body.
    pub body: HealthBody,
}

/// Body of `GET /v1/sys/seal-status` and of unseal answers.
///
/// ```
/// use coffer_client::sys::SealStatusBody;
///
/// let status: SealStatusBody = serde_json::from_str(r#"{
///     "type": "shamir", "initialized": true, "sealed": true,
///     "t": 3, "n": 5, "progress": 1, "nonce": "b7f0c1d2-6a3e-4f59-8e21-0c9d8b7a6f5e"
/// }"#).unwrap();
/// assert_eq!(status.seal_type, "shamir");
/// assert_eq!(status.t - status.progress, 2); // shares still needed
/// assert!(!status.recovery_seal);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SealStatusBody {
    /// Seal type, `shamir` or `pkcs11`.
    #[serde(rename = "type")]
    pub seal_type: String,
    /// The shares are recovery shares (pkcs11 seal): they cannot unseal.
    pub recovery_seal: bool,
    /// Why a node that should unseal itself from its device has not.
    pub reason: Option<String>,
    /// Whether the cluster has been initialised.
    pub initialized: bool,
    /// Whether this node is sealed.
    pub sealed: bool,
    /// Threshold of shares needed.
    pub t: u8,
    /// Number of shares.
    pub n: u8,
    /// Shares submitted so far.
    pub progress: u8,
    /// Nonce of the current unseal attempt.
    pub nonce: Option<String>,
    /// This node's id.
    pub node_id: Option<u64>,
}

/// Answer of `POST /v1/sys/init`: shown once, zeroized on drop.
///
/// ```
/// use coffer_client::sys::InitResponse;
///
/// let init: InitResponse = serde_json::from_str(r#"{
///     "keys": ["share-one", "share-two", "share-three"],
///     "root_token": "cf.root-token",
///     "seal_type": "shamir"
/// }"#).unwrap();
/// assert_eq!(init.keys.len(), 3);
/// assert!(init.pgp_fingerprints.is_empty()); // shares in clear
/// // Debug output never shows a share or the root token.
/// let shown = format!("{init:?}");
/// assert!(!shown.contains("share-one") && !shown.contains("cf.root-token"));
/// ```
#[derive(Clone, Deserialize, Serialize)]
pub struct InitResponse {
    /// Unseal key shares.
    pub keys: Vec<String>,
    /// Initial root token.
    pub root_token: String,
    /// Fingerprints of the OpenPGP keys the shares are encrypted to (empty:
    /// the shares are in clear).
    #[serde(default)]
    pub pgp_fingerprints: Vec<String>,
    /// Fingerprint of the key the root token is encrypted to.
    #[serde(default)]
    pub root_token_pgp_fingerprint: Option<String>,
    /// `shamir`, or `pkcs11`: then `keys` are recovery keys (for rekey,
    /// generate-root and seal migration; nodes unseal from the device).
    #[serde(default)]
    pub seal_type: Option<String>,
}

impl fmt::Debug for InitResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitResponse")
            .field("keys", &format_args!("<{} redacted>", self.keys.len()))
            .field("root_token", &"<redacted>")
            .finish()
    }
}

impl Drop for InitResponse {
    fn drop(&mut self) {
        self.keys.iter_mut().for_each(Zeroize::zeroize);
        self.root_token.zeroize();
    }
}

/// One Raft member.
///
/// ```
/// let peer: coffer_client::sys::Peer = serde_json::from_str(
///     r#"{"node_id": 3, "api_addr": "node3:8453", "cluster_addr": "node3:8454"}"#,
/// ).unwrap();
/// assert_eq!(peer.node_id, 3);
/// assert!(!peer.voter); // absent: a learner
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Node id.
    pub node_id: u64,
    /// API address (`host:port`).
    pub api_addr: String,
    /// Cluster (gRPC) address.
    pub cluster_addr: String,
    /// Voter (true) or learner.
    #[serde(default)]
    pub voter: bool,
}

/// Body of the `/v1/sys/raft/*` answers.
///
/// ```
/// let body: coffer_client::sys::PeersBody = serde_json::from_str(r#"{
///     "leader_id": 1, "term": 7,
///     "peers": [
///         {"node_id": 1, "api_addr": "node1:8453", "cluster_addr": "node1:8454", "voter": true},
///         {"node_id": 2, "api_addr": "node2:8453", "cluster_addr": "node2:8454", "voter": true}
///     ]
/// }"#).unwrap();
/// let leader = body.peers.iter().find(|p| Some(p.node_id) == body.leader_id).unwrap();
/// assert_eq!(leader.api_addr, "node1:8453");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersBody {
    /// Current leader, if known.
    #[serde(default)]
    pub leader_id: Option<u64>,
    /// Raft term.
    #[serde(default)]
    pub term: u64,
    /// Members.
    #[serde(default)]
    pub peers: Vec<Peer>,
}

/// A vault.
///
/// ```
/// use coffer_client::sys::VaultInfo;
///
/// let open: VaultInfo = serde_json::from_str(r#"{"name": "payments", "created": 1764547200}"#).unwrap();
/// assert_eq!(open.network_acls, None); // every address may reach it
///
/// let closed: VaultInfo = serde_json::from_str(r#"{"name": "hr", "created": 1764547200,
///     "network_acls": {"defaultAction": "Deny", "bypass": "None", "ipRules": [{"value": "10.0.0.0/8"}]}}"#,
/// ).unwrap();
/// assert_eq!(closed.network_acls.unwrap()["defaultAction"], "Deny");
///
/// // The answer about one vault spells the field in camelCase.
/// let one: VaultInfo = serde_json::from_str(
///     r#"{"name": "hr", "networkAcls": {"defaultAction": "Deny"}}"#,
/// ).unwrap();
/// assert_eq!(one.network_acls.unwrap()["defaultAction"], "Deny");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultInfo {
    /// Vault name.
    pub name: String,
    /// Creation time (Unix seconds).
    #[serde(default)]
    pub created: i64,
    /// The vault's network rules (`defaultAction`, `bypass`, `ipRules`),
    /// absent when every address may reach it. The list answer spells it
    /// `network_acls`, the answers about one vault `networkAcls`: both are
    /// read.
    #[serde(
        default,
        alias = "networkAcls",
        skip_serializing_if = "Option::is_none"
    )]
    pub network_acls: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct VaultList {
    #[serde(default)]
    vaults: Vec<VaultInfo>,
}

/// Handle on the operator API; obtained with [`Client::sys`].
///
/// ```no_run
/// # async fn demo(client: coffer_client::Client, shares: Vec<String>) -> Result<(), coffer_client::ClientError> {
/// use std::time::Duration;
///
/// // Unseal node 2: node-local calls never fail over to another node.
/// let node2 = client.sys().pinned(2).with_deadline(Duration::from_secs(5));
/// for share in &shares {
///     if !node2.unseal(share).await?.sealed {
///         break;
///     }
/// }
/// let peers = client.sys().peers().await?;
/// println!("{} members, leader {:?}", peers.peers.len(), peers.leader_id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Sys<'a> {
    client: &'a Client,
    pinned: Option<usize>,
    request_id: Option<String>,
    deadline: Option<std::time::Duration>,
}

impl Client {
    /// The operator API; node-local calls go to the first endpoint.
    pub fn sys(&self) -> Sys<'_> {
        Sys {
            client: self,
            pinned: None,
            request_id: None,
            deadline: None,
        }
    }
}

impl<'a> Sys<'a> {
    /// Sends every call to endpoint `index` only.
    pub fn pinned(mut self, index: usize) -> Self {
        self.pinned = Some(index);
        self
    }

    /// Uses `id` as `x-ms-client-request-id` for the calls of this handle.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    /// Gives up on each call of this handle after `deadline`.
    pub fn with_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// `GET /v1/sys/health`; 429, 501 and 503 are answers, not errors.
    pub async fn health(&self) -> Result<Health, ClientError> {
        let resp = self.local(Request::get("/v1/sys/health")).await?;
        let status = resp.status.as_u16();
        if !matches!(status, 200 | 429 | 501 | 503) {
            return Err(ClientError::from_response(status, &resp.body));
        }
        Ok(Health {
            status,
            body: resp.json()?,
        })
    }

    /// `GET /v1/sys/seal-status`.
    pub async fn seal_status(&self) -> Result<SealStatusBody, ClientError> {
        ok(self.local(Request::get("/v1/sys/seal-status")).await?)?.json()
    }

    /// `POST /v1/sys/init`: creates the seal; the answer is shown only once.
    pub async fn init(&self, shares: u8, threshold: u8) -> Result<InitResponse, ClientError> {
        let req = Request::post("/v1/sys/init")
            .json(&json!({"secret_shares": shares, "secret_threshold": threshold}))?;
        ok(self.local(req).await?)?.json()
    }

    /// `POST /v1/sys/unseal` with one key share.
    pub async fn unseal(&self, key: &str) -> Result<SealStatusBody, ClientError> {
        let req = Request::post("/v1/sys/unseal").json(&json!({ "key": key }))?;
        ok(self.local(req).await?)?.json()
    }

    /// `POST /v1/sys/unseal` with `reset`: forgets submitted shares.
    pub async fn unseal_reset(&self) -> Result<SealStatusBody, ClientError> {
        let req = Request::post("/v1/sys/unseal").json(&json!({"reset": true}))?;
        ok(self.local(req).await?)?.json()
    }

    /// `POST /v1/sys/seal`: seals this node.
    pub async fn seal(&self) -> Result<(), ClientError> {
        ok(self.local(Request::post("/v1/sys/seal")).await?).map(drop)
    }

    /// `GET /v1/sys/raft/peers`.
    pub async fn peers(&self) -> Result<PeersBody, ClientError> {
        ok(self.any(Request::get("/v1/sys/raft/peers")).await?)?.json()
    }

    /// `POST /v1/sys/raft/join`: adds a node (learner, then voter).
    pub async fn join(
        &self,
        node_id: u64,
        api_addr: &str,
        cluster_addr: &str,
    ) -> Result<PeersBody, ClientError> {
        let req = Request::post("/v1/sys/raft/join").json(&json!({
            "node_id": node_id, "api_addr": api_addr, "cluster_addr": cluster_addr
        }))?;
        ok(self.any(req).await?)?.json()
    }

    /// `POST /v1/sys/raft/join` with `"dr": true`: adds a disaster-recovery
    /// replica (a learner the cluster never promotes).
    pub async fn join_dr(
        &self,
        node_id: u64,
        api_addr: &str,
        cluster_addr: &str,
    ) -> Result<PeersBody, ClientError> {
        let req = Request::post("/v1/sys/raft/join").json(&json!({
            "node_id": node_id, "api_addr": api_addr, "cluster_addr": cluster_addr, "dr": true
        }))?;
        ok(self.any(req).await?)?.json()
    }

    /// `GET /v1/sys/dr/status` of this node.
    pub async fn dr_status(&self) -> Result<serde_json::Value, ClientError> {
        ok(self.local(Request::get("/v1/sys/dr/status")).await?)?.json()
    }

    /// `POST /v1/sys/dr/promote` on this node (a DR replica), with a DR
    /// operation token generated on it. Returns the node's message.
    pub async fn dr_promote(&self, token: &str) -> Result<String, ClientError> {
        let req =
            Request::post("/v1/sys/dr/promote").json(&json!({ "dr_operation_token": token }))?;
        let body: serde_json::Value = ok(self.local(req).await?)?.json()?;
        Ok(body["message"].as_str().unwrap_or_default().to_string())
    }

    /// `POST /v1/sys/raft/remove`.
    pub async fn remove(&self, node_id: u64) -> Result<PeersBody, ClientError> {
        let req = Request::post("/v1/sys/raft/remove").json(&json!({ "node_id": node_id }))?;
        ok(self.any(req).await?)?.json()
    }

    /// `POST /v1/sys/raft/repair` to this node: it fetches the leader's
    /// snapshot and restarts to install it (only a node that found its
    /// state damaged accepts). Returns what the node said it did.
    pub async fn repair(&self) -> Result<String, ClientError> {
        #[derive(Deserialize)]
        struct Repair {
            repair: String,
        }
        let r: Repair = ok(self.local(Request::post("/v1/sys/raft/repair")).await?)?.json()?;
        Ok(r.repair)
    }

    /// `GET /v1/sys/vaults`.
    pub async fn list_vaults(&self) -> Result<Vec<VaultInfo>, ClientError> {
        let list: VaultList = ok(self.any(Request::get("/v1/sys/vaults")).await?)?.json()?;
        Ok(list.vaults)
    }

    /// `PUT /v1/sys/vaults/{name}`.
    pub async fn create_vault(&self, name: &str) -> Result<VaultInfo, ClientError> {
        let req = Request::put(format!("/v1/sys/vaults/{}", vault_name(name)?));
        ok(self.any(req).await?)?.json()
    }

    /// `PUT /v1/sys/vaults/{name}` with the environment's rules from its
    /// creation: `network_acls` (`{"defaultAction","bypass","ipRules":[{"value"}]}`)
    /// and the object ids made Key Vault Administrator at its `/`.
    pub async fn create_vault_with(
        &self,
        name: &str,
        network_acls: Option<&serde_json::Value>,
        administrators: &[String],
    ) -> Result<VaultInfo, ClientError> {
        let req = Request::put(format!("/v1/sys/vaults/{}", vault_name(name)?))
            .json(&json!({ "networkAcls": network_acls, "administrators": administrators }))?;
        ok(self.any(req).await?)?.json()
    }

    /// `GET /v1/sys/vaults/{name}/network`: `{"name","networkAcls"}`.
    pub async fn vault_network(&self, name: &str) -> Result<serde_json::Value, ClientError> {
        let req = Request::get(format!("/v1/sys/vaults/{}/network", vault_name(name)?));
        ok(self.any(req).await?)?.json()
    }

    /// `PUT /v1/sys/vaults/{name}/network`: replaces the rules;
    /// `DELETE` (with `None`) removes them (every address allowed).
    pub async fn set_vault_network(
        &self,
        name: &str,
        network_acls: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let path = format!("/v1/sys/vaults/{}/network", vault_name(name)?);
        let req = match network_acls {
            Some(acls) => Request::put(path).json(acls)?,
            None => Request::delete(path),
        };
        ok(self.any(req).await?)?.json()
    }

    /// `DELETE /v1/sys/vaults/{name}`: removes the vault and all its data.
    pub async fn delete_vault(&self, name: &str) -> Result<(), ClientError> {
        let req = Request::delete(format!("/v1/sys/vaults/{}", vault_name(name)?));
        ok(self.any(req).await?).map(drop)
    }

    pub(crate) async fn local(&self, req: Request) -> Result<Response, ClientError> {
        self.client
            .send_to(self.pinned.unwrap_or(0), self.with_id(req))
            .await
    }

    pub(crate) async fn download_local(
        &self,
        req: Request,
        sink: impl FnMut(&[u8]) -> std::io::Result<()>,
        progress: impl FnMut(u64, Option<u64>),
    ) -> Result<Response, ClientError> {
        self.client
            .download_to(self.pinned.unwrap_or(0), self.with_id(req), sink, progress)
            .await
    }

    pub(crate) async fn any(&self, req: Request) -> Result<Response, ClientError> {
        let req = self.with_id(req);
        match self.pinned {
            Some(idx) => self.client.send_to(idx, req).await,
            None => self.client.send(req).await,
        }
    }

    fn with_id(&self, mut req: Request) -> Request {
        if let Some(id) = &self.request_id {
            req.request_id = Some(id.clone());
        }
        if self.deadline.is_some() {
            req.deadline = self.deadline;
        }
        req
    }
}

pub(crate) fn ok(resp: Response) -> Result<Response, ClientError> {
    resp.error_for_status()
}

fn vault_name(name: &str) -> Result<&str, ClientError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        Ok(name)
    } else {
        Err(ClientError::Config(format!(
            "invalid vault name {name:?}: use letters, digits and '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_status_decodes_contract_shape() {
        let s: SealStatusBody = serde_json::from_str(
            r#"{"type":"shamir","initialized":true,"sealed":true,"t":3,"n":5,"progress":1,"nonce":"ab","node_id":2}"#,
        )
        .unwrap();
        assert_eq!((s.t, s.n, s.progress), (3, 5, 1));
        assert_eq!(s.seal_type, "shamir");
        assert_eq!(s.node_id, Some(2));
    }

    #[test]
    fn init_response_debug_is_redacted() {
        let r: InitResponse =
            serde_json::from_str(r#"{"keys":["share-one"],"root_token":"root-tok"}"#).unwrap();
        let dbg = format!("{r:?}");
        assert!(!dbg.contains("share-one") && !dbg.contains("root-tok"));
    }

    #[test]
    fn vault_names_are_checked() {
        assert!(vault_name("team-a").is_ok());
        assert!(vault_name("a/b").is_err());
    }
}
