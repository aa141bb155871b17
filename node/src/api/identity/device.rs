//! The device-code approval page (`/device`): a user types the code their
//! device shows, their name, password and (when enrolled) TOTP code. Plain
//! HTML, no script; every value echoed is escaped.

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::{read_form, IssuerState};
use crate::engine::identity::IdentityError;

/// `?code=` prefills the user code (a link the device may show).
#[derive(Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    code: Option<String>,
}

/// `GET /device`.
pub(super) async fn page(Query(q): Query<PageQuery>) -> Response {
    render(StatusCode::OK, &form(q.code.as_deref().unwrap_or(""), None))
}

/// `POST /device`: signs the user in and approves the code.
pub(super) async fn approve(State(s): State<IssuerState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(fields) = read_form(&parts.headers, body).await else {
        return render(
            StatusCode::BAD_REQUEST,
            &form("", Some("The form could not be read.")),
        );
    };
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    let code = get("user_code");
    let otp = Some(get("otp")).filter(|c| !c.trim().is_empty());
    match s
        .identity
        .approve_device_code(code, get("username"), get("password"), otp)
        .await
    {
        Ok(_) => render(
            StatusCode::OK,
            "<h1>Signed in</h1><p id=\"done\">You have signed in to the application on your \
             device. You may close this window.</p>",
        ),
        Err(e) => {
            let (status, message) = match e {
                IdentityError::MfaRequired => (
                    StatusCode::UNAUTHORIZED,
                    "This account requires a verification code from your authenticator app.",
                ),
                IdentityError::NotFound(_) => (
                    StatusCode::BAD_REQUEST,
                    "This code is unknown or has expired. Start again on your device.",
                ),
                IdentityError::LockedOut { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many failed attempts. Wait a while, then try again.",
                ),
                IdentityError::Engine(ref inner) => {
                    tracing::warn!(error = %inner, "device code approval failed");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The service is unavailable. Try again shortly.",
                    )
                }
                _ => (
                    StatusCode::UNAUTHORIZED,
                    "Sign-in failed: check your user name, password and code.",
                ),
            };
            render(status, &form(code, Some(message)))
        }
    }
}

fn form(code: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" id=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    format!(
        "<h1>Sign in to Coffer</h1>{error}\
         <form method=\"post\" action=\"/device\" autocomplete=\"off\">\
         <label>Code <input id=\"user_code\" name=\"user_code\" value=\"{}\" required></label>\
         <label>User name <input id=\"username\" name=\"username\" autocomplete=\"username\" required></label>\
         <label>Password <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <label>Verification code <input id=\"otp\" name=\"otp\" inputmode=\"numeric\" autocomplete=\"one-time-code\"></label>\
         <button id=\"submit\" type=\"submit\">Sign in</button></form>",
        escape(code)
    )
}

fn render(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>Coffer sign-in</title>\
         <style>body{{font-family:sans-serif;max-width:28em;margin:3em auto}}\
         label{{display:block;margin:.6em 0}}input{{display:block;width:100%}}\
         .error{{color:#b00}}</style></head><body>{body}</body></html>"
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// HTML-escapes text and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_values_are_escaped() {
        let html = form("\"><script>x</script>", Some("<b>"));
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&quot;&gt;&lt;script&gt;"));
        assert!(html.contains("&lt;b&gt;"));
    }
}
