//! Device pairing (RFC 8628): the agent asks for a device code, the member approves its
//! short user code on the cloud's `/device` page, and the agent's next poll receives a
//! device PAT (`connections:token`, `connections:read`, `connections:delete`, 90 days). Paired devices are PATs
//! of kind `device`, listed and revoked like any PAT.
//!
//! A device code is phishing bait: whoever approves it hands a PAT to whichever machine
//! asked. So the member first reviews what asked (`review`: the name it reported, its IP
//! and time, the scopes and orgs), user codes are kept only as hashes, and guessing is
//! bounded twice. The first half of a user code (the selector) names a pending code;
//! a try with a known selector but a wrong second half is a wrong try *against that
//! code*, and its fifth burns it. Every wrong try also counts against the member who
//! made it; after five in a window their approvals are locked until the window ends.

use crate::access::ClientMeta;
use crate::access::Principal;
use crate::audit;
use crate::error::{Error, Result};
use crate::pats;
use crate::ratelimit;
use crate::state::AppState;
use crate::store::{new_id, now, rfc3339};
use axum::http::StatusCode;
use latchkey_shared::pat::sha256_hex;
use latchkey_shared::secret::SecretString;
use latchkey_shared::{ErrorCode, Scope, ScopeSet};
use rand::Rng;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const CODE_TTL_SECS: i64 = 600;
const INTERVAL_SECS: i64 = 5;
/// What each `slow_down` adds to a code's interval (RFC 8628 3.5).
const SLOW_DOWN_STEP_SECS: i64 = 5;
const DEVICE_PAT_DAYS: i64 = 90;
const USER_CODE_LEN: usize = 8;
/// The first half of a user code names the pending code it belongs to.
const SELECTOR_LEN: usize = 4;
/// Wrong tries against one pending code before it is burned.
const WRONG_TRIES_PER_CODE: i64 = 5;
/// Wrong codes per member per window before their approvals are locked until it ends.
const WRONG_CODES_PER_MEMBER: i64 = 5;
const WRONG_CODE_WINDOW_SECS: i64 = 900;
/// The scopes of a device PAT: fetch tokens for the member's own connections, list them
/// (`latchkey status`, and `latchkey run` following new connections), and disconnect them
/// (`latchkey disconnect`). Ending one's own grant from one's own paired machine gives the
/// device nothing it could misuse against anyone else, and it is recoverable: the member
/// connects again. Starting a consent (`connections:create`) stays in the browser.
const DEVICE_SCOPES: [Scope; 3] = [Scope::ConnectionsToken, Scope::ConnectionsRead, Scope::ConnectionsDelete];
/// No vowels (no words), no look-alikes (0/O, 1/I/L, 2/Z, 5/S, 8/B).
const USER_CODE_ALPHABET: &[u8] = b"CDFGHJKMNPQRTVWX";

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceToken {
    #[schema(value_type = String)]
    pub access_token: SecretString,
    pub token_type: &'static str,
    pub scope: String,
    pub expires_in: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Device {
    pub id: String,
    pub name: String,
    /// When it was paired.
    pub created_at: String,
    /// The address that asked to pair.
    pub paired_ip: Option<String>,
    pub last_used_at: Option<String>,
    /// The address it was last used from.
    pub last_used_ip: Option<String>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCode {
    pub user_code: String,
}

/// What a member is asked to approve, shown on the `/device` page before any approval.
#[derive(Debug, Serialize)]
pub struct Review {
    /// `XXXX-XXXX`, to compare with the terminal.
    pub user_code: String,
    /// The name the device gave itself (its `User-Agent`); unverified.
    pub device_name: Option<String>,
    /// The address the pairing request came from.
    pub ip: Option<String>,
    pub requested_at: String,
    pub minutes_ago: i64,
    pub expires_in_minutes: i64,
    pub scopes: Vec<String>,
    /// Every org the member belongs to: a device PAT is not bound to one.
    pub orgs: Vec<String>,
    pub pat_days: i64,
}

/// An OAuth token-endpoint error (RFC 6749 5.2 / RFC 8628 3.5).
pub fn oauth_error(code: &str, description: &str) -> Error {
    let code = match code {
        "authorization_pending" => ErrorCode::AuthorizationPending,
        "slow_down" => ErrorCode::SlowDown,
        "access_denied" => ErrorCode::AccessDenied,
        "expired_token" => ErrorCode::ExpiredToken,
        "unsupported_grant_type" => ErrorCode::UnsupportedGrantType,
        "invalid_client" => ErrorCode::InvalidClient,
        _ => ErrorCode::InvalidGrant,
    };
    Error::client(StatusCode::BAD_REQUEST, code, description)
}

fn user_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..USER_CODE_LEN).map(|_| USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())] as char).collect()
}

