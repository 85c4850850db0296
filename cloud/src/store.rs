//! The storage seam: one `Store` over SQLite (embedded default) or PostgreSQL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver: ids are UUID text, times
//! are unix seconds, booleans are 0/1 integers, and placeholders are `$n` (SQLite
//! understands them too). Where the dialects differ, `Backend` says which one we have.
//! Nothing that replicas must share lives in process memory; it lives here.

use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::{AnyPool, Executor};
use std::path::Path;
use std::time::Duration;

/// Which database is behind the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/cloud-sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/cloud-postgres");

/// Errors opening or migrating the database, worded for an operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported DATABASE_URL scheme (use postgres://… or sqlite://…)")]
    UnsupportedUrl,
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot connect to the {backend} database: {source}")]
    Connect { backend: &'static str, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl Store {
    /// The embedded default: `latchkey.db` in the data directory.
    pub fn sqlite_url_for(data_dir: &Path) -> String {
        format!("sqlite://{}?mode=rwc", data_dir.join("latchkey.db").display())
    }

    /// Opens a pool. For SQLite, creates the data directory first.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        // No ping before each acquire (sqlx's default): on PostgreSQL it was a second
        // round trip per request, on SQLite a trip through the worker thread. A connection
        // that died is found by the query that uses it.
        let mut options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(max_connections)
            .test_before_acquire(false);
        if backend == Backend::Sqlite {
            if let Some(parent) = sqlite_file(url).and_then(|p| p.parent().map(Path::to_path_buf)) {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(&parent)
                        .map_err(|source| StoreError::DataDir { path: parent.display().to_string(), source })?;
                }
            }
            // WAL lets readers run beside the one writer; the busy timeout makes writers
            // queue instead of failing; foreign keys are off by default in SQLite.
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "pragma journal_mode = wal; pragma synchronous = normal; \
                         pragma busy_timeout = 10000; pragma foreign_keys = on;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool =
            options.connect(url).await.map_err(|source| StoreError::Connect { backend: backend.name(), source })?;
        Ok(Self { pool, backend })
    }

    /// Runs the pending migrations of this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `/readyz`: can we run a query right now?
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("select 1").execute(&self.pool).await.map(|_: AnyQueryResult| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(std::path::PathBuf::from(path))
    }
}

/// Current time, unix seconds: the one clock every stored time uses.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A new row id: UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// RFC 3339 UTC for a stored time.
pub fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Which unique constraint a failed insert hit, if any. PostgreSQL names the constraint;
/// SQLite names the columns ("UNIQUE constraint failed: users.email"), so callers pass
/// both and we match either.
pub fn unique_violation(err: &sqlx::Error) -> Option<String> {
    let db = err.as_database_error()?;
    if !db.is_unique_violation() {
        return None;
    }
    Some(db.constraint().map(str::to_owned).unwrap_or_else(|| db.message().to_owned()))
}
