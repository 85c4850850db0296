//! The local SQLite store (`latchkey.db` in the data dir): synced events, the cursor an
//! unfinished walk resumes from, and a record of sync runs.
//!
//! A page of events and the cursor after it are committed in one transaction, with
//! `insert … on conflict do nothing`, so a crash loses nothing and a re-run adds nothing.
//! Nothing here talks to a network; the data stays on this machine.

use crate::connectors::Event;
use crate::error::{Error, Result};
use futures_util::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;

/// The database file's name in the data dir.
pub const FILE_NAME: &str = "latchkey.db";
/// Rows per `insert` statement (a page of the sandbox, the largest page of any connector):
/// 5 parameters each, well under the 32,766 of the SQLite that sqlx bundles (3.46).
const ROWS_PER_INSERT: usize = 500;

/// `t` as fixed-width RFC 3339 UTC with milliseconds: text order is time order.
pub fn fixed_utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let Ok(year) = u16::try_from(t.year()) else {
        return format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        );
    };
    // Digits written by hand: `format!` was a tenth of a sync's instructions (one per event).
    let mut text = String::with_capacity(24);
    let mut push = |value: u16, width: u32, then: Option<char>| {
        for place in (0..width).rev() {
            text.push(char::from(b'0' + (value / 10u16.pow(place) % 10) as u8));
        }
        if let Some(c) = then {
            text.push(c);
        }
    };
    push(year, 4, Some('-'));
    push(u16::from(u8::from(t.month())), 2, Some('-'));
    push(u16::from(t.day()), 2, Some('T'));
    push(u16::from(t.hour()), 2, Some(':'));
    push(u16::from(t.minute()), 2, Some(':'));
    push(u16::from(t.second()), 2, Some('.'));
    push(t.millisecond(), 3, Some('Z'));
    text
}

/// `insert` of `rows` events, five anonymous parameters per row. The same text for the
/// same count, so sqlx's statement cache prepares it once per connection. (Numbered
/// parameters, binding the connector and time once, cost more: sqlx looks each one up by
/// name, which SQLite does by walking a list.)
fn insert_sql(rows: usize) -> std::borrow::Cow<'static, str> {
    static FULL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if rows == ROWS_PER_INSERT {
        return FULL.get_or_init(|| build_insert_sql(rows)).as_str().into();
    }
    build_insert_sql(rows).into()
}

fn build_insert_sql(rows: usize) -> String {
    let mut sql = String::from("insert into events (connector, external_id, occurred_at, payload, synced_at) values ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(?, ?, ?, ?, ?)" } else { ", (?, ?, ?, ?, ?)" });
    }
    sql.push_str(" on conflict (connector, external_id) do nothing");
    sql
}

fn now() -> String {
    fixed_utc(OffsetDateTime::now_utc())
}

/// How a sync run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Completed,
    Failed,
    Interrupted,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// A row of `sync_runs`.
#[derive(Clone, Debug)]
pub struct SyncRun {
    pub id: i64,
    pub connector: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub items_added: i64,
    pub error: Option<String>,
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub connector: String,
    pub external_id: String,
    pub occurred_at: Option<String>,
    pub payload: String,
    pub synced_at: String,
}

/// Which events `latchkey events` lists.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub connector: Option<String>,
    /// Inclusive, fixed-width UTC.
    pub since: Option<String>,
    /// Exclusive, fixed-width UTC.
    pub until: Option<String>,
    pub limit: Option<u64>,
}

