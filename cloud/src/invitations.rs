//! Invitations: single-use links that let someone join an org, public or private.
//!
//! Owners and admins create them (admins may invite members, owners admins too), list and
//! revoke them. The link's token is shown once, in the answer that creates it; only its
//! SHA-256 hash is stored. An invitation may name an email: then only the account with
//! that email (compared case-insensitively) may accept it. Accepting sets `accepted_at`
//! in one conditional update, so of several accepts racing on any replicas exactly one
//! joins. Never logs or returns a token after creation.

use crate::access::{authorize, ClientMeta, Need, Org, Principal, Role};
use crate::audit;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{new_id, now, rfc3339};
use crate::webhooks::EventType;
use axum::http::StatusCode;
use base64::Engine;
use latchkey_shared::pat::sha256_hex;
use latchkey_shared::{ErrorCode, Scope};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What every invitation token starts with.
pub const TOKEN_PREFIX: &str = "lk_inv_";
/// Days an invitation lasts unless its creator says otherwise, and the longest allowed.
pub const DEFAULT_DAYS: i64 = 7;
pub const MAX_DAYS: i64 = 30;
const MAX_EMAIL_LEN: usize = 254;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    /// Only the account with this email may accept (optional).
    #[schema(format = Email, max_length = 254)]
    pub email: Option<String>,
    /// `member` (default) or `admin` (owners only).
    pub role: Option<Role>,
    /// 1 to 30; default 7.
    #[schema(minimum = 1, maximum = 30)]
    pub expires_in_days: Option<u32>,
}

/// A new invitation. `url` carries the token and is shown only here.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewInvitation {
    pub id: String,
    pub url: String,
    pub expires_at: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

/// An invitation as its org's admins see it: never its token.
#[derive(Debug, Serialize, ToSchema)]
pub struct Invitation {
    pub id: String,
    pub email: Option<String>,
    pub role: Role,
    /// The username of who created it, while that account exists.
    pub created_by: Option<String>,
    pub status: InvitationStatus,
    /// The username of who accepted it.
    pub accepted_by: Option<String>,
    pub created_at: String,
    pub expires_at: String,
}

/// A pending invitation as the person holding its link sees it.
#[derive(Debug, Serialize)]
pub struct InvitationView {
    pub org_slug: String,
    pub org_name: String,
    pub invited_by: Option<String>,
    pub role: Role,
    pub email: Option<String>,
    pub expires_at: String,
}

/// What accepting did.
#[derive(Debug)]
pub enum Accepted {
    /// The caller joined the org with the invitation's role.
    Joined(Org),
    /// The caller was a member already; the invitation stays unused.
    AlreadyMember(Org),
}

pub async fn create(
    state: &AppState,
    principal: &Principal,
    org_ref: &str,
    req: CreateInvitation,
    meta: &ClientMeta,
) -> Result<NewInvitation> {
    principal.require(Scope::OrgsWrite)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    let role = req.role.unwrap_or(Role::Member);
    match role {
        Role::Owner => return Err(Error::bad_request("role: `member` or `admin`")),
        Role::Admin if org.role != Some(Role::Owner) => {
            return Err(Error::forbidden("only the org's owners can invite admins"))
        }
        _ => {}
    }
    let days = req.expires_in_days.map_or(DEFAULT_DAYS, i64::from);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(Error::bad_request(format!("expires_in_days: 1 to {MAX_DAYS}")));
    }
    let email = match req.email.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(normalize_email(raw)?),
    };
    let token = new_token();
    let id = new_id();
    let now = now();
    let expires_at = now + days * 86_400;
    sqlx::query(
        "insert into invitations (id, org_id, token_hash, email, role, created_by, expires_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(&id)
    .bind(&org.id)
    .bind(sha256_hex(&token))
    .bind(&email)
    .bind(role.as_str())
    .bind(&principal.user_id)
    .bind(expires_at)
    .bind(now)
    .execute(state.store.pool())
    .await?;
    record(
        state,
        principal,
        &org.id,
        "invitation.create",
        &id,
        meta,
        serde_json::json!({ "role": role.as_str(), "email": email, "expires_at": rfc3339(expires_at) }),
    )
    .await?;
    Ok(NewInvitation { id, url: format!("{}/invite/{token}", state.public_url), expires_at: rfc3339(expires_at) })
}

