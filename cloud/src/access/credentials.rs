//! Reading credentials off a request: the `Authorization: Bearer` header and the session
//! cookie. Verifying them is `pat` and `session`'s job.

use crate::error::{Error, Result};
use axum::http::{header, HeaderMap, Method};

pub const SESSION_COOKIE: &str = "latchkey_session";

/// The credential in `Authorization: Bearer …`; `Ok(None)` when the header is absent.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| Error::unauthenticated("malformed Authorization header"))?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(|token| Some(token.trim()))
        .ok_or_else(|| Error::unauthenticated("expected `Authorization: Bearer <token>`"))
}

/// Whether a bearer credential is a PAT (rather than an access JWT).
pub fn is_pat(token: &str) -> bool {
    token.starts_with(latchkey_shared::pat::PREFIX)
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    axum_extra::extract::CookieJar::from_headers(headers).get(SESSION_COOKIE).map(|c| c.value().to_owned())
}

/// Cookies ride along on cross-site requests; a state-changing request authenticated by
/// cookie must come from our own pages. (JSON bodies already need a CORS preflight that
/// we never grant; this also covers bodiless POST and DELETE.)
pub fn check_same_origin(method: &Method, headers: &HeaderMap, public_url: &str) -> Result<()> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin {
        Some(origin) if origin.trim_end_matches('/') != public_url => {
            Err(Error::forbidden("cross-origin request refused"))
        }
        _ => Ok(()),
    }
}
