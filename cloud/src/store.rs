//! The storage seam: one `Store` over SQLite (embedded default) or PostgreSQL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver: ids are UUID text, times
//! are unix seconds, booleans are 0/1 integers, and placeholders are `$n` (SQLite
//! understands them too). Where the dialects differ, `Backend` says which one we have.
//! Nothing that replicas must share lives in process memory; it lives here.
//!
//! The pool is built to ride out a database that goes away: a request waits at most
//! `acquire_timeout` for a connection (then answers 503, see `error::db_unavailable`), a
//! connection that failed a query is closed when it goes back (sqlx pings it on release),
//! and one that sat idle is pinged before use, so after an outage every replica serves
//! again on fresh connections without a restart.

use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::{AnyPool, Connection, Executor};
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

/// How the pool behaves; from the configuration (`Config::pool_settings`).
#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a caller waits for a connection before `PoolTimedOut`.
    pub acquire_timeout: Duration,
    /// SQLite only: how long a write waits for another writer's lock before `SQLITE_BUSY`.
    pub sqlite_busy_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(1),
            sqlite_busy_timeout: Duration::from_secs(10),
        }
    }
}

/// A connection idle longer than this is pinged before it is handed out: it may have died
/// with a database restart meanwhile. Busy connections skip the round trip.
/// How long start-up waits for a database that is not answering yet: a replica started
/// beside its database (compose, a Kubernetes rollout) or on a machine busy enough that
/// opening a connection outlasts the request-time `acquire_timeout`.
const STARTUP_WAIT: Duration = Duration::from_secs(30);

/// Opens the pool's first connection, retrying while the database is unreachable or slow
/// (up to [`STARTUP_WAIT`]); a wrong URL, password or database name fails at once.
async fn first_connection(pool: &AnyPool, backend: Backend) -> Result<(), sqlx::Error> {
    let started = std::time::Instant::now();
    loop {
        match pool.acquire().await {
            Ok(_) => return Ok(()),
            Err(e @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_))) if started.elapsed() < STARTUP_WAIT => {
                tracing::warn!(error = %e, "the {} database is not answering yet; retrying", backend.name());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The longest `/readyz` waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// What the pool holds now, for the metrics.
#[derive(Clone, Copy, Debug)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

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
    pub async fn connect(url: &str, settings: &PoolSettings) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        // No ping before every acquire (sqlx's default): on PostgreSQL it was a second
        // round trip per request, on SQLite a trip through the worker thread. Only a
        // connection idle for a while is pinged; one that died under a query is dropped.
        let mut options = AnyPoolOptions::new()
            .acquire_timeout(settings.acquire_timeout)
            .max_connections(settings.max_connections)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_IDLE_AFTER {
                        // An error here makes the pool drop this one and open another.
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            });
        if backend == Backend::Sqlite {
            if let Some(parent) = sqlite_file(url).and_then(|p| p.parent().map(Path::to_path_buf)) {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(&parent)
                        .map_err(|source| StoreError::DataDir { path: parent.display().to_string(), source })?;
                }
            }
            // WAL lets readers run beside the one writer; the busy timeout makes writers
            // queue instead of failing (up to a bound, then 503); foreign keys are off by
            // default in SQLite.
            let pragmas = format!(
                "pragma journal_mode = wal; pragma synchronous = normal; \
                 pragma busy_timeout = {}; pragma foreign_keys = on;",
                settings.sqlite_busy_timeout.as_millis()
            );
            options = options.after_connect(move |conn, _meta| {
                let pragmas = pragmas.clone();
                Box::pin(async move {
                    conn.execute(pragmas.as_str()).await?;
                    Ok(())
                })
            });
        }
        let connect_error = |source| StoreError::Connect { backend: backend.name(), source };
        let pool = options.connect_lazy(url).map_err(connect_error)?;
        first_connection(&pool, backend).await.map_err(connect_error)?;
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

    /// `/readyz`: can we run a query right now? Bounded: a database that does not answer
    /// within a second is as good as down to a load balancer.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match tokio::time::timeout(PING_TIMEOUT, sqlx::query("select 1").execute(&self.pool)).await {
            Ok(answer) => answer.map(|_: AnyQueryResult| ()),
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the database did not answer within a second",
            ))),
        }
    }

    /// Connections in use and idle, and the most there may be.
    pub fn stats(&self) -> PoolStats {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        PoolStats {
            in_use: self.pool.size().saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections(),
        }
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
