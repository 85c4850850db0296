//! The audit log: who did what, when, from where. Never a secret: events carry ids,
//! names and outcomes only.

use crate::error::Result;
use crate::store::{new_id, now, Store};

/// One event. `detail` is a small JSON object of non-secret facts.
#[derive(Debug, Default)]
pub struct Event<'a> {
    pub org_id: Option<&'a str>,
    pub actor_id: Option<&'a str>,
    pub pat_id: Option<&'a str>,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub outcome: &'a str,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub detail: Option<serde_json::Value>,
}

pub async fn record(store: &Store, event: Event<'_>) -> Result<()> {
    let now = now();
    sqlx::query(
        "insert into audit_events (id, org_id, actor_id, pat_id, action, target, outcome, ip, \
         user_agent, detail, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(new_id())
    .bind(event.org_id)
    .bind(event.actor_id)
    .bind(event.pat_id)
    .bind(event.action)
    .bind(event.target)
    .bind(event.outcome)
    .bind(event.ip)
    .bind(event.user_agent)
    .bind(event.detail.map(|d| d.to_string()))
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(())
}
