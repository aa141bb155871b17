//! Lifetime actions carried out by the leader: `AutoRenew` of `Self` and
//! `Coffer`-issued certificates at `lifetime_percentage` or `days_before_expiry` (a new
//! version, a new key unless `reuse_key`). A renewal writes, in the same
//! transaction as the new version, a record that the action fired for the
//! version it renews (`cf/{vault}/{name}/{version}`, which must still be
//! absent): a leader that fails over after committing, or two leaders
//! racing, renew a version at most once.

use super::ca::is_coffer;
use super::issue;
use super::policy::Policy;
use super::records::CertVersionRecord;
use super::signer::{off_runtime, Signer};
use super::versions::NewVersion;
use super::{stored_policy, CertificatesEngine};
use crate::cas::decode;
use crate::error::EngineError;
use crate::key_records::KeyMaterial;
use crate::names::{CERTS, CERT_FIRED};
use crate::object::MetaRecord;
use crate::view::{Fragment, TableScan, VaultView};

/// When the AutoRenew action of `policy` is due for `v` (Unix seconds),
/// `None` when the policy has no such action or cannot renew by itself.
pub fn renewal_due(policy: &Policy, v: &CertVersionRecord) -> Option<i64> {
    if policy.is_unknown() {
        // Key Vault never auto-renews Unknown: a self-signed renewal of a
        // CA-issued certificate is not what anyone wants.
        return None;
    }
    action_due(policy, v, "AutoRenew")
}

/// When `policy`'s lifetime action of `action_type` (`AutoRenew`,
/// `EmailContacts`) triggers for `v` (Unix seconds), `None` without one.
pub fn action_due(policy: &Policy, v: &CertVersionRecord, action_type: &str) -> Option<i64> {
    let action = policy
        .lifetime_actions
        .as_ref()?
        .iter()
        .find(|a| a.action.action_type == action_type)?;
    let life = (v.exp - v.nbf).max(0);
    match (
        action.trigger.lifetime_percentage,
        action.trigger.days_before_expiry,
    ) {
        (Some(p), _) => Some(v.nbf + life * i64::from(p) / 100),
        (None, Some(d)) => Some(v.exp - i64::from(d) * 86_400),
        (None, None) => None,
    }
}

impl CertificatesEngine {
    /// Renews every certificate whose AutoRenew action is due at `now`.
    /// Returns how many were renewed.
    pub async fn run_lifetime_actions(&self, now: u64) -> Result<usize, EngineError> {
        let store = self.store();
        store.read_fence().await?;
        let mut renewed = 0;
        let mut scan = TableScan::new(store, CERTS);
        while let Some(batch) = scan.next_batch()? {
            for (vault, lower, entry) in batch {
                let Ok(meta) = decode::<MetaRecord>(&entry.value) else {
                    continue;
                };
                if meta.deleted.is_some() {
                    continue;
                }
                match self.renew_one(&vault, &lower, &meta, now).await {
                    Ok(true) => renewed += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(%vault, certificate = %meta.name, error = %e, "auto-renewal failed");
                    }
                }
            }
        }
        Ok(renewed)
    }

    /// Renews `lower` if due; whether a renewal was committed.
    async fn renew_one(
        &self,
        vault: &str,
        lower: &str,
        meta: &MetaRecord,
        now: u64,
    ) -> Result<bool, EngineError> {
        let view = VaultView::unchecked(self.store(), vault);
        let Some((_, policy)) = stored_policy(&view, lower)? else {
            return Ok(false);
        };
        let Some((_, latest)) = self.certs.version_record(&view, lower, &meta.latest)? else {
            return Ok(false);
        };
        let fired = format!("{lower}/{}", latest.version);
        let due = renewal_due(&policy, &latest).is_some_and(|at| now as i64 >= at);
        if !due || view.get(CERT_FIRED, &fired)?.is_some() {
            return Ok(false);
        }
        let material = match self.keys.version_record(&view, lower, &latest.version)? {
            Some((_, key)) if policy.reuse_key() => key.material,
            _ => {
                let choice = policy.key()?;
                self.keys
                    .certificate_material(choice.kty, choice.key_size, choice.curve)
                    .await?
            }
        };
        let chain = if policy.is_self() {
            let signer = Signer::new(self.keys.handle_of(&material))?;
            let p = policy.clone();
            vec![off_runtime(move || issue::self_signed(&p, &signer, now)).await?]
        } else {
            let issuer = policy.issuer_name();
            let coffer = self
                .issuer_record(&view, issuer)?
                .is_some_and(|i| is_coffer(&i.provider));
            if !coffer {
                // A partner issuer Coffer cannot reach: nothing to do.
                return Ok(false);
            }
            match self
                .issue_by_issuer(vault, issuer, &policy, material.public(), now)
                .await?
            {
                Ok(chain) => chain,
                Err(message) => return Err(EngineError::BadParameter(message)),
            }
        };
        self.commit_renewal(&view, lower, meta, &latest, &policy, &material, chain, now)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_renewal(
        &self,
        view: &VaultView<'_>,
        lower: &str,
        meta: &MetaRecord,
        latest: &CertVersionRecord,
        policy: &Policy,
        material: &KeyMaterial,
        chain: Vec<Vec<u8>>,
        now: u64,
    ) -> Result<bool, EngineError> {
        let nv = NewVersion {
            name: &meta.name,
            policy,
            material,
            chain: &chain,
            enabled: true,
            tags: latest.tags.clone(),
        };
        let (frag, _, _) = self.version_fragment(view, lower, &nv, now)?;
        let fired = format!("{lower}/{}", latest.version);
        let frag = frag.and(Fragment {
            compare: vec![view.unchanged(CERT_FIRED, &fired, 0)],
            mutations: vec![view.put(CERT_FIRED, &fired, now.to_string().into_bytes())],
        });
        let txn = view.txn(frag, b"null".to_vec());
        Ok(self.store().commit(None, txn).await?.succeeded)
    }
}
