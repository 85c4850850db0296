//! Ten thousand grants expiring together (issue 16, item 3), run on demand, not in the
//! test suite:
//!
//! ```sh
//! cargo build --release --workspace --bins && target/release/bench-refresh-storm
//! BENCH_THROTTLE=12 target/release/bench-refresh-storm   # the provider answers 429 beyond 12 at once
//! ```
//!
//! The provider is the sandbox in a `latchkey-cloud` process of its own (its own SQLite);
//! it rotates refresh tokens and revokes the whole grant when an old one comes back. Three
//! `latchkey-cloud` replicas share one fresh PostgreSQL database and one public URL, with
//! default settings but for what the bench must set (the sandbox as provider, the public
//! URL; `BENCH_REFRESHER_INTERVAL_SECS` if given).
//!
//! Seeding goes through the real flows only: members sign in through the login form and
//! consent through the confirm page and the sandbox's authorize endpoint (`auto_approve`,
//! one `login_hint` per account, `?add=1` for each further account), in parallel. While it
//! runs, the sandbox's access-token lifetime is kept at "until T", so every grant, whenever
//! it was consented, expires at T; T is placed so that none is due for the background
//! refresher (`refresher_lead_secs` before expiry) before seeding is over.
//!
//! Then, while agents (`BENCH_AGENTS`, each its own member PAT, round-robin over the
//! replicas, a random connection of their member per request) keep asking for tokens, the
//! replicas' background refreshers renew everything. Printed: seeding time, the expiry
//! spread, time from "due" until all are renewed (PostgreSQL: every connection's new
//! expiry), the provider's counts (refreshes per grant, failed token requests, revoked
//! grants = reuse detected, peak in flight), the agents' failed requests.
//!
//! The reference, in the same run: the unavoidable work is one refresh call per grant at
//! the allowed concurrency (3 replicas × `refresh_provider_concurrency`, or the provider's
//! own limit if lower), so the bench times that many raw `refresh_token` requests of its
//! own (its own client and grants, each worker rotating along one grant's chain) against
//! the same sandbox, and prints the ratio.
//!
//! Settings: `BENCH_GRANTS` (10000), `BENCH_MEMBERS` (10), `BENCH_AGENTS` (32),
//! `BENCH_AGENT_PAUSE_MS` (100, per agent between requests), `BENCH_SEED_WORKERS` (6),
//! `BENCH_SEED_BUDGET_SECS` (how long seeding may take; default from the grant count),
//! `BENCH_THROTTLE` (the sandbox's `token_concurrency_limit` during the renewal),
//! `BENCH_PROVIDER_DELAY_MS` (0; the sandbox's `token_delay_ms` during the renewal and the
//! reference: a provider with a real network and database behind it),
//! `BENCH_REFRESHER_INTERVAL_SECS` (unset: the cloud's default), `BENCH_TIMEOUT_SECS` (600).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use latchkey_e2e::{hidden_fields, json, Api, Backend, Browser, CloudProcess, SandboxOrg, TestDb, User};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REPLICAS: usize = 3;

