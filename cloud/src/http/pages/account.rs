//! The account area: profile and password, sessions, personal access tokens, paired
//! devices and the member's own activity. Every page and form calls the same domain
//! function as its JSON route (`crate::accounts`, `crate::pats`, `crate::devices`).

use super::layout::NoFields;
use super::{notice, Page, PageError, PagePost, PageResult};
use crate::access::ClientMeta;
use crate::accounts::{self, ChangePassword};
use crate::error::Error;
use crate::http::cookies;
use crate::pats::{self, CreatePat};
use crate::state::AppState;
use crate::{devices, orgs};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use axum_extra::extract::cookie::CookieJar;
use latchkey_shared::secret::SecretString;
use latchkey_shared::Scope;
use minijinja::context;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/account", get(profile))
        .route("/account/password", post(change_password))
        .route("/account/sessions", get(sessions))
        .route("/account/sessions/revoke-all", post(revoke_all_sessions))
        .route("/account/sessions/{id}/revoke", post(revoke_session))
        .route("/account/tokens", get(tokens).post(create_token))
        .route("/account/tokens/{id}/revoke", post(revoke_token))
        .route("/account/devices", get(devices_page))
        .route("/account/devices/{id}/unpair", post(unpair_device))
        .route("/account/activity", get(activity))
}

async fn profile(State(state): State<AppState>, page: Page) -> PageResult {
    let me = accounts::me(&state, &page.principal.user_id).await?;
    page.ok(
        "account.html",
        context! { section => "profile", me => me, rules => accounts::password_rules(), min_length => accounts::MIN_PASSWORD_LEN },
    )
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: SecretString,
    password: SecretString,
    confirm: SecretString,
}

async fn change_password(State(state): State<AppState>, meta: ClientMeta, post: PagePost<PasswordForm>) -> PageResult {
    let PagePost { page, form } = post;
    if form.password.expose() != form.confirm.expose() {
        return Err(Error::bad_request("the new password and its confirmation differ").into());
    }
    let req = ChangePassword { current_password: form.current_password, new_password: form.password };
    let done = accounts::change_password(&state, &page.principal, req, &meta).await?;
    let others = match done.sessions_revoked {
        0 => "You had no other sessions.".to_owned(),
        1 => "Your 1 other session was signed out.".to_owned(),
        n => format!("Your {n} other sessions were signed out."),
    };
    Ok(notice("/account", &format!("Password changed. {others}")))
}

async fn sessions(State(state): State<AppState>, page: Page) -> PageResult {
    let current = page.principal.require_login()?;
    let list = accounts::sessions(&state, &page.principal.user_id, Some(current)).await?;
    page.ok("account_sessions.html", context! { section => "sessions", sessions => list })
}

async fn revoke_session(
    State(state): State<AppState>,
    jar: CookieJar,
    meta: ClientMeta,
    Path(id): Path<String>,
    post: PagePost<NoFields>,
) -> PageResult {
    let page = post.page;
    accounts::revoke_session(&state, &page.principal, &id, &meta).await?;
    if page.principal.session_id() == Some(id.as_str()) {
        // This browser's own login: it is signed out now.
        return Ok((jar.remove(cookies::cleared()), Redirect::to("/login")).into_response());
    }
    Ok(notice("/account/sessions", "The session was signed out."))
}

/// Signs out every login, this browser's included (as `DELETE /v1/sessions`).
async fn revoke_all_sessions(
    State(state): State<AppState>,
    jar: CookieJar,
    meta: ClientMeta,
    post: PagePost<NoFields>,
) -> PageResult {
    accounts::revoke_all_sessions(&state, &post.page.principal, &meta).await?;
    Ok((jar.remove(cookies::cleared()), Redirect::to("/login")).into_response())
}

/// A scope as the token form offers it.
#[derive(Serialize)]
struct ScopeChoice {
    name: &'static str,
    field: String,
    about: &'static str,
    checked: bool,
}

