//! Request parsing and response helpers shared by the sandbox endpoints: form/query
//! parameters, OAuth JSON errors, HTML escaping.

use std::collections::HashMap;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Form or query parameters. Parameters without a value are treated as omitted
/// (RFC 6749 §3.1); repeated ones are recorded so endpoints can refuse them.
pub(super) struct Params {
    map: HashMap<String, String>,
    repeated: Vec<String>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` input (invalid UTF-8 is replaced).
    pub(super) fn parse(input: &[u8]) -> Self {
        let mut map = HashMap::new();
        let mut repeated = Vec::new();
        for (k, v) in url::form_urlencoded::parse(input) {
            if v.is_empty() {
                continue;
            }
            if map.contains_key(k.as_ref()) {
                if !repeated.iter().any(|r: &String| r == k.as_ref()) {
                    repeated.push(k.into_owned());
                }
                continue;
            }
            map.insert(k.into_owned(), v.into_owned());
        }
        Self { map, repeated }
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    pub(super) fn is_repeated(&self, name: &str) -> bool {
        self.repeated.iter().any(|r| r == name)
    }

    pub(super) fn first_repeated(&self) -> Option<&str> {
        self.repeated.first().map(String::as_str)
    }
}

/// An OAuth error answer: `{"error", "error_description"}` with a status and optional
/// `WWW-Authenticate` / `Retry-After` headers; never cached.
#[derive(Debug)]
pub(super) struct OAuthError {
    pub(super) status: StatusCode,
    pub(super) error: &'static str,
    pub(super) description: String,
    www_authenticate: Option<&'static str>,
    retry_after: Option<u64>,
}

impl OAuthError {
    pub(super) fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, description: description.into(), www_authenticate: None, retry_after: None }
    }

    pub(super) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(super) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// 401 `invalid_client`, inviting HTTP Basic authentication (RFC 6749 §5.2).
    pub(super) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
            .with_www_authenticate("Basic realm=\"sandbox\", charset=\"UTF-8\"")
    }

    /// 401 for a missing, unknown, expired or revoked bearer token (RFC 6750 §3.1).
    pub(super) fn invalid_token(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
            .with_www_authenticate("Bearer error=\"invalid_token\"")
    }

    pub(super) fn with_www_authenticate(mut self, value: &'static str) -> Self {
        self.www_authenticate = Some(value);
        self
    }

    pub(super) fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response =
            no_store_json(self.status, json!({"error": self.error, "error_description": self.description}));
        let headers = response.headers_mut();
        if let Some(v) = self.www_authenticate {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON answer with `Cache-Control: no-store` and `Pragma: no-cache`.
pub(super) fn no_store_json(status: StatusCode, body: impl serde::Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    no_store(response.headers_mut());
    response
}

pub(super) fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Escapes text for HTML element content and quoted attribute values.
pub(super) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space), as the
/// client id and secret inside HTTP Basic credentials are encoded (RFC 6749 §2.3.1).
/// `None` for a bad escape or invalid UTF-8.
pub(super) fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
                let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The token of an `Authorization: Bearer <token>` header.
pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
