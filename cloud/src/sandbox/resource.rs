//! The protected resources: `GET /sandbox/userinfo` and the data API
//! `GET /sandbox/api/items`, both behind a bearer access token (RFC 6750).

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::wire::{bearer_token, no_store_json, OAuthError, Params};
use super::{items, scope_contains, subject_for, Sandbox, State as SandboxState};

/// Largest page of the data API.
pub(super) const MAX_LIMIT: usize = 500;
/// Page size when `limit` is not given.
pub(super) const DEFAULT_LIMIT: usize = 100;

/// The user and scope behind a valid access token.
struct Caller {
    user: String,
    scope: String,
}

fn authenticate(st: &SandboxState, headers: &HeaderMap) -> Result<Caller, OAuthError> {
    let Some(token) = bearer_token(headers) else {
        return Err(OAuthError::invalid_token("a bearer access token is required"));
    };
    let Some(at) = st.access_tokens.get(token) else {
        return Err(OAuthError::invalid_token("the access token is not valid"));
    };
    let grant = st.grants.get(at.grant).ok_or_else(|| OAuthError::invalid_token("the access token is not valid"))?;
    if at.revoked || grant.revoked {
        return Err(OAuthError::invalid_token("the access token was revoked"));
    }
    if Instant::now() >= at.expires_at {
        return Err(OAuthError::invalid_token("the access token expired"));
    }
    Ok(Caller { user: grant.user.clone(), scope: at.scope.clone() })
}

/// `GET /sandbox/userinfo`: `{"sub", "name", "email"}` of the token's user. Any valid
/// token may read it, whatever its scope.
pub(super) async fn userinfo(State(sb): State<Sandbox>, headers: HeaderMap) -> Response {
    let caller = match authenticate(&sb.lock(), &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    no_store_json(
        StatusCode::OK,
        json!({
            "sub": subject_for(&caller.user),
            "name": caller.user,
            "email": format!("{}@sandbox.test", caller.user),
        }),
    )
}

/// `GET /sandbox/api/items?cursor&limit`: one page of the user's listening history,
/// newest first, `{"items": [...], "next_cursor": "..." | null, "total": n}`. Needs `items:read`.
pub(super) async fn items(State(sb): State<Sandbox>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    match items_page(&sb, &headers, query.as_deref().unwrap_or("")) {
        Ok(body) => body,
        Err(e) => e.into_response(),
    }
}

fn items_page(sb: &Sandbox, headers: &HeaderMap, query: &str) -> Result<Response, OAuthError> {
    let (caller, count) = {
        let st = sb.lock();
        (authenticate(&st, headers)?, st.items)
    };
    if !scope_contains(&caller.scope, "items:read") {
        return Err(OAuthError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "this token lacks the items:read scope",
        )
        .with_www_authenticate("Bearer error=\"insufficient_scope\", scope=\"items:read\""));
    }
    let params = Params::parse(query.as_bytes());
    if let Some(name) = params.first_repeated() {
        return Err(OAuthError::invalid_request(format!("parameter `{name}` is repeated")));
    }
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(OAuthError::invalid_request(format!("limit must be an integer from 1 to {MAX_LIMIT}"))),
        },
    };
    let start = match params.get("cursor") {
        None => None,
        Some(raw) => Some(
            items::decode_cursor(raw)
                .ok_or_else(|| OAuthError::invalid_request("cursor is not one this API handed out"))?,
        ),
    };
    let seed = items::user_seed(&subject_for(&caller.user));
    let (page, next) = items::page(seed, count, start, limit);
    // Serialised straight from the items: a `Value` in between only adds allocations.
    Ok(no_store_json(
        StatusCode::OK,
        ItemsPage { items: page, next_cursor: next.map(items::encode_cursor), total: count },
    ))
}

#[derive(serde::Serialize)]
struct ItemsPage {
    items: Vec<items::Item>,
    next_cursor: Option<String>,
    total: usize,
}