/// `abcd-efgh`, `ABCD EFGH`, `abcdefgh` → `ABCDEFGH`.
fn normalize(code: &str) -> String {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect()
}

fn display(code: &str) -> String {
    format!("{}-{}", &code[..4.min(code.len())], &code[4.min(code.len())..])
}

pub async fn start(state: &AppState, client_id: &str, meta: &ClientMeta) -> Result<DeviceAuthorization> {
    if client_id.is_empty() || client_id.len() > 64 {
        return Err(oauth_error("invalid_client", "client_id is required"));
    }
    let (hits, retry) = ratelimit::hit(&state.store, &format!("device-start:{}", meta.ip), 600).await?;
    if hits > 60 {
        return Err(Error::rate_limited(retry));
    }
    let device_code = crate::accounts::random_token("");
    let now = now();
    let device_name =
        meta.user_agent.as_deref().map(|ua| ua.chars().filter(|c| !c.is_control()).take(64).collect::<String>());
    // A pending code's selector is unique; a clash (1 in 65536 per pending code) draws again.
    let mut code = user_code();
    for attempt in 0..5 {
        let inserted = sqlx::query(
            "insert into device_codes (id, device_code_hash, user_code_hash, user_code_selector, client_id, status, \
             device_name, request_ip, interval_secs, expires_at, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $10)",
        )
        .bind(new_id())
        .bind(sha256_hex(device_code.expose()))
        .bind(sha256_hex(&code))
        .bind(&code[..SELECTOR_LEN])
        .bind(client_id)
        .bind(device_name.as_deref())
        .bind(&meta.ip)
        .bind(INTERVAL_SECS)
        .bind(now + CODE_TTL_SECS)
        .bind(now)
        .execute(state.store.pool())
        .await;
        match inserted {
            Ok(_) => break,
            Err(e) if attempt < 4 && crate::store::unique_violation(&e).is_some() => code = user_code(),
            Err(e) => return Err(e.into()),
        }
    }
    sqlx::query("delete from device_codes where expires_at < $1")
        .bind(now - CODE_TTL_SECS)
        .execute(state.store.pool())
        .await?;
    let shown = display(&code);
    Ok(DeviceAuthorization {
        device_code: device_code.expose().clone(),
        verification_uri: format!("{}/device", state.public_url),
        verification_uri_complete: format!("{}/device?user_code={shown}", state.public_url),
        user_code: shown,
        expires_in: CODE_TTL_SECS,
        interval: INTERVAL_SECS,
    })
}

#[derive(sqlx::FromRow)]
struct CodeRow {
    id: String,
    status: String,
    user_id: Option<String>,
    device_name: Option<String>,
    request_ip: Option<String>,
    interval_secs: i64,
    last_polled_at: Option<i64>,
    expires_at: i64,
}

// The form an agent posts to `/oauth/token`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    #[schema(required = true, min_length = 1)]
    grant_type: Option<String>,
    #[schema(required = true, min_length = 1)]
    device_code: Option<String>,
    #[schema(required = true, min_length = 1)]
    client_id: Option<String>,
}

/// `/oauth/token`: only the device-code grant. `None` is a missing or malformed form.
pub async fn token(state: &AppState, req: Option<TokenRequest>) -> Result<DeviceToken> {
    let req = req.ok_or_else(|| Error::bad_request("expected an application/x-www-form-urlencoded body"))?;
    if req.grant_type.as_deref() != Some(DEVICE_GRANT) {
        return Err(oauth_error("unsupported_grant_type", "only the device_code grant is supported here"));
    }
    poll(state, req.device_code.as_deref().unwrap_or_default(), req.client_id.as_deref().unwrap_or_default()).await
}

