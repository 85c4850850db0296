//! Server-rendered pages: sign-in, the org page with its connector cards, the connect
//! redirect and the OAuth callback page. Templates are compiled in; every page carries a
//! strict Content-Security-Policy whose script nonce is fresh per response.

use crate::accounts::{self, LoginRequest};
use crate::apps;
use crate::auth::{MaybePrincipal, Principal, Via, SESSION_COOKIE};
use crate::connections;
use crate::error::{Error, Result};
use crate::http::extract::{ClientMeta, Path, Query};
use crate::oauth::consent::{self, CallbackParams};
use crate::orgs;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use base64::Engine;
use latchkey_shared::secret::SecretString;
use minijinja::{context, Environment};
use rand::RngCore;
use serde::Deserialize;
use std::sync::OnceLock;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/orgs/{org}", get(org_page))
        .route("/connect/{org}/{key}", get(connect))
        .route("/oauth/callback", get(callback))
        .route("/device", get(device_page))
}

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("../templates/base.html")),
            ("login.html", include_str!("../templates/login.html")),
            ("home.html", include_str!("../templates/home.html")),
            ("org.html", include_str!("../templates/org.html")),
            ("callback.html", include_str!("../templates/callback.html")),
            ("device.html", include_str!("../templates/device.html")),
        ] {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "a page template does not compile");
            }
        }
        env
    })
}

/// Renders a page with a fresh CSP nonce.
fn render(status: StatusCode, name: &str, ctx: minijinja::Value) -> Result<Response> {
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
    Ok(response)
}

/// A page needs a browser login.
fn browser_session(principal: MaybePrincipal) -> Option<Principal> {
    principal.0.filter(|p| matches!(p.via, Via::Session { .. }))
}

/// …otherwise it sends the browser to sign in and come back.
fn to_login(back_to: &str) -> Response {
    Redirect::to(&format!(
        "/login?next={}",
        url::form_urlencoded::byte_serialize(back_to.as_bytes()).collect::<String>()
    ))
    .into_response()
}

/// Only same-site relative paths: the login form must not become an open redirect.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

async fn home(State(state): State<AppState>, principal: MaybePrincipal) -> Result<Response> {
    let Some(principal) = browser_session(principal) else { return Ok(to_login("/")) };
    let me = accounts::me(&state, &principal.user_id).await?;
    let orgs = orgs::list(&state, &principal, false).await?;
    render(StatusCode::OK, "home.html", context! { username => me.username, orgs => orgs })
}

#[derive(Debug, Default, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(Query(q): Query<NextQuery>) -> Result<Response> {
    render(StatusCode::OK, "login.html", context! { next => safe_next(q.next.as_deref()), email => "" })
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: SecretString,
    next: Option<String>,
}

