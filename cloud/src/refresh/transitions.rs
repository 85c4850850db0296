//! What a change of a connection's state tells the org: one audit event per change
//! (`connection.failing`, `connection.exhausted`, `connection.needs_reauth`,
//! `connection.recovered`) and the webhook events (`connection.refresh_failed` on every
//! failed refresh, and one per change).
//!
//! Only the writer that made the change calls [`announce`]: the lease holder whose
//! conditional update landed, or the one conditional update that matched. So however
//! many replicas race, each change is told once. Never a token, nor anything the
//! provider wrote: the error is a class (`timeout`, `provider_5xx`, …).

use super::TokenRow;
use crate::audit;
use crate::state::AppState;
use crate::webhooks::{self, ConnectionData, EventType};

/// A change the refresher wrote; the state it came from is the row's `status` as read
/// under the lease.
pub enum Change {
    /// A refresh failed transiently; the connection is now `to` (`failing` or `exhausted`).
    Failed { to: &'static str, failure_count: i64, error: &'static str },
    /// The grant is gone at the provider.
    NeedsReauth { failure_count: i64, error: &'static str },
    /// A refresh succeeded after `failure_count` failures.
    Recovered { failure_count: i64 },
}

/// The owner and names of a connection, for the webhook payload.
#[derive(sqlx::FromRow)]
struct Names {
    connector_key: String,
    label: String,
    user_id: String,
}

/// Tells the audit log and the org's webhooks about `change` of `row`'s connection.
/// Never fails the caller: the change is already written.
pub async fn announce(state: &AppState, row: &TokenRow, change: &Change) {
    let from = row.status.as_str();
    let names: Option<Names> = sqlx::query_as("select connector_key, label, user_id from connections where id = $1")
        .bind(&row.id)
        .fetch_optional(state.store.pool())
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(connection = %row.id, error = %e, "could not read a connection's names for its events");
            None
        });
    let (connector_key, label) = names.as_ref().map_or(("", ""), |n| (n.connector_key.as_str(), n.label.as_str()));
    let (to, failure_count, error) = match *change {
        Change::Failed { to, failure_count, error } => (to, failure_count, Some(error)),
        Change::NeedsReauth { failure_count, error } => ("needs_reauth", failure_count, Some(error)),
        Change::Recovered { failure_count } => ("active", failure_count, None),
    };
    let data = |status: &'static str, error: Option<&'static str>, count: Option<i64>| {
        names.as_ref().map(|n| ConnectionData {
            connection_id: &row.id,
            connector_key: &n.connector_key,
            label: &n.label,
            provider: &row.provider,
            status,
            user_id: &n.user_id,
            failure_count: count,
            error,
        })
    };

    if let Change::Failed { .. } = change {
        if let Some(d) = data(to, error, Some(failure_count)) {
            webhooks::publish(state, &row.org_id, EventType::ConnectionRefreshFailed, d).await;
        }
    }
    // The state changes (a failure that leaves a connection `failing` is not one).
    let (action, event) = match (from, to) {
        ("failing", "failing") => return,
        (_, "failing") => ("connection.failing", None),
        (_, "exhausted") => ("connection.exhausted", Some(EventType::ConnectionExhausted)),
        (_, "needs_reauth") => ("connection.needs_reauth", Some(EventType::ConnectionNeedsReauth)),
        (_, _) => ("connection.recovered", Some(EventType::ConnectionRecovered)),
    };
    let detail = serde_json::json!({
        "connector": connector_key,
        "label": label,
        "from": from,
        "status": to,
        "error": error,
        "failure_count": failure_count,
    });
    let recorded = audit::record(
        &state.store,
        audit::Event {
            org_id: Some(&row.org_id),
            action,
            target: Some(&row.id),
            outcome: "success",
            detail: Some(detail),
            ..Default::default()
        },
    )
    .await;
    if let Err(e) = recorded {
        tracing::warn!(connection = %row.id, action, error = %e, "could not audit a change of state");
    }
    if let (Some(event), Some(d)) = (event, data(to, error, Some(failure_count))) {
        webhooks::publish(state, &row.org_id, event, d).await;
    }
}
