//! Connection health: every member's connection in an org as its admins see it — the
//! status (with a refresh in progress and failing refreshes told apart), the account,
//! when it was last refreshed and when a token was last fetched. Never a token: the
//! query does not even read the sealed columns.

use crate::access::{authorize, Need, Principal};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{now, rfc3339};
use latchkey_shared::Scope;
use serde::Serialize;
use utoipa::ToSchema;

/// The statuses health shows: the stored ones, plus `refreshing` (a refresh holds the
/// connection's lease right now) and `failing` (refreshes are failing and being retried;
/// the current token is still served while it is valid).
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
    /// Until connections carry labels of their own (several accounts per connector), the
    /// account name, else the connector key.
    pub label: String,
    /// `active`, `refreshing`, `failing`, `needs_reauth`, `exhausted` or `revoked`.
    pub status: String,
    pub account_name: Option<String>,
    /// Refreshes failed in a row.
    pub failure_count: i64,
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
    status: String,
    account_name: Option<String>,
    failure_count: i64,
    next_attempt_at: Option<i64>,
    last_refreshed_at: Option<i64>,
    last_token_at: Option<i64>,
    refresh_lock_until: Option<i64>,
}

impl HealthRow {
    fn into_view(self, now: i64) -> ConnectionHealth {
        let status = derive_status(&self.status, self.refresh_lock_until, self.failure_count, now);
        ConnectionHealth {
            label: self.account_name.clone().unwrap_or_else(|| self.connector_key.clone()),
            id: self.id,
            user: HealthUser { id: self.user_id, username: self.username, email: self.email },
            connector_key: self.connector_key,
            status: status.to_owned(),
            account_name: self.account_name,
            failure_count: self.failure_count,
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
        "select c.id, c.user_id, u.username, u.email, c.connector_key, c.status, c.account_name, c.failure_count, \
         c.next_attempt_at, c.last_refreshed_at, c.last_token_at, c.refresh_lock_until \
         from connections c join users u on u.id = c.user_id \
         where c.org_id = $1 order by u.username, c.connector_key, c.id",
    )
    .bind(&org.id)
    .fetch_all(state.store.pool())
    .await?;
    let now = now();
    Ok(rows.into_iter().map(|r| r.into_view(now)).filter(|h| status.is_none_or(|s| h.status == s)).collect())
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
        assert_eq!(derive_status("needs_reauth", Some(130), 3, 100), "needs_reauth");
        assert_eq!(derive_status("revoked", None, 0, 100), "revoked");
    }
}
