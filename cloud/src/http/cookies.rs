//! The session cookie as every login answer sets it and every logout clears it, and the
//! double-submit cookies of the forms posted before a login (sign-in, sign-up).

use crate::access::{csrf, SESSION_COOKIE};
use crate::accounts::Login;
use crate::state::AppState;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};

/// The cookie a login sets: HttpOnly, SameSite=Lax, Secure when the public URL is https.
pub fn session(state: &AppState, login: &Login) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, login.cookie_secret.expose().clone()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.secure_cookies())
        .path("/")
        .max_age(time::Duration::seconds(login.max_age_secs))
        .build()
}

/// Removes the session cookie from the browser.
pub fn cleared() -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE).path("/").build()
}

/// The sign-in form's token: the browser's `latchkey_login_csrf` cookie, or a new one set
/// now. Strict and scoped to `/login`: no other site's request carries it, and no other
/// page sees it.
pub fn login_csrf(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
    signed_out_form_csrf(state, jar, csrf::LOGIN_COOKIE, "/login")
}

/// The sign-up form's token: the same double-submit scheme as sign-in, in its own cookie
/// scoped to `/signup` (so neither form's cookie reaches the other's page).
pub fn signup_csrf(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
    signed_out_form_csrf(state, jar, csrf::SIGNUP_COOKIE, "/signup")
}

/// A form posted before any login: its double-submit cookie `name` on `path`, kept if the
/// browser has one, else set now.
fn signed_out_form_csrf(
    state: &AppState,
    jar: CookieJar,
    name: &'static str,
    path: &'static str,
) -> (CookieJar, String) {
    if let Some(token) = jar.get(name).map(|c| c.value().to_owned()).filter(|t| !t.is_empty()) {
        return (jar, token);
    }
    let token = csrf::new_login_token();
    let cookie = Cookie::build((name, token.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.config.secure_cookies())
        .path(path)
        .build();
    (jar.add(cookie), token)
}
