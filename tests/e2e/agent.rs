//! The local agent end to end: `latchkey` run as a real process against a cloud serving
//! the sandbox provider. Pairing by device code, syncing into the local store, a second
//! sync adding nothing, a kill mid-sync that loses and duplicates nothing, the synced data
//! never reaching the cloud, device revocation, logout, and the PAT never leaving for a
//! connector's URL.

use latchkey_e2e::{backend_tests, binary, consent, json, Api, Backend, Cloud, SandboxOrg, TestDb, User};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

backend_tests!(pair_sync_resume_and_revoke, connectors_never_see_the_pat);

/// One `latchkey` installation: a config file and a data dir of its own.
pub(crate) struct Agent {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) env: Vec<(String, String)>,
}

impl Agent {
    pub(crate) fn new(cloud: &str, connectors: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!("cloud_url = \"{cloud}\"\n\n{connectors}");
        std::fs::write(dir.path().join("latchkey.toml"), config).unwrap();
        Agent { dir, env: Vec::new() }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(binary("latchkey"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LATCHKEY_CONFIG", self.dir.path().join("latchkey.toml"))
            .env("LATCHKEY_DATA_DIR", self.data_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs a command to its end (two minutes at most).
    pub(crate) async fn run(&self, args: &[&str]) -> Run {
        let child = self.command(args).spawn().expect("spawn latchkey");
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("latchkey {args:?} did not finish in two minutes"))
            .expect("latchkey output");
        Run::from(output)
    }

    /// `latchkey login --no-browser`, approved by `user` through the cloud's API with the
    /// user code read from the agent's output.
    pub(crate) async fn login(&self, api: &Api, user: &User) {
        let mut child = self.command(&["login", "--no-browser"]).spawn().expect("spawn latchkey login");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut stderr = child.stderr.take().unwrap();
        let errors = tokio::spawn(async move {
            let mut text = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await;
            text
        });
        let mut shown = String::new();
        let code = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                shown.push_str(&line);
                shown.push('\n');
                if let Some(code) = line.split_whitespace().find(|w| is_user_code(w)) {
                    return Some(code.to_owned());
                }
            }
            None
        })
        .await
        .expect("latchkey login showed no code in 30 s");
        let Some(code) = code else {
            panic!("latchkey login ended without showing a code:\n{shown}\nstderr:\n{}", errors.await.unwrap());
        };
        assert!(shown.contains(&format!("{}/device", api.base)), "the verification URL is shown:\n{shown}");
        let approved = api.post("/v1/devices/approve", Some(&user.access), json!({"user_code": code})).await;
        assert!(approved.status.is_success(), "approve: {} {}", approved.status, approved.text);
        // The agent polls every `interval` (5 s) and exits once it has its token.
        let rest = tokio::spawn(async move {
            let mut rest = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                rest.push_str(&line);
                rest.push('\n');
            }
            rest
        });
        let status =
            tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("login finished").unwrap();
        let rest = rest.await.unwrap();
        let errors = errors.await.unwrap();
        assert!(status.success(), "latchkey login failed:\n{shown}{rest}\nstderr:\n{errors}");
        assert!(rest.contains("Paired"), "{rest}");
        let pat = std::fs::read_to_string(self.data_dir().join("pat")).unwrap();
        assert!(pat.trim().starts_with("lk_pat_"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(self.data_dir().join("pat")).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the stored PAT is private");
        }
    }

    /// The agent's own database.
    pub(crate) async fn db(&self) -> sqlx::SqlitePool {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(self.data_dir().join("latchkey.db"));
        sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await.unwrap()
    }

    /// (rows, distinct ids, smallest id, largest id) of a connector's events.
    pub(crate) async fn tally(&self, connector: &str) -> (i64, i64, Option<String>, Option<String>) {
        let db = self.db().await;
        let row = sqlx::query_as(
            "select count(*), count(distinct external_id), min(external_id), max(external_id) from events where connector = ?",
        )
        .bind(connector)
        .fetch_one(&db)
        .await
        .unwrap();
        db.close().await;
        row
    }
}

