//! Zero-downtime operations under a steady token load: three `latchkey-cloud` replicas on
//! one PostgreSQL the test owns, behind nginx running the shipped
//! `deploy/nginx/latchkey.conf`, with the sandbox provider in its own process issuing
//! short-lived access tokens (so refreshes happen throughout) and rotating refresh tokens
//! (so a lost or reused one would revoke its grant).
//!
//! 1. steady state: no failed request;
//! 2. rolling restart (SIGTERM, exit 0, start again on the same port, ready, next): no
//!    failed request;
//! 3. SIGKILL of a replica, then a restart: no more failures than requests in flight;
//! 4. PostgreSQL stopped for 10 s: only fast 503s meanwhile, every `/readyz` 503; every
//!    replica serves again within 5 s of the restart; then no refresh token was reused at
//!    the provider and every grant is alive.
//!
//! Beside the token load, a probe of POSTs that nginx never repeats shows that no request
//! sent to a stopping replica is reset (the token fetch alone may be retried elsewhere).
//!
//! Each phase prints its figures: requests, failures by status, p50/p99/max latency.

use latchkey_e2e::{json, Api, Backend, Browser, CloudProcess, Nginx, OwnPg, SandboxOrg, TestDb};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REPLICAS: usize = 3;
const CLIENTS: usize = 24;
/// Clients of the probe (see below), without a pause: as many new connections to a stopping
/// replica as the token load opens, so a reset at its stop would show.
const PROBES: usize = 6;
const MEMBERS: usize = 4;
/// As the shipped configs drain (the test default is 0 s).
const DRAIN_SECS: &str = "2";
/// Each client's pause between requests: a steady load, not a saturating one, on 2 cores.
const THINK: Duration = Duration::from_millis(20);
const OUTAGE: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Setup,
    Steady,
    RollingRestart,
    Sigkill,
    DbOutage,
    DbBack,
    After,
}

/// One token request through nginx: the phase it started in, its status (0: no HTTP
/// answer at all) and how long it took.
struct Sample {
    phase: Phase,
    status: u16,
    took: Duration,
}

/// A load through nginx: the token load (`CLIENTS` tasks, each asking
/// `POST /oauth/connection-token` with one member's PAT, in a loop), or the probe.
struct Load {
    name: &'static str,
    /// The status of a request that did not fail.
    ok: u16,
    phase: Mutex<Phase>,
    stop: AtomicBool,
    in_flight: AtomicUsize,
    samples: Mutex<Vec<Sample>>,
}

impl Load {
    fn set(&self, phase: Phase) {
        *self.phase.lock().unwrap() = phase;
    }

    fn of(&self, phase: Phase) -> Vec<(u16, Duration)> {
        self.samples.lock().unwrap().iter().filter(|s| s.phase == phase).map(|s| (s.status, s.took)).collect()
    }

    /// Prints the phase's figures and returns its failures by status.
    fn report(&self, phase: Phase, note: &str) -> BTreeMap<u16, usize> {
        let samples = self.of(phase);
        let mut took: Vec<Duration> = samples.iter().map(|(_, t)| *t).collect();
        took.sort();
        let at = |q: usize| took.get((took.len() * q / 100).min(took.len().saturating_sub(1))).copied();
        let mut failures = BTreeMap::new();
        for (status, _) in samples.iter().filter(|(s, _)| *s != self.ok) {
            *failures.entry(*status).or_insert(0) += 1;
        }
        let failed: usize = failures.values().sum();
        let by_status: Vec<String> = failures
            .iter()
            .map(|(s, n)| format!("{}: {n}", if *s == 0 { "no answer".into() } else { s.to_string() }))
            .collect();
        eprintln!(
            "{} {phase:?}: {} requests, {failed} failed {{{}}}, latency p50 {:?} p99 {:?} max {:?}{note}",
            self.name,
            samples.len(),
            by_status.join(", "),
            at(50).unwrap_or_default(),
            at(99).unwrap_or_default(),
            took.last().copied().unwrap_or_default(),
        );
        assert!(!samples.is_empty(), "no requests ran in phase {phase:?}");
        failures
    }
}

