//! Form tokens against cross-site request forgery, on top of the Origin check in
//! `credentials`.
//!
//! - A signed-in form carries `HMAC-SHA256(key, "latchkey/csrf/v1/" ‖ session id)`, the
//!   key derived from the master key ring. Nothing is stored: any replica can check it,
//!   and it dies with the login.
//! - The sign-in and sign-up forms have no login yet: they use a double-submit token, a
//!   random value in a `SameSite=Strict`, HttpOnly cookie scoped to the form's own path
//!   (`/login`, `/signup`) that the form repeats.
//!
//! Tokens are compared in constant time.

use super::Principal;
use crate::crypto::KeyRing;
use crate::error::{Error, Result};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The sign-in form's double-submit cookie.
pub const LOGIN_COOKIE: &str = "latchkey_login_csrf";

/// The sign-up form's double-submit cookie (same scheme, scoped to `/signup`).
pub const SIGNUP_COOKIE: &str = "latchkey_signup_csrf";

/// The form field every protected form posts its token in.
pub const FIELD: &str = "csrf";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn mac(key: &[u8], session_id: &str) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(b"latchkey/csrf/v1/");
    mac.update(session_id.as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The token a signed-in page puts in its forms; `None` for a PAT, which has no forms.
pub fn session_token(keys: &KeyRing, principal: &Principal) -> Option<String> {
    let session_id = principal.session_id()?;
    keys.csrf_keys().next().and_then(|key| mac(key, session_id)).map(|m| b64(&m))
}

/// A signed-in form's token must be this login's.
pub fn check_session_token(keys: &KeyRing, principal: &Principal, presented: Option<&str>) -> Result<()> {
    let refused = || Error::forbidden("this form is stale or not from this site; reload the page and try again");
    let session_id = principal.session_id().ok_or_else(refused)?;
    let presented = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(presented.unwrap_or_default());
    let presented = presented.map_err(|_| refused())?;
    if keys.csrf_keys().filter_map(|key| mac(key, session_id)).any(|expected| same(&expected, &presented)) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// A fresh value for the sign-in form's double-submit cookie.
pub fn new_login_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    b64(&bytes)
}

/// The sign-in form must repeat its cookie's value.
pub fn check_login_token(cookie: Option<&str>, presented: Option<&str>) -> Result<()> {
    match (cookie, presented) {
        (Some(cookie), Some(presented)) if !cookie.is_empty() && same(cookie.as_bytes(), presented.as_bytes()) => {
            Ok(())
        }
        _ => Err(Error::forbidden("this sign-in form has expired; sign in again")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::access::Via;
    use crate::crypto::generate_master_key;
    use crate::test_db::ring;

    fn login(session_id: &str) -> Principal {
        Principal { user_id: "u".into(), via: Via::Session { session_id: session_id.into() } }
    }

    #[test]
    fn a_form_token_is_good_only_for_its_own_login_and_key_ring() {
        let (k1, k2) = (generate_master_key(), generate_master_key());
        let keys = ring(1, &[(1, &k1)]);
        let token = session_token(&keys, &login("s1")).unwrap();
        assert!(check_session_token(&keys, &login("s1"), Some(&token)).is_ok());
        assert!(check_session_token(&keys, &login("s2"), Some(&token)).is_err());
        assert!(check_session_token(&keys, &login("s1"), None).is_err());
        assert!(check_session_token(&keys, &login("s1"), Some("not base64 !")).is_err());
        // Another master key: refused; after a rotation that keeps the old key: accepted.
        assert!(check_session_token(&ring(2, &[(2, &k2)]), &login("s1"), Some(&token)).is_err());
        assert!(check_session_token(&ring(2, &[(2, &k2), (1, &k1)]), &login("s1"), Some(&token)).is_ok());
    }

    #[test]
    fn the_sign_in_token_must_repeat_its_cookie() {
        let t = new_login_token();
        assert!(check_login_token(Some(&t), Some(&t)).is_ok());
        assert!(check_login_token(Some(&t), Some("other")).is_err());
        assert!(check_login_token(None, Some(&t)).is_err());
        assert!(check_login_token(Some(&t), None).is_err());
        assert!(check_login_token(Some(""), Some("")).is_err());
    }
}