/// The agent's poll (RFC 8628 3.4–3.5).
async fn poll(state: &AppState, device_code: &str, client_id: &str) -> Result<DeviceToken> {
    let row: Option<CodeRow> = sqlx::query_as(
        "select id, status, user_id, device_name, request_ip, interval_secs, last_polled_at, expires_at from device_codes \
         where device_code_hash = $1 and client_id = $2",
    )
    .bind(sha256_hex(device_code))
    .bind(client_id)
    .fetch_optional(state.store.pool())
    .await?;
    let row = row.ok_or_else(|| oauth_error("invalid_grant", "unknown device code"))?;
    let now = now();
    if row.expires_at <= now {
        return Err(oauth_error("expired_token", "the device code expired; run `latchkey login` again"));
    }
    let too_fast = row.status == "pending" && row.last_polled_at.is_some_and(|t| now - t < row.interval_secs);
    // RFC 8628 3.5: a poll that comes too soon raises the interval for every later poll.
    sqlx::query(
        "update device_codes set last_polled_at = $1, interval_secs = interval_secs + $2, updated_at = $1 where id = $3",
    )
    .bind(now)
    .bind(if too_fast { SLOW_DOWN_STEP_SECS } else { 0 })
    .bind(&row.id)
    .execute(state.store.pool())
    .await?;
    match row.status.as_str() {
        "denied" => return Err(oauth_error("access_denied", "the request was denied on the cloud")),
        "burned" => {
            return Err(oauth_error(
                "access_denied",
                "too many wrong codes were tried against this one; run `latchkey login` again",
            ))
        }
        "consumed" => return Err(oauth_error("invalid_grant", "this device code was already used")),
        "pending" if too_fast => {
            return Err(oauth_error("slow_down", "polling too fast; add 5 seconds to the interval"))
        }
        "pending" => return Err(oauth_error("authorization_pending", "waiting for the member to approve")),
        _ => {}
    }
    let user_id = row.user_id.ok_or_else(|| oauth_error("invalid_grant", "approved without a user"))?;
    // Issue the PAT once: the code is consumed in the same step.
    let claimed = sqlx::query(
        "update device_codes set status = 'consumed', updated_at = $1 where id = $2 and status = 'approved'",
    )
    .bind(now)
    .bind(&row.id)
    .execute(state.store.pool())
    .await?;
    if claimed.rows_affected() == 0 {
        return Err(oauth_error("invalid_grant", "this device code was already used"));
    }
    let scopes = ScopeSet::new(DEVICE_SCOPES);
    let name = format!("device: {}", row.device_name.as_deref().unwrap_or("latchkey agent"));
    let created = pats::insert(state, &user_id, &name, &scopes, Some(now + DEVICE_PAT_DAYS * 86_400), None).await?;
    sqlx::query("update pats set kind = 'device', created_ip = $1 where id = $2")
        .bind(row.request_ip.as_deref())
        .bind(&created.id)
        .execute(state.store.pool())
        .await?;
    audit::record(
        &state.store,
        audit::Event {
            actor_id: Some(&user_id),
            pat_id: Some(&created.id),
            action: "device.paired",
            target: Some(&created.id),
            outcome: "success",
            ..Default::default()
        },
    )
    .await?;
    Ok(DeviceToken {
        access_token: created.token,
        token_type: "Bearer",
        scope: scopes.to_db(),
        expires_in: DEVICE_PAT_DAYS * 86_400,
    })
}

/// What a pending code asks for, for the member to check before approving it. Looking a
/// code up is a try like an approval: a wrong code counts the same.
pub async fn review(state: &AppState, principal: &Principal, meta: &ClientMeta, user_code: &str) -> Result<Review> {
    principal.require_login()?;
    let code = find_pending(state, principal, meta, user_code).await?;
    let orgs = crate::orgs::list(state, principal, false).await?;
    let now = now();
    Ok(Review {
        user_code: display(&normalize(user_code)),
        device_name: code.device_name,
        ip: code.request_ip,
        requested_at: rfc3339(code.created_at),
        minutes_ago: (now - code.created_at).max(0) / 60,
        expires_in_minutes: ((code.expires_at - now).max(0) + 59) / 60,
        scopes: DEVICE_SCOPES.iter().map(ToString::to_string).collect(),
        orgs: orgs.into_iter().map(|o| o.slug).collect(),
        pat_days: DEVICE_PAT_DAYS,
    })
}

/// The member approves (or denies) a user code on the `/device` page.
pub async fn decide(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    req: UserCode,
    approve: bool,
) -> Result<()> {
    principal.require_login()?;
    let code = find_pending(state, principal, meta, &req.user_code).await?;
    let done = sqlx::query(
        "update device_codes set status = $1, user_id = $2, updated_at = $3 \
         where id = $4 and status = 'pending' and expires_at > $3",
    )
    .bind(if approve { "approved" } else { "denied" })
    .bind(&principal.user_id)
    .bind(now())
    .bind(&code.id)
    .execute(state.store.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(no_such_code());
    }
    audit::record(
        &state.store,
        audit::Event {
            actor_id: Some(&principal.user_id),
            action: if approve { "device.approve" } else { "device.deny" },
            target: Some(&code.id),
            outcome: "success",
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
            detail: Some(serde_json::json!({ "device_name": code.device_name, "request_ip": code.request_ip })),
            ..Default::default()
        },
    )
    .await
}

#[derive(sqlx::FromRow)]
struct PendingCode {
    id: String,
    user_code_hash: String,
    device_name: Option<String>,
    request_ip: Option<String>,
    created_at: i64,
    expires_at: i64,
}

fn no_such_code() -> Error {
    Error::client(
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
        "user_code: no pending device with this code (it may have expired; run `latchkey login` again)",
    )
}

