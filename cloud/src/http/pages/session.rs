//! Signing in and out in a browser, and the home page.

use super::attention;
use super::layout::NoFields;
use super::{render, Page, PageError, PagePost, PageResult};
use crate::access::{csrf, ClientMeta, SameOrigin};
use crate::accounts::{self, LoginRequest};
use crate::error::{Error, Result};
use crate::http::cookies;
use crate::http::extract::{MaybeForm, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use latchkey_shared::secret::SecretString;
use minijinja::context;
use serde::Deserialize;

/// Home: the member's orgs, and a banner with a Reconnect button for each of their
/// connections that needs them (`attention`).
pub async fn home(State(state): State<AppState>, page: Page) -> PageResult {
    let banners = attention::banners(&state, &page.principal).await?;
    page.ok("home.html", context! { orgs => &page.layout.orgs, banners => banners })
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    pub next: Option<String>,
}

pub async fn login_page(State(state): State<AppState>, jar: CookieJar, Query(q): Query<NextQuery>) -> Result<Response> {
    login_again(&state, jar, StatusCode::OK, &safe_next(q.next.as_deref()), "", None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: SecretString,
    next: Option<String>,
    csrf: Option<String>,
}

/// Only from our own sign-in page: another site's form would sign the victim's browser
/// into the attacker's account (`access::csrf`).
pub async fn login_submit(
    State(state): State<AppState>,
    origin: Result<SameOrigin, Error>,
    jar: CookieJar,
    meta: ClientMeta,
    MaybeForm(form): MaybeForm<LoginForm>,
) -> Result<Response> {
    if let Err(e) = origin {
        return Ok(PageError(e).into_response());
    }
    let Some(LoginForm { email, password, next, csrf }) = form else {
        return login_again(&state, jar, StatusCode::BAD_REQUEST, "/", "", Some("Enter your email and password."));
    };
    let next = safe_next(next.as_deref());
    let outcome = async {
        csrf::check_login_token(jar.get(csrf::LOGIN_COOKIE).map(|c| c.value()), csrf.as_deref())?;
        accounts::login(&state, LoginRequest { email: email.clone(), password }, &meta).await
    };
    match outcome.await {
        Ok(login) => Ok((jar.add(cookies::session(&state, &login)), Redirect::to(&next)).into_response()),
        Err(Error::Client { status, description, .. }) => {
            login_again(&state, jar, status, &next, &email, Some(&description))
        }
        Err(e) => Err(e),
    }
}

/// The sign-in form, with its token (and cookie) and what went wrong, if anything.
fn login_again(
    state: &AppState,
    jar: CookieJar,
    status: StatusCode,
    next: &str,
    email: &str,
    error: Option<&str>,
) -> Result<Response> {
    let (jar, csrf) = cookies::login_csrf(state, jar);
    let signup = accounts::registration_open(state);
    let page = render(
        status,
        "login.html",
        context! { next => next, next_query => next_query(next), email => email, error => error, csrf => csrf, signup => signup },
    )?;
    Ok((jar, page).into_response())
}

/// Signing out is a form of the signed-in pages, with this login's token.
pub async fn logout(State(state): State<AppState>, jar: CookieJar, post: PagePost<NoFields>) -> PageResult {
    accounts::logout(&state, post.page.principal.require_login()?).await?;
    Ok((jar.remove(cookies::cleared()), Redirect::to("/login")).into_response())
}

/// `?next=…` to carry `next` on to another signed-out page (sign-in ⇄ sign-up); empty for home.
pub fn next_query(next: &str) -> String {
    if next == "/" {
        return String::new();
    }
    format!("?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>())
}

/// Only same-site relative paths: the login form must not become an open redirect.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}