fn scope_choices() -> Vec<ScopeChoice> {
    Scope::ALL
        .iter()
        .map(|s| ScopeChoice {
            name: s.as_str(),
            field: scope_field(*s),
            about: scope_about(*s),
            // `connections:token` is never preselected: it must be asked for by name.
            checked: Scope::DEFAULTS.contains(s),
        })
        .collect()
}

fn scope_field(scope: Scope) -> String {
    format!("scope_{}", scope.as_str().replace(':', "_"))
}

fn scope_about(scope: Scope) -> &'static str {
    match scope {
        Scope::ConnectionsRead => "list your connections",
        Scope::ConnectionsCreate => "start new connections",
        Scope::ConnectionsDelete => "disconnect your connections",
        Scope::ConnectionsToken => "fetch live access tokens of your connections (powerful)",
        Scope::AppsRead => "read providers, apps and connectors",
        Scope::AppsWrite => "change apps and connectors (admins)",
        Scope::OrgsRead => "read your orgs and members",
        Scope::OrgsWrite => "change orgs you administer",
        Scope::AuditRead => "read your audit log",
    }
}

/// A PAT as the tokens page lists it: the org by slug, not id.
#[derive(Serialize)]
struct TokenRow {
    id: String,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    org: Option<String>,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    last_used_ip: Option<String>,
}

async fn tokens_page(
    state: &AppState,
    page: &Page,
    created: Option<minijinja::Value>,
    error: Option<&str>,
) -> PageResult {
    let orgs = orgs::list(state, &page.principal, false).await?;
    let slug_of: HashMap<String, String> = orgs.iter().map(|o| (o.id.clone(), o.slug.clone())).collect();
    let list: Vec<TokenRow> = pats::list(state, &page.principal)
        .await?
        .into_iter()
        .filter(|p| p.kind == "token")
        .map(|p| TokenRow {
            org: p.org_id.as_ref().map(|id| slug_of.get(id).cloned().unwrap_or_else(|| id.clone())),
            id: p.id,
            name: p.name,
            prefix: p.prefix,
            scopes: p.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: p.created_at,
            expires_at: p.expires_at,
            last_used_at: p.last_used_at,
            last_used_ip: p.last_used_ip,
        })
        .collect();
    let org_choices: Vec<(String, String)> = orgs.into_iter().map(|o| (o.slug, o.name)).collect();
    let status = if error.is_some() { axum::http::StatusCode::BAD_REQUEST } else { axum::http::StatusCode::OK };
    page.render(
        status,
        "account_tokens.html",
        context! { section => "tokens", tokens => list, scopes => scope_choices(), orgs => org_choices, created => created, error => error },
    )
}

async fn tokens(State(state): State<AppState>, page: Page) -> PageResult {
    tokens_page(&state, &page, None, None).await
}

#[derive(Deserialize)]
struct TokenForm {
    name: String,
    #[serde(default)]
    org: String,
    #[serde(default)]
    expires_in_days: String,
    /// The scope checkboxes: `scope_connections_read=on`, …
    #[serde(flatten)]
    rest: HashMap<String, String>,
}

/// Creates a PAT and shows it once, on this answer only.
async fn create_token(State(state): State<AppState>, meta: ClientMeta, post: PagePost<TokenForm>) -> PageResult {
    let PagePost { page, form } = post;
    let scopes: Vec<Scope> = Scope::ALL.into_iter().filter(|s| form.rest.contains_key(&scope_field(*s))).collect();
    if scopes.is_empty() {
        return tokens_page(&state, &page, None, Some("Choose at least one scope.")).await;
    }
    let expires_in_days = match form.expires_in_days.trim() {
        "" => None,
        days => match days.parse::<u32>() {
            Ok(d) => Some(d),
            Err(_) => {
                return tokens_page(&state, &page, None, Some("Expiry: a whole number of days, 1 to 3650.")).await
            }
        },
    };
    let org = Some(form.org.trim().to_owned()).filter(|o| !o.is_empty());
    let req = CreatePat { name: form.name, scopes: Some(scopes), expires_in_days, org };
    match pats::create(&state, &page.principal, req, &meta).await {
        Ok(created) => {
            let shown = context! {
                name => created.name, token => created.token.expose(), expires_at => created.expires_at,
                scopes => created.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            };
            tokens_page(&state, &page, Some(shown), None).await
        }
        Err(Error::Client { status: axum::http::StatusCode::BAD_REQUEST, description, .. }) => {
            tokens_page(&state, &page, None, Some(&description)).await
        }
        Err(e) => Err(PageError(e)),
    }
}

