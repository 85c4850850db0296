//! Benchmark of `POST /oauth/connection-token` (run on demand, not in the test suite):
//!
//! ```sh
//! cargo build --release -p latchkey-cloud && cargo run --release -p latchkey-e2e --bin bench-token-endpoint
//! ```
//!
//! Starts a real `latchkey-cloud` (release build) with the sandbox, on SQLite and then on
//! PostgreSQL, sets up an org, a consented connection and a PAT over HTTP, and drives
//! the endpoint with 64 concurrent clients for a fixed time. In the same run it drives
//! `/healthz` (a static JSON route on the same server) the same way, and prints
//! requests/s and p50/p99 latency of both, and their ratio. Everything the issue asks is
//! on (audit included); only the per-PAT rate limit is off (`LATCHKEY_TOKEN_RATE_LIMIT=0`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use latchkey_e2e::{json, Backend, Browser, CloudProcess, SandboxOrg, TestDb};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CLIENTS: usize = 64;

struct Figures {
    rps: f64,
    p50: Duration,
    p99: Duration,
    /// Answers that were not a success, by status (0: no answer at all).
    errors: BTreeMap<u16, usize>,
    /// The first such answer's body, by status, to say why.
    samples: BTreeMap<u16, String>,
}

impl Figures {
    fn errors(&self) -> String {
        if self.errors.is_empty() {
            return "0".to_owned();
        }
        let each: Vec<String> = self
            .errors
            .iter()
            .map(|(status, n)| format!("{n}×{status} {}", self.samples.get(status).map_or("", String::as_str)))
            .collect();
        each.join("; ")
    }
}

async fn drive(url: &str, pat: Option<&str>, body: Option<serde_json::Value>, secs: u64) -> Figures {
    let client = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url, pat, body) = (client.clone(), url.to_owned(), pat.map(str::to_owned), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(50_000);
            let mut errors = BTreeMap::new();
            let mut samples = BTreeMap::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let mut req = match &body {
                    Some(b) => client.post(&url).json(b),
                    None => client.get(&url),
                };
                if let Some(p) = &pat {
                    req = req.bearer_auth(p);
                }
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(started.elapsed());
                    }
                    Ok(r) => {
                        let status = r.status().as_u16();
                        *errors.entry(status).or_insert(0) += 1;
                        if let std::collections::btree_map::Entry::Vacant(slot) = samples.entry(status) {
                            slot.insert(r.text().await.unwrap_or_default());
                        }
                    }
                    Err(e) => {
                        *errors.entry(0).or_insert(0) += 1;
                        samples.entry(0).or_insert_with(|| e.to_string());
                    }
                }
            }
            (lat, errors, samples)
        }));
    }
    let mut all = Vec::new();
    let mut errors = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for t in tasks {
        let (lat, e, s) = t.await.unwrap();
        all.extend(lat);
        for (status, n) in e {
            *errors.entry(status).or_insert(0) += n;
        }
        for (status, body) in s {
            samples.entry(status).or_insert(body);
        }
    }
    all.sort();
    let pick = |q: f64| all.get(((all.len() as f64) * q) as usize).copied().unwrap_or_default();
    Figures { rps: all.len() as f64 / secs as f64, p50: pick(0.50), p99: pick(0.99), errors, samples }
}

async fn run(backend: Backend, secs: u64) {
    let db = TestDb::new(backend).await;
    let cloud = CloudProcess::spawn(
        &db,
        &[
            ("LATCHKEY_SANDBOX", "1"),
            ("LATCHKEY_TOKEN_RATE_LIMIT", "0"),
            ("RUST_LOG", "warn"),
            ("LATCHKEY_DATABASE_MAX_CONNECTIONS", "16"),
        ],
    )
    .await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    SandboxOrg::faults(&api, json!({"auto_approve": true})).await;
    let browser = Browser::new();
    browser.login(&api.base, &org.member).await;
    let (_, page) = browser.connect(&api.base, "acme", "sandbox").await;
    assert_eq!(page.status, 200);
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    let url = format!("{}/oauth/connection-token", api.base);
    let body = json!({"org": "acme", "connector_key": "sandbox"});
    // Warm up both routes.
    drive(&url, Some(&pat), Some(body.clone()), 1).await;
    drive(&format!("{}/healthz", api.base), None, None, 1).await;

    let token = drive(&url, Some(&pat), Some(body), secs).await;
    let stat = drive(&format!("{}/healthz", api.base), None, None, secs).await;
    let name = match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    };
    println!(
        "{name:<10}  connection-token: {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
        token.rps,
        token.p50.as_secs_f64() * 1e3,
        token.p99.as_secs_f64() * 1e3,
        token.errors()
    );
    println!(
        "{name:<10}  static /healthz:  {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
        stat.rps,
        stat.p50.as_secs_f64() * 1e3,
        stat.p99.as_secs_f64() * 1e3,
        stat.errors()
    );
    println!("{name:<10}  ratio token/static: {:.2}", token.rps / stat.rps);
    // The audit writer kept up: one event per answered request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raw = db.raw().await;
    let audited: i64 = sqlx::query_scalar("select count(*) from audit_events where action = 'connection.token'")
        .fetch_one(&raw)
        .await
        .unwrap();
    println!("{name:<10}  audit events for the endpoint: {audited}");
    raw.close().await;
    drop(cloud);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs = std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    println!("{CLIENTS} concurrent clients, {secs} s per route, server = release latchkey-cloud on this machine");
    // BENCH_BACKEND=sqlite|postgres runs one; both by default.
    let only = std::env::var("BENCH_BACKEND").unwrap_or_default();
    if only.is_empty() || only == "sqlite" {
        run(Backend::Sqlite, secs).await;
    }
    if only.is_empty() || only == "postgres" {
        run(Backend::Postgres, secs).await;
    }
}