/// The pending code a member typed, after the limits on guessing; a wrong try counts
/// against the member and, when its selector names a pending code, against that code.
async fn find_pending(state: &AppState, principal: &Principal, meta: &ClientMeta, typed: &str) -> Result<PendingCode> {
    for key in [format!("device-code:{}", principal.user_id), format!("device-code-ip:{}", meta.ip)] {
        let (hits, retry) = ratelimit::hit(&state.store, &key, 600).await?;
        if hits > 20 {
            return Err(Error::rate_limited(retry));
        }
    }
    let wrong_key = format!("device-code-wrong:{}", principal.user_id);
    let (wrong, retry) = ratelimit::peek(&state.store, &wrong_key, WRONG_CODE_WINDOW_SECS).await?;
    if wrong >= WRONG_CODES_PER_MEMBER {
        return Err(Error::rate_limited(retry));
    }
    let code = normalize(typed);
    let selector = code.get(..SELECTOR_LEN).unwrap_or_default();
    let now = now();
    let row: Option<PendingCode> = sqlx::query_as(
        "select id, user_code_hash, device_name, request_ip, created_at, expires_at from device_codes \
         where user_code_selector = $1 and status = 'pending' and expires_at > $2",
    )
    .bind(selector)
    .bind(now)
    .fetch_optional(state.store.pool())
    .await?;
    let typed_hash = sha256_hex(&code);
    match row {
        Some(row) if bool::from(row.user_code_hash.as_bytes().ct_eq(typed_hash.as_bytes())) => Ok(row),
        row => {
            ratelimit::hit(&state.store, &wrong_key, WRONG_CODE_WINDOW_SECS).await?;
            if let Some(row) = row {
                count_wrong_try(state, principal, &row.id, now).await?;
            }
            Err(no_such_code())
        }
    }
}

/// One more wrong try against a pending code; the fifth burns it.
async fn count_wrong_try(state: &AppState, principal: &Principal, id: &str, now: i64) -> Result<()> {
    let status: Option<String> = sqlx::query_scalar(
        "update device_codes set failed_attempts = failed_attempts + 1, \
         status = case when failed_attempts + 1 >= $1 then 'burned' else status end, updated_at = $2 \
         where id = $3 and status = 'pending' returning status",
    )
    .bind(WRONG_TRIES_PER_CODE)
    .bind(now)
    .bind(id)
    .fetch_optional(state.store.pool())
    .await?;
    if status.as_deref() != Some("burned") {
        return Ok(());
    }
    audit::record(
        &state.store,
        audit::Event {
            actor_id: Some(&principal.user_id),
            action: "device.burn",
            target: Some(id),
            outcome: "success",
            ..Default::default()
        },
    )
    .await
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    id: String,
    name: String,
    created_at: i64,
    created_ip: Option<String>,
    last_used_at: Option<i64>,
    last_used_ip: Option<String>,
    expires_at: Option<i64>,
}

pub async fn list(state: &AppState, principal: &Principal) -> Result<Vec<Device>> {
    principal.require(Scope::ConnectionsRead)?;
    let rows: Vec<DeviceRow> = sqlx::query_as(
        "select id, name, created_at, created_ip, last_used_at, last_used_ip, expires_at from pats \
         where user_id = $1 and kind = 'device' and revoked_at is null order by created_at desc",
    )
    .bind(&principal.user_id)
    .fetch_all(state.store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Device {
            id: r.id,
            name: r.name,
            created_at: rfc3339(r.created_at),
            paired_ip: r.created_ip,
            last_used_at: r.last_used_at.map(rfc3339),
            last_used_ip: r.last_used_ip,
            expires_at: r.expires_at.map(rfc3339),
        })
        .collect())
}

/// Unpairs a device: its PAT stops working on the next request.
pub async fn revoke(state: &AppState, principal: &Principal, id: &str, meta: &ClientMeta) -> Result<()> {
    if principal.pat_id() != Some(id) {
        principal.require_login()?;
    }
    let done = sqlx::query(
        "update pats set revoked_at = $1, updated_at = $1 where id = $2 and user_id = $3 and kind = 'device' and revoked_at is null",
    )
    .bind(now())
    .bind(id)
    .bind(&principal.user_id)
    .execute(state.store.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("no such device"));
    }
    audit::record(
        &state.store,
        audit::Event {
            actor_id: Some(&principal.user_id),
            action: "device.revoke",
            target: Some(id),
            outcome: "success",
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
            ..Default::default()
        },
    )
    .await
}

/// RFC 7009 for PATs: whoever holds a token may revoke it. Unknown tokens are fine.
pub async fn revoke_token(state: &AppState, token: &str) -> Result<()> {
    if let Ok(pat) = latchkey_shared::Pat::parse(token) {
        sqlx::query("update pats set revoked_at = $1, updated_at = $1 where token_hash = $2 and revoked_at is null")
            .bind(now())
            .bind(pat.hash())
            .execute(state.store.pool())
            .await?;
    }
    Ok(())
}