/// The org's invitations, newest first (owners and admins).
pub async fn list(state: &AppState, principal: &Principal, org_ref: &str) -> Result<Vec<Invitation>> {
    principal.require(Scope::OrgsRead)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    type Row = (String, Option<String>, String, Option<String>, Option<String>, i64, Option<i64>, Option<i64>, i64);
    let rows: Vec<Row> = sqlx::query_as(
        "select i.id, i.email, i.role, c.username, a.username, i.expires_at, i.accepted_at, i.revoked_at, i.created_at \
         from invitations i left join users c on c.id = i.created_by left join users a on a.id = i.accepted_by \
         where i.org_id = $1 order by i.created_at desc, i.id desc",
    )
    .bind(&org.id)
    .fetch_all(state.store.pool())
    .await?;
    let now = now();
    Ok(rows
        .into_iter()
        .map(|(id, email, role, created_by, accepted_by, expires_at, accepted_at, revoked_at, created_at)| Invitation {
            id,
            email,
            role: Role::parse(&role),
            created_by,
            status: status(accepted_at, revoked_at, expires_at, now),
            accepted_by,
            created_at: rfc3339(created_at),
            expires_at: rfc3339(expires_at),
        })
        .collect())
}

/// Revokes a pending invitation (owners and admins): its link stops working.
pub async fn revoke(state: &AppState, principal: &Principal, org_ref: &str, id: &str, meta: &ClientMeta) -> Result<()> {
    principal.require(Scope::OrgsWrite)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    let now = now();
    let done = sqlx::query(
        "update invitations set revoked_at = $1, updated_at = $1 \
         where id = $2 and org_id = $3 and accepted_at is null and revoked_at is null",
    )
    .bind(now)
    .bind(id)
    .bind(&org.id)
    .execute(state.store.pool())
    .await?;
    if done.rows_affected() == 0 {
        let exists: Option<String> = sqlx::query_scalar("select id from invitations where id = $1 and org_id = $2")
            .bind(id)
            .bind(&org.id)
            .fetch_optional(state.store.pool())
            .await?;
        return Err(match exists {
            None => Error::not_found("no such invitation"),
            Some(_) => Error::conflict(ErrorCode::Conflict, "this invitation was already used or revoked"),
        });
    }
    record(state, principal, &org.id, "invitation.revoke", id, meta, serde_json::json!({})).await
}

/// The pending invitation behind a link, for its page; a link that cannot be accepted
/// (unknown, revoked, used, expired) is an error that says which.
pub async fn view(state: &AppState, token: &str) -> Result<InvitationView> {
    let row = usable(state, token).await?;
    Ok(InvitationView {
        org_slug: row.org_slug,
        org_name: row.org_name,
        invited_by: row.invited_by,
        role: Role::parse(&row.role),
        email: row.email,
        expires_at: rfc3339(row.expires_at),
    })
}

