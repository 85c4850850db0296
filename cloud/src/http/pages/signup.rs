//! Creating an account in a browser: the `/signup` page. Like sign-in it is posted
//! before any login, so it carries a double-submit token (`cookies::signup_csrf`) and
//! must come from our own origin. On success the browser is signed in and sent on to
//! `next`. When registration is closed the page and its post answer 403.

use super::session::{next_query, safe_next, NextQuery};
use super::{render, PageError};
use crate::access::{csrf, ClientMeta, SameOrigin};
use crate::accounts::{self, RegisterRequest};
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

/// Signing up on the way to an invite link (`next` = `/invite/<token>`) registers with
/// that invitation, which opens the door of an invite-only deployment.
fn invitation_in(next: &str) -> Option<SecretString> {
    let token = next.strip_prefix("/invite/")?.split(['?', '#', '/']).next()?;
    (!token.is_empty()).then(|| SecretString::from(token.to_owned()))
}

/// The closed door, as a page.
fn closed() -> Response {
    PageError(Error::forbidden(
        "registration is by invitation only: ask an administrator of your org for an invitation link",
    ))
    .into_response()
}

pub async fn signup_page(
    State(state): State<AppState>,
    jar: CookieJar,
    Query(q): Query<NextQuery>,
) -> Result<Response> {
    let next = safe_next(q.next.as_deref());
    if !accounts::registration_open(&state) && invitation_in(&next).is_none() {
        return Ok(closed());
    }
    signup_again(&state, jar, StatusCode::OK, &next, &Filled::default(), None)
}

#[derive(Deserialize)]
pub struct SignupForm {
    username: String,
    email: String,
    password: SecretString,
    confirm: SecretString,
    next: Option<String>,
    csrf: Option<String>,
}

/// What the form keeps when it comes back with an error (never the passwords).
#[derive(Default, serde::Serialize)]
struct Filled {
    username: String,
    email: String,
}

pub async fn signup_submit(
    State(state): State<AppState>,
    origin: Result<SameOrigin, Error>,
    jar: CookieJar,
    meta: ClientMeta,
    MaybeForm(form): MaybeForm<SignupForm>,
) -> Result<Response> {
    if let Err(e) = origin {
        return Ok(PageError(e).into_response());
    }
    let Some(SignupForm { username, email, password, confirm, next, csrf }) = form else {
        return signup_again(
            &state,
            jar,
            StatusCode::BAD_REQUEST,
            "/",
            &Filled::default(),
            Some("Fill in every field."),
        );
    };
    if csrf::check_login_token(jar.get(csrf::SIGNUP_COOKIE).map(|c| c.value()), csrf.as_deref()).is_err() {
        return Ok(PageError(Error::forbidden("this sign-up form has expired or is not from this site; reload it"))
            .into_response());
    }
    let next = safe_next(next.as_deref());
    let invitation = invitation_in(&next);
    if !accounts::registration_open(&state) && invitation.is_none() {
        return Ok(closed());
    }
    let filled = Filled { username: username.clone(), email: email.clone() };
    if password.expose() != confirm.expose() {
        return signup_again(&state, jar, StatusCode::BAD_REQUEST, &next, &filled, Some("The two passwords differ."));
    }
    let outcome = async {
        let user = accounts::register(&state, RegisterRequest { email, username, password, invitation }, &meta).await?;
        accounts::open_session(&state, &user.id, &meta).await
    };
    match outcome.await {
        Ok(login) => Ok((jar.add(cookies::session(&state, &login)), Redirect::to(&next)).into_response()),
        Err(Error::Client { status: StatusCode::FORBIDDEN, .. }) => Ok(closed()),
        Err(Error::Client { status, description, .. }) => {
            signup_again(&state, jar, status, &next, &filled, Some(&description))
        }
        Err(e) => Err(e),
    }
}

/// The sign-up form, with its token (and cookie), the password rules, and what went wrong.
fn signup_again(
    state: &AppState,
    jar: CookieJar,
    status: StatusCode,
    next: &str,
    filled: &Filled,
    error: Option<&str>,
) -> Result<Response> {
    let (jar, csrf) = cookies::signup_csrf(state, jar);
    let page = render(
        status,
        "signup.html",
        context! {
            next => next, next_query => next_query(next), filled => filled, error => error, csrf => csrf,
            rules => accounts::password_rules(), min_length => accounts::MIN_PASSWORD_LEN, signup => true,
        },
    )?;
    Ok((jar, page).into_response())
}
