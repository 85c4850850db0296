//! The outbox: one `webhook_deliveries` row per event per subscribed endpoint, written
//! when the event is published and worked off by the delivery worker of any replica.
//!
//! A delivery is claimed with one conditional update (a lease), so across replicas
//! exactly one attempt of it is in flight at a time; the attempt's outcome is written
//! only while the lease is still its own.

use super::EventType;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{new_id, now, rfc3339};
use latchkey_shared::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every delivery of one event.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    created_at: String,
    org: &'a str,
    data: T,
}

/// Unix milliseconds: retry and lease times are finer than the schema's seconds.
pub fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default(),
    )
    .unwrap_or(i64::MAX)
}

/// Writes a delivery of `event` for every endpoint of the org subscribed to it; returns
/// how many.
pub async fn record(state: &AppState, org_id: &str, event: EventType, data: impl Serialize) -> Result<usize> {
    let endpoints: Vec<(String, String)> = sqlx::query_as("select id, events from webhook_endpoints where org_id = $1")
        .bind(org_id)
        .fetch_all(state.store.pool())
        .await?;
    let subscribed: Vec<String> = endpoints
        .into_iter()
        .filter(|(_, events)| events.split_whitespace().any(|e| e == event.as_str()))
        .map(|(id, _)| id)
        .collect();
    if subscribed.is_empty() {
        return Ok(0);
    }
    let slug: Option<String> = sqlx::query_scalar("select slug from orgs where id = $1")
        .bind(org_id)
        .fetch_optional(state.store.pool())
        .await?;
    let Some(slug) = slug else { return Ok(0) };
    let event_id = new_id();
    let now = now();
    let body = serde_json::to_string(&Envelope {
        id: &event_id,
        event_type: event.as_str(),
        created_at: rfc3339(now),
        org: &slug,
        data,
    })
    .map_err(|e| anyhow::anyhow!("serializing a webhook event: {e}"))?;
    let due = now_ms();
    let mut tx = state.store.pool().begin().await?;
    for endpoint_id in &subscribed {
        sqlx::query(
            "insert into webhook_deliveries (id, endpoint_id, event_id, event_type, body, state, attempts, \
             next_attempt_ms, retry_from_ms, created_at, updated_at) \
             values ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $7, $7)",
        )
        .bind(new_id())
        .bind(endpoint_id)
        .bind(&event_id)
        .bind(event.as_str())
        .bind(&body)
        .bind(due)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(subscribed.len())
}

/// Deliveries due now (pending and due, or delivering under a lease that ran out).
pub async fn due(state: &AppState, limit: i64) -> Result<Vec<String>> {
    let now = now_ms();
    Ok(sqlx::query_scalar(
        "select id from webhook_deliveries where (state = 'pending' and next_attempt_ms <= $1) \
         or (state = 'delivering' and lease_until_ms < $1) order by next_attempt_ms limit $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(state.store.pool())
    .await?)
}

/// When the next pending delivery falls due, if any is pending.
pub async fn next_due_ms(state: &AppState) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("select min(next_attempt_ms) from webhook_deliveries where state = 'pending'")
        .fetch_one(state.store.pool())
        .await?)
}

/// One attempt of a delivery, claimed by this replica.
#[derive(sqlx::FromRow)]
pub struct Claimed {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub body: String,
    pub attempts: i64,
    pub retry_from_ms: i64,
    pub url: String,
    pub secret_ct: Vec<u8>,
}

/// Takes the lease on delivery `id` for one attempt; `None` when another replica (or
/// task) has it or it is no longer due.
pub async fn claim(state: &AppState, id: &str, lease_ms: i64) -> Result<Option<Claimed>> {
    let now = now_ms();
    let taken = sqlx::query(
        "update webhook_deliveries set state = 'delivering', attempts = attempts + 1, lease_owner = $1, \
         lease_until_ms = $2, updated_at = $3 \
         where id = $4 and ((state = 'pending' and next_attempt_ms <= $5) \
         or (state = 'delivering' and lease_until_ms < $5))",
    )
    .bind(&state.instance_id)
    .bind(now + lease_ms)
    .bind(now / 1000)
    .bind(id)
    .bind(now)
    .execute(state.store.pool())
    .await?;
    if taken.rows_affected() != 1 {
        return Ok(None);
    }
    Ok(sqlx::query_as(
        "select d.id, d.endpoint_id, d.event_id, d.body, d.attempts, d.retry_from_ms, e.url, e.secret_ct \
         from webhook_deliveries d join webhook_endpoints e on e.id = d.endpoint_id \
         where d.id = $1 and d.lease_owner = $2 and d.state = 'delivering'",
    )
    .bind(id)
    .bind(&state.instance_id)
    .fetch_optional(state.store.pool())
    .await?)
}

/// How an attempt ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    /// `None`: delivered.
    pub error_class: Option<&'static str>,
}

/// What comes after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Delivered,
    RetryAt(i64),
    Failed,
}

impl Next {
    fn state(self) -> &'static str {
        match self {
            Next::Delivered => "delivered",
            Next::RetryAt(_) => "pending",
            Next::Failed => "failed",
        }
    }
}

