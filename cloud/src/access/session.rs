//! Logins: the session cookie and the access JWT. Both name a `sessions` row, which is
//! read on every request, so logout and session revocation end them at once.

use super::{Principal, Via, LAST_USED_GRANULARITY_SECS};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::now;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use latchkey_shared::pat::sha256_hex;
use serde::{Deserialize, Serialize};

/// Lifetime of an access JWT.
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
const JWT_AUDIENCE: &str = "latchkey-api";

/// The caller behind a session cookie.
pub async fn from_cookie(state: &AppState, cookie: &str) -> Result<Principal> {
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "select id, user_id, last_used_at from sessions \
         where cookie_hash = $1 and revoked_at is null and expires_at > $2",
    )
    .bind(sha256_hex(cookie))
    .bind(now())
    .fetch_optional(state.store.pool())
    .await?;
    let (session_id, user_id, last_used) =
        row.ok_or_else(|| Error::unauthenticated("session expired or signed out; log in again"))?;
    touch_session(state, &session_id, last_used).await?;
    Ok(Principal { user_id, via: Via::Session { session_id } })
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    sid: String,
    iss: String,
    aud: String,
    iat: i64,
    exp: i64,
}

/// Signs an access JWT for a session with the active key; `kid` names the key version.
pub fn issue_access_jwt(state: &AppState, user_id: &str, session_id: &str) -> Result<String> {
    let version = state.keys.active_version();
    let key =
        state.keys.jwt_key(version).ok_or_else(|| anyhow::anyhow!("active key version {version} has no JWT key"))?;
    let iat = now();
    let claims = Claims {
        sub: user_id.to_owned(),
        sid: session_id.to_owned(),
        iss: state.public_url.clone(),
        aud: JWT_AUDIENCE.to_owned(),
        iat,
        exp: iat + ACCESS_TTL_SECS,
    };
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(version.to_string());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(key))
        .map_err(|e| Error::Internal(anyhow::anyhow!("signing a JWT: {e}")))
}

pub async fn from_access_jwt(state: &AppState, token: &str) -> Result<Principal> {
    let invalid = || Error::unauthenticated("invalid or expired access token");
    let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
    let version: u32 = header.kid.as_deref().and_then(|k| k.parse().ok()).ok_or_else(invalid)?;
    let key = state.keys.jwt_key(version).ok_or_else(invalid)?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[JWT_AUDIENCE]);
    validation.set_issuer(&[state.public_url.as_str()]);
    validation.leeway = 5;
    let data =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation).map_err(|_| invalid())?;
    let claims = data.claims;
    // The JWT is only as good as its session: logout and session revocation end it at once.
    let row: Option<(String, i64)> = sqlx::query_as(
        "select user_id, last_used_at from sessions where id = $1 and revoked_at is null and expires_at > $2",
    )
    .bind(&claims.sid)
    .bind(now())
    .fetch_optional(state.store.pool())
    .await?;
    match row {
        Some((user_id, last_used)) if user_id == claims.sub => {
            touch_session(state, &claims.sid, last_used).await?;
            Ok(Principal { user_id, via: Via::Session { session_id: claims.sid } })
        }
        _ => Err(Error::unauthenticated("session expired or signed out; log in again")),
    }
}

async fn touch_session(state: &AppState, session_id: &str, last_used: i64) -> Result<()> {
    let now = now();
    if now - last_used >= LAST_USED_GRANULARITY_SECS {
        sqlx::query("update sessions set last_used_at = $1, updated_at = $1 where id = $2")
            .bind(now)
            .bind(session_id)
            .execute(state.store.pool())
            .await?;
    }
    Ok(())
}