async fn login_submit(
    State(state): State<AppState>,
    jar: CookieJar,
    meta: ClientMeta,
    form: std::result::Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response> {
    let Ok(Form(form)) = form else {
        return render(
            StatusCode::BAD_REQUEST,
            "login.html",
            context! { next => "/", email => "", error => "Enter your email and password." },
        );
    };
    let next = safe_next(form.next.as_deref());
    let email = form.email.clone();
    match accounts::login(&state, LoginRequest { email: form.email, password: form.password }, &meta).await {
        Ok(login) => {
            let cookie = Cookie::build((SESSION_COOKIE, login.cookie_secret.expose().clone()))
                .http_only(true)
                .same_site(SameSite::Lax)
                .secure(state.config.secure_cookies())
                .path("/")
                .max_age(time::Duration::seconds(login.max_age_secs))
                .build();
            Ok((jar.add(cookie), Redirect::to(&next)).into_response())
        }
        Err(Error::Client { status, description, .. }) => {
            render(status, "login.html", context! { next => next, email => email, error => description })
        }
        Err(e) => Err(e),
    }
}

async fn logout(State(state): State<AppState>, jar: CookieJar, principal: MaybePrincipal) -> Result<Response> {
    if let Some(session_id) = principal.0.as_ref().and_then(Principal::session_id) {
        accounts::logout(&state, session_id).await?;
    }
    Ok((jar.remove(Cookie::build(SESSION_COOKIE).path("/")), Redirect::to("/login")).into_response())
}

/// A card on the org page.
#[derive(serde::Serialize)]
struct Card {
    key: String,
    provider_display_name: String,
    description: String,
    app_configured: bool,
    status: String,
    status_label: &'static str,
    connect_label: &'static str,
    account: String,
}

async fn org_page(
    State(state): State<AppState>,
    principal: MaybePrincipal,
    Path(org_ref): Path<String>,
) -> Result<Response> {
    let Some(principal) = browser_session(principal) else { return Ok(to_login(&format!("/orgs/{org_ref}"))) };
    let org = orgs::authorize(&state, &principal, &org_ref, orgs::Need::Visible).await?;
    let me = accounts::me(&state, &principal.user_id).await?;
    if org.role.is_none() {
        return Err(Error::client(
            StatusCode::FORBIDDEN,
            latchkey_shared::ErrorCode::NotAMember,
            "join this org first (POST /v1/orgs/{org}/join)",
        ));
    }
    let connectors = apps::list_connectors(&state, &principal, &org.id).await?;
    let mine = connections::list(&state, &principal, Some(&org.id)).await?;
    let cards: Vec<Card> = connectors
        .into_iter()
        .map(|c| {
            let conn = mine.iter().find(|m| m.connector_key == c.key);
            let status = conn.map(|m| m.status.clone()).unwrap_or_else(|| "none".to_owned());
            let status_label = match status.as_str() {
                "active" => "Active",
                "needs_reauth" => "Needs reauthorisation",
                "revoked" => "Revoked",
                _ => "Not connected",
            };
            Card {
                key: c.key,
                provider_display_name: c.provider_display_name,
                description: c.description,
                app_configured: c.app_configured,
                connect_label: if conn.is_some() { "Reconnect" } else { "Connect" },
                account: conn
                    .map(|m| m.account_name.clone().unwrap_or_else(|| m.account_id.clone()))
                    .unwrap_or_default(),
                status,
                status_label,
            }
        })
        .collect();
    render(StatusCode::OK, "org.html", context! { org => org, connectors => cards, username => me.username })
}

/// Browser entry to a consent: straight to the provider (a new tab opened it).
async fn connect(
    State(state): State<AppState>,
    principal: MaybePrincipal,
    Path((org, key)): Path<(String, String)>,
) -> Result<Response> {
    let Some(principal) = browser_session(principal) else { return Ok(to_login(&format!("/connect/{org}/{key}"))) };
    let url = consent::start(&state, &principal, &org, &key).await?;
    Ok(Redirect::to(&url).into_response())
}

#[derive(Debug, Default, Deserialize)]
struct DeviceQuery {
    user_code: Option<String>,
}

/// Where a member approves a device's code (`verification_uri`).
async fn device_page(
    State(state): State<AppState>,
    principal: MaybePrincipal,
    Query(q): Query<DeviceQuery>,
) -> Result<Response> {
    let back = match &q.user_code {
        Some(c) => {
            format!("/device?user_code={}", url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>())
        }
        None => "/device".to_owned(),
    };
    let Some(principal) = browser_session(principal) else { return Ok(to_login(&back)) };
    let me = accounts::me(&state, &principal.user_id).await?;
    let code: String =
        q.user_code.unwrap_or_default().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(16).collect();
    render(StatusCode::OK, "device.html", context! { username => me.username, user_code => code })
}

async fn callback(
    State(state): State<AppState>,
    principal: MaybePrincipal,
    Query(params): Query<CallbackParams>,
) -> Result<Response> {
    // A stale or foreign cookie is not an error here: the page says what went wrong.
    let outcome = consent::callback(&state, principal.0.as_ref(), params).await?;
    let signal = serde_json::json!({
        "result": if outcome.ok { "success" } else { "error" },
        "connection_id": outcome.connection_id,
        "message": outcome.message,
    });
    let status = if outcome.ok { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    render(
        status,
        "callback.html",
        context! { ok => outcome.ok, message => outcome.message, org_slug => outcome.org_slug, signal => signal },
    )
}
