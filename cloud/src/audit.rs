//! The audit log: who did what, when, from where. Never a secret: events carry ids,
//! names and outcomes only.

use crate::error::Result;
use crate::metrics::Metrics;
use crate::store::{new_id, now, Store};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
///
/// At shutdown `server::serve` waits (bounded) for [`AuditWriter::flush`]: every event
/// queued or held is written before the pool closes.
#[derive(Clone, Debug)]
pub struct AuditWriter {
    tx: tokio::sync::mpsc::Sender<OwnedEvent>,
    failing: Arc<AtomicBool>,
    /// Events accepted and not yet written (queued, or in the batch being written).
    pending: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

/// The queue is full: the caller must refuse the request.
#[derive(Debug)]
pub struct QueueFull;

/// Rows per statement. A fixed size keeps one prepared statement in each connection's
/// cache (a statement per batch size would be prepared afresh again and again).
const CHUNK: usize = 64;
// Within SQLite's bind-parameter limit (32,766), with room to spare.
const _: () = assert!(CHUNK * PER_ROW < 32_766);
/// Bound values per row (`created_at` twice: also `updated_at`).
const PER_ROW: usize = 12;
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
    pub fn start(store: Store, capacity: usize, metrics: Arc<Metrics>) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let writer = AuditWriter {
            tx,
            failing: Arc::new(AtomicBool::new(false)),
            pending: Arc::new(AtomicUsize::new(0)),
            metrics,
        };
        let task = tokio::spawn(write_loop(store, rx, writer.loop_state()));
        (writer, task)
    }

    /// What the writer task shares with the senders (not a sender itself, so the task
    /// still ends when every `AuditWriter` is dropped).
    fn loop_state(&self) -> LoopState {
        LoopState {
            failing: Arc::clone(&self.failing),
            pending: Arc::clone(&self.pending),
            metrics: Arc::clone(&self.metrics),
        }
    }

    /// Queues `event`, waiting up to [`QUEUE_WAIT`] for room.
    pub async fn send(&self, event: OwnedEvent) -> std::result::Result<(), QueueFull> {
        use tokio::sync::mpsc::error::TrySendError;
        // Counted before it is queued, so the writer never subtracts what was not added.
        self.pending.fetch_add(1, Ordering::AcqRel);
        let sent = match self.tx.try_send(event) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(event)) => match tokio::time::timeout(QUEUE_WAIT, self.tx.send(event)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) | Err(_) => Err(QueueFull),
            },
            Err(TrySendError::Closed(_)) => Err(QueueFull),
        };
        if sent.is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            self.metrics.audit_dropped.inc();
        }
        sent
    }

    /// Events waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity().saturating_sub(self.tx.capacity())
    }

    pub fn queue_capacity(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Waits until every event accepted so far is written, or `limit` has passed; false
    /// (with an error logged) when some are still unwritten.
    pub async fn flush(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let pending = self.pending.load(Ordering::Acquire);
            if pending == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::error!(events = pending, "audit events were still unwritten when the process had to stop");
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Whether the writer has failed [`FAILING_AFTER`] times in a row to write the batch
    /// it holds: no new answer may count on its event being written.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Acquire)
    }
}

