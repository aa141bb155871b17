//! The per-cluster audit key: HMACs the sensitive fields of records (bearer
//! tokens), so an auditor can check whether a given value was used without
//! the trail holding it. Kept in the barrier like every other secret of the
//! cluster, created once by whichever node needs it first.

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use crate::error::EngineError;
use crate::store::{Compare, Mutation, Store, Txn};

/// Storage key of the audit key (barrier-encrypted like every value).
const KEY_KEY: &[u8] = b"aud/hmac-key";

/// Prefix of every HMAC'd field value.
pub const HMAC_PREFIX: &str = "hmac-sha256:";

/// The cluster's audit HMAC key.
pub struct AuditKey(hmac::Key);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(…)")
    }
}

impl AuditKey {
    /// Reads the cluster's key, creating it when the cluster has none.
    pub async fn load_or_create(store: &dyn Store) -> Result<Self, EngineError> {
        for _ in 0..crate::cas::MAX_ATTEMPTS {
            if let Some(entry) = store.get(KEY_KEY)? {
                return Ok(Self::from_bytes(&entry.value));
            }
            let fresh = Zeroizing::new(rand::random::<[u8; 32]>());
            let txn = Txn {
                compare: vec![Compare::Revision {
                    key: KEY_KEY.to_vec(),
                    revision: 0,
                }],
                mutations: vec![Mutation::Put {
                    key: KEY_KEY.to_vec(),
                    value: fresh.to_vec(),
                }],
                result: Vec::new(),
            };
            if store.commit(None, txn).await?.succeeded {
                return Ok(Self::from_bytes(fresh.as_slice()));
            }
            // Another node created it first: read theirs.
            store.read_fence().await?;
        }
        Err(EngineError::Busy)
    }

    /// A key from its bytes (tests; verification tools).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// `hmac-sha256:<hex>` of `value`.
    pub fn fingerprint(&self, value: &[u8]) -> String {
        format!(
            "{HMAC_PREFIX}{}",
            hex::encode(hmac::sign(&self.0, value).as_ref())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem_store::MemStore;

    #[tokio::test]
    async fn every_node_gets_the_same_key_and_values_only_as_hmacs() {
        let store = MemStore::new();
        let a = AuditKey::load_or_create(&store).await.unwrap();
        let b = AuditKey::load_or_create(&store).await.unwrap();
        let token = b"eyJhbGciOi.secret-token.sig";
        let fa = a.fingerprint(token);
        assert_eq!(fa, b.fingerprint(token));
        assert!(fa.starts_with(HMAC_PREFIX));
        assert!(!fa.contains("secret-token"));
        assert_ne!(fa, a.fingerprint(b"another token"));
        assert_ne!(fa, AuditKey::from_bytes(b"other").fingerprint(token));
    }
}
