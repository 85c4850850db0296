//! The authorization endpoint (RFC 6749 §4.1.1–4.1.2, PKCE RFC 7636, `iss` RFC 9207):
//! `GET /sandbox/authorize` shows the consent page, `POST /sandbox/authorize` takes the
//! decision.
//!
//! Until the client and its exact redirect URI are known good, errors are shown as an HTML
//! page and never redirected (RFC 6749 §4.1.2.1); after that they go back to the client as
//! `redirect_uri?error=…&state=…&iss=…`.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use url::Url;

use super::wire::{html_escape, no_store, Params};
use super::{canonical_scope, AuthCode, Sandbox, State as SandboxState, CODE_TTL, DEFAULT_SCOPES, DEFAULT_USER};

/// A validated authorization request.
struct AuthzRequest {
    client_id: String,
    redirect_uri: String,
    redirect: Url,
    state: Option<String>,
    scope: String,
    code_challenge: String,
    nonce: Option<String>,
    login_hint: Option<String>,
}

/// Why an authorization request fails, and how to tell.
enum Failure {
    /// Shown to the user: the client or redirect URI cannot be trusted.
    Page(String),
    /// Sent back to the client's redirect URI.
    Redirect { redirect: Box<Url>, state: Option<String>, error: &'static str, description: String },
}

impl Failure {
    fn into_response(self, issuer: Option<&str>) -> Response {
        match self {
            Failure::Page(message) => error_page(StatusCode::BAD_REQUEST, &message),
            Failure::Redirect { redirect, state, error, description } => redirect_to(
                redirect.as_ref(),
                &[("error", Some(error)), ("error_description", Some(&description)), ("state", state.as_deref())],
                issuer,
            ),
        }
    }
}

/// Checks the request parameters (the same in the query of the GET and the form of the
/// POST).
fn validate(st: &SandboxState, p: &Params) -> Result<AuthzRequest, Failure> {
    if p.is_repeated("client_id") {
        return Err(Failure::Page("client_id is given more than once.".into()));
    }
    let Some(client_id) = p.get("client_id") else {
        return Err(Failure::Page("The request has no client_id.".into()));
    };
    let Some(client) = st.clients.get(client_id) else {
        return Err(Failure::Page(format!("Unknown client {client_id:?}.")));
    };
    if p.is_repeated("redirect_uri") {
        return Err(Failure::Page("redirect_uri is given more than once.".into()));
    }
    let Some(redirect_uri) = p.get("redirect_uri") else {
        return Err(Failure::Page("The request has no redirect_uri.".into()));
    };
    if redirect_uri != client.redirect_uri {
        return Err(Failure::Page(format!(
            "The redirect_uri {redirect_uri:?} is not the one registered for client {client_id:?}."
        )));
    }
    let Ok(redirect) = Url::parse(redirect_uri) else {
        return Err(Failure::Page(format!("The registered redirect_uri {redirect_uri:?} is not a valid URL.")));
    };
    let state = p.get("state").map(str::to_owned);
    let fail = |error: &'static str, description: String| Failure::Redirect {
        redirect: Box::new(redirect.clone()),
        state: state.clone(),
        error,
        description,
    };
    if let Some(name) = p.first_repeated() {
        return Err(fail("invalid_request", format!("parameter `{name}` is repeated")));
    }
    match p.get("response_type") {
        Some("code") => {}
        None => return Err(fail("invalid_request", "response_type is required".into())),
        Some(other) => {
            return Err(fail(
                "unsupported_response_type",
                format!("response_type {other:?} is not supported; use code"),
            ))
        }
    }
    let Some(code_challenge) = p.get("code_challenge") else {
        return Err(fail("invalid_request", "PKCE is required: send code_challenge with S256".into()));
    };
    if p.get("code_challenge_method") != Some("S256") {
        return Err(fail("invalid_request", "code_challenge_method must be S256".into()));
    }
    let well_formed = (43..=128).contains(&code_challenge.len())
        && code_challenge.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return Err(fail("invalid_request", "code_challenge is not a valid S256 challenge".into()));
    }
    let scope = match p.get("scope") {
        None => DEFAULT_SCOPES.join(" "),
        Some(raw) => canonical_scope(raw).map_err(|bad| fail("invalid_scope", format!("unknown scope {bad:?}")))?,
    };
    if scope.is_empty() {
        return Err(fail("invalid_scope", "no scope requested".into()));
    }
    Ok(AuthzRequest {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        redirect: redirect.clone(),
        state,
        scope,
        code_challenge: code_challenge.to_owned(),
        nonce: p.get("nonce").map(str::to_owned),
        login_hint: p.get("login_hint").map(str::to_owned),
    })
}

/// A sandbox username: 1 to 64 of `A-Z a-z 0-9 . _ -` after trimming.
fn valid_username(raw: &str) -> Option<String> {
    let name = raw.trim();
    let ok = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then(|| name.to_owned())
}

