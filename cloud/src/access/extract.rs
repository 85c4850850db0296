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
use std::net::{IpAddr, SocketAddr};

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if let Some(token) = bearer(&parts.headers)?.map(str::to_owned) {
            let token = token.as_str();
            return if is_pat(token) {
                let meta = ClientMeta::from_request_parts(parts, state).await?;
                pat::verify(state, token, &meta.ip).await
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
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let forwarded = parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
        let ip = client_ip(peer, forwarded, state.config.trusted_proxy_hops)
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let user_agent =
            parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(256).collect());
        Ok(ClientMeta { ip, user_agent })
    }
}

/// The client's address behind `hops` trusted proxies. Each proxy appends the address it
/// was connected from, so the entries on the right are the proxies' own writes and
/// anything further left is whatever the client sent. The entry `hops` places from the
/// right is the one the outermost proxy wrote: the client as it saw it. Fewer entries
/// than hops means the request came through fewer proxies, and the leftmost is still a
/// proxy's write. An entry that is not an address falls back to the peer.
fn client_ip<'a>(peer: Option<IpAddr>, forwarded: impl Iterator<Item = &'a str>, hops: u32) -> Option<IpAddr> {
    let Some(back) = usize::try_from(hops).ok().and_then(|h| h.checked_sub(1)) else { return peer };
    // Proxies may send one header per hop or one comma-separated list; both read the same.
    let entries: Vec<&str> = forwarded.flat_map(|v| v.split(',')).map(str::trim).collect();
    let Some(entry) = entries.iter().rev().nth(back).or(entries.first()) else { return peer };
    parse_forwarded_addr(entry).or(peer)
}

/// `203.0.113.7`, `2001:db8::1`, and the `ip:port` and `[v6]:port` some proxies write.
fn parse_forwarded_addr(entry: &str) -> Option<IpAddr> {
    entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pick(header: &[&str], hops: u32) -> String {
        client_ip(Some("10.0.0.9".parse().unwrap()), header.iter().copied(), hops).unwrap().to_string()
    }

    #[test]
    fn the_entry_hops_from_the_right_is_the_client() {
        assert_eq!(pick(&["6.6.6.6, 1.2.3.4"], 0), "10.0.0.9");
        assert_eq!(pick(&["6.6.6.6, 1.2.3.4"], 1), "1.2.3.4");
        assert_eq!(pick(&["6.6.6.6, 1.2.3.4, 10.1.1.1"], 2), "1.2.3.4");
        assert_eq!(pick(&["6.6.6.6", "1.2.3.4"], 1), "1.2.3.4");
        assert_eq!(pick(&["1.2.3.4"], 3), "1.2.3.4");
        assert_eq!(pick(&["[2001:db8::1]:443"], 1), "2001:db8::1");
        assert_eq!(pick(&["1.2.3.4:5678"], 1), "1.2.3.4");
        assert_eq!(pick(&["6.6.6.6, not-an-ip"], 1), "10.0.0.9");
        assert_eq!(pick(&[], 1), "10.0.0.9");
    }
}
