//! Who is calling: a browser session cookie, an access JWT, or a PAT — verified here and
//! nowhere else. Handlers receive a `Principal` and ask it for scopes and org bindings.
//!
//! Every credential is checked against the database on every request, so a revoked
//! session or PAT stops working at once on every replica.

use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::now;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use latchkey_shared::pat::sha256_hex;
use latchkey_shared::{Scope, ScopeSet};
use serde::{Deserialize, Serialize};

pub const SESSION_COOKIE: &str = "latchkey_session";
/// Lifetime of an access JWT.
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
const JWT_AUDIENCE: &str = "latchkey-api";
/// `last_used_at` is written at most this often per credential, to keep the hot path
/// free of writes.
pub const LAST_USED_GRANULARITY_SECS: i64 = 60;

/// A verified caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: String,
    pub via: Via,
}

#[derive(Clone, Debug)]
pub enum Via {
    /// A login: cookie or access JWT. Acts with all of the user's rights.
    Session { session_id: String },
    /// A PAT: only its scopes, and only in its org when bound to one.
    Pat { pat_id: String, scopes: ScopeSet, org_id: Option<String> },
}

impl Principal {
    /// A PAT must carry `scope`; a login always may.
    pub fn require(&self, scope: Scope) -> Result<()> {
        match &self.via {
            Via::Pat { scopes, .. } if !scopes.contains(scope) => Err(Error::insufficient_scope(scope)),
            _ => Ok(()),
        }
    }

    /// A PAT bound to an org may act only there.
    pub fn allows_org(&self, org_id: &str) -> bool {
        match &self.via {
            Via::Pat { org_id: Some(bound), .. } => bound == org_id,
            _ => true,
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        match &self.via {
            Via::Session { session_id } => Some(session_id),
            Via::Pat { .. } => None,
        }
    }

    pub fn pat_id(&self) -> Option<&str> {
        match &self.via {
            Via::Pat { pat_id, .. } => Some(pat_id),
            Via::Session { .. } => None,
        }
    }

    /// Some actions (making PATs, managing logins) need a login, not a PAT.
    pub fn require_login(&self) -> Result<&str> {
        self.session_id()
            .ok_or_else(|| Error::forbidden("this action needs a login session, not a personal access token"))
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| Error::unauthenticated("malformed Authorization header"))?;
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(str::trim)
                .ok_or_else(|| Error::unauthenticated("expected `Authorization: Bearer <token>`"))?;
            if token.starts_with(latchkey_shared::pat::PREFIX) {
                return crate::pats::authenticate(state, token).await;
            }
            return verify_access_jwt(state, token).await;
        }
        if let Some(cookie) = session_cookie(parts) {
            check_same_origin(parts, state)?;
            return session_from_cookie(state, &cookie).await;
        }
        Err(Error::unauthenticated("authentication required"))
    }
}

/// The principal if the request carries a valid credential; `None` when it carries none.
pub struct MaybePrincipal(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybePrincipal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if parts.headers.contains_key(header::AUTHORIZATION) || session_cookie(parts).is_some() {
            Principal::from_request_parts(parts, state).await.map(|p| MaybePrincipal(Some(p)))
        } else {
            Ok(MaybePrincipal(None))
        }
    }
}

fn session_cookie(parts: &Parts) -> Option<String> {
    axum_extra::extract::CookieJar::from_headers(&parts.headers).get(SESSION_COOKIE).map(|c| c.value().to_owned())
}

/// Cookies ride along on cross-site requests; a state-changing request authenticated by
/// cookie must come from our own pages. (JSON bodies already need a CORS preflight that
/// we never grant; this also covers bodiless POST and DELETE.)
fn check_same_origin(parts: &Parts, state: &AppState) -> Result<()> {
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let origin = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin {
        Some(origin) if origin.trim_end_matches('/') != state.public_url => {
            Err(Error::forbidden("cross-origin request refused"))
        }
        _ => Ok(()),
    }
}

async fn session_from_cookie(state: &AppState, cookie: &str) -> Result<Principal> {
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

async fn verify_access_jwt(state: &AppState, token: &str) -> Result<Principal> {
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