/// The writer task's side of an [`AuditWriter`].
struct LoopState {
    failing: Arc<AtomicBool>,
    pending: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

async fn write_loop(store: Store, mut rx: tokio::sync::mpsc::Receiver<OwnedEvent>, shared: LoopState) {
    let LoopState { failing, pending, metrics } = shared;
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
            if let crate::error::Error::Db(db) = &e {
                metrics.db_error(db);
            }
            if store.pool().is_closed() {
                // Shutting down: nothing can write them any more.
                tracing::error!(error = %e, events = batch.len(), "audit events could not be written before shutdown");
                metrics.audit_dropped.inc_by(u64::try_from(batch.len()).unwrap_or(u64::MAX));
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
        pending.fetch_sub(batch.len(), Ordering::AcqRel);
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
    let sqlite = conn.backend_name() == "SQLite";
    let mut tx = conn.begin().await?;
    for chunk in batch.chunks(CHUNK) {
        let mut q = sqlx::query(insert_sql(sqlite, chunk.len()));
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
                .bind(e.created_at)
                .bind(e.created_at);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The insert of `rows` events (1 to [`CHUNK`]), built once per size and backend.
/// SQLite gets anonymous `?` placeholders: sqlx looks up each parameter's name
/// (`sqlite3_bind_parameter_name`, a linear scan of the statement's names), which for
/// 768 `$n` names per statement was 6% of the cloud's CPU under token load.
fn insert_sql(sqlite: bool, rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<[Vec<String>; 2]> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        [
            (0..=CHUNK).map(|n| build_insert_sql(false, n)).collect(),
            (0..=CHUNK).map(|n| build_insert_sql(true, n)).collect(),
        ]
    });
    all[usize::from(sqlite)].get(rows).map_or("", String::as_str)
}

fn build_insert_sql(sqlite: bool, rows: usize) -> String {
    let mut sql = String::from(
        "insert into audit_events (id, org_id, actor_id, pat_id, action, target, outcome, ip, user_agent, detail, \
         created_at, updated_at) values ",
    );
    for i in 0..rows {
        let b = i * PER_ROW;
        if i > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> =
            (1..=PER_ROW).map(|n| if sqlite { "?".to_owned() } else { format!("${}", b + n) }).collect();
        sql.push_str(&format!("({})", params.join(", ")));
    }
    sql
}

/// One audit event as the API shows it: ids, and the names they had when listed.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub org_id: Option<String>,
    /// The org's slug, when the event belongs to an org.
    pub org_slug: Option<String>,
    pub actor_id: Option<String>,
    /// The acting user's username.
    pub actor_username: Option<String>,
    pub pat_id: Option<String>,
    /// The PAT's name (a paired device's name), when a PAT acted.
    pub pat_name: Option<String>,
    /// `token` or `device`, when a PAT acted.
    pub pat_kind: Option<String>,
    pub action: String,
    pub target: Option<String>,
    /// What `target` names, in words: a member's username, a connection's connector key,
    /// an org's slug; null when `target` is already a name (a connector key, a provider)
    /// or names something that is gone.
    pub target_name: Option<String>,
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
    actor_username: Option<String>,
    pat_id: Option<String>,
    pat_name: Option<String>,
    pat_kind: Option<String>,
    action: String,
    target: Option<String>,
    target_name: Option<String>,
    outcome: String,
    ip: Option<String>,
    user_agent: Option<String>,
    detail: Option<String>,
    created_at: i64,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        let detail: Option<serde_json::Value> = r.detail.and_then(|d| serde_json::from_str(&d).ok());
        // A disconnected connection's row is gone; its event kept the connector's key.
        let target_name = r
            .target_name
            .or_else(|| detail.as_ref().and_then(|d| d.get("connector")).and_then(|c| c.as_str()).map(str::to_owned));
        AuditEntry {
            id: r.id,
            org_id: r.org_id,
            org_slug: r.org_slug,
            actor_id: r.actor_id,
            actor_username: r.actor_username,
            pat_id: r.pat_id,
            pat_name: r.pat_name,
            pat_kind: r.pat_kind,
            action: r.action,
            target: r.target,
            target_name,
            outcome: r.outcome,
            ip: r.ip,
            user_agent: r.user_agent,
            detail,
            created_at: crate::store::rfc3339(r.created_at),
        }
    }
}

/// The most events one listing returns.
pub const LIST_MAX: i64 = 1000;

/// Which events to list, within the caller's scope. Empty fields do not filter.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// The actor: a user id or a username.
    pub actor: Option<String>,
    /// An action exactly (`org.join`), or every action under a prefix ending in `.`
    /// (`connection.`).
    pub action: Option<String>,
    /// Events at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Events at or before this time (Unix seconds).
    pub until: Option<i64>,
    /// Events older than this event (its id): the next page.
    pub before: Option<String>,
    /// Events newer than this event (its id): the previous page.
    pub after: Option<String>,
    /// At most this many (1 to [`LIST_MAX`]).
    pub limit: i64,
}

/// One page of events, newest first.
#[derive(Debug)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// More events lie beyond this page in the direction it was read (older for a first
    /// page or `before`, newer for `after`).
    pub more: bool,
}

/// A parameter of the listing's query.
enum Value {
    Text(String),
    Int(i64),
}

/// Reads an RFC 3339 time (`since`, `until`) as Unix seconds.
pub fn parse_time(field: &str, value: &str) -> Result<i64> {
    time::OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc3339)
        .map(time::OffsetDateTime::unix_timestamp)
        .map_err(|_| crate::error::Error::bad_request(format!("{field}: an RFC 3339 time, like 2026-11-23T20:15:00Z")))
}

