//! Certificate issuers (`/certificates/issuers/{name}`): named partner or
//! Coffer CA accounts a policy can refer to. The password is write-only.

use zeroize::Zeroizing;

use super::ca::is_coffer;
use super::records::{Issuer, IssuerRecord, OrgDetails};
use super::CertificatesEngine;
use crate::cas::{decode, encode, write, Plan};
use crate::error::{EngineError, ObjectKind};
use crate::names::CERT_ISSUERS;
use crate::paging::{page_size, Page};
use crate::validate::{check_name, normalize_vault};
use crate::view::{Fragment, VaultView};

/// An issuer as set or patched; `None` leaves a member as it is (patch)
/// or empty (set).
#[derive(Clone, Default)]
pub struct IssuerParams {
    /// Provider (required by set).
    pub provider: Option<String>,
    /// Account id.
    pub account_id: Option<String>,
    /// Account password.
    pub password: Option<Zeroizing<String>>,
    /// Organisation.
    pub org_details: Option<OrgDetails>,
    /// Enabled.
    pub enabled: Option<bool>,
    /// Base URL of the issuer's PKI endpoints (`https://{host}/v1/pki/
    /// {vault}/{issuer}`), set by the API layer from the request's address
    /// for `Coffer` issuers; kept when already set.
    pub pki_url: Option<String>,
}

impl std::fmt::Debug for IssuerParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerParams")
            .field("provider", &self.provider)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

const LABEL: &str = "Issuer";

fn missing(name: &str) -> EngineError {
    EngineError::NotFound {
        kind: ObjectKind::CertificateIssuer,
        name: name.to_owned(),
    }
}

impl CertificatesEngine {
    /// Creates or replaces an issuer.
    pub async fn set_issuer(
        &self,
        vault: &str,
        name: &str,
        params: IssuerParams,
        request_id: Option<&str>,
    ) -> Result<Issuer, EngineError> {
        let provider = params
            .provider
            .clone()
            .filter(|p| !p.trim().is_empty())
            .ok_or_else(|| EngineError::BadParameter("An issuer needs a provider".into()))?;
        self.write_issuer(vault, name, request_id, |current, now| {
            Ok(IssuerRecord {
                name: current
                    .as_ref()
                    .map_or_else(|| name.to_owned(), |c| c.name.clone()),
                provider: provider.clone(),
                account_id: params.account_id.clone(),
                password: params.password.as_ref().map(|p| p.to_string()),
                org_details: params.org_details.clone(),
                enabled: params.enabled.unwrap_or(true),
                created: current.as_ref().map_or(now, |c| c.created),
                updated: now,
                pki_url: current
                    .as_ref()
                    .and_then(|c| c.pki_url.clone())
                    .or_else(|| params.pki_url.clone()),
            })
        })
        .await
    }

    /// Changes the members sent of an existing issuer.
    pub async fn update_issuer(
        &self,
        vault: &str,
        name: &str,
        params: IssuerParams,
        request_id: Option<&str>,
    ) -> Result<Issuer, EngineError> {
        self.write_issuer(vault, name, request_id, |current, now| {
            let mut rec = current.ok_or_else(|| missing(name))?;
            if let Some(p) = &params.provider {
                rec.provider = p.clone();
            }
            if params.account_id.is_some() {
                rec.account_id = params.account_id.clone();
            }
            if let Some(p) = &params.password {
                rec.password = Some(p.to_string());
            }
            if params.org_details.is_some() {
                rec.org_details = params.org_details.clone();
            }
            if let Some(e) = params.enabled {
                rec.enabled = e;
            }
            if rec.pki_url.is_none() {
                rec.pki_url = params.pki_url.clone();
            }
            rec.updated = now;
            Ok(rec)
        })
        .await
    }

    /// An issuer.
    pub async fn get_issuer(&self, vault: &str, name: &str) -> Result<Issuer, EngineError> {
        let lower = check_name(LABEL, name)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        match view.get(CERT_ISSUERS, &lower)? {
            Some(e) => Ok(decode::<IssuerRecord>(&e.value)?.view()),
            None => Err(missing(name)),
        }
    }

    /// Issuers, by lower-case name.
    pub async fn list_issuers(
        &self,
        vault: &str,
        maxresults: Option<u32>,
        skiptoken: Option<&str>,
    ) -> Result<Page<Issuer>, EngineError> {
        let size = page_size(maxresults)?;
        let view = VaultView::fenced(self.store(), vault).await?;
        view.page(CERT_ISSUERS, "", size, skiptoken, |_, e| {
            Ok(Some(decode::<IssuerRecord>(&e.value)?.view()))
        })
    }

    /// Removes an issuer; answers it.
    pub async fn delete_issuer(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
    ) -> Result<Issuer, EngineError> {
        let lower = check_name(LABEL, name)?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let Some(e) = view.get(CERT_ISSUERS, &lower)? else {
                return Ok(Plan::Refuse(missing(name)));
            };
            let rec: IssuerRecord = decode(&e.value)?;
            let frag = Fragment {
                compare: vec![view.unchanged(CERT_ISSUERS, &lower, e.revision)],
                mutations: vec![view.delete(CERT_ISSUERS, &lower)],
            };
            Ok(Plan::Commit(view.txn(frag, encode(&rec.view())?)))
        })
        .await
    }

    async fn write_issuer(
        &self,
        vault: &str,
        name: &str,
        request_id: Option<&str>,
        make: impl Fn(Option<IssuerRecord>, u64) -> Result<IssuerRecord, EngineError>,
    ) -> Result<Issuer, EngineError> {
        let lower = check_name(LABEL, name)?;
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let entry = view.get(CERT_ISSUERS, &lower)?;
            let revision = entry.as_ref().map_or(0, |e| e.revision);
            let current = entry.map(|e| decode(&e.value)).transpose()?;
            let now = self.now();
            let rec = match make(current, now) {
                Ok(r) => r,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            if is_coffer(&rec.provider) {
                // A Coffer issuer must name a CA this vault can sign with.
                match self.load_ca(&view, &rec, now) {
                    Ok(_) => {}
                    Err(e @ EngineError::Store(_)) => return Err(e),
                    Err(e) => return Ok(Plan::Refuse(e)),
                }
            }
            let frag = Fragment {
                compare: vec![view.unchanged(CERT_ISSUERS, &lower, revision)],
                mutations: vec![view.put(CERT_ISSUERS, &lower, encode(&rec)?)],
            };
            Ok(Plan::Commit(view.txn(frag, encode(&rec.view())?)))
        })
        .await
    }
}