fn is_user_code(word: &str) -> bool {
    let bytes = word.as_bytes();
    bytes.len() == 9
        && bytes[4] == b'-'
        && bytes.iter().enumerate().all(|(i, b)| i == 4 || b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A finished command.
pub(crate) struct Run {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        &self.stdout
    }

    #[track_caller]
    pub(crate) fn fails(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        &self.stderr
    }
}

pub(crate) const SANDBOX_CONNECTOR: &str = "[[connector]]\nname = \"sandbox\"\nkind = \"sandbox\"\norg = \"acme\"\nconnector_key = \"sandbox\"\nschedule = \"15m\"\n";

pub(crate) async fn set_items(api: &Api, count: usize) {
    let r = api.put("/sandbox/admin/items", None, json!({"count": count})).await;
    assert!(r.status.is_success(), "setting the sandbox's items failed: {} {}", r.status, r.text);
}

/// Asserts that no sandbox item id (`trk_` + six digits) is anywhere in the cloud's
/// database: the synced data goes to the agent only.
async fn assert_cloud_holds_no_items(db: &TestDb) {
    match db.backend {
        Backend::Sqlite => {
            // Every byte of every file the cloud keeps, the WAL included.
            for entry in std::fs::read_dir(db.dir.path()).unwrap() {
                let path = entry.unwrap().path();
                if !path.is_file() {
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap();
                let found =
                    bytes.windows(10).position(|w| w.starts_with(b"trk_") && w[4..].iter().all(u8::is_ascii_digit));
                assert!(found.is_none(), "{} holds a sandbox item id", path.display());
            }
        }
        Backend::Postgres => {
            let raw = db.raw().await;
            let columns: Vec<(String, String, String)> = sqlx::query_as(
                "select table_name::text, column_name::text, data_type::text from information_schema.columns \
                 where table_schema = 'public' and data_type in ('text', 'character varying', 'json', 'jsonb', 'bytea')",
            )
            .fetch_all(&raw)
            .await
            .unwrap();
            assert!(!columns.is_empty());
            for (table, column, kind) in columns {
                let test = if kind == "bytea" {
                    format!("position('\\x74726b5f'::bytea in \"{column}\") > 0")
                } else {
                    format!("\"{column}\"::text ~ 'trk_[0-9]{{6}}'")
                };
                let n: i64 = sqlx::query_scalar(&format!("select count(*) from \"{table}\" where {test}"))
                    .fetch_one(&raw)
                    .await
                    .unwrap();
                assert_eq!(n, 0, "{table}.{column} holds a sandbox item id");
            }
            raw.close().await;
        }
    }
}

async fn pair_sync_resume_and_revoke(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| {
        c.sandbox = true;
        c.token_rate_limit = 0;
    })
    .await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let agent = Agent::new(&api.base, SANDBOX_CONNECTOR);

    // Not paired yet: every command that needs the cloud says what to do.
    let r = agent.run(&["sync", "sandbox"]).await;
    assert!(r.fails(1).contains("latchkey login"), "{}", r.stderr);
    assert!(agent.run(&["token", "sandbox"]).await.fails(1).contains("latchkey login"));

    agent.login(&api, &org.member).await;
    let devices = api.get("/v1/devices", Some(&org.member.access)).await.ok(200);
    assert_eq!(devices.as_array().unwrap().len(), 1, "the paired device is listed: {devices}");

    // Paired, but the connector is not connected yet.
    let r = agent.run(&["sync", "sandbox"]).await;
    assert!(r.fails(1).contains("latchkey connect sandbox"), "{}", r.stderr);
    let status = agent.run(&["status"]).await;
    assert!(status.stdout.contains("not connected — run `latchkey connect sandbox`"), "{}", status.stdout);

    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let status = agent.run(&["status"]).await;
    assert!(status.ok().contains("active, as sandbox-user"), "{}", status.stdout);
    assert!(status.stdout.contains("(reachable)") && status.stdout.contains("paired:     yes"), "{}", status.stdout);
    // `connect` on a connected connector says so and exits 0 without waiting.
    assert!(agent.run(&["connect", "sandbox", "--no-browser"]).await.ok().contains("already connected"));

    // A first sync stores every item; a second adds none.
    set_items(&api, 1_200).await;
    let first = agent.run(&["sync", "sandbox"]).await;
    assert!(first.ok().contains("sandbox: 1200 new events"), "{}", first.stdout);
    assert_eq!(agent.tally("sandbox").await, (1200, 1200, Some("trk_000000".into()), Some("trk_001199".into())));
    let second = agent.run(&["sync", "sandbox"]).await;
    assert!(second.ok().contains("sandbox: 0 new events"), "{}", second.stdout);
    assert_eq!(agent.tally("sandbox").await.0, 1200);

    // `events --json`: one object per line, newest first, with the item as its payload.
    let listed = agent.run(&["events", "--connector", "sandbox", "--limit", "3", "--json"]).await;
    let lines: Vec<serde_json::Value> = listed.ok().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["external_id"], "trk_001199");
    assert_eq!(lines[0]["payload"]["id"], "trk_001199");
    assert!(lines[0]["occurred_at"].as_str().unwrap() > lines[1]["occurred_at"].as_str().unwrap());

    // Killed mid-sync (after its first committed page), then run again: nothing is lost,
    // nothing doubled, and the second run resumes rather than starting over.
    set_items(&api, 60_000).await;
    let mut child = agent.command(&["sync", "sandbox"]).spawn().unwrap();
    let mut progress = BufReader::new(child.stderr.take().unwrap()).lines();
    let first_line = tokio::time::timeout(Duration::from_secs(60), progress.next_line()).await.unwrap().unwrap();
    assert!(first_line.as_deref().is_some_and(|l| l.starts_with("sandbox: ")), "not a progress line: {first_line:?}");
    child.start_kill().unwrap();
    let killed = child.wait().await.unwrap();
    assert!(!killed.success());
    let (after_kill, distinct, _, _) = agent.tally("sandbox").await;
    assert_eq!(after_kill, distinct);
    assert!(after_kill > 1200 && after_kill < 60_000, "the kill landed mid-sync ({after_kill} stored)");
    let resumed = agent.run(&["sync", "sandbox"]).await;
    let summary = resumed.ok();
    assert!(summary.contains(&format!("sandbox: {} new events", 60_000 - after_kill)), "{summary}");
    assert!(summary.contains("resumed"), "{summary}");
    assert_eq!(agent.tally("sandbox").await, (60_000, 60_000, Some("trk_000000".into()), Some("trk_059999".into())));
    let db_agent = agent.db().await;
    let runs: Vec<String> =
        sqlx::query_scalar("select status from sync_runs order by id").fetch_all(&db_agent).await.unwrap();
    db_agent.close().await;
    assert!(runs.contains(&"interrupted".to_owned()), "the killed run is recorded as interrupted: {runs:?}");
    assert_eq!(runs.last().map(String::as_str), Some("completed"));
    assert!(agent.run(&["sync", "sandbox"]).await.ok().contains("sandbox: 0 new events"));

    // The synced data never reached the cloud.
    assert_cloud_holds_no_items(&db).await;

    // `latchkey token` prints a working provider token.
    let token = agent.run(&["token", "sandbox"]).await.ok().trim().to_owned();
    assert!(!token.is_empty() && !token.starts_with("lk_pat_"));
    let items = Api::read(api.client.get(format!("{}/sandbox/api/items?limit=1", api.base)).bearer_auth(&token)).await;
    assert_eq!(items.ok(200)["items"].as_array().unwrap().len(), 1);

    // Unpairing the device on the cloud stops the agent at once, with a message that says
    // how to pair again.
    let devices = api.get("/v1/devices", Some(&org.member.access)).await.ok(200);
    let id = devices[0]["id"].as_str().unwrap().to_owned();
    api.delete(&format!("/v1/devices/{id}"), Some(&org.member.access)).await.ok(204);
    let refused = agent.run(&["token", "sandbox"]).await;
    assert!(refused.fails(1).contains("latchkey login"), "{}", refused.stderr);
    assert!(!refused.stderr.contains("lk_pat_") && !refused.stdout.contains("lk_pat_"));
    let r = agent.run(&["sync", "sandbox"]).await;
    assert!(r.fails(1).contains("latchkey login"), "{}", r.stderr);
}

