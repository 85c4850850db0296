//! Server-rendered pages: sign-in, home, the org page with its connector cards, and the
//! device page. (The consent pages, `/connect/…` and the OAuth callback, live with the
//! other consent routes in `http::consent`.) Templates are compiled in; every page
//! carries a strict Content-Security-Policy whose script nonce is fresh per response.

mod device;
mod org;
mod session;

use crate::access::{MaybePrincipal, Principal, Via};
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
        .route("/orgs/{org}", get(org::org_page))
        .route("/device", get(device::device_page))
}

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("../../../templates/base.html")),
            ("login.html", include_str!("../../../templates/login.html")),
            ("home.html", include_str!("../../../templates/home.html")),
            ("org.html", include_str!("../../../templates/org.html")),
            ("callback.html", include_str!("../../../templates/callback.html")),
            ("connect.html", include_str!("../../../templates/connect.html")),
            ("device.html", include_str!("../../../templates/device.html")),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "a page template does not compile");
            }
        }
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

/// The body of a signed-in form whose only field is its token (`access::csrf`).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// A page needs a browser login.
pub fn browser_session(principal: MaybePrincipal) -> Option<Principal> {
    principal.0.filter(|p| matches!(p.via, Via::Session { .. }))
}

/// …otherwise it sends the browser to sign in and come back.
pub fn to_login(back_to: &str) -> Response {
    Redirect::to(&format!(
        "/login?next={}",
        url::form_urlencoded::byte_serialize(back_to.as_bytes()).collect::<String>()
    ))
    .into_response()
}
