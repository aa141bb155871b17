//! Key rotation: on demand, and by rotation policy (run by the leader).

use super::generate::{rotated_attributes, spec_of_material};
use super::{check_name_of_key, stored_policy, version_record, Key, KeysEngine};
use crate::cas::{decode, encode, write, Plan};
use crate::error::EngineError;
use crate::key_records::KeyVersionRecord;
use crate::names::{KEY_EVENTS, KEY_POLICIES};
use crate::object::{Kind, Meta};
use crate::rotation::{self, ActionType, RotationPolicy};
use crate::validate::normalize_vault;
use crate::view::{Fragment, TableScan, VaultView};

impl KeysEngine {
    /// A new version of an existing key with the same type, size, curve,
    /// operations and tags (expiry from the rotation policy, if it sets one).
    pub async fn rotate(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<Key, EngineError> {
        let lower = check_name_of_key(name)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        let latest = self
            .objects
            .live_version(&view, &lower, name, None)?
            .version;
        let policy = stored_policy(&view, &lower)?;
        let material = self
            .make_material(latest.kty, spec_of_material(&latest.material)?)
            .await?;
        let attrs = rotated_attributes(&latest, policy.as_ref(), (self.clock)());
        let make = |version, now| version_record(version, now, latest.kty, &material, &attrs);
        self.objects
            .add_version((vault, name), true, request_id, make, KeyVersionRecord::key)
            .await
    }

    /// The key's rotation policy (the default one when none was set).
    pub async fn get_rotation_policy(
        &self,
        vault: &str,
        name: &str,
    ) -> Result<RotationPolicy, EngineError> {
        let lower = check_name_of_key(name)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        self.objects.live(&view, &lower, name)?;
        Ok(stored_policy(&view, &lower)?.unwrap_or_else(rotation::default_policy))
    }

    /// Sets the key's rotation policy (validated; `created` kept, `updated` now).
    pub async fn set_rotation_policy(
        &self,
        vault: &str,
        name: &str,
        mut policy: RotationPolicy,
        request_id: Option<&str>,
    ) -> Result<RotationPolicy, EngineError> {
        let lower = check_name_of_key(name)?;
        rotation::validate(&policy, &self.rotation_limits)?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let meta = match self.objects.live(&view, &lower, name) {
                Ok(m) => m,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let old = view.get(KEY_POLICIES, &lower)?;
            let now = (self.clock)();
            let created = match &old {
                Some(e) => decode::<RotationPolicy>(&e.value)?.attributes.created,
                None => None,
            };
            policy.attributes.created = Some(created.unwrap_or(now));
            policy.attributes.updated = Some(now);
            let frag = Fragment {
                compare: vec![
                    view.unchanged(super::KeyKind::META_TABLE, &lower, meta.revision),
                    view.unchanged(KEY_POLICIES, &lower, old.map_or(0, |e| e.revision)),
                ],
                mutations: vec![view.put(KEY_POLICIES, &lower, encode(&policy)?)],
            };
            Ok(Plan::Commit(view.txn(frag, encode(&policy)?)))
        })
        .await
    }

    /// Carries out due lifetime actions of every policy (the leader calls
    /// this periodically). A `Rotate` commits only if the key's metadata is
    /// unchanged since it was read, under a request id derived from the
    /// latest version, so two leaders cannot both rotate. A `Notify` is
    /// recorded once per version under `sys/events/keys/…` and logged.
    /// Returns how many keys were rotated.
    pub async fn run_rotation_policies(&self, now: u64) -> Result<usize, EngineError> {
        self.store().read_fence().await?;
        let mut rotated = 0;
        let mut scan = TableScan::new(self.store(), KEY_POLICIES);
        while let Some(batch) = scan.next_batch()? {
            for (vault, lower, entry) in batch {
                let Ok(policy) = decode::<RotationPolicy>(&entry.value) else {
                    continue;
                };
                match self.apply_policy(&vault, &lower, &policy, now).await {
                    Ok(r) => rotated += usize::from(r),
                    Err(e) => {
                        tracing::warn!(vault, key = lower, error = %e, "rotation policy failed")
                    }
                }
            }
        }
        Ok(rotated)
    }

    async fn apply_policy(
        &self,
        vault: &str,
        lower: &str,
        policy: &RotationPolicy,
        now: u64,
    ) -> Result<bool, EngineError> {
        let view = VaultView::unchecked(self.store(), vault);
        let Some(meta) = self.objects.meta(&view, lower)? else {
            return Ok(false);
        };
        if meta.record.deleted.is_some() {
            return Ok(false);
        }
        let Some((_, latest)) = self
            .objects
            .version_record(&view, lower, &meta.record.latest)?
        else {
            return Ok(false);
        };
        let mut rotated = false;
        for action in &policy.lifetime_actions {
            if !rotation::is_due(action, latest.created, latest.exp, now) {
                continue;
            }
            match action.action.kind {
                ActionType::Notify => {
                    self.notify(&view, lower, &meta.record.name, &latest)
                        .await?
                }
                ActionType::Rotate => {
                    rotated |= self
                        .policy_rotate(vault, lower, &meta, &latest, policy)
                        .await?
                }
            }
        }
        Ok(rotated)
    }

    async fn notify(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        name: &str,
        latest: &KeyVersionRecord,
    ) -> Result<(), EngineError> {
        let vault = view.vault();
        let suffix = format!("{lower}/{}/notify", latest.version);
        let event = serde_json::json!({
            "type": "KeyNearExpiry", "vault": vault, "name": name,
            "version": latest.version, "exp": latest.exp, "at": (self.clock)(),
        });
        let frag = Fragment {
            compare: vec![view.unchanged(KEY_EVENTS, &suffix, 0)],
            mutations: vec![view.put(KEY_EVENTS, &suffix, encode(&event)?)],
        };
        if self
            .store()
            .commit(None, view.txn(frag, Vec::new()))
            .await?
            .succeeded
        {
            tracing::info!(vault, key = name, version = %latest.version, exp = ?latest.exp, "key rotation policy: near-expiry notification");
        }
        Ok(())
    }

    async fn policy_rotate(
        &self,
        vault: &str,
        lower: &str,
        meta: &Meta,
        latest: &KeyVersionRecord,
        policy: &RotationPolicy,
    ) -> Result<bool, EngineError> {
        let view = match VaultView::open(self.store(), vault) {
            Ok(v) => v,
            Err(EngineError::VaultNotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let material = self
            .make_material(latest.kty, spec_of_material(&latest.material)?)
            .await?;
        let attrs = rotated_attributes(latest, Some(policy), (self.clock)());
        let name = meta.record.name.clone();
        let version = uuid::Uuid::new_v4().simple().to_string();
        let record = version_record(version, (self.clock)(), latest.kty, &material, &attrs);
        let frag = self
            .objects
            .new_version_fragment(&view, lower, Some(meta), &name, &record)?;
        let txn = view.txn(frag, encode(&record.key(&name))?);
        let id = format!("keys/rotation-policy/{vault}/{lower}/{}", latest.version);
        let out = self.store().commit(Some(&id), txn).await?;
        if out.succeeded && !out.deduplicated {
            tracing::info!(vault, key = %name, "key rotated by its rotation policy");
        }
        Ok(out.succeeded && !out.deduplicated)
    }
}