/// What a connector's server saw: each request's path and headers.
type Seen = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

fn record(seen: &Seen, uri: &axum::http::Uri, headers: &axum::http::HeaderMap) {
    let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("<binary>").to_owned())).collect();
    seen.lock().unwrap().push((uri.to_string(), headers));
}

/// A provider API on loopback: `/feed` (two pages, the second by a same-origin URL),
/// `/stray` (whose next page is on another origin). Records every request's headers.
async fn provider(other_origin: String) -> (String, Seen) {
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, Uri};
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let feed_base = base.clone();
    let app = axum::Router::new()
        .route(
            "/feed",
            axum::routing::get(
                move |State(seen): State<Seen>, uri: Uri, headers: HeaderMap, Query(q): Query<BTreeMap<String, String>>| {
                    let feed_base = feed_base.clone();
                    async move {
                        record(&seen, &uri, &headers);
                        axum::Json(if q.get("page").map(String::as_str) == Some("2") {
                            json!({"items": [{"id": "c", "at": "2024-01-01T00:00:00Z"}], "next": null})
                        } else {
                            json!({"items": [{"id": "a", "at": "2024-01-03T00:00:00Z"}, {"id": 2, "at": "2024-01-02T00:00:00Z"}],
                                   "next": format!("{feed_base}/feed?page=2")})
                        })
                    }
                },
            ),
        )
        .route(
            "/stray",
            axum::routing::get(move |State(seen): State<Seen>, uri: Uri, headers: HeaderMap| {
                let other_origin = other_origin.clone();
                async move {
                    record(&seen, &uri, &headers);
                    axum::Json(json!({"items": [{"id": "s1"}], "next": format!("{other_origin}/collect")}))
                }
            }),
        )
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

