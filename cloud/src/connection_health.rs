//! Connection health: every member's connection in an org as its admins see it — the
//! status (with a refresh in progress and failing refreshes told apart), the account,
//! when it was last refreshed and when a token was last fetched — and a member's own
//! connections that need attention (their home page). Never a token: the queries do not
//! even read the sealed columns.

use crate::access::{authorize, Need, Principal};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{now, rfc3339};
use latchkey_shared::Scope;
use serde::Serialize;
use utoipa::ToSchema;

/// The statuses health shows: the stored ones (`failing`: refreshes are failing and being
/// retried, the current token is still served while it is valid; `exhausted`: retrying
/// was given up until the member reconnects), plus `refreshing` (a refresh holds the
/// connection's lease right now).
pub const STATUSES: &[&str] = &["active", "refreshing", "failing", "needs_reauth", "exhausted", "revoked"];

/// The member who owns a connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthUser {
    pub id: String,
    pub username: String,
    pub email: String,
}

/// One member's connection, as the org's admins see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionHealth {
    pub id: String,
    pub user: HealthUser,
    pub connector_key: String,
    /// The member's name for this connection (one of several accounts on a connector).
    pub label: String,
    /// `active`, `refreshing`, `failing`, `needs_reauth`, `exhausted` or `revoked`.
    pub status: String,
    pub account_name: Option<String>,
    /// Refreshes failed in a row.
    pub failure_count: i64,
    /// The class of the last failure (`timeout`, `provider_5xx`, `rate_limited`,
    /// `invalid_response`, `network`, `provider_rejected`, `configuration`,
    /// `invalid_grant`, `no_refresh_token`); never the provider's own words.
    pub last_error: Option<String>,
    /// When the current run of failed refreshes began (RFC 3339).
    pub failing_since: Option<String>,
    /// When the next refresh may be tried (RFC 3339), while refreshes are failing.
    pub next_attempt_at: Option<String>,
    pub last_refreshed_at: Option<String>,
    /// When the connection-token endpoint last handed out this connection's token (kept
    /// to the minute).
    pub last_token_at: Option<String>,
}

#[derive(sqlx::FromRow)]
struct HealthRow {
    id: String,
    user_id: String,
    username: String,
    email: String,
    connector_key: String,
    label: String,
    status: String,
    account_name: Option<String>,
    failure_count: i64,
    last_error: Option<String>,
    failing_since: Option<i64>,
    next_attempt_at: Option<i64>,
    last_refreshed_at: Option<i64>,
    last_token_at: Option<i64>,
    refresh_lock_until: Option<i64>,
}

impl HealthRow {
    fn into_view(self, now: i64) -> ConnectionHealth {
        let status = derive_status(&self.status, self.refresh_lock_until, self.failure_count, now);
        ConnectionHealth {
            label: self.label,
            id: self.id,
            user: HealthUser { id: self.user_id, username: self.username, email: self.email },
            connector_key: self.connector_key,
            status: status.to_owned(),
            account_name: self.account_name,
            failure_count: self.failure_count,
            last_error: self.last_error,
            failing_since: self.failing_since.map(rfc3339),
            next_attempt_at: self.next_attempt_at.map(rfc3339),
            last_refreshed_at: self.last_refreshed_at.map(rfc3339),
            last_token_at: self.last_token_at.map(rfc3339),
        }
    }
}

/// The status health shows for a stored status and the refresh columns.
fn derive_status(stored: &str, refresh_lock_until: Option<i64>, failure_count: i64, now: i64) -> &'static str {
    match stored {
        "revoked" => "revoked",
        "needs_reauth" => "needs_reauth",
        "exhausted" => "exhausted",
        _ if refresh_lock_until.is_some_and(|t| t > now) => "refreshing",
        "failing" => "failing",
        // Rows from before `failing` was stored.
        _ if failure_count > 0 => "failing",
        _ => "active",
    }
}

