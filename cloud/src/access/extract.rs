//! The caller as handlers receive it: `Principal` (a credential is required),
//! `MaybePrincipal` (pages that send a signed-out browser to sign in), `SameOrigin` (the
//! sign-in form) and `ClientMeta`
//! (where the request came from, for audit events and per-IP limits).

use super::credentials::{bearer, check_same_origin, is_pat, require_same_origin, session_cookie};
use super::{pat, session, Principal};
use crate::error::{Error, Result};
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use std::net::SocketAddr;

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if let Some(token) = bearer(&parts.headers)? {
            return if is_pat(token) {
                pat::verify(state, token).await
            } else {
                session::from_access_jwt(state, token).await
            };
        }
        if let Some(cookie) = session_cookie(&parts.headers) {
            check_same_origin(&parts.method, &parts.headers, &state.public_url)?;
            return session::from_cookie(state, &cookie).await;
        }
        Err(Error::unauthenticated("authentication required"))
    }
}

/// The principal if the request carries a valid credential; `None` when it carries none.
pub struct MaybePrincipal(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybePrincipal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if parts.headers.contains_key(header::AUTHORIZATION) || session_cookie(&parts.headers).is_some() {
            Principal::from_request_parts(parts, state).await.map(|p| MaybePrincipal(Some(p)))
        } else {
            Ok(MaybePrincipal(None))
        }
    }
}

/// A request from our own pages (`Origin`, else `Referer`), whatever its credential: the
/// sign-in form sets the cookie rather than using one, so the cookie check cannot guard it.
pub struct SameOrigin;

impl FromRequestParts<AppState> for SameOrigin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        require_same_origin(&parts.headers, &state.public_url).map(|()| SameOrigin)
    }
}

/// Where a request came from, for audit events and per-IP limits.
#[derive(Clone, Debug)]
pub struct ClientMeta {
    pub ip: String,
    pub user_agent: Option<String>,
}

impl FromRequestParts<AppState> for ClientMeta {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        let forwarded = state
            .config
            .trust_forwarded_for
            .then(|| {
                parts.headers.get("x-forwarded-for")?.to_str().ok()?.split(',').next().map(str::trim).map(str::to_owned)
            })
            .flatten()
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok());
        let user_agent =
            parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect());
        Ok(ClientMeta { ip: forwarded.unwrap_or(peer), user_agent })
    }
}