async fn connectors_never_see_the_pat(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (base, seen) = provider(api.base.clone()).await;
    let connectors = format!(
        "[[connector]]\nname = \"feed\"\nkind = \"http-json\"\norg = \"acme\"\nconnector_key = \"sandbox\"\n\
         url = \"{base}/feed\"\nitems = \"/items\"\nid = \"id\"\nnext = \"/next\"\noccurred_at = \"at\"\n\n\
         [[connector]]\nname = \"stray\"\nkind = \"http-json\"\norg = \"acme\"\nconnector_key = \"sandbox\"\n\
         url = \"{base}/stray\"\nitems = \"/items\"\nid = \"id\"\nnext = \"/next\"\n"
    );
    let mut agent = Agent::new(&api.base, &connectors);
    // This time the PAT comes from the environment, as on a server.
    let (_, pat) = api.pat(&org.member, &["connections:token", "connections:read"]).await;
    agent.env.push(("LATCHKEY_PAT".into(), pat.clone()));

    let r = agent.run(&["sync", "feed"]).await;
    assert!(r.ok().contains("feed: 3 new events"), "{}", r.stdout);
    assert_eq!(agent.tally("feed").await, (3, 3, Some("2".into()), Some("c".into())));

    // A next page on another origin (here: the cloud) is not followed.
    let r = agent.run(&["sync", "stray"]).await;
    let err = r.fails(1);
    assert!(err.contains("not followed"), "{err}");

    let requests = seen.lock().unwrap().clone();
    let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/feed", "/feed?page=2", "/stray"]);
    for (path, headers) in &requests {
        for (name, value) in headers {
            assert!(!value.contains("lk_pat_"), "{path}: header {name} carries the PAT");
            assert!(!value.contains(&pat[7..]), "{path}: header {name} carries part of the PAT");
        }
        let auth = headers.get("authorization").map(String::as_str).unwrap_or("");
        assert!(
            auth.starts_with("Bearer ") && auth.len() > "Bearer ".len(),
            "{path}: the provider token is sent: {auth:?}"
        );
    }

    // Logout revokes the PAT at the cloud (RFC 7009); the agent then says to log in.
    let r = agent.run(&["logout"]).await;
    assert!(r.ok().contains("LATCHKEY_PAT is still set"), "{}", r.stdout);
    let after = api.get("/v1/orgs/acme/connections/sandbox", Some(&pat)).await;
    assert_eq!(after.status, 401, "the PAT is revoked: {}", after.text);
    let r = agent.run(&["sync", "feed"]).await;
    assert!(r.fails(1).contains("latchkey login"), "{}", r.stderr);
    assert_path_absent(&agent.data_dir().join("pat"));
}

fn assert_path_absent(path: &Path) {
    assert!(!path.exists(), "{} should not exist", path.display());
}

