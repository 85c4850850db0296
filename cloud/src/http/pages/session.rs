//! Signing in and out in a browser, and the home page.

use super::{browser_session, render, to_login};
use crate::access::{ClientMeta, MaybePrincipal, Principal};
use crate::accounts::{self, LoginRequest};
use crate::error::{Error, Result};
use crate::http::cookies;
use crate::http::extract::{MaybeForm, Query};
use crate::orgs;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use latchkey_shared::secret::SecretString;
use minijinja::context;
use serde::Deserialize;

pub async fn home(State(state): State<AppState>, principal: MaybePrincipal) -> Result<Response> {
    let Some(principal) = browser_session(principal) else { return Ok(to_login("/")) };
    let me = accounts::me(&state, &principal.user_id).await?;
    let orgs = orgs::list(&state, &principal, false).await?;
    render(StatusCode::OK, "home.html", context! { username => me.username, orgs => orgs })
}

#[derive(Debug, Default, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login_page(Query(q): Query<NextQuery>) -> Result<Response> {
    render(StatusCode::OK, "login.html", context! { next => safe_next(q.next.as_deref()), email => "" })
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: SecretString,
    next: Option<String>,
}

pub async fn login_submit(
    State(state): State<AppState>,
    jar: CookieJar,
    meta: ClientMeta,
    MaybeForm(form): MaybeForm<LoginForm>,
) -> Result<Response> {
    let Some(LoginForm { email, password, next }) = form else {
        return login_again(StatusCode::BAD_REQUEST, "/", "", "Enter your email and password.");
    };
    let next = safe_next(next.as_deref());
    match accounts::login(&state, LoginRequest { email: email.clone(), password }, &meta).await {
        Ok(login) => Ok((jar.add(cookies::session(&state, &login)), Redirect::to(&next)).into_response()),
        Err(Error::Client { status, description, .. }) => login_again(status, &next, &email, &description),
        Err(e) => Err(e),
    }
}

/// The sign-in form again, with what went wrong.
fn login_again(status: StatusCode, next: &str, email: &str, error: &str) -> Result<Response> {
    render(status, "login.html", context! { next => next, email => email, error => error })
}

pub async fn logout(State(state): State<AppState>, jar: CookieJar, principal: MaybePrincipal) -> Result<Response> {
    if let Some(session_id) = principal.0.as_ref().and_then(Principal::session_id) {
        accounts::logout(&state, session_id).await?;
    }
    Ok((jar.remove(cookies::cleared()), Redirect::to("/login")).into_response())
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