/// Newest first: a user's own events (`by_actor`), an org's (`by_org`), or a user's own
/// in one org (both: what a PAT bound to that org may see of its user's).
pub async fn list(store: &Store, by_actor: Option<&str>, by_org: Option<&str>, filter: &Filter) -> Result<AuditPage> {
    use crate::error::Error;
    let mut clauses: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    // `?` in a clause is its one parameter, numbered in order.
    fn push(clauses: &mut Vec<String>, values: &mut Vec<Value>, clause: &str, value: Value) {
        values.push(value);
        clauses.push(clause.replace('?', &format!("${}", values.len())));
    }
    match (by_actor, by_org) {
        (None, None) => return Ok(AuditPage { entries: Vec::new(), more: false }),
        (a, o) => {
            if let Some(a) = a {
                push(&mut clauses, &mut values, "a.actor_id = ?", Value::Text(a.to_owned()));
            }
            if let Some(o) = o {
                push(&mut clauses, &mut values, "a.org_id = ?", Value::Text(o.to_owned()));
            }
        }
    }
    if let Some(actor) = filter.actor.as_deref() {
        values.push(Value::Text(actor.to_owned()));
        let n = values.len();
        clauses.push(format!("(a.actor_id = ${n} or au.username = ${n})"));
    }
    if let Some(action) = filter.action.as_deref() {
        if action.len() > 100 {
            return Err(Error::bad_request("action: at most 100 characters"));
        }
        if action.ends_with('.') {
            let escaped = action.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            push(&mut clauses, &mut values, "a.action like ? escape '\\'", Value::Text(format!("{escaped}%")));
        } else {
            push(&mut clauses, &mut values, "a.action = ?", Value::Text(action.to_owned()));
        }
    }
    if let Some(since) = filter.since {
        push(&mut clauses, &mut values, "a.created_at >= ?", Value::Int(since));
    }
    if let Some(until) = filter.until {
        push(&mut clauses, &mut values, "a.created_at <= ?", Value::Int(until));
    }
    let newer = filter.before.is_none() && filter.after.is_some();
    for (cursor, op) in [(filter.before.as_deref(), "<"), (filter.after.as_deref(), ">")] {
        let Some(cursor) = cursor else { continue };
        let at: Option<i64> = sqlx::query_scalar("select created_at from audit_events where id = $1")
            .bind(cursor)
            .fetch_optional(store.pool())
            .await?;
        let at = at.ok_or_else(|| Error::bad_request("before/after: no such event; start again from the newest"))?;
        values.push(Value::Int(at));
        values.push(Value::Text(cursor.to_owned()));
        let (t, id) = (values.len() - 1, values.len());
        clauses.push(format!("(a.created_at {op} ${t} or (a.created_at = ${t} and a.id {op} ${id}))"));
    }
    let limit = filter.limit.clamp(1, LIST_MAX);
    let order = if newer { "a.created_at asc, a.id asc" } else { "a.created_at desc, a.id desc" };
    let sql = format!(
        "select a.id, a.org_id, o.slug as org_slug, a.actor_id, au.username as actor_username, a.pat_id, \
         p.name as pat_name, p.kind as pat_kind, a.action, a.target, coalesce(tu.username, tc.connector_key, tg.slug) as target_name, a.outcome, a.ip, a.user_agent, \
         a.detail, a.created_at from audit_events a \
         left join pats p on p.id = a.pat_id \
         left join orgs o on o.id = a.org_id \
         left join users au on au.id = a.actor_id \
         left join users tu on tu.id = a.target \
         left join connections tc on tc.id = a.target \
         left join orgs tg on tg.id = a.target \
         where {} order by {order} limit {}",
        clauses.join(" and "),
        limit + 1
    );
    let mut query = sqlx::query_as::<_, AuditRow>(&sql);
    for value in values {
        query = match value {
            Value::Text(t) => query.bind(t),
            Value::Int(i) => query.bind(i),
        };
    }
    let mut rows = query.fetch_all(store.pool()).await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    if newer {
        rows.reverse();
    }
    Ok(AuditPage { entries: rows.into_iter().map(AuditEntry::from).collect(), more })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn batch_inserts_number_their_parameters_in_order() {
        let two = build_insert_sql(false, 2);
        assert!(two.ends_with("values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12), ($13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"), "{two}");
        let one = build_insert_sql(true, 1);
        assert!(one.ends_with("values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"), "{one}");
        assert_eq!(insert_sql(false, CHUNK).matches('(').count(), CHUNK + 1);
        assert_eq!(insert_sql(true, CHUNK).matches('?').count(), CHUNK * PER_ROW);
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
        let (writer, task) = AuditWriter::start(store.clone(), 1, Arc::default());
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
