//! The session cookie as every login answer sets it and every logout clears it.

use crate::access::SESSION_COOKIE;
use crate::accounts::Login;
use crate::state::AppState;
use axum_extra::extract::cookie::{Cookie, SameSite};

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