async fn revoke_token(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path(id): Path<String>,
    post: PagePost<NoFields>,
) -> PageResult {
    pats::revoke(&state, &post.page.principal, &id, &meta).await?;
    Ok(notice("/account/tokens", "The token was revoked; it no longer works anywhere."))
}

async fn devices_page(State(state): State<AppState>, page: Page) -> PageResult {
    let list = devices::list(&state, &page.principal).await?;
    page.ok("account_devices.html", context! { section => "devices", devices => list })
}

async fn unpair_device(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path(id): Path<String>,
    post: PagePost<NoFields>,
) -> PageResult {
    devices::revoke(&state, &post.page.principal, &id, &meta).await?;
    Ok(notice("/account/devices", "The device was unpaired; its token stopped working at once."))
}

#[derive(Deserialize)]
struct ActivityQuery {
    before: Option<String>,
}

/// An event as the activity page shows it.
#[derive(Serialize)]
struct ActivityRow {
    id: String,
    when: String,
    what: String,
    by: String,
    org: Option<String>,
    connector: Option<String>,
    outcome: String,
    ip: Option<String>,
}

const ACTIVITY_PAGE: i64 = 50;

async fn activity(State(state): State<AppState>, page: Page, Query(q): Query<ActivityQuery>) -> PageResult {
    let before = q.before.filter(|b| !b.is_empty() && b.len() <= 64);
    let filter = crate::audit::Filter { before: before.clone(), limit: ACTIVITY_PAGE, ..Default::default() };
    let listed = accounts::audit(&state, &page.principal, &filter).await?;
    let events = listed.entries;
    let older = listed.more.then(|| events.last().map(|e| e.id.clone())).flatten();
    let rows: Vec<ActivityRow> = events
        .into_iter()
        .map(|e| {
            let by = match (e.pat_kind.as_deref(), e.pat_name) {
                (Some("device"), Some(name)) => format!("device “{}”", name.trim_start_matches("device: ")),
                (_, Some(name)) => format!("token “{name}”"),
                _ if e.pat_id.is_some() => "a deleted token".to_owned(),
                _ => "you, signed in".to_owned(),
            };
            let connector = (e.action == "connection.token").then_some(e.target).flatten();
            ActivityRow {
                what: describe_action(&e.action),
                id: e.id,
                when: e.created_at,
                by,
                org: e.org_slug,
                connector,
                outcome: e.outcome,
                ip: e.ip,
            }
        })
        .collect();
    page.ok(
        "account_activity.html",
        context! { section => "activity", events => rows, older => older, paged => before.is_some() },
    )
}

fn describe_action(action: &str) -> String {
    match action {
        "connection.token" => "fetched a connection's token",
        "account.login" => "signed in",
        "account.register" => "created the account",
        "account.password_change" => "changed the password",
        "session.revoke" => "signed a session out",
        "session.revoke_all" => "signed out everywhere",
        "pat.create" => "created an access token",
        "pat.revoke" => "revoked an access token",
        "device.approve" => "approved a device",
        "device.deny" => "denied a device",
        "device.paired" => "paired a device",
        "device.revoke" => "unpaired a device",
        other => return other.to_owned(),
    }
    .to_owned()
}
