//! Pages of list results with opaque continuation tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::error::EngineError;
use super::store::{Entry, Store};

/// Default and largest page size (`maxresults`).
pub const MAX_PAGE: usize = 25;

/// How many keys one storage scan fetches while filling a page.
const SCAN_BATCH: usize = 128;

/// One page of a listing.
#[derive(Debug)]
pub struct Page<T> {
    /// Items of this page.
    pub items: Vec<T>,
    /// Continuation token for the next page; `None` on the last page.
    pub skiptoken: Option<String>,
}

/// Validates `maxresults` (1–25, default 25).
pub fn page_size(max: Option<u32>) -> Result<usize, EngineError> {
    match max {
        None => Ok(MAX_PAGE),
        Some(n) if (1..=MAX_PAGE as u32).contains(&n) => Ok(n as usize),
        Some(n) => Err(EngineError::BadParameter(format!(
            "invalid maxresults {n}: must be between 1 and {MAX_PAGE}"
        ))),
    }
}

/// Token for "continue after this key suffix".
pub fn encode_token(suffix: &str) -> String {
    URL_SAFE_NO_PAD.encode(suffix.as_bytes())
}

/// The key suffix a token stands for.
pub fn decode_token(token: &str) -> Result<String, EngineError> {
    URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| EngineError::BadParameter("invalid $skiptoken".into()))
}

/// Collects up to `size` items under `prefix`, starting after the token's key.
/// `pick` maps a raw entry (and its key suffix) to an item, or skips it.
pub fn collect_page<T>(
    store: &dyn Store,
    prefix: &[u8],
    size: usize,
    skiptoken: Option<&str>,
    mut pick: impl FnMut(&str, &Entry) -> Result<Option<T>, EngineError>,
) -> Result<Page<T>, EngineError> {
    let mut cursor: Option<Vec<u8>> = match skiptoken {
        Some(t) => {
            let mut k = prefix.to_vec();
            k.extend_from_slice(decode_token(t)?.as_bytes());
            Some(k)
        }
        None => None,
    };
    let mut items: Vec<(String, T)> = Vec::new();
    loop {
        let batch = store.scan(prefix, cursor.as_deref(), SCAN_BATCH)?;
        let exhausted = batch.len() < SCAN_BATCH;
        for (key, entry) in &batch {
            let suffix = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(item) = pick(&suffix, entry)? {
                items.push((suffix, item));
                if items.len() > size {
                    return Ok(finish(items, size));
                }
            }
        }
        match batch.last() {
            Some((key, _)) if !exhausted => cursor = Some(key.clone()),
            _ => return Ok(finish(items, size)),
        }
    }
}

/// `items` holds at most `size + 1` entries; one extra means another page.
fn finish<T>(mut items: Vec<(String, T)>, size: usize) -> Page<T> {
    let more = items.len() > size;
    items.truncate(size);
    let skiptoken = if more {
        items.last().map(|(s, _)| encode_token(s))
    } else {
        None
    };
    Page {
        items: items.into_iter().map(|(_, t)| t).collect(),
        skiptoken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_is_1_to_25() {
        assert_eq!(page_size(None).unwrap(), 25);
        assert_eq!(page_size(Some(1)).unwrap(), 1);
        assert_eq!(page_size(Some(25)).unwrap(), 25);
        assert!(matches!(
            page_size(Some(0)),
            Err(EngineError::BadParameter(_))
        ));
        assert!(matches!(
            page_size(Some(26)),
            Err(EngineError::BadParameter(_))
        ));
    }

    #[test]
    fn tokens_roundtrip_and_reject_garbage() {
        assert_eq!(decode_token(&encode_token("abc-1")).unwrap(), "abc-1");
        assert!(decode_token("!!!").is_err());
    }
}