/// Records attempt `claimed.attempts` and moves the delivery on, only while this
/// replica's lease on that attempt holds; false when the lease was lost.
pub async fn finish(state: &AppState, claimed: &Claimed, outcome: &Outcome, next: Next) -> Result<bool> {
    let now = now();
    let mut tx = state.store.pool().begin().await?;
    let moved = sqlx::query(
        "update webhook_deliveries set state = $1, next_attempt_ms = coalesce($2, next_attempt_ms), \
         lease_owner = null, lease_until_ms = null, last_status_code = $3, last_latency_ms = $4, last_error = $5, \
         last_attempt_at = $6, updated_at = $6 \
         where id = $7 and lease_owner = $8 and state = 'delivering' and attempts = $9",
    )
    .bind(next.state())
    .bind(match next {
        Next::RetryAt(at) => Some(at),
        _ => None,
    })
    .bind(outcome.status_code.map(i64::from))
    .bind(outcome.latency_ms)
    .bind(outcome.error_class)
    .bind(now)
    .bind(&claimed.id)
    .bind(&state.instance_id)
    .bind(claimed.attempts)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "insert into webhook_attempts (id, delivery_id, attempt, status_code, latency_ms, error_class, created_at, \
         updated_at) values ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(new_id())
    .bind(&claimed.id)
    .bind(claimed.attempts)
    .bind(outcome.status_code.map(i64::from))
    .bind(outcome.latency_ms)
    .bind(outcome.error_class)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// A delivery as admins see it: never the body's secret (there is none) nor the
/// endpoint's secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// `pending`, `delivering`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    /// The receiver's status code at the last attempt; null when it did not answer.
    pub last_status_code: Option<i64>,
    pub last_latency_ms: Option<i64>,
    /// Why the last attempt failed: `http_status`, `redirect`, `timeout`, `connect`,
    /// `forbidden_address`, `invalid_url` or `request`.
    pub last_error: Option<String>,
    pub last_attempt_at: Option<String>,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<String>,
    pub created_at: String,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: String,
    event_id: String,
    event_type: String,
    state: String,
    attempts: i64,
    last_status_code: Option<i64>,
    last_latency_ms: Option<i64>,
    last_error: Option<String>,
    last_attempt_at: Option<i64>,
    next_attempt_ms: i64,
    created_at: i64,
}

const DELIVERY_SELECT: &str = "select id, event_id, event_type, state, attempts, last_status_code, \
     last_latency_ms, last_error, last_attempt_at, next_attempt_ms, created_at from webhook_deliveries";

impl DeliveryRow {
    fn into_view(self) -> Delivery {
        let r = self;
        Delivery {
            next_attempt_at: (r.state == "pending").then(|| rfc3339(r.next_attempt_ms / 1000)),
            id: r.id,
            event_id: r.event_id,
            event_type: r.event_type,
            state: r.state,
            attempts: r.attempts,
            last_status_code: r.last_status_code,
            last_latency_ms: r.last_latency_ms,
            last_error: r.last_error,
            last_attempt_at: r.last_attempt_at.map(rfc3339),
            created_at: rfc3339(r.created_at),
        }
    }
}

/// The endpoint's latest deliveries, newest first.
pub async fn list(state: &AppState, endpoint_id: &str, limit: i64) -> Result<Vec<Delivery>> {
    let rows: Vec<DeliveryRow> =
        sqlx::query_as(&format!("{DELIVERY_SELECT} where endpoint_id = $1 order by created_at desc, id desc limit $2"))
            .bind(endpoint_id)
            .bind(limit)
            .fetch_all(state.store.pool())
            .await?;
    Ok(rows.into_iter().map(DeliveryRow::into_view).collect())
}

/// Sends a delivery of the endpoint again, now, with the same event id and a fresh
/// day of retries. One in flight is refused (409): it is being sent already.
pub async fn resend(state: &AppState, endpoint_id: &str, delivery_id: &str) -> Result<Delivery> {
    let now_ms = now_ms();
    let done = sqlx::query(
        "update webhook_deliveries set state = 'pending', next_attempt_ms = $1, retry_from_ms = $1, updated_at = $2 \
         where id = $3 and endpoint_id = $4 and state <> 'delivering'",
    )
    .bind(now_ms)
    .bind(now_ms / 1000)
    .bind(delivery_id)
    .bind(endpoint_id)
    .execute(state.store.pool())
    .await?;
    if done.rows_affected() != 1 {
        let exists: Option<String> =
            sqlx::query_scalar("select state from webhook_deliveries where id = $1 and endpoint_id = $2")
                .bind(delivery_id)
                .bind(endpoint_id)
                .fetch_optional(state.store.pool())
                .await?;
        return Err(match exists {
            Some(_) => Error::conflict(ErrorCode::Conflict, "this delivery is being sent right now; try again shortly"),
            None => Error::not_found("no such delivery for this webhook"),
        });
    }
    state.webhook_wake.notify_one();
    list_one(state, delivery_id).await
}

async fn list_one(state: &AppState, delivery_id: &str) -> Result<Delivery> {
    let row: DeliveryRow = sqlx::query_as(&format!("{DELIVERY_SELECT} where id = $1"))
        .bind(delivery_id)
        .fetch_one(state.store.pool())
        .await?;
    Ok(row.into_view())
}
