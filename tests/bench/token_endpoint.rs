//! Benchmark of `POST /oauth/connection-token` against the physical limit (run on demand,
//! not in the test suite):
//!
//! ```sh
//! cargo build --release --workspace --bins && target/release/bench-token-endpoint
//! ```
//!
//! For SQLite (a file database) and PostgreSQL it starts a real `latchkey-cloud` (release
//! build, sandbox on, audit on) and, beside it, a **minimal-work server** written here (this
//! same binary, run as `bench-token-endpoint reference …`) that does only what the contract
//! demands: parse the JSON body, SHA-256 of the PAT, ONE indexed look-up joining the PAT and
//! connection rows, ONE AES-256-GCM open, a JSON answer. Same engine, same pool size and
//! SQLite pragmas, same HTTP stack (axum/hyper), same Tokio runtime shape. It uses sqlx's
//! native drivers, not `Any`: the reference is the least work sqlx can do, so the ratio
//! also shows what the cloud's `Any` driver costs.
//!
//! Both are driven in turn by the same load generator, `wrk` (a separate process in C, so
//! the driver does not share a Tokio runtime with anything), 64 connections, with a Lua
//! script that picks a PAT at random per request from a list: 1 PAT, or 1,000 (one per
//! simulated agent). Rows printed per backend:
//!
//! - rate limit off (`LATCHKEY_TOKEN_RATE_LIMIT=0`), 1 PAT and 1,000 PATs;
//! - default settings (per-PAT limit 600/min), 1,000 PATs, also as a ratio of rate-limit-off;
//!
//! each with req/s, p50 and p99 of both servers and the ratio; the cloud's RSS idle, under
//! load and at peak (`/proc/<pid>/status` VmRSS, VmHWM); the cold start (process spawn to
//! the first `/readyz` 200) on an empty database and on a migrated one; and the audit events
//! written against the requests answered.
//!
//! Settings: `BENCH_SECS` (10) per run, `BENCH_BACKEND=sqlite|postgres` (both),
//! `BENCH_PATS` (1000), `BENCH_WRK_THREADS` (2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_e2e::{cloud_command, json, Backend, Browser, CloudProcess, SandboxOrg, TestDb};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 64;
/// The cloud's default `database_max_connections`; the reference uses the same.
const POOL: u32 = 16;
const BODY: &str = r#"{"org":"acme","connector_key":"sandbox"}"#;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("reference") {
        // The same runtime shape as the cloud's `#[tokio::main]`: one worker per core.
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        rt.block_on(reference::serve(&args[2], args[3].parse().unwrap()));
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let secs: u64 = env_or("BENCH_SECS", 10);
    let pats: usize = env_or("BENCH_PATS", 1000);
    let version = Command::new("wrk").arg("--version").output().expect("wrk is required (apt-get install wrk)");
    let version = String::from_utf8_lossy(&version.stdout).lines().next().unwrap_or_default().to_owned();
    println!("{CONNECTIONS} connections, {secs} s per run; load: {version}");
    println!(
        "machine: {} × {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        latchkey_e2e::cpu_model(),
        String::from_utf8_lossy(&Command::new("date").arg("-u").output().unwrap().stdout).trim()
    );
    let only = std::env::var("BENCH_BACKEND").unwrap_or_default();
    if only.is_empty() || only == "sqlite" {
        run(Backend::Sqlite, secs, pats).await;
    }
    if only.is_empty() || only == "postgres" {
        run(Backend::Postgres, secs, pats).await;
    }
}

