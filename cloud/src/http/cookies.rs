//! The session cookie as every login answer sets it and every logout clears it, and the
//! sign-in form's double-submit cookie.

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
    if let Some(token) = jar.get(csrf::LOGIN_COOKIE).map(|c| c.value().to_owned()).filter(|t| !t.is_empty()) {
        return (jar, token);
    }
    let token = csrf::new_login_token();
    let cookie = Cookie::build((csrf::LOGIN_COOKIE, token.clone()))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.config.secure_cookies())
        .path("/login")
        .build();
    (jar.add(cookie), token)
}
