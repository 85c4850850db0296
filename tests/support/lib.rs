//! Test support: throwaway databases on both backends, the cloud started in-process on a
//! real loopback listener or as a real `latchkey-cloud` process, and a small HTTP client
//! that does not follow redirects.
//!
//! PostgreSQL is required: when it is unreachable the PostgreSQL tests fail with a
//! message that says how to start it. `LATCHKEY_TEST_SKIP_POSTGRES=1` skips them on a
//! developer machine, and is ignored when `CI` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod chrome;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

pub use serde_json::json;

/// A fixed master key for tests (base64 of 32 bytes).
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=";

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

/// Settings a test may change before starting a cloud.
#[derive(Clone, Debug, Default)]
pub struct CloudOptions {
    pub env: Vec<(String, String)>,
}

/// A cloud serving in this process on a loopback port.
pub struct Cloud {
    pub base: String,
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cloud {
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Starts with a config adjusted by `tweak`.
    pub async fn start_with(db: &TestDb, tweak: impl FnOnce(&mut latchkey_cloud::config::Config)) -> Self {
        Self::start_on(db, 0, tweak).await
    }

    /// Starts on a given port (0: any), for when the public URL must be known first.
    pub async fn start_on(db: &TestDb, port: u16, tweak: impl FnOnce(&mut latchkey_cloud::config::Config)) -> Self {
        // The cloud's logs, shown with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ))
            .with_test_writer()
            .try_init();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = latchkey_cloud::config::Config {
            listen: addr,
            data_dir: db.dir.path().to_path_buf(),
            database_url: Some(db.url.clone()),
            master_key: Some(TEST_MASTER_KEY.into()),
            database_max_connections: 8,
            ..Default::default()
        };
        tweak(&mut config);
        let state = latchkey_cloud::server::build_state(config).await.expect("cloud state");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = latchkey_cloud::server::serve(state, listener, async move {
                let _ = rx.await;
            })
            .await;
        });
        Cloud { base: format!("http://{addr}"), addr, shutdown: Some(tx), task: Some(task) }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Path of a workspace binary built next to this test binary.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // Test binaries live in target/<profile>/deps, programs in target/<profile>.
    let dir = exe.parent().expect("exe dir");
    let dir = if dir.ends_with("deps") { dir.parent().expect("target dir") } else { dir };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; run the suite with `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// A `latchkey-cloud` command against the test database (for `migrate`, `keys …`).
pub fn cloud_command(db: &TestDb, extra_env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(binary("latchkey-cloud"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LATCHKEY_DATA_DIR", db.dir.path())
        .env("DATABASE_URL", &db.url)
        .env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
        .env("RUST_LOG", "warn");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd
}

/// A real `latchkey-cloud` process.
pub struct CloudProcess {
    pub base: String,
    child: Child,
    pub log: PathBuf,
}

impl CloudProcess {
    pub async fn spawn(db: &TestDb, extra_env: &[(&str, &str)]) -> Self {
        Self::try_spawn(db, extra_env)
            .await
            .unwrap_or_else(|log| panic!("latchkey-cloud did not become ready; log:\n{log}"))
    }

    /// Starts a process; `Err` carries its log when it exits or never becomes ready.
    pub async fn try_spawn(db: &TestDb, extra_env: &[(&str, &str)]) -> Result<Self, String> {
        Self::try_spawn_on(db, free_port(), extra_env).await
    }

    /// Starts a process on a given port (when the public URL must be known before).
    pub async fn spawn_on(db: &TestDb, port: u16, extra_env: &[(&str, &str)]) -> Self {
        Self::try_spawn_on(db, port, extra_env)
            .await
            .unwrap_or_else(|log| panic!("latchkey-cloud did not become ready; log:\n{log}"))
    }

    async fn try_spawn_on(db: &TestDb, port: u16, extra_env: &[(&str, &str)]) -> Result<Self, String> {
        let log = db.dir.path().join(format!("cloud-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = std::process::Command::new(binary("latchkey-cloud"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LATCHKEY_LISTEN", format!("127.0.0.1:{port}"))
            .env("LATCHKEY_DATA_DIR", db.dir.path())
            .env("DATABASE_URL", &db.url)
            .env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn latchkey-cloud");
        let mut proc = CloudProcess { base: format!("http://127.0.0.1:{port}"), child, log };
        if proc.wait_ready().await {
            Ok(proc)
        } else {
            Err(proc.log_text())
        }
    }

    async fn wait_ready(&mut self) -> bool {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return true;
                }
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies mid-whatever, as a crashed replica does.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for CloudProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A response as a test reads it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the contract's error shape and code, and returns the description.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        let body = self.json();
        assert_eq!(body["error"], code, "unexpected error code; body: {}", self.text);
        let description = body["error_description"].as_str().expect("error_description is a string");
        assert!(!description.is_empty());
        description.to_owned()
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        if self.text.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

/// A tiny client for the cloud's API that never follows redirects.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Api { base: base.to_owned(), client }
    }

    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::read(req).await
    }

    pub async fn read(req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Reply { status, headers, text }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::DELETE, path, token, None).await
    }

    /// Registers and logs in a user named `name`.
    pub async fn user(&self, name: &str) -> User {
        let email = format!("{name}@example.test");
        let password = format!("{name} rides a purple bicycle to the lighthouse");
        let reg =
            self.post("/v1/auth/register", None, json!({"email": email, "username": name, "password": password})).await;
        let id = reg.ok(201)["id"].as_str().expect("id").to_owned();
        let login = self.post("/v1/auth/login", None, json!({"email": email, "password": password})).await.ok(200);
        User {
            id,
            email,
            password,
            access: login["access_token"].as_str().expect("access").to_owned(),
            refresh: login["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    }

    /// Creates an org owned by `owner`.
    pub async fn org(&self, owner: &User, slug: &str, visibility: &str) -> Value {
        self.post("/v1/orgs", Some(&owner.access), json!({"slug": slug, "name": slug, "visibility": visibility}))
            .await
            .ok(201)
    }

    /// Creates a PAT for `user` with `scopes`; returns (id, token).
    pub async fn pat(&self, user: &User, scopes: &[&str]) -> (String, String) {
        let body = self.post("/v1/tokens", Some(&user.access), json!({"name": "test", "scopes": scopes})).await.ok(201);
        (body["id"].as_str().expect("id").to_owned(), body["token"].as_str().expect("token").to_owned())
    }
}

/// A logged-in test user.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password: String,
    pub access: String,
    pub refresh: String,
}

/// A browser as the cloud sees it: a cookie jar, and redirects followed by hand so every
/// hop is visible.
#[derive(Clone)]
pub struct Browser {
    pub client: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Browser { client }
    }

    /// Signs in through the login form, as a person would.
    pub async fn login(&self, base: &str, user: &User) -> Reply {
        self.login_as(base, &user.email, &user.password, "/").await
    }

    /// Signs in through the login form with these credentials, then goes to `next`.
    pub async fn login_as(&self, base: &str, email: &str, password: &str, next: &str) -> Reply {
        Api::read(self.client.post(format!("{base}/login")).form(&[
            ("email", email),
            ("password", password),
            ("next", next),
        ]))
        .await
    }

    pub async fn get(&self, url: &str) -> Reply {
        Api::read(self.client.get(url)).await
    }

    /// Follows redirects (up to 10) and returns every hop's URL and the final reply.
    pub async fn follow(&self, url: &str) -> (Vec<String>, Reply) {
        let mut hops = vec![url.to_owned()];
        let mut reply = self.get(url).await;
        for _ in 0..10 {
            if !reply.status.is_redirection() {
                break;
            }
            let next = reply.header("location").expect("redirect without Location").to_owned();
            let next = if next.starts_with('/') {
                let base = url::Url::parse(hops.last().expect("hop")).expect("url");
                base.join(&next).expect("join").to_string()
            } else {
                next
            };
            hops.push(next.clone());
            reply = self.get(&next).await;
        }
        (hops, reply)
    }
}

/// An org `acme` with a managed sandbox app and a `sandbox` connector, an admin and a
/// member, against a cloud that serves the sandbox provider.
pub struct SandboxOrg {
    pub admin: User,
    pub member: User,
    pub client_id: String,
    pub client_secret: String,
}

impl SandboxOrg {
    /// Against a cloud that serves the sandbox itself.
    pub async fn setup(api: &Api) -> Self {
        Self::setup_at(api, api, &api.base).await
    }

    /// Against a sandbox served by another process (`sandbox`), for clouds whose public
    /// URL is `public` (replicas behind one URL).
    pub async fn setup_at(api: &Api, sandbox: &Api, public: &str) -> Self {
        let admin = api.user("admin").await;
        let member = api.user("member").await;
        api.org(&admin, "acme", "public").await;
        api.send(Method::POST, "/v1/orgs/acme/join", Some(&member.access), None).await.ok(200);
        let client_id = format!("sandbox-client-{}", uuid::Uuid::new_v4().simple());
        let client_secret = format!("sandbox-secret-{}", uuid::Uuid::new_v4().simple());
        // Register the app at the provider, as an admin would in its console.
        sandbox
            .post(
                "/sandbox/admin/clients",
                None,
                json!({"client_id": client_id, "client_secret": client_secret, "redirect_uri": format!("{public}/oauth/callback")}),
            )
        .await
        .ok(201);
        api.put(
            "/v1/orgs/acme/apps/sandbox",
            Some(&admin.access),
            json!({"client_id": client_id, "client_secret": client_secret}),
        )
        .await
        .ok(200);
        api.put(
            "/v1/orgs/acme/connectors/sandbox",
            Some(&admin.access),
            json!({"provider": "sandbox", "scopes": ["profile", "items:read"], "description": "Sandbox listening history"}),
        )
        .await
        .ok(200);
        SandboxOrg { admin, member, client_id, client_secret }
    }

    /// Sets sandbox faults (see `PUT /sandbox/admin/faults`).
    pub async fn faults(api: &Api, faults: Value) {
        let r = api.put("/sandbox/admin/faults", None, faults).await;
        assert!(r.status.is_success(), "setting faults failed: {}", r.text);
    }

    pub async fn stats(api: &Api) -> Value {
        api.get("/sandbox/admin/stats", None).await.ok(200)
    }
}

/// Consents as `user` in a fresh browser with the sandbox approving at once; returns the
/// browser and the callback page.
pub async fn consent(api: &Api, user: &User, org: &str, key: &str) -> (Browser, Reply) {
    let browser = Browser::new();
    assert!(browser.login(&api.base, user).await.status.is_redirection());
    SandboxOrg::faults(api, json!({"auto_approve": true})).await;
    let (_, page) = browser.follow(&format!("{}/connect/{org}/{key}", api.base)).await;
    (browser, page)
}
