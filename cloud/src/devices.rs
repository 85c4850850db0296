//! Device pairing (RFC 8628): the agent asks for a device code, the member approves its
//! short user code on the cloud's `/device` page, and the agent's next poll receives a
//! device PAT (`connections:token`, `connections:read`, 90 days). Paired devices are PATs
//! of kind `device`, listed and revoked like any PAT.

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
use utoipa::ToSchema;

pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
const CODE_TTL_SECS: i64 = 600;
const INTERVAL_SECS: i64 = 5;
const DEVICE_PAT_DAYS: i64 = 90;
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
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserCode {
    pub user_code: String,
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
    (0..8).map(|_| USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())] as char).collect()
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
    // A user code collision is astronomically rare; retry once on the unique constraint.
    let mut code = user_code();
    for attempt in 0..3 {
        let inserted = sqlx::query(
            "insert into device_codes (id, device_code_hash, user_code, client_id, status, device_name, interval_secs, \
             expires_at, created_at, updated_at) values ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $8)",
        )
        .bind(new_id())
        .bind(sha256_hex(device_code.expose()))
        .bind(&code)
        .bind(client_id)
        .bind(meta.user_agent.as_deref().map(|ua| ua.chars().take(64).collect::<String>()))
        .bind(INTERVAL_SECS)
        .bind(now + CODE_TTL_SECS)
        .bind(now)
        .execute(state.store.pool())
        .await;
        match inserted {
            Ok(_) => break,
            Err(e) if attempt < 2 && crate::store::unique_violation(&e).is_some() => code = user_code(),
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
        "select id, status, user_id, device_name, interval_secs, last_polled_at, expires_at from device_codes \
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
    sqlx::query("update device_codes set last_polled_at = $1, updated_at = $1 where id = $2")
        .bind(now)
        .bind(&row.id)
        .execute(state.store.pool())
        .await?;
    match row.status.as_str() {
        "denied" => return Err(oauth_error("access_denied", "the request was denied on the cloud")),
        "consumed" => return Err(oauth_error("invalid_grant", "this device code was already used")),
        "pending" => {
            if row.last_polled_at.is_some_and(|t| now - t < row.interval_secs) {
                return Err(oauth_error("slow_down", "polling too fast; add 5 seconds to the interval"));
            }
            return Err(oauth_error("authorization_pending", "waiting for the member to approve"));
        }
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
    let scopes = ScopeSet::new([Scope::ConnectionsToken, Scope::ConnectionsRead]);
    let name = format!("device: {}", row.device_name.as_deref().unwrap_or("latchkey agent"));
    let created = pats::insert(state, &user_id, &name, &scopes, Some(now + DEVICE_PAT_DAYS * 86_400), None).await?;
    sqlx::query("update pats set kind = 'device' where id = $1").bind(&created.id).execute(state.store.pool()).await?;
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

/// The member approves (or denies) a user code on the `/device` page.
pub async fn decide(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    req: UserCode,
    approve: bool,
) -> Result<()> {
    principal.require_login()?;
    // Guessing codes: a few tries per member and per address.
    for key in [format!("device-code:{}", principal.user_id), format!("device-code-ip:{}", meta.ip)] {
        let (hits, retry) = ratelimit::hit(&state.store, &key, 600).await?;
        if hits > 20 {
            return Err(Error::rate_limited(retry));
        }
    }
    let code = normalize(&req.user_code);
    let now = now();
    let done = sqlx::query(
        "update device_codes set status = $1, user_id = $2, updated_at = $3 \
         where user_code = $4 and status = 'pending' and expires_at > $3",
    )
    .bind(if approve { "approved" } else { "denied" })
    .bind(&principal.user_id)
    .bind(now)
    .bind(&code)
    .execute(state.store.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::client(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "user_code: no pending device with this code (it may have expired; run `latchkey login` again)",
        ));
    }
    audit::record(
        &state.store,
        audit::Event {
            actor_id: Some(&principal.user_id),
            action: if approve { "device.approve" } else { "device.deny" },
            outcome: "success",
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
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
    last_used_at: Option<i64>,
    expires_at: Option<i64>,
}

pub async fn list(state: &AppState, principal: &Principal) -> Result<Vec<Device>> {
    principal.require(Scope::ConnectionsRead)?;
    let rows: Vec<DeviceRow> = sqlx::query_as(
        "select id, name, created_at, last_used_at, expires_at from pats \
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
            last_used_at: r.last_used_at.map(rfc3339),
            expires_at: r.expires_at.map(rfc3339),
        })
        .collect())
}

/// Unpairs a device: its PAT stops working on the next request.
pub async fn revoke(state: &AppState, principal: &Principal, id: &str) -> Result<()> {
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
