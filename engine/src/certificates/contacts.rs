//! The vault's certificate contacts (`/certificates/contacts`): who the
//! EmailContacts lifetime action notifies.

use super::records::{CertVersionRecord, Contact};
use super::renew::action_due;
use super::{stored_policy, CertificatesEngine};
use crate::cas::{decode, encode, write, Plan};
use crate::error::{EngineError, ObjectKind};
use crate::names::CERT_CONTACTS;
use crate::validate::normalize_vault;
use crate::view::{Fragment, VaultView};

/// Most contacts a vault keeps.
pub const MAX_CONTACTS: usize = 64;
const SUFFIX: &str = "contacts";

fn missing() -> EngineError {
    EngineError::NotFound {
        kind: ObjectKind::CertificateContacts,
        name: SUFFIX.into(),
    }
}

/// The addresses the EmailContacts lifetime action of certificate `lower`
/// notifies about its version `v` at `now` (Unix seconds): the vault's
/// contacts once the action's trigger passed and before `v` expires;
/// `None` when the policy has no such action, it is not due, or the vault
/// has no contact with an address. What is sent, and that it is sent once,
/// is the events' business (`alerts::events`).
pub fn email_contacts_due(
    view: &VaultView<'_>,
    lower: &str,
    v: &CertVersionRecord,
    now: u64,
) -> Result<Option<Vec<String>>, EngineError> {
    let Some((_, policy)) = stored_policy(view, lower)? else {
        return Ok(None);
    };
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let due = action_due(&policy, v, "EmailContacts").is_some_and(|at| now >= at && now < v.exp);
    if !due {
        return Ok(None);
    }
    let contacts: Vec<Contact> = match view.get(CERT_CONTACTS, SUFFIX)? {
        Some(e) => decode(&e.value)?,
        None => return Ok(None),
    };
    let emails: Vec<String> = contacts.into_iter().filter_map(|c| c.email).collect();
    Ok((!emails.is_empty()).then_some(emails))
}

impl CertificatesEngine {
    /// Replaces the contacts; answers them.
    pub async fn set_contacts(
        &self,
        vault: &str,
        contacts: Vec<Contact>,
        request_id: Option<&str>,
    ) -> Result<Vec<Contact>, EngineError> {
        if contacts.len() > MAX_CONTACTS {
            return Err(EngineError::BadParameter(format!(
                "At most {MAX_CONTACTS} contacts are allowed"
            )));
        }
        if contacts
            .iter()
            .any(|c| c.email.as_deref().is_none_or(|e| !e.contains('@')))
        {
            return Err(EngineError::BadParameter(
                "Every contact needs a valid email address".into(),
            ));
        }
        self.write_contacts(vault, request_id, |_| {
            Ok((Some(contacts.clone()), contacts.clone()))
        })
        .await
    }

    /// The contacts (404 `ContactsNotFound` when none are set).
    pub async fn get_contacts(&self, vault: &str) -> Result<Vec<Contact>, EngineError> {
        let view = VaultView::fenced(self.store(), vault).await?;
        match view.get(CERT_CONTACTS, SUFFIX)? {
            Some(e) => decode(&e.value),
            None => Err(missing()),
        }
    }

    /// Removes the contacts; answers the removed list.
    pub async fn delete_contacts(
        &self,
        vault: &str,
        request_id: Option<&str>,
    ) -> Result<Vec<Contact>, EngineError> {
        self.write_contacts(vault, request_id, |current| match current {
            Some(c) => Ok((None, c)),
            None => Err(missing()),
        })
        .await
    }

    /// `change(current)` answers `(new contacts or None to remove, answer)`.
    async fn write_contacts(
        &self,
        vault: &str,
        request_id: Option<&str>,
        change: impl Fn(
            Option<Vec<Contact>>,
        ) -> Result<(Option<Vec<Contact>>, Vec<Contact>), EngineError>,
    ) -> Result<Vec<Contact>, EngineError> {
        let vault = normalize_vault(vault)?;
        write(self.store(), request_id, || {
            let view = VaultView::open(self.store(), &vault)?;
            let entry = view.get(CERT_CONTACTS, SUFFIX)?;
            let revision = entry.as_ref().map_or(0, |e| e.revision);
            let current = entry.map(|e| decode(&e.value)).transpose()?;
            let (next, answer) = match change(current) {
                Ok(v) => v,
                Err(e) => return Ok(Plan::Refuse(e)),
            };
            let mutation = match next {
                Some(c) => view.put(CERT_CONTACTS, SUFFIX, encode(&c)?),
                None => view.delete(CERT_CONTACTS, SUFFIX),
            };
            let frag = Fragment {
                compare: vec![view.unchanged(CERT_CONTACTS, SUFFIX, revision)],
                mutations: vec![mutation],
            };
            Ok(Plan::Commit(view.txn(frag, encode(&answer)?)))
        })
        .await
    }
}