async fn run(backend: Backend, secs: u64, pats: usize) {
    let name = match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    println!("\n== {name}");
    let db = TestDb::new(backend).await;
    let first = cold_start(&db);
    let again = cold_start(&db);
    println!(
        "cold start to /readyz 200: {:.1} ms (empty database, migrates), {:.1} ms (migrated); idle RSS {:.1} MiB",
        ms(first.0),
        ms(again.0),
        mib(again.1)
    );

    let off = CloudProcess::spawn(&db, &[("LATCHKEY_SANDBOX", "1"), ("LATCHKEY_TOKEN_RATE_LIMIT", "0")]).await;
    let api = off.api();
    let org = SandboxOrg::setup(&api).await;
    SandboxOrg::faults(&api, json!({"auto_approve": true})).await;
    let browser = Browser::new();
    browser.login(&api.base, &org.member).await;
    let (_, page) = browser.connect(&api.base, "acme", "sandbox").await;
    assert_eq!(page.status, 200);
    let mut tokens = Vec::with_capacity(pats);
    for _ in 0..pats {
        tokens.push(api.pat(&org.member, &["connections:token"]).await.1);
    }
    let one = db.dir.path().join("pats-1.txt");
    let many = db.dir.path().join("pats-many.txt");
    std::fs::write(&one, format!("{}\n", tokens[0])).unwrap();
    std::fs::write(&many, tokens.join("\n") + "\n").unwrap();

    let ref_db = TestDb::new(backend).await;
    reference::seed(&ref_db, &tokens).await;
    let reference = reference::Process::spawn(&ref_db.url);
    for base in [&reference.base, &api.base] {
        let r = reqwest::Client::new()
            .post(format!("{base}/oauth/connection-token"))
            .bearer_auth(&tokens[0])
            .header("content-type", "application/json")
            .body(BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{base}: {}", r.text().await.unwrap_or_default());
    }

    let idle = rss(off.pid());
    let mut answered = 0;
    let mut cloud_run = |load: &Load| answered += load.requests;
    wrk(&reference.base, &one, 2, None);
    wrk(&api.base, &one, 2, None);
    let ref1 = wrk(&reference.base, &one, secs, None);
    let off1 = wrk(&api.base, &one, secs, Some(off.pid()));
    cloud_run(&off1);
    // Each PAT's first use writes its `last_used_at`: warm up with all of them, as the
    // default-settings cloud below is.
    wrk(&reference.base, &many, 2, None);
    wrk(&api.base, &many, 2, None);
    let ref_n = wrk(&reference.base, &many, secs, None);
    let off_n = wrk(&api.base, &many, secs, Some(off.pid()));
    cloud_run(&off_n);
    drop(off);

    let defaults = CloudProcess::spawn(&db, &[("LATCHKEY_SANDBOX", "1")]).await;
    wrk(&defaults.base, &many, 2, None);
    let def_n = wrk(&defaults.base, &many, secs, Some(defaults.pid()));
    cloud_run(&def_n);
    drop(defaults);
    drop(reference);

    println!("{:<34} {:>26} {:>26} {:>6}", "", "minimal-work server", "latchkey-cloud", "ratio");
    row("rate limit off, 1 PAT", &ref1, &off1);
    row(&format!("rate limit off, {pats} PATs"), &ref_n, &off_n);
    row(&format!("default settings, {pats} PATs"), &ref_n, &def_n);
    println!("default settings / rate limit off ({pats} PATs): {:.2}", def_n.rps / off_n.rps);
    println!(
        "cloud RSS: idle {:.1} MiB (after setup), under load {:.1} MiB, peak {:.1} MiB",
        mib(idle.0),
        mib([off1.rss, off_n.rss, def_n.rss].into_iter().max().unwrap_or(0)),
        mib([off1.hwm, off_n.hwm, def_n.hwm].into_iter().max().unwrap_or(0)),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // `wrk -d` measures a window; requests of warm-ups and those cut at its end are
    // answered and audited too, so the events are at least the requests counted.
    let audited = db.count("select count(*) from audit_events where action = 'connection.token'").await;
    println!("audit events for the endpoint: {audited} (requests counted in the measured runs: {answered})");
}

fn row(what: &str, reference: &Load, cloud: &Load) {
    println!("{what:<34} {:>26} {:>26} {:>6.2}", reference.figures(), cloud.figures(), cloud.rps / reference.rps);
    for (who, load) in [("minimal-work server", reference), ("latchkey-cloud", cloud)] {
        if load.failed > 0 {
            println!("  !! {who}: {} answers were not 2xx", load.failed);
        }
    }
}

struct Load {
    rps: f64,
    p50: f64,
    p99: f64,
    requests: u64,
    failed: u64,
    /// The server's VmRSS sampled during the run (max), KiB.
    rss: u64,
    /// The server's VmHWM after the run, KiB.
    hwm: u64,
}

impl Load {
    fn figures(&self) -> String {
        format!("{:>7.0}/s {:>5.2} {:>5.2} ms", self.rps, self.p50, self.p99)
    }
}

/// Drives `base` with wrk for `secs`, picking PATs from `tokens`; samples `pid`'s RSS.
fn wrk(base: &str, tokens: &Path, secs: u64, pid: Option<u32>) -> Load {
    let script = tokens.with_extension("lua");
    std::fs::write(
        &script,
        format!(
            r#"local tokens = {{}}
for line in io.lines("{}") do tokens[#tokens + 1] = line end
local body = '{BODY}'
local headers = {{}}
init = function() math.randomseed(os.time() * 1000 + math.floor(os.clock() * 1e6)) end
request = function()
  headers["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]
  headers["Content-Type"] = "application/json"
  return wrk.format("POST", "/oauth/connection-token", headers, body)
end
"#,
            tokens.display()
        ),
    )
    .unwrap();
    let threads: u32 = env_or("BENCH_WRK_THREADS", 2);
    let mut child = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &CONNECTIONS.to_string(), "-d", &format!("{secs}s"), "--latency"])
        .arg("-s")
        .arg(&script)
        .arg(format!("{base}/oauth/connection-token"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut rss_max = 0;
    while child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(pid) = pid {
            rss_max = rss_max.max(rss(pid).0);
        }
    }
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let field = |prefix: &str| {
        out.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned())).unwrap_or_default()
    };
    let requests = out
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ").map(|(n, _)| n.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("wrk output:\n{out}"));
    Load {
        rps: field("Requests/sec:").parse().unwrap_or_else(|_| panic!("wrk output:\n{out}")),
        p50: duration_ms(&field("50%")),
        p99: duration_ms(&field("99%")),
        requests,
        failed: field("Non-2xx or 3xx responses:").parse().unwrap_or(0),
        rss: rss_max,
        hwm: pid.map_or(0, |p| rss(p).1),
    }
}

/// wrk's "1.23ms", "812.00us", "1.02s" in milliseconds.
fn duration_ms(s: &str) -> f64 {
    let (number, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e3)
    } else {
        panic!("wrk duration {s:?}")
    };
    number.parse::<f64>().unwrap() * scale
}