/// Whoever sits on the network path between the agent and another machine: the agent's
/// plain-http requests to other hosts reach it as its proxy (`HTTP_PROXY`). It writes down
/// every request (absolute URL and headers) and answers 401.
async fn eavesdropper() -> (String, Seen) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(|axum::extract::State(seen): axum::extract::State<Seen>, uri: Uri, headers: HeaderMap| async move {
            record(&seen, &uri, &headers);
            StatusCode::UNAUTHORIZED
        })
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_cross_the_network_in_clear_text() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (_, pat) = api.pat(&org.member, &["connections:token", "connections:read"]).await;
    let (proxy, seen) = eavesdropper().await;
    // Requests to other hosts pass the eavesdropper; the cloud on this machine is reached directly.
    let on_the_path = |agent: &mut Agent| {
        for (k, v) in [("LATCHKEY_PAT", pat.as_str()), ("HTTP_PROXY", &proxy), ("NO_PROXY", "127.0.0.1,localhost")] {
            agent.env.push((k.into(), v.into()));
        }
    };

    // The PAT, to a cloud on another machine over plain http.
    let mut far_cloud = Agent::new("http://latchkey.example.test", SANDBOX_CONNECTOR);
    on_the_path(&mut far_cloud);
    let cloud_refused = far_cloud.run(&["token", "sandbox"]).await;
    // An access token, to a provider API on another machine over plain http.
    let feed = "[[connector]]\nname = \"feed\"\nkind = \"http-json\"\norg = \"acme\"\nconnector_key = \"sandbox\"\n\
                url = \"http://api.example.test/feed\"\nitems = \"/items\"\nid = \"id\"\n";
    let mut far_api = Agent::new(&api.base, feed);
    on_the_path(&mut far_api);
    let api_refused = far_api.run(&["sync", "feed"]).await;
    assert_eq!(seen.lock().unwrap().clone(), [], "the eavesdropper read these requests");
    let err = cloud_refused.fails(2);
    for wanted in
        ["latchkey.toml", "key `cloud_url`", "plain http:// to another machine", "fix:", "https://", "--insecure"]
    {
        assert!(err.contains(wanted), "{wanted:?} in:\n{err}");
    }
    let err = api_refused.fails(2);
    for wanted in ["[[connector]] #1 (\"feed\"), key `url`", "plain http:// to another machine", "--insecure"] {
        assert!(err.contains(wanted), "{wanted:?} in:\n{err}");
    }

    // What the check stops, shown by opting out of it: with --insecure, both tokens reach the
    // eavesdropper in clear text, and each command warns.
    let r = far_cloud.run(&["--insecure", "token", "sandbox"]).await;
    assert!(r.fails(1).contains("warning: --insecure: cloud_url (http://latchkey.example.test)"), "{}", r.stderr);
    let r = far_api.run(&["--insecure", "sync", "feed"]).await;
    assert!(r.stderr.contains("warning: --insecure: connector `feed`, url (http://api.example.test)"), "{}", r.stderr);
    let seen = seen.lock().unwrap().clone();
    let read = |url: &str| {
        let (_, headers) =
            seen.iter().find(|(u, _)| u == url).unwrap_or_else(|| panic!("no request to {url}: {seen:?}"));
        headers.get("authorization").cloned().unwrap_or_default()
    };
    assert_eq!(read("http://latchkey.example.test/oauth/connection-token"), format!("Bearer {pat}"));
    let access_token = read("http://api.example.test/feed");
    assert!(access_token.starts_with("Bearer ") && !access_token.contains("lk_pat_"), "{access_token}");
}

/// The member's browser, as `$BROWSER`: a script that writes down each URL it is asked to open.
struct RecordingBrowser {
    dir: tempfile::TempDir,
}

impl RecordingBrowser {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("browser");
        let log = dir.path().join("opened");
        std::fs::write(&script, format!("#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n", log.display())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        RecordingBrowser { dir }
    }

    fn env(&self) -> (String, String) {
        ("BROWSER".into(), self.dir.path().join("browser").display().to_string())
    }

    /// What it was asked to open so far, and forgets it.
    fn take(&self) -> String {
        let log = self.dir.path().join("opened");
        let opened = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(log);
        opened
    }
}

/// A device authorization answer is only as trustworthy as the connection it came on; the
/// agent opens a page only on the cloud's own origin, so a forged answer cannot send the
/// member to a look-alike page to type in the code or their password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_page_on_another_origin_is_not_opened() {
    use axum::http::StatusCode;
    let browser = RecordingBrowser::new();

    // The real cloud's device page opens: the browser works.
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start(&db).await;
    let mut agent = Agent::new(&cloud.base, "");
    agent.env.push(browser.env());
    let mut login = agent.command(&["login"]).spawn().unwrap();
    let opened = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let opened = browser.take();
            if !opened.is_empty() {
                return opened;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the browser was asked to open the device page");
    login.kill().await.unwrap();
    assert!(opened.starts_with(&format!("{}/device?user_code=", cloud.base)), "{opened}");

    // A server in the cloud's place whose answer points at another origin.
    let look_alike = "https://latchkey-login.example.test/device";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forged = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/oauth/device_authorization",
            axum::routing::post(move || async move {
                axum::Json(json!({
                    "device_code": "forged", "user_code": "WDJB-MJHT", "verification_uri": look_alike,
                    "verification_uri_complete": format!("{look_alike}?user_code=WDJB-MJHT"),
                    "expires_in": 600, "interval": 1,
                }))
            }),
        )
        .route(
            "/oauth/token",
            axum::routing::post(|| async {
                (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "access_denied", "error_description": "no"})))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut agent = Agent::new(&forged, "");
    agent.env.push(browser.env());
    let r = agent.run(&["login"]).await;
    // Give a browser that was started the time to write its URL down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(browser.take(), "", "the look-alike page was opened");
    r.fails(1);
    assert!(
        r.stdout.contains(&format!("warning: the cloud's answer sends you to {look_alike}"))
            && r.stdout.contains("it was not opened")
            && r.stdout.contains(&format!("Enter the code only on a page of {forged}")),
        "{}",
        r.stdout
    );
}
