//! Throwaway databases on both backends.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs the body once per backend: `backend_tests!(story_a, story_b)` makes
/// `sqlite::story_a`, `postgres::story_a`, … that call `story_a(Backend::…)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::skip_postgres() {
                        return;
                    }
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Whether the developer asked to skip PostgreSQL (never under CI).
pub fn skip_postgres() -> bool {
    let asked = std::env::var("LATCHKEY_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1");
    if asked && std::env::var_os("CI").is_none() {
        eprintln!("SKIPPING a PostgreSQL test because LATCHKEY_TEST_SKIP_POSTGRES=1");
        return true;
    }
    false
}

fn pg_admin_url() -> String {
    std::env::var("LATCHKEY_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("latchkey.db").display());
                TestDb { backend, url, dir, pg_name: None }
            }
            Backend::Postgres => {
                let name = format!("latchkey_test_{}", uuid::Uuid::new_v4().simple());
                let admin = pg_admin_url();
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is required for these tests and is not reachable at {admin}: {e}\n\
                         Start it (`bash .ci/run` does), or point LATCHKEY_TEST_PG_URL at one."
                    )
                });
                sqlx::query(&format!("create database {name}")).execute(&mut conn).await.expect("create database");
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin);
                TestDb { backend, url: format!("{base}/{name}"), dir, pg_name: Some(name) }
            }
        }
    }

    /// One number the database holds (`select count(*) …`), read over a connection of
    /// the test's own.
    pub async fn count(&self, sql: &str) -> i64 {
        let raw = self.raw().await;
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&raw).await.expect("count");
        raw.close().await;
        n
    }

    /// Rows of every table (and live sessions), to show that a refused request changed
    /// nothing. Rate-limit counters are left out: refusals are allowed to count.
    pub async fn snapshot(&self) -> Vec<(String, i64)> {
        let raw = self.raw().await;
        let list = match self.backend {
            Backend::Sqlite => {
                "select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name"
            }
            Backend::Postgres => "select tablename::text from pg_tables where schemaname = 'public' order by tablename",
        };
        let tables: Vec<String> = sqlx::query_scalar(list).fetch_all(&raw).await.expect("tables");
        let mut counts = Vec::new();
        for table in tables.into_iter().filter(|t| !t.starts_with("_sqlx") && !t.contains("rate_limit")) {
            let n: i64 =
                sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(&raw).await.expect("count");
            counts.push((table, n));
        }
        let live: i64 = sqlx::query_scalar("select count(*) from sessions where revoked_at is null")
            .fetch_one(&raw)
            .await
            .expect("sessions");
        counts.push(("live sessions".to_owned(), live));
        raw.close().await;
        counts
    }

    /// A database this struct does not own (e.g. an [`crate::OwnPg`]'s): not dropped after.
    pub fn at(backend: Backend, url: String) -> Self {
        TestDb { backend, url, dir: tempfile::tempdir().expect("temp dir"), pg_name: None }
    }

    /// Raw SQL access, for tests that check what is really stored.
    pub async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new().max_connections(2).connect(&self.url).await.expect("raw pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = pg_admin_url();
        // Drop runs outside any runtime we may block; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await {
                    let _ =
                        sqlx::query(&format!("drop database if exists {name} with (force)")).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}