/// The local database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// Opens (creating it, readable by the owner only) and migrates `path`.
    pub async fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            crate::pat_store::create_private_dir(dir)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|source| Error::Store { path: path.to_path_buf(), source })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Synced data is personal. SQLite gives -wal and -shm the same mode.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        sqlx::migrate!("../migrations/agent-sqlite")
            .run(&pool)
            .await
            .map_err(|source| Error::Migrate { path: path.to_path_buf(), source })?;
        Ok(Store { pool, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: sqlx::Error) -> Error {
        Error::Store { path: self.path.clone(), source }
    }

    /// Stores a page of events and the cursor after it in one transaction; `next_cursor`
    /// `None` (the walk is finished) clears the cursor. Returns how many events were new.
    pub async fn commit_page(&self, connector: &str, events: &[Event], next_cursor: Option<&str>) -> Result<u64> {
        let synced_at = now();
        let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
        let mut added = 0;
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let sql = insert_sql(chunk.len());
            let mut insert = sqlx::query(&sql);
            for e in chunk {
                insert =
                    insert.bind(connector).bind(&e.external_id).bind(&e.occurred_at).bind(&e.payload).bind(&synced_at);
            }
            added += insert.execute(&mut *tx).await.map_err(|e| self.err(e))?.rows_affected();
        }
        match next_cursor {
            Some(cursor) => sqlx::query(
                "insert into cursors (connector, cursor, updated_at) values (?1, ?2, ?3) \
                 on conflict (connector) do update set cursor = excluded.cursor, updated_at = excluded.updated_at",
            )
            .bind(connector)
            .bind(cursor)
            .bind(&synced_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?,
            None => sqlx::query("delete from cursors where connector = ?1")
                .bind(connector)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?,
        };
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(added)
    }

    /// Where an unfinished walk of `connector` resumes.
    pub async fn resume_cursor(&self, connector: &str) -> Result<Option<String>> {
        sqlx::query_scalar("select cursor from cursors where connector = ?1")
            .bind(connector)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    /// Forgets the resume cursor: the next sync starts from the newest.
    pub async fn clear_cursor(&self, connector: &str) -> Result<()> {
        sqlx::query("delete from cursors where connector = ?1")
            .bind(connector)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Records the start of a sync run. Runs of `connector` still marked running were cut
    /// off (a crash or a kill) and are marked interrupted.
    pub async fn start_run(&self, connector: &str) -> Result<i64> {
        let now = now();
        sqlx::query(
            "update sync_runs set status = 'interrupted', finished_at = ?2, error = 'the agent stopped during this run' \
             where connector = ?1 and status = 'running'",
        )
        .bind(connector)
        .bind(&now)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let id = sqlx::query("insert into sync_runs (connector, started_at, status) values (?1, ?2, 'running')")
            .bind(connector)
            .bind(&now)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?
            .last_insert_rowid();
        Ok(id)
    }

    /// Records how a sync run ended.
    pub async fn finish_run(&self, id: i64, status: RunStatus, items_added: u64, error: Option<&str>) -> Result<()> {
        sqlx::query("update sync_runs set finished_at = ?2, status = ?3, items_added = ?4, error = ?5 where id = ?1")
            .bind(id)
            .bind(now())
            .bind(status.as_str())
            .bind(i64::try_from(items_added).unwrap_or(i64::MAX))
            .bind(error)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Whether some run of `connector` walked to the end.
    pub async fn has_completed_run(&self, connector: &str) -> Result<bool> {
        sqlx::query_scalar("select exists (select 1 from sync_runs where connector = ?1 and status = 'completed')")
            .bind(connector)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    /// The latest run of `connector`.
    pub async fn last_run(&self, connector: &str) -> Result<Option<SyncRun>> {
        let row = sqlx::query(
            "select id, connector, started_at, finished_at, status, items_added, error from sync_runs \
             where connector = ?1 order by id desc limit 1",
        )
        .bind(connector)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        row.map(|r| {
            Ok(SyncRun {
                id: r.try_get("id")?,
                connector: r.try_get("connector")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
                status: r.try_get("status")?,
                items_added: r.try_get("items_added")?,
                error: r.try_get("error")?,
            })
        })
        .transpose()
        .map_err(|e| self.err(e))
    }

    /// How many events of `connector` are stored.
    pub async fn count(&self, connector: &str) -> Result<i64> {
        sqlx::query_scalar("select count(*) from events where connector = ?1")
            .bind(connector)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))
    }

    /// Calls `each` for the events `filter` selects, newest first (events without a time
    /// last); returns how many there were. Rows stream: memory stays flat.
    pub async fn for_each_event(
        &self,
        filter: &EventFilter,
        mut each: impl FnMut(StoredEvent) -> Result<()>,
    ) -> Result<u64> {
        let limit = filter.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut rows = sqlx::query(
            "select connector, external_id, occurred_at, payload, synced_at from events \
             where (?1 is null or connector = ?1) and (?2 is null or occurred_at >= ?2) and (?3 is null or occurred_at < ?3) \
             order by occurred_at desc, rowid desc limit ?4",
        )
        .bind(&filter.connector)
        .bind(&filter.since)
        .bind(&filter.until)
        .bind(limit)
        .fetch(&self.pool);
        let mut n = 0;
        while let Some(row) = rows.try_next().await.map_err(|e| self.err(e))? {
            let event = StoredEvent {
                connector: row.try_get("connector").map_err(|e| self.err(e))?,
                external_id: row.try_get("external_id").map_err(|e| self.err(e))?,
                occurred_at: row.try_get("occurred_at").map_err(|e| self.err(e))?,
                payload: row.try_get("payload").map_err(|e| self.err(e))?,
                synced_at: row.try_get("synced_at").map_err(|e| self.err(e))?,
            };
            each(event)?;
            n += 1;
        }
        Ok(n)
    }

    /// Closes the pool (flushing the WAL's last checkpoint where it can).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: usize, at: Option<&str>) -> Event {
        Event { external_id: format!("e{id:04}"), occurred_at: at.map(Into::into), payload: format!("{{\"n\":{id}}}") }
    }

    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&dir.path().join("data").join(FILE_NAME)).await.unwrap_or_else(|e| panic!("{e}"));
        (dir, store)
    }

    async fn all(store: &Store, filter: &EventFilter) -> Vec<StoredEvent> {
        let mut out = Vec::new();
        store
            .for_each_event(filter, |e| {
                out.push(e);
                Ok(())
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        out
    }

    #[tokio::test]
    async fn pages_are_idempotent_and_carry_their_cursor() {
        let (_dir, store) = temp_store().await;
        let page: Vec<Event> = (0..400).map(|i| event(i, None)).collect();
        assert_eq!(store.commit_page("a", &page, Some("c1")).await.unwrap_or(0), 400);
        assert_eq!(store.resume_cursor("a").await.unwrap_or_default().as_deref(), Some("c1"));
        // The same page again adds nothing; overlapping pages add only the new part.
        assert_eq!(store.commit_page("a", &page, Some("c2")).await.unwrap_or(99), 0);
        let overlap: Vec<Event> = (300..500).map(|i| event(i, None)).collect();
        assert_eq!(store.commit_page("a", &overlap, Some("c3")).await.unwrap_or(0), 100);
        assert_eq!(store.count("a").await.unwrap_or(0), 500);
        // The same ids under another connector are other events.
        assert_eq!(store.commit_page("b", &page[..10], None).await.unwrap_or(0), 10);
        assert_eq!(store.count("a").await.unwrap_or(0), 500);
        // The last page clears the cursor.
        assert_eq!(store.commit_page("a", &[], None).await.unwrap_or(99), 0);
        assert_eq!(store.resume_cursor("a").await.unwrap_or_default(), None);
        store.close().await;
    }

    #[tokio::test]
    async fn a_crash_resumes_at_the_committed_cursor() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join(FILE_NAME);
        {
            let store = Store::open(&path).await.unwrap_or_else(|e| panic!("{e}"));
            let run = store.start_run("a").await.unwrap_or_else(|e| panic!("{e}"));
            let first: Vec<Event> = (0..10).map(|i| event(i, None)).collect();
            store.commit_page("a", &first, Some("page-2")).await.unwrap_or_else(|e| panic!("{e}"));
            // A transaction that never commits (the process dies mid-page) leaves nothing.
            let mut tx = store.pool.begin().await.unwrap_or_else(|e| panic!("{e}"));
            sqlx::query(
                "insert into events (connector, external_id, payload, synced_at) values ('a', 'torn', '{}', 'x')",
            )
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            sqlx::query("update cursors set cursor = 'page-3'")
                .execute(&mut *tx)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            drop(tx);
            store.close().await;
            let _ = run;
        }
        let store = Store::open(&path).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.resume_cursor("a").await.unwrap_or_default().as_deref(), Some("page-2"));
        assert_eq!(store.count("a").await.unwrap_or(0), 10);
        // The cut-off run is marked interrupted when the next starts.
        let next = store.start_run("a").await.unwrap_or_else(|e| panic!("{e}"));
        let runs: Vec<(i64, String)> = sqlx::query_as("select id, status from sync_runs order by id")
            .fetch_all(&store.pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(runs, [(1, "interrupted".to_owned()), (next, "running".to_owned())]);
        assert!(!store.has_completed_run("a").await.unwrap_or(true));
        store.finish_run(next, RunStatus::Completed, 10, None).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(store.has_completed_run("a").await.unwrap_or(false));
        let last = store.last_run("a").await.unwrap_or_default().unwrap_or_else(|| panic!("a run"));
        assert_eq!((last.status.as_str(), last.items_added, last.finished_at.is_some()), ("completed", 10, true));
        assert!(store.last_run("zzz").await.unwrap_or_default().is_none());
    }

    #[tokio::test]
    async fn events_filter_and_order() {
        let (_dir, store) = temp_store().await;
        let events = vec![
            event(1, Some("2024-01-01T00:00:00.000Z")),
            event(2, Some("2024-01-03T00:00:00.000Z")),
            event(3, None),
            event(4, Some("2024-01-02T00:00:00.000Z")),
        ];
        store.commit_page("a", &events, None).await.unwrap_or_else(|e| panic!("{e}"));
        store
            .commit_page("b", &[event(9, Some("2024-01-05T00:00:00.000Z"))], None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let ids = |v: Vec<StoredEvent>| v.into_iter().map(|e| e.external_id).collect::<Vec<_>>();
        let only_a = EventFilter { connector: Some("a".into()), ..Default::default() };
        assert_eq!(ids(all(&store, &only_a).await), ["e0002", "e0004", "e0001", "e0003"]);
        let window = EventFilter {
            since: Some("2024-01-02T00:00:00.000Z".into()),
            until: Some("2024-01-05T00:00:00.000Z".into()),
            ..Default::default()
        };
        assert_eq!(ids(all(&store, &window).await), ["e0002", "e0004"]);
        let limited = EventFilter { limit: Some(2), ..Default::default() };
        assert_eq!(ids(all(&store, &limited).await), ["e0009", "e0002"]);
        let stored = all(&store, &EventFilter { connector: Some("b".into()), ..Default::default() }).await;
        assert_eq!(stored[0].payload, "{\"n\":9}");
        assert!(stored[0].synced_at.ends_with('Z'));
    }

    #[tokio::test]
    async fn the_database_is_private() {
        let (dir, store) = temp_store().await;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path()).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            assert_eq!(mode, 0o600);
        }
        drop(dir);
    }

    #[test]
    fn fixed_width_times() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fixed_utc(t), "2023-11-14T22:13:20.000Z");
        let t = time::macros::datetime!(0005-03-04 05:06:07.089 +01:30);
        assert_eq!(fixed_utc(t), "0005-03-04T03:36:07.089Z");
        let t = time::macros::datetime!(-0001-12-31 23:59:59.999 UTC);
        assert_eq!(fixed_utc(t), "-001-12-31T23:59:59.999Z");
    }

    #[test]
    fn insert_statements() {
        assert_eq!(
            insert_sql(2),
            "insert into events (connector, external_id, occurred_at, payload, synced_at) values \
             (?, ?, ?, ?, ?), (?, ?, ?, ?, ?) on conflict (connector, external_id) do nothing"
        );
        assert_eq!(insert_sql(ROWS_PER_INSERT).matches('?').count(), 5 * ROWS_PER_INSERT);
    }
}