async fn client_loop(load: Arc<Load>, client: reqwest::Client, url: String, pat: Option<String>, think: Duration) {
    let body = json!({"org": "acme", "connector_key": "sandbox"});
    while !load.stop.load(Ordering::SeqCst) {
        let phase = *load.phase.lock().unwrap();
        load.in_flight.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        let mut request = client.post(&url).json(&body);
        if let Some(pat) = &pat {
            request = request.bearer_auth(pat);
        }
        let status = match request.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                // The answer counts once its body is in.
                if r.bytes().await.is_ok() {
                    status
                } else {
                    0
                }
            }
            Err(_) => 0,
        };
        let took = started.elapsed();
        load.in_flight.fetch_sub(1, Ordering::SeqCst);
        load.samples.lock().unwrap().push(Sample { phase, status, took });
        tokio::time::sleep(think).await;
    }
}

async fn token(api: &Api, pat: &str) -> latchkey_e2e::Reply {
    api.post("/oauth/connection-token", Some(pat), json!({"org": "acme", "connector_key": "sandbox"})).await
}

async fn spawn_replica(db: &TestDb, port: u16, env: &[(String, String)]) -> CloudProcess {
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    CloudProcess::spawn_on(db, port, &borrowed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_sigkill_and_a_database_outage_under_token_load() {
    let Some(pg) = OwnPg::start() else { return };
    let nginx_port = latchkey_e2e::free_port();
    let ports: Vec<u16> = (0..REPLICAS).map(|_| latchkey_e2e::free_port()).collect();
    let upstreams: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let Some(nginx) = Nginx::start(nginx_port, &upstreams).await else { return };
    let public = nginx.base.clone();

    let provider_db = TestDb::new(Backend::Sqlite).await;
    let provider = CloudProcess::spawn(&provider_db, &[("LATCHKEY_SANDBOX", "1")]).await;
    let sandbox = provider.api();
    let db = TestDb::at(Backend::Postgres, pg.url());
    let config = latchkey_e2e::sandbox_provider_config(db.dir.path(), &provider.base);
    let env: Vec<(String, String)> = [
        ("LATCHKEY_CONFIG", config.to_str().unwrap()),
        ("LATCHKEY_PUBLIC_URL", public.as_str()),
        ("LATCHKEY_DRAIN_SECS", DRAIN_SECS),
        ("LATCHKEY_TRUSTED_PROXY_HOPS", "1"),
        ("LATCHKEY_TOKEN_RATE_LIMIT", "0"),
        // Access tokens live 8 s at the sandbox: refreshed in their last 3 s, by a request
        // or by the background refresher, so refreshes go on through every phase.
        ("LATCHKEY_REFRESH_WINDOW_SECS", "3"),
        ("LATCHKEY_REFRESHER_LEAD_SECS", "3"),
        ("LATCHKEY_REFRESHER_INTERVAL_SECS", "1"),
        ("LATCHKEY_REFRESH_LEASE_SECS", "3"),
        ("LATCHKEY_PROVIDER_TIMEOUT_SECS", "5"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    // The first one migrates the empty database; the others find it done.
    let mut replicas = vec![spawn_replica(&db, ports[0], &env).await];
    for port in &ports[1..] {
        replicas.push(spawn_replica(&db, *port, &env).await);
    }

    // Members connected through nginx, as a browser would, each with a PAT.
    let api = Api::new(&public);
    let org = SandboxOrg::setup_at(&api, &sandbox, &public).await;
    SandboxOrg::faults(
        &sandbox,
        json!({"auto_approve": true, "rotate_refresh_tokens": true, "access_token_ttl_secs": 8}),
    )
    .await;
    let mut members = vec![org.member.clone()];
    for i in 1..MEMBERS {
        let member = api.user(&format!("member{i}")).await;
        api.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&member.access), None).await.ok(200);
        members.push(member);
    }
    let mut pats = Vec::new();
    for member in &members {
        let browser = Browser::new();
        assert!(browser.login(&public, member).await.status.is_redirection());
        let (_, page) = browser.connect(&public, "acme", "sandbox").await;
        assert_eq!(page.status, 200, "{}", page.text);
        pats.push(api.pat(member, &["connections:token"]).await.1);
    }

    let load = Arc::new(Load {
        name: "chaos",
        ok: 200,
        phase: Mutex::new(Phase::Setup),
        stop: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        samples: Mutex::new(Vec::new()),
    });
    // One client (one connection pool to nginx) per task, as separate agents would be.
    let url = format!("{public}/oauth/connection-token");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            tokio::spawn(client_loop(load.clone(), client, url.clone(), Some(pats[i % MEMBERS].clone()), THINK))
        })
        .collect();
    // The probe: POSTs that nginx never repeats once sent (`location /`), each answered 401
    // without a credential and changing nothing. One that reached a stopping replica and
    // was reset instead of answered shows as a 502.
    let probe = Arc::new(Load {
        name: "probe (unretried POST)",
        ok: 401,
        phase: Mutex::new(Phase::Setup),
        stop: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        samples: Mutex::new(Vec::new()),
    });
    let probe_clients: Vec<_> = (0..PROBES)
        .map(|_| {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            tokio::spawn(client_loop(probe.clone(), client, format!("{public}/v1/orgs"), None, Duration::ZERO))
        })
        .collect();
    let started = Instant::now();

    // 1. Steady state.
    load.set(Phase::Steady);
    probe.set(Phase::Steady);
    tokio::time::sleep(Duration::from_secs(4)).await;
    load.set(Phase::RollingRestart);
    probe.set(Phase::RollingRestart);
    let steady = load.report(Phase::Steady, "");
    assert!(steady.is_empty(), "failures in steady state: {steady:?}\n{}", nginx.error_log());

    // 2. Rolling restart: each replica in turn drains, exits 0 and comes back on its port.
    let mut exits = Vec::new();
    for i in 0..REPLICAS {
        let signalled = Instant::now();
        replicas[i].send_term();
        let exit = replicas[i].wait_exit(Duration::from_secs(20)).await;
        assert_eq!(exit, Some(Some(0)), "replica {i} did not exit 0 after SIGTERM:\n{}", replicas[i].log_text());
        let exited = signalled.elapsed();
        replicas[i] = spawn_replica(&db, ports[i], &env).await;
        exits.push(format!("replica {i}: exit 0 after {exited:?}, ready again after {:?}", signalled.elapsed()));
    }
    load.set(Phase::Sigkill);
    probe.stop.store(true, Ordering::SeqCst);
    let rolling = load.report(Phase::RollingRestart, &format!(" ({})", exits.join("; ")));
    assert!(rolling.is_empty(), "failures during the rolling restart: {rolling:?}\n{}", nginx.error_log());
    for client in probe_clients {
        client.await.unwrap();
    }
    for phase in [Phase::Steady, Phase::RollingRestart] {
        let failed = probe.report(phase, "");
        assert!(failed.is_empty(), "unretried POSTs failed in {phase:?}: {failed:?}\n{}", nginx.error_log());
    }

    // 3. SIGKILL of one replica mid-load, then it is started again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let in_flight = load.in_flight.load(Ordering::SeqCst);
    replicas[1].kill();
    let killed = Instant::now();
    replicas[1] = spawn_replica(&db, ports[1], &env).await;
    let back = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.set(Phase::DbOutage);
    let sigkill = load.report(
        Phase::Sigkill,
        &format!(" ({in_flight} requests in flight at the kill, over all replicas; ready again after {back:?})"),
    );
    let failed: usize = sigkill.values().sum();
    assert!(failed <= in_flight, "{failed} failures, more than the {in_flight} in flight at the kill: {sigkill:?}");

    // 4. PostgreSQL stops for 10 s: fast 503s only, no replica ready.
    let outage_started = Instant::now();
    pg.stop();
    let mut not_ready = 0;
    while outage_started.elapsed() < OUTAGE {
        tokio::time::sleep(Duration::from_secs(2)).await;
        for replica in &replicas {
            let ready = replica.api().get("/readyz", None).await;
            assert_eq!(ready.status, 503, "/readyz of {} during the outage: {}", replica.base, ready.text);
            not_ready += 1;
        }
    }
    pg.start_again();
    let restarted = Instant::now();
    load.set(Phase::DbBack);
    // Each replica, asked directly, serves tokens within 5 s of the database's return.
    let mut serving_after = Vec::new();
    for replica in &replicas {
        let api = replica.api();
        loop {
            let r = token(&api, &pats[0]).await;
            if r.status == 200 {
                break;
            }
            r.assert_error(503, "service_unavailable");
            assert!(
                restarted.elapsed() < Duration::from_secs(5),
                "{} does not serve 5 s after the database returned:\n{}",
                replica.base,
                replica.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        serving_after.push(format!("{:?}", restarted.elapsed()));
    }
    load.set(Phase::After);
    let outage = load.report(
        Phase::DbOutage,
        &format!(
            " (every /readyz 503: {not_ready} checks; every replica served again within [{}] of the restart)",
            serving_after.join(", ")
        ),
    );
    let db_back = load.report(Phase::DbBack, "");
    for phase in [Phase::DbOutage, Phase::DbBack] {
        for (status, took) in load.of(phase).into_iter().filter(|(s, _)| *s != 200) {
            assert_eq!(status, 503, "{phase:?}: only 503s while the database is out: {outage:?} {db_back:?}");
            assert!(took < Duration::from_secs(2), "{phase:?}: a 503 took {took:?}");
        }
    }

    // Afterwards: steady again, no refresh token reused, every grant alive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.unwrap();
    }
    let after = load.report(Phase::After, "");
    assert!(after.is_empty(), "failures after the outage: {after:?}\n{}", nginx.error_log());
    let stats = SandboxOrg::stats(&sandbox).await;
    let grants = stats["grants"].as_array().unwrap();
    assert_eq!(grants.len(), MEMBERS, "{stats}");
    let refreshes: u64 = grants.iter().map(|g| g["token_requests"]["refresh_token"].as_u64().unwrap()).sum();
    for grant in grants {
        assert_eq!(grant["failed_token_requests"], 0, "a refresh token was reused or refused: {stats}");
        assert_eq!(grant["revoked"], false, "a grant was revoked: {stats}");
    }
    for pat in &pats {
        token(&api, pat).await.ok(200);
    }
    let health = api.get("/v1/orgs/acme/connections/health", Some(&org.admin.access)).await.ok(200);
    let connections = health.as_array().unwrap();
    assert_eq!(connections.len(), MEMBERS, "{health}");
    assert!(connections.iter().all(|c| c["status"] == "active"), "every connection active: {health}");
    eprintln!(
        "chaos: {refreshes} refreshes at the provider over {:?}, none reused, {MEMBERS} grants alive and active",
        started.elapsed()
    );
    let nginx_log = nginx.error_log();
    let count = |needle: &str| nginx_log.lines().filter(|l| l.contains(needle)).count();
    eprintln!(
        "chaos: nginx saw {} connections refused (retried elsewhere), {} reset and {} closed after a request was sent",
        count("(111: Connection refused)"),
        count("(104: Connection reset by peer)"),
        count("prematurely closed"),
    );
    for replica in &replicas {
        let log = replica.log_text();
        assert!(!log.contains("panicked"), "{}:\n{log}", replica.base);
    }
    drop(nginx);
}
