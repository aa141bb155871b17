//! Input rules shared by the engines (Key Vault's limits).

use std::collections::BTreeMap;

use super::error::EngineError;
use super::names::{is_valid_object_name, is_valid_vault_name};

/// At most this many tags per object.
pub const MAX_TAGS: usize = 15;
/// Tag names and values are at most this many characters.
pub const MAX_TAG_CHARS: usize = 256;

/// The storage (lower-case) form of a vault name; an invalid name cannot
/// exist, so it is reported as not found.
pub fn normalize_vault(vault: &str) -> Result<String, EngineError> {
    if is_valid_vault_name(vault) {
        Ok(vault.to_ascii_lowercase())
    } else {
        Err(EngineError::VaultNotFound(vault.to_owned()))
    }
}

/// Validates an object name (`label` is "Secret", "Key", …); returns its
/// storage (lower-case) form.
pub fn check_name(label: &str, name: &str) -> Result<String, EngineError> {
    if is_valid_object_name(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(EngineError::BadParameter(format!(
            "{label} name {name:?} is invalid: it must be 1-127 characters of 0-9, a-z, A-Z and -"
        )))
    }
}

/// At most [`MAX_TAGS`] tags of at most [`MAX_TAG_CHARS`] characters each.
pub fn check_tags(tags: Option<&BTreeMap<String, String>>) -> Result<(), EngineError> {
    let Some(tags) = tags else { return Ok(()) };
    if tags.len() > MAX_TAGS {
        return Err(EngineError::BadParameter(format!(
            "Too many tags: {}, the limit is {MAX_TAGS}",
            tags.len()
        )));
    }
    let too_long = |s: &String| s.chars().count() > MAX_TAG_CHARS;
    if tags.iter().any(|(k, v)| too_long(k) || too_long(v)) {
        return Err(EngineError::BadParameter(format!(
            "Tag names and values must be at most {MAX_TAG_CHARS} characters"
        )));
    }
    Ok(())
}
