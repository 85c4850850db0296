//! The audit log: who did what, when, from where. Never a secret: events carry ids,
//! names and outcomes only.

use crate::error::Result;
use crate::store::{new_id, now, Store};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
/// endpoint waits for room (backpressure: answers slow down to what the audit log can
/// write), and only after [`QUEUE_WAIT`] refuses (503) rather than drop an event.
///
/// A batch that cannot be written is never dropped: the writer holds it and retries with
/// backoff. After [`FAILING_AFTER`] failed attempts in a row it reports itself failing
/// ([`AuditWriter::is_failing`]) and the endpoint refuses (503) instead of issuing tokens
/// whose events could not be written either, until the held batch is in.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    tx: tokio::sync::mpsc::Sender<OwnedEvent>,
    failing: Arc<AtomicBool>,
}

/// The queue is full: the caller must refuse the request.
#[derive(Debug)]
pub struct QueueFull;

/// Rows per statement. A fixed size keeps one prepared statement in each connection's
/// cache (a statement per batch size would be prepared afresh again and again).
const CHUNK: usize = 64;
// Within SQLite's bind-parameter limit (32,766), with room to spare.
const _: () = assert!(CHUNK * 11 < 32_766);
/// Rows per transaction: how much of a backlog one write takes.
const BATCH_MAX: usize = 1024;
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);
/// How long a request waits for room in a full queue before it is refused.
pub const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Failed attempts at one batch after which the writer reports itself failing: a blip
/// (a dropped connection) is retried unseen, a lasting fault stops token answers.
pub const FAILING_AFTER: u32 = 3;
/// The longest wait between two attempts at a held batch.
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);

impl AuditWriter {
    /// Starts the writer task; it ends (after writing what is queued) when every
    /// `AuditWriter` clone is dropped.
    pub fn start(store: Store, capacity: usize) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let failing = Arc::new(AtomicBool::new(false));
        (AuditWriter { tx, failing: Arc::clone(&failing) }, tokio::spawn(write_loop(store, rx, failing)))
    }

    /// Queues `event`, waiting up to [`QUEUE_WAIT`] for room.
    pub async fn send(&self, event: OwnedEvent) -> std::result::Result<(), QueueFull> {
        use tokio::sync::mpsc::error::TrySendError;
        match self.tx.try_send(event) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(event)) => match tokio::time::timeout(QUEUE_WAIT, self.tx.send(event)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) | Err(_) => Err(QueueFull),
            },
            Err(TrySendError::Closed(_)) => Err(QueueFull),
        }
    }

    /// Whether the writer has failed [`FAILING_AFTER`] times in a row to write the batch
    /// it holds: no new answer may count on its event being written.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }
}

async fn write_loop(store: Store, mut rx: tokio::sync::mpsc::Receiver<OwnedEvent>, failing: Arc<AtomicBool>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    // The writer keeps a connection of its own: waiting in the pool's queue behind every
    // request in flight is what let the audit log fall behind under load.
    let mut conn: Option<sqlx::pool::PoolConnection<sqlx::Any>> = None;
    while let Some(first) = rx.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < BATCH_MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                _ => break,
            }
        }
        let mut failures: u32 = 0;
        loop {
            let written = match conn.as_mut() {
                Some(c) => insert_batch(c, &batch).await,
                None => match store.pool().acquire().await {
                    Ok(c) => insert_batch(conn.insert(c), &batch).await,
                    Err(e) => Err(e.into()),
                },
            };
            let Err(e) = written else {
                if failures >= FAILING_AFTER {
                    tracing::warn!(events = batch.len(), "audit log writable again: held events written");
                }
                failing.store(false, Ordering::Release);
                break;
            };
            // A fresh connection next time, in case this one is broken.
            conn = None;
            failures = failures.saturating_add(1);
            if store.pool().is_closed() {
                // Shutting down: nothing can write them any more.
                tracing::error!(error = %e, events = batch.len(), "audit events could not be written before shutdown");
                break;
            }
            if failures == FAILING_AFTER {
                failing.store(true, Ordering::Release);
                tracing::error!(error = %e, events = batch.len(), "audit events cannot be written; holding them and refusing token requests until they are");
            } else if failures < FAILING_AFTER {
                tracing::warn!(error = %e, "audit batch insert failed; retrying");
            }
            tokio::time::sleep(retry_delay(failures)).await;
        }
        batch.clear();
        // Idle: give the connection back to the pool until the next event.
        if rx.is_empty() {
            conn = None;
        }
    }
}

/// 100 ms, doubling, at most [`RETRY_MAX`].
fn retry_delay(failures: u32) -> std::time::Duration {
    let ms = 100u64.saturating_mul(1 << failures.saturating_sub(1).min(10));
    std::time::Duration::from_millis(ms).min(RETRY_MAX)
}

