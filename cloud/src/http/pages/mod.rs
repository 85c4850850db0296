//! Server-rendered pages: the console. Templates under `templates/` are compiled in
//! (`build.rs`); every page carries a strict Content-Security-Policy whose script nonce is
//! fresh per response.
//!
//! # Adding a page
//!
//! - **Domain first**: a page calls the same domain function as the JSON route that does
//!   the same thing (`crate::orgs`, `crate::apps`, …); whatever a page can do, the API can.
//! - **Handler** in the module that owns the area (one file per area, each with its own
//!   `router()` merged below): take [`Page`] for a GET (a signed-out, expired or revoked
//!   browser is sent to sign in and brought back), [`PagePost<T>`] for a form (same-origin
//!   and this login's CSRF token are checked before the handler runs; `T` reads the form
//!   and ignores the `csrf` field), and return [`PageResult`]: a domain error becomes a
//!   page with the reason, never JSON. Render with `page.ok("x.html", context! {…})`;
//!   after a successful post redirect with [`notice`] (post/redirect/get) unless the
//!   answer must show something once (a new token), which renders directly.
//! - **Template** `templates/x.html` extends `base.html` (navigation, signed-in user, Sign
//!   out, the notice) and puts `<input type="hidden" name="csrf" value="{{ csrf }}">` in
//!   every form. Admin pages include `admin_nav.html` (with `org` and `section`), account
//!   pages `account_nav.html` (with `section`). Inline script only as
//!   `<script nonce="{{ nonce }}">`; no inline event handlers (the CSP refuses them).
//! - **Test** in Chromium or over HTTP (`tests/e2e/`): what the user sees, the cross-site
//!   post refused, and the accessibility check (`tests/support/chrome.rs`).

mod account;
mod admin_apps;
mod admin_audit;
mod admin_health;
mod admin_webhooks;
mod attention;
mod device;
pub mod layout;
mod org;
mod org_admin;
mod orgs_directory;
mod session;
mod signup;

pub use layout::{notice, Page, PageError, PagePost, PageResult};

use crate::error::Result;
use crate::state::AppState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use minijinja::{context, Environment};
use rand::RngCore;
use std::sync::OnceLock;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(session::home))
        .route("/login", get(session::login_page).post(session::login_submit))
        .route("/logout", post(session::logout))
        .route("/device", get(device::device_page))
        // Browsers ask for it on every JSON or page URL they open; there is no icon to
        // give, and "no content" keeps their consoles free of 404s.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .merge(org::router())
        .merge(admin_apps::router())
        .merge(orgs_directory::router())
        .merge(org_admin::router())
        .merge(admin_health::router())
        .merge(admin_audit::router())
        .merge(admin_webhooks::router())
        .route("/signup", get(signup::signup_page).post(signup::signup_submit))
        .merge(account::router())
}

// The embedding macro panics on a template that does not compile. Templates are part of
// the build, not input: the unit test below loads every one, so such a mistake fails CI.
#[allow(clippy::expect_used)]
fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Every file under `templates/`, compiled in by `build.rs`.
        minijinja_embed::load_templates!(&mut env);
        env
    })
}

/// Renders a page with a fresh CSP nonce.
pub fn render(status: StatusCode, name: &str, ctx: minijinja::Value) -> Result<Response> {
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
    let html = templates()
        .get_template(name)
        .and_then(|t| t.render(context! { nonce => nonce, ..ctx }))
        .map_err(|e| anyhow::anyhow!("rendering {name}: {e}"))?;
    let csp = format!(
        "default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    let mut response = (status, axum::response::Html(html)).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Under `no-referrer` a browser sends `Origin: null` with a page's own form posts, and
    // the same-origin check (`access::credentials`) could not tell them from another
    // site's. `same-origin` still sends nothing to any other site.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    Ok(response)
}

/// …otherwise it sends the browser to sign in and come back.
pub fn to_login(back_to: &str) -> Response {
    Redirect::to(&format!(
        "/login?next={}",
        url::form_urlencoded::byte_serialize(back_to.as_bytes()).collect::<String>()
    ))
    .into_response()
}

/// A browser that asked for a route we do not have gets a page; anything else gets the
/// contract's JSON error.
pub fn wants_html(headers: &axum::http::HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_compiles() {
        let env = super::templates();
        assert!(env.templates().count() >= 8);
        for (name, template) in env.templates() {
            assert!(template.source().len() > 10, "{name} is empty");
        }
    }
}