/// Whether `token` is an invitation that can still be accepted (by the account with
/// `email`, when it names one).
pub async fn is_pending(state: &AppState, token: &str, email: Option<&str>) -> Result<bool> {
    match usable(state, token).await {
        Ok(row) => Ok(match (&row.email, email) {
            (Some(invited), Some(email)) => invited.eq_ignore_ascii_case(email.trim()),
            _ => true,
        }),
        Err(Error::Client { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Accepts an invitation: the caller joins its org with its role, once.
pub async fn accept(state: &AppState, principal: &Principal, token: &str, meta: &ClientMeta) -> Result<Accepted> {
    principal.require(Scope::OrgsWrite)?;
    let row = usable(state, token).await?;
    if !principal.allows_org(&row.org_id) {
        return Err(Error::forbidden("this token is bound to another org"));
    }
    if let Some(invited) = &row.email {
        let email: Option<String> = sqlx::query_scalar("select email from users where id = $1")
            .bind(&principal.user_id)
            .fetch_optional(state.store.pool())
            .await?;
        if !email.is_some_and(|e| e.eq_ignore_ascii_case(invited)) {
            return Err(Error::forbidden(
                "this invitation is for another email address; sign in with the account it was sent to",
            ));
        }
    }
    let member: Option<String> = sqlx::query_scalar("select role from memberships where org_id = $1 and user_id = $2")
        .bind(&row.org_id)
        .bind(&principal.user_id)
        .fetch_optional(state.store.pool())
        .await?;
    if member.is_some() {
        return Ok(Accepted::AlreadyMember(authorize(state, principal, &row.org_id, Need::Member).await?));
    }
    let now = now();
    let mut tx = state.store.pool().begin().await?;
    // The one step that decides who gets it: whoever's update matches the pending row.
    let taken = sqlx::query(
        "update invitations set accepted_at = $1, accepted_by = $2, updated_at = $1 \
         where id = $3 and accepted_at is null and revoked_at is null and expires_at > $1",
    )
    .bind(now)
    .bind(&principal.user_id)
    .bind(&row.id)
    .execute(&mut *tx)
    .await?;
    if taken.rows_affected() != 1 {
        return Err(used());
    }
    let joined = sqlx::query(
        "insert into memberships (org_id, user_id, role, created_at, updated_at) values ($1, $2, $3, $4, $4) \
         on conflict (org_id, user_id) do nothing",
    )
    .bind(&row.org_id)
    .bind(&principal.user_id)
    .bind(&row.role)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    record(state, principal, &row.org_id, "invitation.accept", &row.id, meta, serde_json::json!({ "role": row.role }))
        .await?;
    if joined.rows_affected() == 1 {
        crate::webhooks::publish_member(state, &row.org_id, EventType::MemberJoined, &principal.user_id, &row.role)
            .await;
    }
    Ok(Accepted::Joined(authorize(state, principal, &row.org_id, Need::Member).await?))
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    org_id: String,
    org_slug: String,
    org_name: String,
    email: Option<String>,
    role: String,
    invited_by: Option<String>,
    expires_at: i64,
    accepted_at: Option<i64>,
    revoked_at: Option<i64>,
}

/// The invitation behind `token` if it can still be accepted, else why not.
async fn usable(state: &AppState, token: &str) -> Result<Row> {
    let invalid = || Error::not_found("this invitation link is not valid; ask for a new one");
    // A token of the wrong shape needs no look-up.
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 100 {
        return Err(invalid());
    }
    let row: Option<Row> = sqlx::query_as(
        "select i.id, i.org_id, o.slug as org_slug, o.name as org_name, i.email, i.role, u.username as invited_by, \
         i.expires_at, i.accepted_at, i.revoked_at \
         from invitations i join orgs o on o.id = i.org_id left join users u on u.id = i.created_by \
         where i.token_hash = $1",
    )
    .bind(sha256_hex(token))
    .fetch_optional(state.store.pool())
    .await?;
    let row = row.ok_or_else(invalid)?;
    match status(row.accepted_at, row.revoked_at, row.expires_at, now()) {
        InvitationStatus::Pending => Ok(row),
        InvitationStatus::Accepted => Err(used()),
        InvitationStatus::Revoked => {
            Err(Error::conflict(ErrorCode::Conflict, "this invitation was revoked; ask for a new one"))
        }
        InvitationStatus::Expired => {
            Err(Error::conflict(ErrorCode::Conflict, "this invitation has expired; ask for a new one"))
        }
    }
}

fn used() -> Error {
    Error::conflict(ErrorCode::Conflict, "this invitation has already been used; ask for a new one")
}

fn status(accepted_at: Option<i64>, revoked_at: Option<i64>, expires_at: i64, now: i64) -> InvitationStatus {
    if accepted_at.is_some() {
        InvitationStatus::Accepted
    } else if revoked_at.is_some() {
        InvitationStatus::Revoked
    } else if expires_at <= now {
        InvitationStatus::Expired
    } else {
        InvitationStatus::Pending
    }
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

fn normalize_email(raw: &str) -> Result<String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL_LEN
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(Error::client(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, "email: not a valid email address"))
    }
}

async fn record(
    state: &AppState,
    principal: &Principal,
    org_id: &str,
    action: &str,
    invitation_id: &str,
    meta: &ClientMeta,
    detail: serde_json::Value,
) -> Result<()> {
    let event =
        audit::Event { target: Some(invitation_id), detail: Some(detail), ..principal.org_event(meta, org_id, action) };
    audit::record(&state.store, event).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_in_order_used_revoked_expired() {
        assert_eq!(status(Some(1), Some(2), 0, 10), InvitationStatus::Accepted);
        assert_eq!(status(None, Some(2), 100, 10), InvitationStatus::Revoked);
        assert_eq!(status(None, None, 10, 10), InvitationStatus::Expired);
        assert_eq!(status(None, None, 11, 10), InvitationStatus::Pending);
    }

    #[test]
    fn tokens_are_prefixed_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 43);
        assert_ne!(a, b);
    }
}