/// Writes `batch` in one transaction, [`CHUNK`] rows per statement.
async fn insert_batch(conn: &mut sqlx::AnyConnection, batch: &[OwnedEvent]) -> Result<()> {
    use sqlx::Connection;
    let mut tx = conn.begin().await?;
    for chunk in batch.chunks(CHUNK) {
        let mut q = sqlx::query(insert_sql(chunk.len()));
        for e in chunk {
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
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The insert of `rows` events (1 to [`CHUNK`]), built once per size.
fn insert_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| (0..=CHUNK).map(build_insert_sql).collect());
    all.get(rows).map_or("", String::as_str)
}

fn build_insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "insert into audit_events (id, org_id, actor_id, pat_id, action, target, outcome, ip, user_agent, detail, \
         created_at, updated_at) values ",
    );
    for i in 0..rows {
        let b = i * 11;
        if i > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> = (1..=11).map(|n| format!("${}", b + n)).collect();
        sql.push_str(&format!("({}, ${})", params.join(", "), b + 11));
    }
    sql
}

/// One audit event as the API shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub org_id: Option<String>,
    /// The org's slug, when the event belongs to an org.
    pub org_slug: Option<String>,
    pub actor_id: Option<String>,
    pub pat_id: Option<String>,
    /// The PAT's name (a paired device's name), when a PAT acted.
    pub pat_name: Option<String>,
    /// `token` or `device`, when a PAT acted.
    pub pat_kind: Option<String>,
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
    org_slug: Option<String>,
    actor_id: Option<String>,
    pat_id: Option<String>,
    pat_name: Option<String>,
    pat_kind: Option<String>,
    action: String,
    target: Option<String>,
    outcome: String,
    ip: Option<String>,
    user_agent: Option<String>,
    detail: Option<String>,
    created_at: i64,
}

/// Newest first: a user's own events (`by_actor`), an org's (`by_org`), or a user's own
/// in one org (both: what a PAT bound to that org may see of its user's).
pub async fn list(store: &Store, by_actor: Option<&str>, by_org: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
    list_before(store, by_actor, by_org, limit, None).await
}

/// [`list`], a page at a time: only events older than the event `before` (an id from the
/// previous page; an unknown id gives an empty page).
pub async fn list_before(
    store: &Store,
    by_actor: Option<&str>,
    by_org: Option<&str>,
    limit: i64,
    before: Option<&str>,
) -> Result<Vec<AuditEntry>> {
    let (clause, mut values) = match (by_actor, by_org) {
        (Some(a), Some(o)) => ("a.actor_id = $2 and a.org_id = $3".to_owned(), vec![a, o]),
        (Some(a), None) => ("a.actor_id = $2".to_owned(), vec![a]),
        (None, Some(o)) => ("a.org_id = $2".to_owned(), vec![o]),
        (None, None) => return Ok(Vec::new()),
    };
    let clause = match before {
        Some(cursor) => {
            values.push(cursor);
            let n = values.len() + 1;
            format!(
                "{clause} and exists (select 1 from audit_events c where c.id = ${n} \
                 and (a.created_at < c.created_at or (a.created_at = c.created_at and a.id < c.id)))"
            )
        }
        None => clause,
    };
    let sql = format!(
        "select a.id, a.org_id, o.slug as org_slug, a.actor_id, a.pat_id, p.name as pat_name, p.kind as pat_kind, \
         a.action, a.target, a.outcome, a.ip, a.user_agent, a.detail, a.created_at from audit_events a \
         left join pats p on p.id = a.pat_id left join orgs o on o.id = a.org_id \
         where {clause} order by a.created_at desc, a.id desc limit $1"
    );
    let mut query = sqlx::query_as::<_, AuditRow>(&sql).bind(limit.clamp(1, 1000));
    for value in values {
        query = query.bind(value);
    }
    let rows = query.fetch_all(store.pool()).await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            org_id: r.org_id,
            org_slug: r.org_slug,
            actor_id: r.actor_id,
            pat_id: r.pat_id,
            pat_name: r.pat_name,
            pat_kind: r.pat_kind,
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn batch_inserts_number_their_parameters_in_order() {
        let two = build_insert_sql(2);
        assert!(two.ends_with("values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11), ($12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $22)"), "{two}");
        assert_eq!(insert_sql(CHUNK).matches('(').count(), CHUNK + 1);
    }

    fn event(n: usize) -> OwnedEvent {
        OwnedEvent {
            org_id: None,
            actor_id: None,
            pat_id: None,
            action: "connection.token",
            target: Some(format!("t{n}")),
            outcome: "issued".into(),
            ip: None,
            user_agent: None,
            detail: None,
            created_at: 0,
        }
    }

    /// A queue of one, 500 concurrent senders: every one waits its turn, none is refused,
    /// and every event reaches the database.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_slows_senders_down_instead_of_refusing_them() {
        let db = crate::test_db::TempSqlite::new().await;
        let store = db.store.clone();
        let (writer, task) = AuditWriter::start(store.clone(), 1);
        let mut senders = tokio::task::JoinSet::new();
        for n in 0..500 {
            let writer = writer.clone();
            senders.spawn(async move { writer.send(event(n)).await.is_ok() });
        }
        let accepted = senders.join_all().await.into_iter().filter(|ok| *ok).count();
        assert_eq!(accepted, 500);
        drop(writer);
        task.await.unwrap();
        let written: i64 =
            sqlx::query_scalar("select count(*) from audit_events").fetch_one(store.pool()).await.unwrap();
        assert_eq!(written, 500);
    }
}