/// `GET /sandbox/authorize`: the consent page, or an immediate approval under
/// `auto_approve`.
pub(super) async fn authorize_get(State(sb): State<Sandbox>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref().unwrap_or("").as_bytes());
    let mut st = sb.lock();
    let req = match validate(&st, &params) {
        Ok(r) => r,
        Err(f) => return f.into_response(st.faults.redirect_iss(sb.base_url())),
    };
    if st.faults.auto_approve {
        let Some(user) = valid_username(req.login_hint.as_deref().unwrap_or(DEFAULT_USER)) else {
            return Failure::Redirect {
                redirect: Box::new(req.redirect),
                state: req.state,
                error: "invalid_request",
                description: "login_hint is not a valid sandbox username".into(),
            }
            .into_response(st.faults.redirect_iss(sb.base_url()));
        };
        return approve(&mut st, req, user, sb.base_url());
    }
    drop(st);
    consent_page(&req)
}

/// `POST /sandbox/authorize`: the consent form's decision.
pub(super) async fn authorize_post(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let params = Params::parse(&body);
    let mut st = sb.lock();
    let req = match validate(&st, &params) {
        Ok(r) => r,
        Err(f) => return f.into_response(st.faults.redirect_iss(sb.base_url())),
    };
    match params.get("decision") {
        Some("approve") => {
            let Some(user) = valid_username(params.get("username").unwrap_or(DEFAULT_USER)) else {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "A sandbox username is 1 to 64 letters, digits, dots, underscores or hyphens. \
                     Go back and change it.",
                );
            };
            approve(&mut st, req, user, sb.base_url())
        }
        Some("deny") => Failure::Redirect {
            redirect: Box::new(req.redirect),
            state: req.state,
            error: "access_denied",
            description: "the user denied the request".into(),
        }
        .into_response(st.faults.redirect_iss(sb.base_url())),
        _ => Failure::Redirect {
            redirect: Box::new(req.redirect),
            state: req.state,
            error: "invalid_request",
            description: "decision must be approve or deny".into(),
        }
        .into_response(st.faults.redirect_iss(sb.base_url())),
    }
}

fn approve(st: &mut SandboxState, req: AuthzRequest, user: String, issuer: &str) -> Response {
    let issuer = st.faults.redirect_iss(issuer).map(str::to_owned);
    let code = st.issue_code(AuthCode {
        client_id: req.client_id,
        redirect_uri: req.redirect_uri,
        code_challenge: req.code_challenge,
        scope: req.scope,
        user,
        nonce: req.nonce,
        expires_at: Instant::now() + CODE_TTL,
        used: false,
        grant: None,
    });
    redirect_to(&req.redirect, &[("code", Some(&code)), ("state", req.state.as_deref())], issuer.as_deref())
}

/// `302` to `redirect` with `pairs` (the `None` ones left out) and `iss`, if any, added to
/// its query.
fn redirect_to(redirect: &Url, pairs: &[(&str, Option<&str>)], issuer: Option<&str>) -> Response {
    let mut target = redirect.clone();
    {
        let mut query = target.query_pairs_mut();
        for (name, value) in pairs {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
        if let Some(issuer) = issuer {
            query.append_pair("iss", issuer);
        }
    }
    match HeaderValue::from_str(target.as_str()) {
        Ok(location) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            no_store(response.headers_mut());
            response
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The redirect URI cannot be used in a redirect."),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}\
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;\
box-shadow:0 1px 4px rgba(0,0,0,.15)}h1{font-size:1.3rem;margin-top:0}label{display:block;\
margin:1rem 0 .3rem}input[type=text]{width:100%;box-sizing:border-box;padding:.5rem}\
.buttons{display:flex;gap:.5rem;margin-top:1.5rem}button{flex:1;padding:.6rem;font-size:1rem;\
cursor:pointer}#approve{background:#1a7f37;color:#fff;border:0}ul{padding-left:1.2rem}";

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n",
        title = html_escape(title),
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    no_store(headers);
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    response
}

fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Sandbox — authorization error",
        &format!("<h1>Authorization error</h1>\n<p id=\"error\">{}</p>", html_escape(message)),
    )
}

fn consent_page(req: &AuthzRequest) -> Response {
    let mut hidden = String::new();
    let fields = [
        ("response_type", Some("code")),
        ("client_id", Some(req.client_id.as_str())),
        ("redirect_uri", Some(req.redirect_uri.as_str())),
        ("state", req.state.as_deref()),
        ("scope", Some(req.scope.as_str())),
        ("code_challenge", Some(req.code_challenge.as_str())),
        ("code_challenge_method", Some("S256")),
        ("nonce", req.nonce.as_deref()),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            hidden.push_str(&format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n", html_escape(value)));
        }
    }
    let scopes: String = req.scope.split(' ').map(|s| format!("<li><code>{}</code></li>", html_escape(s))).collect();
    let client = html_escape(&req.client_id);
    let username = html_escape(req.login_hint.as_deref().unwrap_or(DEFAULT_USER));
    let body = format!(
        "<h1>Sandbox</h1>\n\
         <p>Sandbox wants to let <strong id=\"client\">{client}</strong> access your profile and items.</p>\n\
         <ul id=\"scopes\">{scopes}</ul>\n\
         <form method=\"post\" action=\"/sandbox/authorize\">\n{hidden}\
         <label for=\"username\">Username</label>\n\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" autocomplete=\"username\">\n\
         <div class=\"buttons\">\
         <button type=\"submit\" id=\"approve\" name=\"decision\" value=\"approve\">Approve</button>\
         <button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">Deny</button></div>\n\
         </form>"
    );
    page(StatusCode::OK, "Sandbox — authorize", &body)
}
