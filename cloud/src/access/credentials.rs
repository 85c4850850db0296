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

/// Cookies ride along on cross-site requests, and SameSite does not stop a sibling origin
/// of the same site (another port, another subdomain); a state-changing request
/// authenticated by cookie must come from our own pages. (JSON bodies already need a CORS
/// preflight that we never grant; this also covers forms and bodiless POST and DELETE.)
pub fn check_same_origin(method: &Method, headers: &HeaderMap, public_url: &str) -> Result<()> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    require_same_origin(headers, public_url)
}

/// The request must name our public URL's origin in `Origin`, or, when a browser left
/// that out, in `Referer`. A request with neither is refused: every browser sends one of
/// them on a POST from our pages, and scripts use a bearer credential instead.
pub fn require_same_origin(headers: &HeaderMap, public_url: &str) -> Result<()> {
    let ours = origin_of(public_url);
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let theirs = match header(header::ORIGIN) {
        Some(origin) => origin_of(origin),
        None => header(header::REFERER).and_then(origin_of),
    };
    match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours == theirs => Ok(()),
        (_, None) => Err(Error::forbidden("a request without Origin or Referer cannot use the session cookie")),
        _ => Err(Error::forbidden("cross-origin request refused")),
    }
}

/// `scheme://host[:port]` of a URL; `None` for `null` or anything unparsable.
fn origin_of(url: &str) -> Option<String> {
    let origin = url::Url::parse(url).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), v.parse().unwrap())).collect()
    }

    #[test]
    fn only_our_own_origin_may_change_state_with_the_cookie() {
        let ours = "http://127.0.0.1:8080";
        let ok = |h: &[(header::HeaderName, &str)]| check_same_origin(&Method::POST, &headers(h), ours).is_ok();
        assert!(ok(&[(header::ORIGIN, "http://127.0.0.1:8080")]));
        assert!(ok(&[(header::REFERER, "http://127.0.0.1:8080/orgs/acme?x=1")]));
        assert!(!ok(&[(header::ORIGIN, "http://127.0.0.1:9090")]));
        assert!(!ok(&[(header::ORIGIN, "null")]));
        assert!(!ok(&[(header::ORIGIN, "http://127.0.0.1:9090"), (header::REFERER, "http://127.0.0.1:8080/")]));
        assert!(!ok(&[(header::REFERER, "http://127.0.0.1:8080.evil.test/")]));
        assert!(!ok(&[]));
        assert!(check_same_origin(&Method::GET, &headers(&[]), ours).is_ok());
    }
}
