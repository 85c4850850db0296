//! The database goes away and comes back. Meanwhile token requests fail fast (503 with
//! `Retry-After`, within 2 s, never a 500), `/readyz` says not ready and the process lives
//! on; once the database is back, the same process serves again within 5 s, without a
//! restart. On SQLite, while another process holds the write lock, reads still serve and a
//! request that must write answers 503 (after the busy timeout) and writes nothing.

use latchkey_e2e::{consent, json, Api, Backend, CloudProcess, OwnPg, Reply, SandboxOrg, TestDb};
use std::time::{Duration, Instant};

async fn token(api: &Api, pat: &str) -> Reply {
    api.post("/oauth/connection-token", Some(pat), json!({"org": "acme", "connector_key": "sandbox"})).await
}

/// A connected member's PAT on a fresh cloud.
async fn connected(api: &Api) -> String {
    connected_member(api).await.1
}

/// A connected member and their PAT on a fresh cloud.
async fn connected_member(api: &Api) -> (latchkey_e2e::User, String) {
    let org = SandboxOrg::setup(api).await;
    let (_, page) = consent(api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let pat = api.pat(&org.member, &["connections:token"]).await.1;
    (org.member, pat)
}

/// The value of an unlabelled sample in a metrics text.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{metrics}"))
}

/// Asks until the answer is 200; how long that took. Every answer meanwhile is a 503.
async fn until_served(api: &Api, pat: &str, limit: Duration, log: impl Fn() -> String) -> Duration {
    let started = Instant::now();
    loop {
        let r = token(api, pat).await;
        if r.status == 200 {
            return started.elapsed();
        }
        r.assert_error(503, "service_unavailable");
        assert!(started.elapsed() < limit, "not serving {limit:?} after the database returned:\n{}", log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_answers_fast_503s_and_the_replica_serves_again_without_a_restart() {
    let Some(pg) = OwnPg::start() else { return };
    let db = TestDb::at(Backend::Postgres, pg.url());
    let cloud = CloudProcess::spawn(&db, &[("LATCHKEY_SANDBOX", "1"), ("LATCHKEY_REFRESHER_INTERVAL_SECS", "1")]).await;
    let api = cloud.api();
    let pat = connected(&api).await;
    token(&api, &pat).await.ok(200);

    pg.stop();
    let mut slowest = Duration::ZERO;
    for _ in 0..8 {
        let asked = Instant::now();
        let r = token(&api, &pat).await;
        let took = asked.elapsed();
        slowest = slowest.max(took);
        r.assert_error(503, "service_unavailable");
        assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok()), "Retry-After: {:?}", r.headers);
        assert!(took < Duration::from_secs(2), "a 503 took {took:?}");
    }
    let ready = api.get("/readyz", None).await;
    ready.assert_error(503, "service_unavailable");
    assert_eq!(api.get("/healthz", None).await.status, 200, "the process lives on");
    let metrics = api.get("/metrics", None).await.text;
    assert!(sample(&metrics, "latchkey_db_unavailable_total") >= 1.0, "{metrics}");
    // Operators alert on token 5xx by outcome: an outage is counted as one, not as a bug.
    let outage = r#"latchkey_connection_token_answers_total{outcome="service_unavailable"}"#;
    assert!(sample(&metrics, outage) >= 8.0, "{metrics}");
    assert!(!metrics.contains(r#"outcome="server_error""#), "{metrics}");

    pg.start_again();
    let back = until_served(&api, &pat, Duration::from_secs(5), || cloud.log_text()).await;
    api.get("/readyz", None).await.ok(200);
    eprintln!("PostgreSQL outage: slowest 503 {slowest:?}; serving again {back:?} after the database returned");
    let log = cloud.log_text();
    assert!(log.contains("the database is unavailable"), "a warning says why:\n{log}");
    assert!(!log.contains("panicked") && !log.contains("request failed"), "no panic, no 500:\n{log}");
    // The audit events held through the outage are written once it ends.
    let audited = db.count("select count(*) from audit_events where action = 'connection.token'").await;
    assert!(audited >= 2, "{audited}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_database_answers_503_then_serves_again() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud =
        CloudProcess::spawn(&db, &[("LATCHKEY_SANDBOX", "1"), ("LATCHKEY_SQLITE_BUSY_TIMEOUT_MS", "300")]).await;
    let api = cloud.api();
    let (member, pat) = connected_member(&api).await;
    token(&api, &pat).await.ok(200);

    // Another process holds the write lock (a backup tool, a stuck migration).
    let raw = db.raw().await;
    let mut holder = raw.acquire().await.unwrap();
    sqlx::query("begin exclusive").execute(&mut *holder).await.unwrap();
    // Reads go on beside a writer (WAL): the token endpoint, whose writes (audit, last
    // use) are queued, still serves.
    token(&api, &pat).await.ok(200);
    // A request that must write waits the busy timeout, then answers 503.
    let asked = Instant::now();
    let r =
        api.post("/v1/tokens", Some(&member.access), json!({"name": "during the lock", "scopes": ["orgs:read"]})).await;
    let took = asked.elapsed();
    let why = r.assert_error(503, "service_unavailable");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert!(took < Duration::from_secs(2), "the 503 took {took:?}");
    sqlx::query("commit").execute(&mut *holder).await.unwrap();
    drop(holder);
    raw.close().await;

    let back = Instant::now();
    api.post("/v1/tokens", Some(&member.access), json!({"name": "after the lock", "scopes": ["orgs:read"]}))
        .await
        .ok(201);
    let back = back.elapsed();
    assert_eq!(db.count("select count(*) from pats where name = 'during the lock'").await, 0, "nothing half-written");
    eprintln!("SQLite locked: 503 ({why}) after {took:?}; writing again {back:?} after the lock was released");
    let log = cloud.log_text();
    assert!(log.contains("the database is unavailable") && log.contains("locked"), "a warning says why:\n{log}");
    assert!(!log.contains("panicked") && !log.contains("request failed"), "no panic, no 500:\n{log}");
}

/// A replica started before its database (compose and Kubernetes start them together)
/// waits for it instead of exiting, and becomes ready once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_before_its_database_waits_for_it() {
    let Some(pg) = OwnPg::start() else { return };
    let db = TestDb::at(Backend::Postgres, pg.url());
    pg.stop();
    // A process that gave up would exit, and `try_spawn` would say so with its log.
    let (cloud, ()) = tokio::join!(CloudProcess::try_spawn(&db, &[]), async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        pg.start_again();
    });
    let cloud = cloud.unwrap_or_else(|log| panic!("not ready after the database returned:\n{log}"));
    cloud.api().get("/readyz", None).await.ok(200);
    assert!(cloud.log_text().contains("not answering yet"), "the wait is logged:\n{}", cloud.log_text());
}