struct Settings {
    grants: usize,
    members: usize,
    agents: usize,
    agent_pause: Duration,
    seed_workers: usize,
    seed_budget: u64,
    throttle: Option<u64>,
    provider_delay: u64,
    refresher_interval: Option<u64>,
    timeout: Duration,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(bench());
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn env_opt<T: std::str::FromStr>(key: &str) -> Option<T> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn bench() {
    let grants: usize = env_or("BENCH_GRANTS", 10_000);
    let s = Settings {
        grants,
        members: env_or("BENCH_MEMBERS", 10),
        agents: env_or("BENCH_AGENTS", 32),
        agent_pause: Duration::from_millis(env_or("BENCH_AGENT_PAUSE_MS", 100)),
        seed_workers: env_or("BENCH_SEED_WORKERS", 6),
        // Measured on 2 cores: ~60 consents/s; twice that time, and a minute.
        seed_budget: env_or("BENCH_SEED_BUDGET_SECS", 60 + (grants as u64) / 30),
        throttle: env_opt("BENCH_THROTTLE"),
        provider_delay: env_or("BENCH_PROVIDER_DELAY_MS", 0),
        refresher_interval: env_opt("BENCH_REFRESHER_INTERVAL_SECS"),
        timeout: Duration::from_secs(env_or("BENCH_TIMEOUT_SECS", 600)),
    };
    let defaults = latchkey_cloud::config::Config::default();
    let cap = defaults.refresh_provider_concurrency;
    let lead = defaults.refresher_lead_secs;
    println!(
        "machine: {} cores, {}; load average {}; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        latchkey_e2e::cpu_model(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        String::from_utf8_lossy(&std::process::Command::new("date").arg("-u").output().unwrap().stdout).trim()
    );
    println!(
        "{} grants, {} members, {REPLICAS} replicas on PostgreSQL; cloud defaults: refresh_provider_concurrency {cap}, \
         refresher_concurrency {}, refresher_lead_secs {lead}, refresher_interval_secs {}",
        s.grants,
        s.members,
        defaults.refresher_concurrency,
        s.refresher_interval.map_or(format!("{} (default)", defaults.refresher_interval_secs), |i| format!(
            "{i} (SET BY THE BENCH, default {})",
            defaults.refresher_interval_secs
        )),
    );

    // The provider: the sandbox in its own process, on its own SQLite.
    let provider_db = TestDb::new(Backend::Sqlite).await;
    let provider = CloudProcess::spawn(&provider_db, &[("LATCHKEY_SANDBOX", "1")]).await;
    let sandbox = provider.api();

    // Three replicas on one PostgreSQL behind one public URL (the first replica's).
    let db = TestDb::new(Backend::Postgres).await;
    let config = latchkey_e2e::sandbox_provider_config(db.dir.path(), &provider.base).to_str().unwrap().to_owned();
    let first_port = latchkey_e2e::free_port();
    let public = format!("http://127.0.0.1:{first_port}");
    let mut env = vec![("LATCHKEY_CONFIG".to_owned(), config), ("LATCHKEY_PUBLIC_URL".to_owned(), public.clone())];
    if let Some(i) = s.refresher_interval {
        env.push(("LATCHKEY_REFRESHER_INTERVAL_SECS".to_owned(), i.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut replicas = vec![CloudProcess::spawn_on(&db, first_port, &env).await];
    for _ in 1..REPLICAS {
        replicas.push(CloudProcess::spawn(&db, &env).await);
    }
    let apis: Vec<Api> = replicas.iter().map(CloudProcess::api).collect();
    let api = apis[0].clone();

    // The org, its managed sandbox app and connector; members, each signed in in a browser.
    let org = SandboxOrg::setup_at(&api, &sandbox, &public).await;
    let mut members = vec![org.member.clone()];
    for i in 1..s.members {
        let m = api.user(&format!("member{i}")).await;
        api.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&m.access), None).await.ok(200);
        members.push(m);
    }
    let mut browsers = Vec::new();
    for m in &members {
        let b = Browser::new();
        assert!(b.login(&public, m).await.status.is_redirection());
        browsers.push(b);
    }

    // Seeding: every grant expires at `target`, whenever it is consented.
    SandboxOrg::faults(&sandbox, json!({"auto_approve": true, "rotate_refresh_tokens": true})).await;
    let seed_start = Instant::now();
    let seed_start_unix = unix_now();
    let target = seed_start_unix + lead + i64::try_from(s.seed_budget).unwrap();
    let lifetime = spawn_lifetime_keeper(sandbox.clone(), target);
    let done = Arc::new(AtomicUsize::new(0));
    // Each member's first account alone, then the others with `?add=1`, in parallel.
    for (i, b) in browsers.iter().enumerate() {
        consent(&public, b, "", &format!("m{i}-a0")).await;
    }
    done.fetch_add(browsers.len(), Ordering::SeqCst);
    let next = Arc::new(AtomicUsize::new(browsers.len()));
    let mut workers = Vec::new();
    for _ in 0..s.seed_workers {
        let (browsers, public, next, done) = (browsers.clone(), public.clone(), next.clone(), done.clone());
        let grants = s.grants;
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= grants {
                    break;
                }
                let m = n % browsers.len();
                consent(&public, &browsers[m], "?add=1", &format!("m{m}-a{n}")).await;
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let progress = {
        let done = done.clone();
        let grants = s.grants;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let n = done.load(Ordering::SeqCst);
                eprintln!("  seeding: {n}/{grants}");
                if n >= grants {
                    break;
                }
            }
        })
    };
    for w in workers {
        w.await.unwrap();
    }
    progress.abort();
    lifetime.abort();
    let seed_time = seed_start.elapsed();
    // Renewed tokens live an hour again: renewed ones stand out from the seeded ones.
    SandboxOrg::faults(&sandbox, json!({"access_token_ttl_secs": 3600})).await;
    let due_at = target - lead;
    assert!(
        unix_now() < due_at,
        "seeding took {seed_time:?}, past its budget of {} s: grants came due while seeding (raise BENCH_SEED_BUDGET_SECS)",
        s.seed_budget
    );
    let raw = db.raw().await;
    let (count, min_exp, max_exp): (i64, i64, i64) = sqlx::query_as(
        "select count(*), min(expires_at), max(expires_at) from connections where status = 'active' and refresh_token_ct is not null",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    assert_eq!(count, i64::try_from(s.grants).unwrap(), "every consent made a connection with a refresh token");
    let seeded = SandboxOrg::stats(&sandbox).await;
    let seed_peak = seeded["token_requests_peak_in_flight"].as_u64().unwrap();
    println!(
        "seeded {} grants through the consent pages in {:.1} s ({:.0} consents/s, {} workers); \
         access tokens expire within {} s of each other (at T = seed start + {} s)",
        s.grants,
        seed_time.as_secs_f64(),
        s.grants as f64 / seed_time.as_secs_f64(),
        s.seed_workers,
        max_exp - min_exp,
        target - seed_start_unix,
    );

    // Agents ask for tokens from now until every grant is renewed.
    let agents = Agents::start(&api, &apis, &members, &s).await;
    if let Some(limit) = s.throttle {
        SandboxOrg::faults(&sandbox, json!({"token_concurrency_limit": limit})).await;
        println!("the provider answers 429 (Retry-After: 1) beyond {limit} token requests at once");
    }
    if s.provider_delay > 0 {
        SandboxOrg::faults(&sandbox, json!({"token_delay_ms": s.provider_delay})).await;
        println!("the provider takes {} ms to answer each token request", s.provider_delay);
    }
    let wait = due_at - unix_now();
    println!("waiting {wait} s until the grants come due ({lead} s before they expire)");
    while unix_now() < due_at {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let due = Instant::now();
    let db_name = db.url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let cpu_before = cpu_split(&replicas, &provider, &db_name);
    let renewed_after = target + 600;
    let mut first = None;
    loop {
        let renewed: i64 = sqlx::query_scalar("select count(*) from connections where expires_at > $1")
            .bind(renewed_after)
            .fetch_one(&raw)
            .await
            .unwrap();
        if renewed > 0 && first.is_none() {
            first = Some(due.elapsed());
        }
        if renewed >= count {
            break;
        }
        if due.elapsed() > s.timeout {
            println!("!! only {renewed} of {count} renewed after {:?}", s.timeout);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = due.elapsed();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpu_after = cpu_split(&replicas, &provider, &db_name);
    let (asked, failed, statuses) = agents.stop().await;
    let stats = SandboxOrg::stats(&sandbox).await;
    let statuses_db: Vec<(String, i64)> =
        sqlx::query_as("select status, count(*) from connections group by status").fetch_all(&raw).await.unwrap();
    raw.close().await;

    let first = first.unwrap_or(all);
    println!("\n== renewal");
    println!(
        "all {count} renewed {:.1} s after they came due (first renewal after {:.1} s: the refreshers' next round; \
         then {:.1} s of renewing)",
        all.as_secs_f64(),
        first.as_secs_f64(),
        (all - first).as_secs_f64()
    );
    let p = ProviderCounts::of(&stats, &org.client_id);
    println!(
        "provider refresh requests: {} ({} answered with tokens); grants refreshed exactly once: {}, \
         more than once: {} ({} duplicate refreshes), never: {}",
        p.refresh_requests,
        p.refresh_requests - p.failed,
        p.exactly_once,
        p.more_than_once,
        p.duplicates,
        p.never
    );
    println!(
        "provider: failed token requests {} ({}), reuse detected (grants revoked) {}",
        p.failed,
        if s.throttle.is_some() { "its 429s" } else { "any 429 would count here" },
        p.revoked
    );
    println!(
        "provider peak token requests in flight: {} (during seeding it was {seed_peak}; cap {REPLICAS} × {cap} = {})",
        stats["token_requests_peak_in_flight"],
        REPLICAS * cap
    );
    println!("connections by status: {statuses_db:?}");
    println!("agents: {asked} token requests, {failed} failed {statuses:?}");
    let cpu: Vec<String> = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|((who, after), (_, before))| format!("{who} {:.1}", after - before))
        .collect();
    println!("CPU seconds used from due to all renewed: {}", cpu.join(", "));
    println!(
        "load average at the end of the renewal: {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );

    // The reference: the same number of raw refreshes at the allowed concurrency.
    let concurrency = s.throttle.map_or(REPLICAS * cap, |l| (REPLICAS * cap).min(usize::try_from(l).unwrap()));
    let reference = reference(&sandbox, s.grants, concurrency).await;
    println!("\n== reference: {} raw refresh requests from {concurrency} workers against the same sandbox", s.grants);
    println!(
        "{:.2} s ({:.0}/s); the cloud's renewal, from the first refresh to the last: {:.2} s; ratio {:.2} \
         (from due: ratio {:.2})",
        reference.as_secs_f64(),
        s.grants as f64 / reference.as_secs_f64(),
        (all - first).as_secs_f64(),
        (all - first).as_secs_f64() / reference.as_secs_f64(),
        all.as_secs_f64() / reference.as_secs_f64(),
    );
    let ok = p.refresh_requests - p.failed == s.grants as u64
        && p.exactly_once == s.grants as u64
        && p.revoked == 0
        && failed == 0
        && (s.throttle.is_some() || p.failed == 0);
    println!("\n{}", if ok { "OK" } else { "!! NOT AS EXPECTED" });
    drop(replicas);
    drop(provider);
    if !ok {
        std::process::exit(1);
    }
}

/// Keeps the sandbox's access-token lifetime at "until `target`" (every 200 ms).
fn spawn_lifetime_keeper(sandbox: Api, target: i64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let ttl = (target - unix_now()).max(0);
            SandboxOrg::faults(&sandbox, json!({"access_token_ttl_secs": ttl})).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// One consent through the confirm page and the sandbox, as sandbox user `account`.
async fn consent(public: &str, browser: &Browser, query: &str, account: &str) {
    let path = format!("/connect/acme/sandbox{query}");
    let page = browser.get(&format!("{public}{path}")).await;
    assert_eq!(page.status, 200, "the confirm page of {path}: {}", page.text);
    let start = browser.post_form(public, &path, &hidden_fields(&page.text)).await;
    let provider = start.header("location").unwrap_or_else(|| panic!("no redirect: {} {}", start.status, start.text));
    let (_, callback) = browser.follow(&format!("{provider}&login_hint={account}")).await;
    assert_eq!(callback.status, 200, "consent as {account}: {}", callback.text);
}

/// The sandbox's counters for one client's grants.
struct ProviderCounts {
    refresh_requests: u64,
    failed: u64,
    exactly_once: u64,
    more_than_once: u64,
    duplicates: u64,
    never: u64,
    revoked: u64,
}

impl ProviderCounts {
    fn of(stats: &Value, client_id: &str) -> Self {
        let mut c = ProviderCounts {
            refresh_requests: 0,
            failed: 0,
            exactly_once: 0,
            more_than_once: 0,
            duplicates: 0,
            never: 0,
            revoked: 0,
        };
        for g in stats["grants"].as_array().unwrap().iter().filter(|g| g["client_id"] == client_id) {
            let refreshes = g["token_requests"]["refresh_token"].as_u64().unwrap();
            let failed = g["failed_token_requests"].as_u64().unwrap();
            c.refresh_requests += refreshes;
            c.failed += failed;
            // Successful refreshes of this grant: the failed ones were refreshes too (the
            // code exchange never fails here).
            match refreshes - failed {
                0 => c.never += 1,
                1 => c.exactly_once += 1,
                n => {
                    c.more_than_once += 1;
                    c.duplicates += n - 1;
                }
            }
            c.revoked += u64::from(g["revoked"].as_bool().unwrap());
        }
        c
    }
}

/// Agents asking for tokens in a loop, each with its own PAT.
struct Agents {
    stop: Arc<std::sync::atomic::AtomicBool>,
    asked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<Vec<u16>>>,
}

impl Agents {
    async fn start(api: &Api, apis: &[Api], members: &[User], s: &Settings) -> Self {
        let mut owned = Vec::new();
        for m in members {
            let list = api.get("/v1/orgs/acme/connections", Some(&m.access)).await.ok(200);
            let ids: Vec<String> =
                list.as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect();
            owned.push(Arc::new(ids));
        }
        let (stop, asked, failed) = Default::default();
        let mut agents = Agents { stop, asked, failed, tasks: Vec::new() };
        for i in 0..s.agents {
            let member = i % members.len();
            let (_, pat) = api.pat(&members[member], &["connections:token"]).await;
            let (apis, ids) = (apis.to_vec(), owned[member].clone());
            let (stop, asked, failed) = (agents.stop.clone(), agents.asked.clone(), agents.failed.clone());
            let pause = s.agent_pause;
            agents.tasks.push(tokio::spawn(async move {
                let mut bad = Vec::new();
                let mut n = i;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let api = &apis[n % apis.len()];
                    let pick = (n.wrapping_mul(2_654_435_761)) % ids.len();
                    let body = json!({"org": "acme", "connector_key": "sandbox", "connection": ids[pick]});
                    let r =
                        api.client.post(format!("{}/oauth/connection-token", api.base)).bearer_auth(&pat).json(&body);
                    let status = match r.send().await {
                        Ok(r) => r.status().as_u16(),
                        Err(_) => 0,
                    };
                    asked.fetch_add(1, Ordering::SeqCst);
                    if status != 200 {
                        failed.fetch_add(1, Ordering::SeqCst);
                        bad.push(status);
                    }
                    tokio::time::sleep(pause).await;
                }
                bad
            }));
        }
        agents
    }

    /// Stops them: requests asked, failed, and the failures' statuses (0: no answer).
    async fn stop(self) -> (u64, u64, std::collections::BTreeMap<u16, u64>) {
        self.stop.store(true, Ordering::SeqCst);
        let mut statuses = std::collections::BTreeMap::new();
        for t in self.tasks {
            for status in t.await.unwrap() {
                *statuses.entry(status).or_insert(0) += 1;
            }
        }
        (self.asked.load(Ordering::SeqCst), self.failed.load(Ordering::SeqCst), statuses)
    }
}

/// Times `total` raw refreshes from `concurrency` workers, each rotating along one grant
/// of the bench's own client (registered here), as the least work a refresher can do.
async fn reference(sandbox: &Api, total: usize, concurrency: usize) -> Duration {
    let client_id = format!("bench-reference-{}", uuid::Uuid::new_v4().simple());
    let secret = format!("secret-{}", uuid::Uuid::new_v4().simple());
    let redirect = "http://127.0.0.1:9/callback";
    sandbox
        .post(
            "/sandbox/admin/clients",
            None,
            json!({"client_id": client_id, "client_secret": secret, "redirect_uri": redirect}),
        )
        .await
        .ok(201);
    let token_url = format!("{}/sandbox/token", sandbox.base);
    let mut chains = Vec::new();
    for i in 0..concurrency {
        let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let challenge = b64url(&sha2::Sha256::digest(verifier.as_bytes()));
        let authorize = url::Url::parse_with_params(
            &format!("{}/sandbox/authorize", sandbox.base),
            &[
                ("response_type", "code"),
                ("client_id", &client_id),
                ("redirect_uri", redirect),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("state", "bench"),
                ("login_hint", &format!("reference-{i}")),
            ],
        )
        .unwrap();
        let r = sandbox.client.get(authorize).send().await.unwrap();
        let location = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let code = location.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        let tokens: Value = sandbox
            .client
            .post(&token_url)
            .basic_auth(&client_id, Some(&secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", redirect),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        chains.push(tokens["refresh_token"].as_str().unwrap().to_owned());
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for mut refresh_token in chains {
        let (client, next, token_url) = (sandbox.client.clone(), next.clone(), token_url.clone());
        let (client_id, secret) = (client_id.clone(), secret.clone());
        workers.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::SeqCst) < total {
                let r = client
                    .post(&token_url)
                    .basic_auth(&client_id, Some(&secret))
                    .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh_token)])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let tokens: Value = r.json().await.unwrap();
                refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    started.elapsed()
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

use sha2::Digest as _;

/// CPU seconds (user + system) used so far by the replicas, the provider, the PostgreSQL
/// backends serving the bench's database (others may share the server) and this bench.
fn cpu_split(replicas: &[CloudProcess], provider: &CloudProcess, db_name: &str) -> Vec<(&'static str, f64)> {
    let replicas = replicas.iter().map(|r| cpu_secs(r.pid())).sum();
    // A backend's title is "postgres: [<cluster>: ]<user> <database> <client> <state>".
    let postgres = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let title = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            title.starts_with("postgres:") && title.split_whitespace().any(|w| w == db_name)
        })
        .map(cpu_secs)
        .sum();
    vec![
        ("replicas", replicas),
        ("sandbox", cpu_secs(provider.pid())),
        ("postgres (the bench's database)", postgres),
        ("bench (agents, polling)", cpu_secs(std::process::id())),
    ]
}

fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum();
    // USER_HZ is 100 on Linux.
    ticks as f64 / 100.0
}
