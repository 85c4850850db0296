//! `POST /oauth/connection-token`: the one door local agents use. Checks run in the
//! contract's order and the first failure answers; every answer leaves an audit event
//! (without the token). The hot path is one PAT look-up, one org-and-connection look-up
//! and one AES-GCM open; the audit event goes to the batching writer.

use crate::audit::OwnedEvent;
use crate::auth::Via;
use crate::error::{Error, Result};
use crate::http::extract::ClientMeta;
use crate::ratelimit;
use crate::refresh::{self, Fresh, TokenRow};
use crate::state::AppState;
use crate::store::{now, rfc3339};
use axum::http::{header, HeaderMap, StatusCode};
use latchkey_shared::wire::{ConnectionTokenRequest, ConnectionTokenResponse};
use latchkey_shared::{ErrorCode, Scope};

/// What the audit event of this answer knows.
#[derive(Default)]
pub struct Trace {
    pub user_id: Option<String>,
    pub pat_id: Option<String>,
    pub org_id: Option<String>,
    pub connector_key: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Lookup {
    pat_id: String,
    user_id: String,
    scopes: String,
    pat_org_id: Option<String>,
    pat_expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
    org_id: Option<String>,
    slug: Option<String>,
    visibility: Option<String>,
    role: Option<String>,
    connection_id: Option<String>,
    status: Option<String>,
    consent_only: Option<i64>,
    provider: Option<String>,
    access_token_ct: Option<Vec<u8>>,
    refresh_token_ct: Option<Vec<u8>>,
    token_type: Option<String>,
    expires_at: Option<i64>,
    failure_count: Option<i64>,
    next_attempt_at: Option<i64>,
}

fn not_found() -> Error {
    Error::not_found("no active connection for this connector")
}

/// Answers one request; `trace` is filled in as the checks learn who and what.
pub async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    trace: &mut Trace,
) -> Result<ConnectionTokenResponse> {
    // 1. A PAT, and nothing else.
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| {
            Error::unauthenticated("a personal access token is required (Authorization: Bearer lk_pat_…)")
        })?;
    if !token.starts_with(latchkey_shared::pat::PREFIX) {
        return Err(Error::unauthenticated("only personal access tokens may fetch connection tokens"));
    }
    let pat = latchkey_shared::Pat::parse(token).map_err(|e| Error::unauthenticated(e.to_string()))?;
    // The body is read now but judged after the PAT and its scope, in the contract's order.
    let req = serde_json::from_slice::<ConnectionTokenRequest>(body)
        .map_err(|e| Error::bad_request(format!("body: {e}")))
        .and_then(|r| {
            if r.org.is_empty() || r.connector_key.is_empty() {
                Err(Error::bad_request("org and connector_key must not be empty"))
            } else {
                Ok(r)
            }
        });
    let req = match req {
        Ok(req) => req,
        Err(bad_body) => {
            let principal = crate::pats::authenticate(state, token).await?;
            trace.user_id = Some(principal.user_id.clone());
            trace.pat_id = principal.pat_id().map(str::to_owned);
            principal.require(Scope::ConnectionsToken)?;
            return Err(bad_body);
        }
    };
    trace.connector_key = Some(req.connector_key.clone());
    // 1–6 in one round trip: the PAT, the org, the membership and the caller's own
    // connection.
    let row: Option<Lookup> = sqlx::query_as(
        "select p.id as pat_id, p.user_id, p.scopes, p.org_id as pat_org_id, p.expires_at as pat_expires_at, \
         p.revoked_at, p.last_used_at, o.id as org_id, o.slug, o.visibility, m.role, c.id as connection_id, c.status, \
         c.consent_only, c.provider, c.access_token_ct, c.refresh_token_ct, c.token_type, c.expires_at, \
         c.failure_count, c.next_attempt_at from pats p \
         left join orgs o on (o.id = $2 or o.slug = $2) \
         left join memberships m on m.org_id = o.id and m.user_id = p.user_id \
         left join connections c on c.org_id = o.id and c.user_id = p.user_id and c.connector_key = $3 \
         where p.token_hash = $1",
    )
    .bind(pat.hash())
    .bind(&req.org)
    .bind(&req.connector_key)
    .fetch_optional(state.store.pool())
    .await?;
    let pat_row = row.as_ref().map(|r| crate::pats::PatAuthRow {
        id: r.pat_id.clone(),
        user_id: r.user_id.clone(),
        scopes: r.scopes.clone(),
        org_id: r.pat_org_id.clone(),
        expires_at: r.pat_expires_at,
        revoked_at: r.revoked_at,
        last_used_at: r.last_used_at,
    });
    let principal = crate::pats::principal_from_row(state, pat_row).await?;
    trace.user_id = Some(principal.user_id.clone());
    trace.pat_id = principal.pat_id().map(str::to_owned);
    // 2. The scope, before anything about the org or connection is used.
    principal.require(Scope::ConnectionsToken)?;
    // 4–6.
    let Some(row) = row else { return Err(Error::not_found("no such org")) };
    let Some(org_id) = row.org_id else { return Err(Error::not_found("no such org")) };
    trace.org_id = Some(org_id.clone());
    let public = row.visibility.as_deref() == Some("public");
    if !public && row.role.is_none() {
        return Err(Error::not_found("no such org"));
    }
    let bound_elsewhere = matches!(&principal.via, Via::Pat { org_id: Some(bound), .. } if *bound != org_id);
    if bound_elsewhere {
        return Err(not_a_member("this token is bound to another org"));
    }
    if row.role.is_none() {
        return Err(not_a_member("you are not a member of this org"));
    }
    let (Some(connection_id), Some(status), Some(consent_only), Some(provider), Some(access_ct), Some(token_type)) =
        (row.connection_id, row.status, row.consent_only, row.provider, row.access_token_ct, row.token_type)
    else {
        return Err(not_found());
    };
    if !public || consent_only == 0 || status == "revoked" {
        return Err(not_found());
    }
    // 7. A dead grant.
    let connect_url = format!("{}/connect/{}/{}", state.public_url, row.slug.unwrap_or_default(), req.connector_key);
    if status == "needs_reauth" {
        return Err(reauth(connect_url));
    }
    let token_row = TokenRow {
        id: connection_id,
        org_id,
        provider,
        status,
        access_token_ct: access_ct,
        refresh_token_ct: row.refresh_token_ct,
        token_type,
        expires_at: row.expires_at,
        failure_count: row.failure_count.unwrap_or(0),
        next_attempt_at: row.next_attempt_at,
    };
    // 8 before 9: a request that would wait on a failing provider says so first.
    let now = now();
    let in_backoff =
        token_row.next_attempt_at.is_some_and(|t| t > now) && token_row.expires_at.is_some_and(|e| e <= now);
    if !in_backoff && state.config.token_rate_limit > 0 {
        if let Some(pat_id) = principal.pat_id() {
            let (hits, retry) = ratelimit::hit(&state.store, &format!("token:{pat_id}"), 60).await?;
            if hits > i64::from(state.config.token_rate_limit) {
                return Err(Error::rate_limited(retry));
            }
        }
    }
    match refresh::fresh_token(state, token_row).await? {
        Fresh::Token { access_token, token_type, expires_at } => {
            Ok(ConnectionTokenResponse { access_token, token_type, expires_at: expires_at.map(rfc3339) })
        }
        Fresh::Reauth => Err(reauth(connect_url)),
        Fresh::Unavailable { retry_after } => Err(Error::Client {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: ErrorCode::ProviderUnavailable,
            description: format!("the provider is failing to refresh this token; retry in {retry_after} s"),
            retry_after: Some(retry_after),
            connect_url: None,
        }),
    }
}

fn not_a_member(why: &str) -> Error {
    Error::client(StatusCode::FORBIDDEN, ErrorCode::NotAMember, why)
}

fn reauth(connect_url: String) -> Error {
    Error::Client {
        status: StatusCode::CONFLICT,
        code: ErrorCode::ReauthRequired,
        description: "the grant was revoked or expired at the provider; reconnect at connect_url".to_owned(),
        retry_after: None,
        connect_url: Some(connect_url),
    }
}

/// The audit event for an answer.
pub fn event(trace: Trace, meta: &ClientMeta, outcome: &str) -> OwnedEvent {
    OwnedEvent {
        org_id: trace.org_id,
        actor_id: trace.user_id,
        pat_id: trace.pat_id,
        action: "connection.token",
        target: trace.connector_key,
        outcome: outcome.to_owned(),
        ip: Some(meta.ip.clone()),
        user_agent: meta.user_agent.clone(),
        detail: None,
        created_at: now(),
    }
}
