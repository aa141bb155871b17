//! Account settings of a vault (`KeyVaultSettingsClient`: `GET /settings`,
//! `GET|PATCH /settings/{name}`). Key Vault knows a fixed set of settings,
//! each typed; Coffer keeps the same set, stores a vault's values in its
//! part of the store (they go with the vault) and answers the default for a
//! setting never changed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cas::{decode, encode, write, Plan};
use super::error::EngineError;
use super::names::SETTINGS;
use super::store::Store;
use super::view::{Fragment, VaultView};

/// The settings a vault has: name, type, default value. Coffer has no ARM
/// control plane, so key management through ARM stays off whatever the
/// value (it is kept for the SDK's sake and reported as stored).
pub const KNOWN_SETTINGS: &[(&str, &str, &str)] =
    &[("AllowKeyManagementOperationsThroughARM", "boolean", "false")];

/// One setting as the API shows it: `{"name","value","type"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// Setting name (as Key Vault spells it).
    pub name: String,
    /// Its value, a string whatever the type (`"true"`).
    pub value: String,
    /// `boolean`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Reads and changes vault settings.
pub struct SettingsEngine {
    store: Arc<dyn Store>,
}

/// The known setting `name` (case-insensitive): its canonical name, type
/// and default.
fn known(name: &str) -> Result<(&'static str, &'static str, &'static str), EngineError> {
    KNOWN_SETTINGS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| {
            EngineError::BadParameter(format!(
                "the setting {name:?} does not exist; settings: {}",
                KNOWN_SETTINGS
                    .iter()
                    .map(|(n, _, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// `value` checked against `kind` and written canonically.
fn typed(kind: &str, value: &str) -> Result<String, EngineError> {
    match kind {
        "boolean" if value.eq_ignore_ascii_case("true") => Ok("true".into()),
        "boolean" if value.eq_ignore_ascii_case("false") => Ok("false".into()),
        _ => Err(EngineError::BadParameter(format!(
            "the value {value:?} is not a {kind}"
        ))),
    }
}

impl SettingsEngine {
    /// An engine over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Every setting of `vault`, stored or default.
    pub async fn list(&self, vault: &str) -> Result<Vec<Setting>, EngineError> {
        let view = VaultView::fenced(self.store.as_ref(), vault).await?;
        KNOWN_SETTINGS
            .iter()
            .map(|(name, kind, default)| read(&view, name, kind, default))
            .collect()
    }

    /// One setting of `vault`.
    pub async fn get(&self, vault: &str, name: &str) -> Result<Setting, EngineError> {
        let (name, kind, default) = known(name)?;
        let view = VaultView::fenced(self.store.as_ref(), vault).await?;
        read(&view, name, kind, default)
    }

    /// Sets one setting of `vault` to `value` (checked against its type).
    pub async fn update(
        &self,
        vault: &str,
        name: &str,
        value: &str,
        request_id: Option<&str>,
    ) -> Result<Setting, EngineError> {
        let (name, kind, _) = known(name)?;
        let setting = Setting {
            name: name.into(),
            value: typed(kind, value)?,
            kind: kind.into(),
        };
        let bytes = encode(&setting)?;
        write(self.store.as_ref(), request_id, || {
            let view = VaultView::open(self.store.as_ref(), vault)?;
            let fragment = Fragment {
                compare: Vec::new(),
                mutations: vec![view.put(SETTINGS, name, bytes.clone())],
            };
            Ok(Plan::Commit(view.txn(fragment, bytes.clone())))
        })
        .await
    }
}

fn read(
    view: &VaultView<'_>,
    name: &str,
    kind: &str,
    default: &str,
) -> Result<Setting, EngineError> {
    match view.get(SETTINGS, name)? {
        Some(entry) => decode(&entry.value),
        None => Ok(Setting {
            name: name.into(),
            value: default.into(),
            kind: kind.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem_store::MemStore;
    use crate::vaults::VaultsEngine;

    #[tokio::test]
    async fn settings_default_change_and_go_with_the_vault() {
        let store = Arc::new(MemStore::new());
        let vaults = VaultsEngine::new(store.clone());
        vaults.create("a", None).await.unwrap();
        vaults.create("b", None).await.unwrap();
        let s = SettingsEngine::new(store.clone());
        let name = "AllowKeyManagementOperationsThroughARM";
        assert_eq!(s.list("a").await.unwrap()[0].value, "false");
        let set = s
            .update("a", "allowkeymanagementoperationsthroughARM", "TRUE", None)
            .await
            .unwrap();
        assert_eq!(
            (set.name.as_str(), set.value.as_str(), set.kind.as_str()),
            (name, "true", "boolean")
        );
        assert_eq!(s.get("a", name).await.unwrap().value, "true");
        // Another vault keeps its own.
        assert_eq!(s.get("b", name).await.unwrap().value, "false");
        for bad in [
            s.update("a", name, "yes", None).await,
            s.update("a", "Nope", "true", None).await,
        ] {
            assert!(matches!(bad, Err(EngineError::BadParameter(_))), "{bad:?}");
        }
        assert!(matches!(
            s.get("zz", name).await,
            Err(EngineError::VaultNotFound(_))
        ));
        vaults.delete("a", None).await.unwrap();
        vaults.create("a", None).await.unwrap();
        assert_eq!(s.get("a", name).await.unwrap().value, "false");
    }
}
