//! Absolute `nextLink`s of list responses.

use super::context::AkvCtx;
use super::errors::ApiError;

/// The `maxresults` query parameter, if present.
pub fn maxresults(ctx: &AkvCtx) -> Result<Option<u32>, ApiError> {
    match ctx.param("maxresults") {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<u32>()
            .map(Some)
            .map_err(|_| ApiError::bad_parameter("maxresults must be an integer between 1 and 25")),
    }
}

/// The `$skiptoken` query parameter, if present.
pub fn skiptoken(ctx: &AkvCtx) -> Option<&str> {
    ctx.param("$skiptoken").filter(|t| !t.is_empty())
}

/// `https://{host}{path}?api-version=…&$skiptoken=…&maxresults=…` when there
/// is another page.
pub fn next_link(
    ctx: &AkvCtx,
    path: &str,
    token: Option<String>,
    maxresults: Option<u32>,
) -> Option<String> {
    let token = token?;
    let mut link = format!(
        "{}{path}?api-version={}&$skiptoken={token}",
        ctx.base_url, ctx.api_version
    );
    if let Some(n) = maxresults {
        link.push_str(&format!("&maxresults={n}"));
    }
    Some(link)
}
