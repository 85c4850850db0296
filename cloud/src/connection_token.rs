//! `POST /oauth/connection-token`: the one door local agents use. Checks run in the
//! contract's order (docs/api.md) and the first failure answers; every answer is counted
//! and leaves an audit event (without the token) before it is sent. The hot path is one
//! round trip for the PAT, the org, the membership and the connection (a row per
//! connection the caller holds on the connector, or just the named one), one AES-GCM
//! open, and an event handed to the batching audit writer.

use crate::access::credentials::{bearer, is_pat};
use crate::access::pat::{self, Joined};
use crate::access::{org, ClientMeta, Need, Org, Principal, Role, Visibility, LAST_USED_GRANULARITY_SECS};
use crate::audit::OwnedEvent;
use crate::connections::label::{self, Named};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::refresh::{self, Fresh, TokenRow};
use crate::state::AppState;
use crate::store::{now, rfc3339};
use axum::http::{HeaderMap, StatusCode};
use latchkey_shared::wire::{ConnectionTokenRequest, ConnectionTokenResponse};
use latchkey_shared::{ErrorCode, Scope};
use std::sync::LazyLock;

const MAX_NAME_LEN: usize = 64;

/// Answers one request, counts it and audits it. No answer leaves without its audit
/// event: a queue that stays full refuses the request instead.
pub async fn answer(
    state: &AppState,
    meta: &ClientMeta,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ConnectionTokenResponse> {
    // The audit log cannot take events: no token may leave without one, so none leaves.
    if state.audit.is_failing() {
        Metrics::count(&state.metrics.token_answers, ErrorCode::ServiceUnavailable.as_str());
        return Err(audit_unavailable("the audit log cannot be written"));
    }
    let mut trace = Trace::default();
    let result = check_and_issue(state, &meta.ip, headers, body, &mut trace).await;
    let outcome = match &result {
        Ok(_) => "issued",
        Err(Error::Client { code, .. }) => code.as_str(),
        // An unreachable database is an outage the operator watches for, not a bug.
        Err(e) if e.db_unavailable().is_some() => ErrorCode::ServiceUnavailable.as_str(),
        Err(_) => "server_error",
    };
    Metrics::count(&state.metrics.token_answers, outcome);
    if state.audit.send(trace.into_event(meta, outcome)).await.is_err() {
        return Err(audit_unavailable("the audit log is backed up"));
    }
    result
}

fn audit_unavailable(why: &str) -> Error {
    Error::Client {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: ErrorCode::ServiceUnavailable,
        description: format!("{why}; retry shortly"),
        retry_after: Some(1),
        connect_url: None,
        connections: None,
    }
}

/// What the audit event of an answer knows, filled in as the checks learn who and what.
#[derive(Default)]
struct Trace {
    user_id: Option<String>,
    pat_id: Option<String>,
    org_id: Option<String>,
    connector_key: Option<String>,
}

impl Trace {
    fn caller(&mut self, principal: &Principal) {
        self.user_id = Some(principal.user_id.clone());
        self.pat_id = principal.pat_id().map(str::to_owned);
    }

    fn into_event(self, meta: &ClientMeta, outcome: &str) -> OwnedEvent {
        OwnedEvent {
            org_id: self.org_id,
            actor_id: self.user_id,
            pat_id: self.pat_id,
            action: "connection.token",
            target: self.connector_key,
            outcome: outcome.to_owned(),
            ip: Some(meta.ip.clone()),
            user_agent: meta.user_agent.clone(),
            detail: None,
            created_at: now(),
        }
    }
}

/// The org, the caller's membership and the caller's connections, read in the PAT's own
/// query (`$2` is the org's slug or id, `$3` the connector key, `$4` the requested
/// connection's label or id, or empty for any): one row per matching connection, or one
/// row without a connection. The connector must still exist with the connection's
/// provider: a grant stored by a consent that finished after its connector was deleted or
/// moved is served by no connector.
const JOINED_COLUMNS: &str = "o.id as org_id, o.slug, o.name as org_name, o.visibility, m.role, \
     c.id as connection_id, c.label, c.status, c.consent_only, c.provider, c.access_token_ct, c.refresh_token_ct, \
     c.token_type, c.expires_at, c.failure_count, c.next_attempt_at, c.last_token_at, k.id as connector_id";
const JOINS: &str = "left join orgs o on (o.id = $2 or o.slug = $2) \
     left join memberships m on m.org_id = o.id and m.user_id = p.user_id \
     left join connections c on c.org_id = o.id and c.user_id = p.user_id and c.connector_key = $3 \
         and ($4 = '' or c.id = $4 or c.label = $4) \
     left join connectors k on k.org_id = o.id and k.key = $3 and k.provider = c.provider";

#[derive(sqlx::FromRow)]
struct Lookup {
    org_id: Option<String>,
    slug: Option<String>,
    org_name: Option<String>,
    visibility: Option<String>,
    role: Option<String>,
    connection_id: Option<String>,
    label: Option<String>,
    status: Option<String>,
    consent_only: Option<i64>,
    provider: Option<String>,
    access_token_ct: Option<Vec<u8>>,
    refresh_token_ct: Option<Vec<u8>>,
    token_type: Option<String>,
    expires_at: Option<i64>,
    failure_count: Option<i64>,
    next_attempt_at: Option<i64>,
    last_token_at: Option<i64>,
    connector_id: Option<String>,
}

impl Named for Lookup {
    fn id(&self) -> &str {
        self.connection_id.as_deref().unwrap_or_default()
    }
    fn label(&self) -> &str {
        self.label.as_deref().unwrap_or_default()
    }
}

impl Lookup {
    /// The org as found, for `access::org::check`.
    fn org(&mut self) -> Option<Org> {
        Some(Org {
            id: self.org_id.take()?,
            slug: self.slug.take().unwrap_or_default(),
            name: self.org_name.take().unwrap_or_default(),
            // Not needed to decide access; the token endpoint does not read it.
            description: String::new(),
            visibility: Visibility::parse(self.visibility.as_deref().unwrap_or_default()),
            role: self.role.as_deref().map(Role::parse),
        })
    }

    /// Row 6: the caller's active, consent-only connection in a public org, of a connector
    /// that still exists with the connection's provider.
    fn connection(self, org: &Org) -> Result<TokenRow> {
        let not_found = no_connection;
        if self.connector_id.is_none() {
            return Err(not_found());
        }
        let (Some(id), Some(status), Some(consent_only), Some(provider), Some(access_token_ct), Some(token_type)) =
            (self.connection_id, self.status, self.consent_only, self.provider, self.access_token_ct, self.token_type)
        else {
            return Err(not_found());
        };
        if org.visibility != Visibility::Public || consent_only == 0 || status == "revoked" {
            return Err(not_found());
        }
        Ok(TokenRow {
            id,
            org_id: org.id.clone(),
            provider,
            status,
            access_token_ct,
            refresh_token_ct: self.refresh_token_ct,
            token_type,
            expires_at: self.expires_at,
            failure_count: self.failure_count.unwrap_or(0),
            next_attempt_at: self.next_attempt_at,
        })
    }
}

fn no_connection() -> Error {
    Error::not_found("no active connection for this connector")
}

/// Rows 1 to 9 of the contract, in order.
async fn check_and_issue(
    state: &AppState,
    ip: &str,
    headers: &HeaderMap,
    body: &[u8],
    trace: &mut Trace,
) -> Result<ConnectionTokenResponse> {
    // 1. A PAT, and nothing else.
    let token = bearer(headers).ok().flatten().ok_or_else(|| {
        Error::unauthenticated("a personal access token is required (Authorization: Bearer lk_pat_…)")
    })?;
    if !is_pat(token) {
        return Err(Error::unauthenticated("only personal access tokens may fetch connection tokens"));
    }
    // 3 is judged after 1 and 2: a bad body costs the plain PAT check first.
    let req = match parse_body(body) {
        Ok(req) => req,
        Err(bad_body) => {
            let principal = pat::verify(state, token, ip).await?;
            trace.caller(&principal);
            principal.require(Scope::ConnectionsToken)?;
            return Err(bad_body);
        }
    };
    trace.connector_key = Some(req.connector_key.clone());
    static SQL: LazyLock<String> = LazyLock::new(|| pat::select_sql(JOINED_COLUMNS, JOINS));
    let named = req.connection.as_deref().unwrap_or_default();
    let joined = Joined { sql: &SQL, binds: &[&req.org, &req.connector_key, named] };
    let (principal, mut rows) = pat::verify_joined_all::<Lookup>(state, token, ip, &joined).await?;
    trace.caller(&principal);
    // 2. The scope, before anything about the org or connection is used.
    principal.require(Scope::ConnectionsToken)?;
    // 4 and 5 (every row carries the same org and membership).
    let org = org::check(&principal, rows.first_mut().and_then(|r| r.org()), Need::Member)?;
    trace.org_id = Some(org.id.clone());
    // 6: the named connection, or the only one; several and none named is ambiguous.
    rows.retain(|r| r.connection_id.is_some());
    let row = label::pick(rows, req.connection.as_deref(), no_connection)?;
    let last_token_at = row.last_token_at;
    let token_row = row.connection(&org)?;
    let connection_id = token_row.id.clone();
    // 7. A dead grant.
    let connect_url =
        format!("{}/connect/{}/{}?connection={}", state.public_url, org.slug, req.connector_key, connection_id);
    if token_row.status == "needs_reauth" {
        return Err(reauth(connect_url));
    }
    // 8 before 9: a request that would wait on a failing provider says so first.
    if !in_backoff(&token_row) {
        rate_limit(state, &principal)?;
    }
    match refresh::fresh_token(state, token_row).await? {
        Fresh::Token { access_token, token_type, expires_at } => {
            stamp_last_token(state, &connection_id, last_token_at).await;
            Ok(ConnectionTokenResponse { access_token, token_type, expires_at: expires_at.map(rfc3339) })
        }
        Fresh::Reauth => Err(reauth(connect_url)),
        Fresh::Unavailable { retry_after } => Err(Error::Client {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: ErrorCode::ProviderUnavailable,
            description: format!("the provider is failing to refresh this token; retry in {retry_after} s"),
            retry_after: Some(retry_after),
            connect_url: None,
            connections: None,
        }),
    }
}

/// Keeps `last_token_at` (the admins' health view) at [`LAST_USED_GRANULARITY_SECS`]:
/// the value read in the PAT's own query decides, so a connection fetched from again and
/// again costs one write a minute, not one per request. The update is conditional too, so
/// replicas that read the same stale value write it once between them. A failure only
/// leaves the stamp behind; the token is still served.
async fn stamp_last_token(state: &AppState, connection_id: &str, last_token_at: Option<i64>) {
    let now = now();
    if last_token_at.is_some_and(|t| now - t < LAST_USED_GRANULARITY_SECS) {
        return;
    }
    let stamped = sqlx::query(
        "update connections set last_token_at = $1 where id = $2 and (last_token_at is null or last_token_at <= $3)",
    )
    .bind(now)
    .bind(connection_id)
    .bind(now - LAST_USED_GRANULARITY_SECS)
    .execute(state.store.pool())
    .await;
    if let Err(e) = stamped {
        tracing::warn!(connection = %connection_id, error = %e, "could not stamp last_token_at");
    }
}

fn parse_body(body: &[u8]) -> Result<ConnectionTokenRequest> {
    let req =
        serde_json::from_slice::<ConnectionTokenRequest>(body).map_err(|e| Error::bad_request(format!("body: {e}")))?;
    if req.org.is_empty() || req.connector_key.is_empty() {
        return Err(Error::bad_request("org and connector_key must not be empty"));
    }
    // Slugs, ids and keys are far shorter; the key goes into the audit event as it is.
    if req.org.len() > MAX_NAME_LEN || req.connector_key.len() > MAX_NAME_LEN {
        return Err(Error::bad_request(format!("org and connector_key: at most {MAX_NAME_LEN} characters")));
    }
    // A label is at most 64 characters (up to 4 bytes each); an id is shorter.
    match req.connection.as_deref() {
        Some("") => return Err(Error::bad_request("connection must not be empty")),
        Some(c) if c.len() > 4 * label::MAX_LEN => {
            return Err(Error::bad_request(format!("connection: at most {} characters", label::MAX_LEN)))
        }
        _ => {}
    }
    Ok(req)
}

/// The token has expired and the provider is in backoff: row 8 answers, not row 9.
fn in_backoff(row: &TokenRow) -> bool {
    let now = now();
    row.next_attempt_at.is_some_and(|t| t > now) && row.expires_at.is_some_and(|e| e <= now)
}

/// Row 9: requests per minute per PAT, counted in this replica's memory (see
/// `ratelimit::PerReplica` for why per replica is enough here).
fn rate_limit(state: &AppState, principal: &Principal) -> Result<()> {
    let (Some(limit), Some(pat_id)) = (&state.token_limit, principal.pat_id()) else { return Ok(()) };
    limit.check(pat_id).map_err(Error::rate_limited)
}

fn reauth(connect_url: String) -> Error {
    Error::Client {
        status: StatusCode::CONFLICT,
        code: ErrorCode::ReauthRequired,
        description: "the grant was revoked or expired at the provider; reconnect at connect_url".to_owned(),
        retry_after: None,
        connect_url: Some(connect_url),
        connections: None,
    }
}
