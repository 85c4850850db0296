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

/// An event owned for the background writer.
#[derive(Debug, Clone)]
pub struct OwnedEvent {
    pub org_id: Option<String>,
    pub actor_id: Option<String>,
    pub pat_id: Option<String>,
    pub action: &'static str,
    pub target: Option<String>,
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
}

/// Writes hot-path audit events in batches from one task, so the connection-token
/// endpoint never waits on an audit insert. Its queue is bounded: when it is full the
/// endpoint refuses (503) rather than drop an event.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    tx: tokio::sync::mpsc::Sender<OwnedEvent>,
}

/// The queue is full: the caller must refuse the request.
#[derive(Debug)]
pub struct QueueFull;

const BATCH_MAX: usize = 256;
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

impl AuditWriter {
    /// Starts the writer task; it ends (after writing what is queued) when every
    /// `AuditWriter` clone is dropped.
    pub fn start(store: Store, capacity: usize) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        (AuditWriter { tx }, tokio::spawn(write_loop(store, rx)))
    }

    pub fn try_send(&self, event: OwnedEvent) -> std::result::Result<(), QueueFull> {
        self.tx.try_send(event).map_err(|_| QueueFull)
    }
}

async fn write_loop(store: Store, mut rx: tokio::sync::mpsc::Receiver<OwnedEvent>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < BATCH_MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                _ => break,
            }
        }
        for attempt in 0..3 {
            match insert_batch(&store, &batch).await {
                Ok(()) => break,
                Err(e) if attempt < 2 => {
                    tracing::warn!(error = %e, "audit batch insert failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => tracing::error!(error = %e, events = batch.len(), "audit events could not be written"),
            }
        }
        batch.clear();
    }
}

async fn insert_batch(store: &Store, batch: &[OwnedEvent]) -> Result<()> {
    let mut sql = String::from(
        "insert into audit_events (id, org_id, actor_id, pat_id, action, target, outcome, ip, user_agent, detail, \
         created_at, updated_at) values ",
    );
    for i in 0..batch.len() {
        let b = i * 11;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5,
            b + 6,
            b + 7,
            b + 8,
            b + 9,
            b + 10,
            b + 11,
            b + 11
        ));
    }
    let mut q = sqlx::query(&sql);
    for e in batch {
        q = q
            .bind(new_id())
            .bind(e.org_id.as_deref())
            .bind(e.actor_id.as_deref())
            .bind(e.pat_id.as_deref())
            .bind(e.action)
            .bind(e.target.as_deref())
            .bind(e.outcome.as_str())
            .bind(e.ip.as_deref())
            .bind(e.user_agent.as_deref())
            .bind(e.detail.as_deref())
            .bind(e.created_at);
    }
    q.execute(store.pool()).await?;
    Ok(())
}

/// One audit event as the API shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub org_id: Option<String>,
    pub actor_id: Option<String>,
    pub pat_id: Option<String>,
    /// The PAT's name (a paired device's name), when a PAT acted.
    pub pat_name: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
    pub created_at: String,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: String,
    org_id: Option<String>,
    actor_id: Option<String>,
    pat_id: Option<String>,
    pat_name: Option<String>,
    action: String,
    target: Option<String>,
    outcome: String,
    ip: Option<String>,
    user_agent: Option<String>,
    detail: Option<String>,
    created_at: i64,
}

/// Newest first; `filter` is `actor` (a user's own events) or `org`.
pub async fn list(store: &Store, by_actor: Option<&str>, by_org: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
    let (clause, value) = match (by_actor, by_org) {
        (Some(a), _) => ("a.actor_id = $1", a),
        (None, Some(o)) => ("a.org_id = $1", o),
        (None, None) => return Ok(Vec::new()),
    };
    let rows: Vec<AuditRow> = sqlx::query_as(&format!(
        "select a.id, a.org_id, a.actor_id, a.pat_id, p.name as pat_name, a.action, a.target, a.outcome, a.ip, \
         a.user_agent, a.detail, a.created_at from audit_events a left join pats p on p.id = a.pat_id \
         where {clause} order by a.created_at desc, a.id desc limit $2"
    ))
    .bind(value)
    .bind(limit.clamp(1, 1000))
    .fetch_all(store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            org_id: r.org_id,
            actor_id: r.actor_id,
            pat_id: r.pat_id,
            pat_name: r.pat_name,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            ip: r.ip,
            user_agent: r.user_agent,
            detail: r.detail.and_then(|d| serde_json::from_str(&d).ok()),
            created_at: crate::store::rfc3339(r.created_at),
        })
        .collect())
}