/// Every member's connection in the org (owners and admins), by member then connector;
/// with `status`, only those in that health status.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    org_ref: &str,
    status: Option<&str>,
) -> Result<Vec<ConnectionHealth>> {
    principal.require(Scope::OrgsRead)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    if let Some(s) = status {
        if !STATUSES.contains(&s) {
            return Err(Error::bad_request(format!("status: one of {}", STATUSES.join(", "))));
        }
    }
    let rows: Vec<HealthRow> = sqlx::query_as(
        "select c.id, c.user_id, u.username, u.email, c.connector_key, c.label, c.status, c.account_name, \
         c.failure_count, c.last_error, c.failing_since, c.next_attempt_at, c.last_refreshed_at, c.last_token_at, c.refresh_lock_until \
         from connections c join users u on u.id = c.user_id \
         where c.org_id = $1 order by u.username, c.connector_key, c.id",
    )
    .bind(&org.id)
    .fetch_all(state.store.pool())
    .await?;
    let now = now();
    Ok(rows.into_iter().map(|r| r.into_view(now)).filter(|h| status.is_none_or(|s| h.status == s)).collect())
}

/// One of the caller's own connections that needs them: refreshes failing, the grant
/// gone (`needs_reauth`), or retrying given up (`exhausted`).
#[derive(Debug, Serialize)]
pub struct Attention {
    pub id: String,
    pub org_slug: String,
    pub org_name: String,
    pub connector_key: String,
    pub label: String,
    pub status: String,
    pub failure_count: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<i64>,
    /// Where the member reconnects this connection (a path on the cloud).
    pub reconnect_path: String,
}

#[derive(sqlx::FromRow)]
struct AttentionRow {
    id: String,
    slug: String,
    name: String,
    connector_key: String,
    label: String,
    status: String,
    failure_count: i64,
    last_error: Option<String>,
    next_attempt_at: Option<i64>,
}

/// The caller's own connections, in every org they belong to, that need attention, by
/// org then connector.
pub async fn needing_attention(state: &AppState, principal: &Principal) -> Result<Vec<Attention>> {
    principal.require(Scope::ConnectionsRead)?;
    let rows: Vec<AttentionRow> = sqlx::query_as(
        "select c.id, o.slug, o.name, c.connector_key, c.label, c.status, c.failure_count, c.last_error, \
         c.next_attempt_at from connections c join orgs o on o.id = c.org_id \
         join memberships m on m.org_id = c.org_id and m.user_id = c.user_id \
         where c.user_id = $1 and c.status in ('failing', 'needs_reauth', 'exhausted') \
         order by o.slug, c.connector_key, c.label",
    )
    .bind(&principal.user_id)
    .fetch_all(state.store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let reconnect_path =
                format!("/connect/{}/{}?connection={}", enc(&r.slug), enc(&r.connector_key), enc(&r.label));
            Attention {
                id: r.id,
                org_slug: r.slug,
                org_name: r.name,
                connector_key: r.connector_key,
                label: r.label,
                status: r.status,
                failure_count: r.failure_count,
                last_error: r.last_error,
                next_attempt_at: r.next_attempt_at,
                reconnect_path,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::derive_status;

    #[test]
    fn health_tells_refreshing_and_failing_apart_from_stored_statuses() {
        assert_eq!(derive_status("active", None, 0, 100), "active");
        assert_eq!(derive_status("active", Some(99), 0, 100), "active");
        assert_eq!(derive_status("active", Some(130), 2, 100), "refreshing");
        assert_eq!(derive_status("active", None, 2, 100), "failing");
        assert_eq!(derive_status("failing", None, 2, 100), "failing");
        assert_eq!(derive_status("failing", Some(130), 2, 100), "refreshing");
        assert_eq!(derive_status("exhausted", Some(130), 10, 100), "exhausted");
        assert_eq!(derive_status("needs_reauth", Some(130), 3, 100), "needs_reauth");
        assert_eq!(derive_status("revoked", None, 0, 100), "revoked");
    }
}
