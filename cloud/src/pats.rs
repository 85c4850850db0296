//! Personal access tokens: created by a logged-in user, shown once, stored only as a
//! SHA-256 hash, listed and revoked. Presented PATs are verified in `crate::access::pat`,
//! against the database on every use, so revocation and expiry take effect at once on
//! every replica.

use crate::access::{authorize, ClientMeta, Need, Principal};
use crate::audit;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{new_id, now, rfc3339};
use latchkey_shared::secret::SecretString;
use latchkey_shared::{Pat, Scope, ScopeSet};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePat {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    /// Defaults to `connections:read`. `connections:token` is never a default.
    #[schema(min_items = 1)]
    pub scopes: Option<Vec<Scope>>,
    /// 1–3650 days; no expiry when absent.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
    /// Bind the token to one org (slug or id): it acts nowhere else.
    #[schema(min_length = 1)]
    pub org: Option<String>,
}

/// The one answer that carries the token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedPat {
    pub id: String,
    pub name: String,
    #[schema(value_type = String)]
    pub token: SecretString,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<String>,
    pub org_id: Option<String>,
}

/// A PAT in listings: never the token, only its prefix.
#[derive(Debug, Serialize, ToSchema)]
pub struct PatInfo {
    pub id: String,
    pub name: String,
    /// `token`, or `device` for a paired device's PAT.
    pub kind: String,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub org_id: Option<String>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    /// The address it was last used from.
    pub last_used_ip: Option<String>,
    pub created_at: String,
}

#[derive(sqlx::FromRow)]
struct PatRow {
    id: String,
    name: String,
    kind: String,
    prefix: String,
    scopes: String,
    org_id: Option<String>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    last_used_ip: Option<String>,
    created_at: i64,
}

pub async fn create(state: &AppState, principal: &Principal, req: CreatePat, meta: &ClientMeta) -> Result<CreatedPat> {
    principal.require_login()?;
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::bad_request("name: 1 to 100 printable characters"));
    }
    let scopes = match req.scopes {
        Some(list) if list.is_empty() => {
            return Err(Error::bad_request("scopes: give at least one scope, or leave it out for the defaults"))
        }
        Some(list) => ScopeSet::new(list),
        None => ScopeSet::defaults(),
    };
    let expires_at = match req.expires_in_days {
        Some(days) if !(1..=3650).contains(&days) => {
            return Err(Error::bad_request("expires_in_days: between 1 and 3650"))
        }
        Some(days) => Some(now() + i64::from(days) * 86_400),
        None => None,
    };
    let org_id = match &req.org {
        Some(org_ref) => Some(authorize(state, principal, org_ref, Need::Member).await?.id),
        None => None,
    };
    let created = insert(state, &principal.user_id, &name, &scopes, expires_at, org_id.as_deref()).await?;
    sqlx::query("update pats set created_ip = $1 where id = $2")
        .bind(&meta.ip)
        .bind(&created.id)
        .execute(state.store.pool())
        .await?;
    audit::record(
        &state.store,
        audit::Event {
            org_id: org_id.as_deref(),
            actor_id: Some(&principal.user_id),
            action: "pat.create",
            target: Some(&created.id),
            outcome: "success",
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
            detail: Some(serde_json::json!({ "name": name, "scopes": scopes.to_db() })),
            ..Default::default()
        },
    )
    .await?;
    Ok(created)
}

/// Stores a new PAT's hash and returns the token, once.
pub async fn insert(
    state: &AppState,
    user_id: &str,
    name: &str,
    scopes: &ScopeSet,
    expires_at: Option<i64>,
    org_id: Option<&str>,
) -> Result<CreatedPat> {
    let pat = Pat::generate();
    let id = new_id();
    let now = now();
    sqlx::query(
        "insert into pats (id, user_id, name, prefix, token_hash, scopes, org_id, expires_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&id)
    .bind(user_id)
    .bind(name)
    .bind(pat.display_prefix())
    .bind(pat.hash())
    .bind(scopes.to_db())
    .bind(org_id)
    .bind(expires_at)
    .bind(now)
    .execute(state.store.pool())
    .await?;
    Ok(CreatedPat {
        id,
        name: name.to_owned(),
        token: pat.secret().clone(),
        scopes: scopes.to_vec(),
        expires_at: expires_at.map(rfc3339),
        org_id: org_id.map(str::to_owned),
    })
}

/// The caller's live PATs (not revoked; expired ones are listed until cleaned up).
pub async fn list(state: &AppState, principal: &Principal) -> Result<Vec<PatInfo>> {
    principal.require_login()?;
    let rows: Vec<PatRow> = sqlx::query_as(
        "select id, name, kind, prefix, scopes, org_id, expires_at, last_used_at, last_used_ip, created_at from pats \
         where user_id = $1 and revoked_at is null order by created_at desc",
    )
    .bind(&principal.user_id)
    .fetch_all(state.store.pool())
    .await?;
    rows.into_iter()
        .map(|PatRow { id, name, kind, prefix, scopes, org_id, expires_at, last_used_at, last_used_ip, created_at }| {
            Ok(PatInfo {
                id,
                name,
                kind,
                prefix,
                scopes: ScopeSet::from_db(&scopes).map_err(|e| anyhow::anyhow!("stored scopes: {e}"))?.to_vec(),
                org_id,
                expires_at: expires_at.map(rfc3339),
                last_used_at: last_used_at.map(rfc3339),
                last_used_ip,
                created_at: rfc3339(created_at),
            })
        })
        .collect()
}

/// Revokes one of the caller's PATs. A PAT may revoke itself (an agent logging out);
/// revoking others needs a login.
pub async fn revoke(state: &AppState, principal: &Principal, id: &str, meta: &ClientMeta) -> Result<()> {
    if principal.pat_id() != Some(id) {
        principal.require_login()?;
    }
    let now = now();
    let done = sqlx::query(
        "update pats set revoked_at = $1, updated_at = $1 where id = $2 and user_id = $3 and revoked_at is null",
    )
    .bind(now)
    .bind(id)
    .bind(&principal.user_id)
    .execute(state.store.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("no such token"));
    }
    audit::record(
        &state.store,
        audit::Event {
            actor_id: Some(&principal.user_id),
            pat_id: principal.pat_id(),
            action: "pat.revoke",
            target: Some(id),
            outcome: "success",
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
            ..Default::default()
        },
    )
    .await
}