/// Spawns the cloud (defaults, no sandbox) on `db` and times spawn → first `/readyz` 200;
/// then its RSS once idle (KiB).
fn cold_start(db: &TestDb) -> (Duration, u64) {
    let port = latchkey_e2e::free_port();
    let mut cmd = cloud_command(db, &[("LATCHKEY_LISTEN", &format!("127.0.0.1:{port}"))]);
    cmd.arg("serve").stdout(Stdio::null()).stderr(Stdio::null());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    while !ready(port) {
        assert!(started.elapsed() < Duration::from_secs(20), "the cloud did not become ready");
        assert!(child.try_wait().unwrap().is_none(), "the cloud exited");
        std::thread::sleep(Duration::from_micros(500));
    }
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (idle, _) = rss(child.id());
    child.kill().unwrap();
    child.wait().unwrap();
    (took, idle)
}

fn ready(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// VmRSS and VmHWM of `pid`, KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The minimal-work server.
mod reference {
    use super::*;

    /// The real schema's shape, cut to what the answer needs: a PAT row found by its hash
    /// (unique index, as `pats_token_hash_key`), its user's connection on the connector
    /// (index on `user_id`, as `connections_user_idx`).
    const SCHEMA: [&str; 3] = [
        "create table pats (id text primary key, token_hash text not null unique, user_id text not null, \
         revoked_at bigint, expires_at bigint)",
        "create table connections (id text primary key, user_id text not null, org_id text not null, \
         connector_key text not null, status text not null, access_token_ct BLOB not null, expires_at bigint not null)",
        "create index connections_user_idx on connections (user_id)",
    ];
    const LOOKUP: &str = "select p.revoked_at, p.expires_at, c.id, c.access_token_ct, c.expires_at \
        from pats p join connections c on c.user_id = p.user_id and c.org_id = $2 and c.connector_key = $3 \
        and c.status = 'active' where p.token_hash = $1";
    type Row = (Option<i64>, Option<i64>, String, Vec<u8>, i64);
    const KEY: [u8; 32] = [7; 32];

    fn cipher() -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&KEY).unwrap()
    }

    /// One connection, and one PAT row per token, all of the same user.
    pub async fn seed(db: &TestDb, tokens: &[String]) {
        let raw = db.raw().await;
        for sql in SCHEMA {
            let sql = if db.backend == Backend::Postgres { sql.replace("BLOB", "bytea") } else { sql.to_owned() };
            sqlx::query(&sql).execute(&raw).await.unwrap();
        }
        let nonce = [1u8; 12];
        let sealed = cipher()
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: b"sandbox-access-token-0123456789abcdef", aad: b"c1" })
            .unwrap();
        let ct = [nonce.as_slice(), &sealed].concat();
        let expires = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        sqlx::query("insert into connections values ('c1', 'u1', 'acme', 'sandbox', 'active', $1, $2)")
            .bind(ct)
            .bind(expires)
            .execute(&raw)
            .await
            .unwrap();
        for (i, token) in tokens.iter().enumerate() {
            sqlx::query("insert into pats values ($1, $2, 'u1', null, null)")
                .bind(format!("p{i}"))
                .bind(hex::encode(Sha256::digest(token.as_bytes())))
                .execute(&raw)
                .await
                .unwrap();
        }
        raw.close().await;
    }

    /// The reference server as a child process of its own (its RSS and threads apart).
    pub struct Process {
        pub base: String,
        child: std::process::Child,
    }

    impl Process {
        pub fn spawn(url: &str) -> Self {
            let port = latchkey_e2e::free_port();
            let child = Command::new(std::env::current_exe().unwrap())
                .args(["reference", url, &port.to_string()])
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            let started = Instant::now();
            while !super::ready(port) {
                assert!(started.elapsed() < Duration::from_secs(20), "the reference server did not start");
                std::thread::sleep(Duration::from_millis(5));
            }
            Self { base: format!("http://127.0.0.1:{port}"), child }
        }
    }

    impl Drop for Process {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    enum Pool {
        Sqlite(sqlx::SqlitePool),
        Postgres(sqlx::PgPool),
    }

    struct Server {
        pool: Pool,
        cipher: Aes256Gcm,
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        org: String,
        connector_key: String,
        #[allow(dead_code)]
        connection: Option<String>,
    }

    pub async fn serve(url: &str, port: u16) {
        let pool = if url.starts_with("sqlite:") {
            // The cloud's SQLite pragmas (`cloud/src/store.rs`).
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
            let options = options
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            Pool::Sqlite(pool_options().connect_with(options).await.unwrap())
        } else {
            Pool::Postgres(pool_options().connect(url).await.unwrap())
        };
        let server = Arc::new(Server { pool, cipher: cipher() });
        let app = axum::Router::new()
            .route("/oauth/connection-token", axum::routing::post(token))
            .route("/readyz", axum::routing::get(|| async { "ok" }))
            .with_state(server);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        axum::serve(listener, app).await.unwrap();
    }

    fn pool_options<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
        // The cloud's pool: size and acquire timeout; no ping before each acquire.
        sqlx::pool::PoolOptions::new()
            .max_connections(POOL)
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
    }

    fn refuse(status: StatusCode, code: &str) -> Response {
        (status, axum::Json(json!({"error": code, "error_description": code}))).into_response()
    }

    async fn token(State(server): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
        let Some(pat) =
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
        else {
            return refuse(StatusCode::UNAUTHORIZED, "invalid_token");
        };
        let Ok(req) = serde_json::from_slice::<Request>(&body) else {
            return refuse(StatusCode::BAD_REQUEST, "invalid_request");
        };
        let hash = hex::encode(Sha256::digest(pat.as_bytes()));
        let row: sqlx::Result<Option<Row>> = match &server.pool {
            Pool::Sqlite(p) => {
                sqlx::query_as(LOOKUP).bind(&hash).bind(&req.org).bind(&req.connector_key).fetch_optional(p).await
            }
            Pool::Postgres(p) => {
                sqlx::query_as(LOOKUP).bind(&hash).bind(&req.org).bind(&req.connector_key).fetch_optional(p).await
            }
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (revoked_at, pat_expires_at, id, ct, expires_at) = match row {
            Ok(Some(row)) => row,
            Ok(None) => return refuse(StatusCode::NOT_FOUND, "not_found"),
            Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
        };
        if revoked_at.is_some() || pat_expires_at.is_some_and(|t| t <= now) {
            return refuse(StatusCode::UNAUTHORIZED, "invalid_token");
        }
        let Some((nonce, sealed)) = ct.split_at_checked(12) else {
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
        };
        let Ok(plain) = server.cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: id.as_bytes() })
        else {
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
        };
        let expires = time::OffsetDateTime::from_unix_timestamp(expires_at)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default();
        let answer = json!({
            "access_token": String::from_utf8_lossy(&plain),
            "token_type": "bearer",
            "expires_at": expires,
        });
        ([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response()
    }
}
