//! Vaults: named containers of secrets (the Host of a Key Vault request).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cas::{decode, encode, write, Plan};
use super::clock::{system_clock, Clock};
use super::error::EngineError;
use super::names::{is_valid_vault_name, vault_key, VAULT_NAME_RULE, VAULT_PREFIX, VAULT_TABLES};
use super::network::NetworkAcls;
use super::store::{Compare, Mutation, Store, Txn};

/// A vault as the operator API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultInfo {
    /// Lower-case vault name.
    pub name: String,
    /// Unix seconds of creation.
    pub created: u64,
    /// Which client addresses may reach the vault; none: every address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_acls: Option<NetworkAcls>,
}

/// Creates, lists and deletes vaults.
pub struct VaultsEngine {
    store: Arc<dyn Store>,
    clock: Clock,
}

impl VaultsEngine {
    /// An engine over `store` using the system clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_clock(store, system_clock())
    }

    /// An engine over `store` using `clock` (Unix seconds).
    pub fn with_clock(store: Arc<dyn Store>, clock: Clock) -> Self {
        Self { store, clock }
    }

    /// Creates the vault; idempotent: an existing vault is returned as is.
    /// Names are case-insensitive and stored lower-case.
    pub async fn create(
        &self,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<VaultInfo, EngineError> {
        self.create_with(name, None, request_id).await
    }

    /// Creates the vault with its network rules in force from the first
    /// write (an environment's rules come with it, never after it). An
    /// existing vault is returned as is: its rules change only through
    /// [`Self::set_network`].
    pub async fn create_with(
        &self,
        name: &str,
        network_acls: Option<NetworkAcls>,
        request_id: Option<&str>,
    ) -> Result<VaultInfo, EngineError> {
        let name = normalize(name)?;
        let network_acls = network_acls.map(NetworkAcls::normalized).transpose()?;
        let key = vault_key(&name);
        write(self.store.as_ref(), request_id, || {
            if let Some(e) = self.store.get(&key)? {
                return Ok(Plan::Answer(decode(&e.value)?));
            }
            let info = VaultInfo {
                name: name.clone(),
                created: (self.clock)(),
                network_acls: network_acls.clone(),
            };
            let bytes = encode(&info)?;
            let txn = Txn {
                compare: vec![Compare::Revision {
                    key: key.clone(),
                    revision: 0,
                }],
                mutations: vec![Mutation::Put {
                    key: key.clone(),
                    value: bytes.clone(),
                }],
                result: bytes,
            };
            Ok(Plan::Commit(txn))
        })
        .await
    }

    /// Replaces the vault's network rules (`None`: every address allowed).
    /// The record and its rules change in one replicated write.
    pub async fn set_network(
        &self,
        name: &str,
        network_acls: Option<NetworkAcls>,
        request_id: Option<&str>,
    ) -> Result<VaultInfo, EngineError> {
        let name = normalize(name)?;
        let network_acls = network_acls.map(NetworkAcls::normalized).transpose()?;
        let key = vault_key(&name);
        write(self.store.as_ref(), request_id, || {
            let Some(entry) = self.store.get(&key)? else {
                return Ok(Plan::Refuse(EngineError::VaultNotFound(name.clone())));
            };
            let mut info: VaultInfo = decode(&entry.value)?;
            info.network_acls = network_acls.clone();
            let bytes = encode(&info)?;
            Ok(Plan::Commit(Txn {
                compare: vec![Compare::Revision {
                    key: key.clone(),
                    revision: entry.revision,
                }],
                mutations: vec![Mutation::Put {
                    key: key.clone(),
                    value: bytes.clone(),
                }],
                result: bytes,
            }))
        })
        .await
    }

    /// One vault's record after a read fence.
    pub async fn get(&self, name: &str) -> Result<VaultInfo, EngineError> {
        let name = normalize(name)?;
        self.store.read_fence().await?;
        self.get_local(&name)?
            .ok_or(EngineError::VaultNotFound(name))
    }

    /// One vault's record from this node's applied state, without a fence:
    /// for checks that run before a request is authenticated (network
    /// rules), where a round to the leader per request would let anyone
    /// load the cluster. `None` for an unknown or invalid name.
    pub fn get_local(&self, name: &str) -> Result<Option<VaultInfo>, EngineError> {
        let Ok(name) = normalize(name) else {
            return Ok(None);
        };
        match self.store.get(&vault_key(&name))? {
            Some(entry) => Ok(Some(decode(&entry.value)?)),
            None => Ok(None),
        }
    }

    /// Every vault, ordered by name.
    pub async fn list(&self) -> Result<Vec<VaultInfo>, EngineError> {
        self.store.read_fence().await?;
        let mut out = Vec::new();
        let mut cursor: Option<Vec<u8>> = None;
        loop {
            let batch = self.store.scan(VAULT_PREFIX, cursor.as_deref(), 256)?;
            for (_, e) in &batch {
                out.push(decode(&e.value)?);
            }
            match batch.last() {
                Some((k, _)) if batch.len() == 256 => cursor = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Deletes the vault and every secret and key in it (no soft delete).
    pub async fn delete(&self, name: &str, request_id: Option<&str>) -> Result<(), EngineError> {
        let name = normalize(name)?;
        let key = vault_key(&name);
        write(self.store.as_ref(), request_id, || {
            let Some(entry) = self.store.get(&key)? else {
                return Ok(Plan::Refuse(EngineError::VaultNotFound(name.clone())));
            };
            Ok(Plan::Commit(Txn {
                compare: vec![Compare::Revision {
                    key: key.clone(),
                    revision: entry.revision,
                }],
                mutations: vault_data_prefixes(&name)
                    .into_iter()
                    .map(|prefix| Mutation::DeletePrefix { prefix })
                    .chain([Mutation::Delete { key: key.clone() }])
                    .collect(),
                result: b"null".to_vec(),
            }))
        })
        .await
    }

    /// Whether the vault exists.
    pub async fn exists(&self, name: &str) -> Result<bool, EngineError> {
        let Ok(name) = normalize(name) else {
            return Ok(false);
        };
        self.store.read_fence().await?;
        Ok(self.store.get(&vault_key(&name))?.is_some())
    }
}

/// Validates and lower-cases a vault name.
fn normalize(name: &str) -> Result<String, EngineError> {
    if is_valid_vault_name(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(EngineError::BadParameter(format!(
            "vault names are {VAULT_NAME_RULE}"
        )))
    }
}

/// Every prefix holding one vault's objects.
fn vault_data_prefixes(vault: &str) -> Vec<Vec<u8>> {
    VAULT_TABLES
        .iter()
        .map(|table| format!("{table}/{vault}/").into_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem_store::MemStore;

    fn engine() -> (Arc<MemStore>, VaultsEngine) {
        let store = Arc::new(MemStore::new());
        let clock: Clock = Arc::new(|| 1_700_000_000);
        (store.clone(), VaultsEngine::with_clock(store, clock))
    }

    #[tokio::test]
    async fn create_is_idempotent_and_case_insensitive() {
        let (_, v) = engine();
        let a = v.create("Prod", Some("r1")).await.unwrap();
        assert_eq!(a.name, "prod");
        assert_eq!(a.created, 1_700_000_000);
        let b = v.create("PROD", Some("r2")).await.unwrap();
        assert_eq!(a, b);
        assert!(v.exists("prod").await.unwrap());
        assert_eq!(v.list().await.unwrap(), vec![a]);
    }

    #[tokio::test]
    async fn network_rules_come_with_the_vault_and_change_in_its_record() {
        use crate::network::{Bypass, DefaultAction, IpRule, NetworkAcls};
        let (_, v) = engine();
        let deny = NetworkAcls {
            default_action: DefaultAction::Deny,
            bypass: Bypass::Operator,
            ip_rules: vec![IpRule {
                value: "10.0.0.9/8".into(),
            }],
        };
        let made = v.create_with("prod", Some(deny), None).await.unwrap();
        let rules = made.network_acls.unwrap();
        assert_eq!(rules.ip_rules[0].value, "10.0.0.0/8");
        assert!(rules.allows("10.2.3.4".parse().unwrap()));
        assert!(!rules.allows("11.2.3.4".parse().unwrap()));
        // Creating again keeps the rules; set_network replaces them.
        let again = v.create("prod", None).await.unwrap();
        assert!(again.network_acls.is_some());
        v.set_network("prod", None, None).await.unwrap();
        assert_eq!(v.get("prod").await.unwrap().network_acls, None);
        assert_eq!(v.get_local("PROD").unwrap().unwrap().name, "prod");
        assert!(v.get_local("nope").unwrap().is_none());
        assert!(matches!(
            v.set_network("nope", None, None).await,
            Err(EngineError::VaultNotFound(_))
        ));
        let bad = NetworkAcls {
            ip_rules: vec![IpRule {
                value: "not-an-address".into(),
            }],
            ..NetworkAcls::default()
        };
        assert!(matches!(
            v.set_network("prod", Some(bad), None).await,
            Err(EngineError::BadParameter(_))
        ));
    }

    #[tokio::test]
    async fn deleting_a_vault_removes_its_secrets_and_keys_only() {
        use crate::keys::{CreateKey, KeyAttributes, KeysEngine};
        use crate::secrets::{SecretsEngine, SetSecret};
        use coffer_crypto::KeyType;
        let (store, v) = engine();
        v.create("gone", None).await.unwrap();
        v.create("kept", None).await.unwrap();
        let secrets = SecretsEngine::new(store.clone());
        let keys = KeysEngine::new(store.clone(), None);
        for vault in ["gone", "kept"] {
            let set = SetSecret {
                value: "v".into(),
                ..SetSecret::default()
            };
            secrets.set(vault, "s", set, None).await.unwrap();
            let spec = CreateKey {
                kty: KeyType::Ec,
                key_size: None,
                curve: None,
                public_exponent: None,
                attributes: KeyAttributes::default(),
            };
            keys.create(vault, "k", spec, None).await.unwrap();
        }
        v.delete("gone", None).await.unwrap();
        let left: Vec<String> = store
            .keys()
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect();
        assert!(
            !left
                .iter()
                .any(|k| k.contains("/gone/") || k.ends_with("/gone")),
            "{left:?}"
        );
        assert!(left.iter().any(|k| k.starts_with("kv/kept/")), "{left:?}");
        assert!(left.iter().any(|k| k.starts_with("sv/kept/")), "{left:?}");
    }

    #[tokio::test]
    async fn bad_names_are_rejected() {
        let (store, v) = engine();
        assert!(matches!(
            v.create("a/b", None).await,
            Err(EngineError::BadParameter(_))
        ));
        assert!(matches!(
            v.create("", None).await,
            Err(EngineError::BadParameter(_))
        ));
        for dash in ["-vault", "vault-"] {
            assert!(matches!(
                v.create(dash, None).await,
                Err(EngineError::BadParameter(m)) if m.contains("neither starting nor ending")
            ));
        }
        assert!(store.keys().is_empty());
        assert!(!v.exists("a/b").await.unwrap());
    }

    #[tokio::test]
    async fn delete_removes_the_vault_and_only_its_data() {
        let (store, v) = engine();
        v.create("a", None).await.unwrap();
        v.create("a-b", None).await.unwrap();
        let secrets = crate::secrets::SecretsEngine::new(store.clone());
        let params = crate::secrets::SetSecret {
            value: "x".into(),
            ..Default::default()
        };
        secrets.set("a", "s1", params.clone(), None).await.unwrap();
        secrets.set("a-b", "s1", params, None).await.unwrap();
        v.delete("A", Some("d1")).await.unwrap();
        assert!(!v.exists("a").await.unwrap());
        assert!(store
            .keys()
            .iter()
            .all(|k| !k.starts_with(b"s/a/") && !k.starts_with(b"sv/a/")));
        assert!(secrets.get("a-b", "s1", None).await.is_ok());
        assert!(matches!(
            v.delete("a", Some("d2")).await,
            Err(EngineError::VaultNotFound(_))
        ));
    }

    #[tokio::test]
    async fn retried_delete_whose_answer_was_lost_succeeds() {
        let (store, v) = engine();
        v.create("a", None).await.unwrap();
        store.lose_next_answers(1);
        assert!(v.delete("a", Some("d1")).await.is_err());
        v.delete("a", Some("d1")).await.unwrap();
        assert!(!v.exists("a").await.unwrap());
    }
}
