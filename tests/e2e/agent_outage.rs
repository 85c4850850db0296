//! The agent rides through a cloud outage (issue 15, item 4): `latchkey run` against a real
//! `latchkey-cloud` process that is SIGKILLed for longer than a sync interval and started
//! again on the same port. Meanwhile the daemon keeps syncing with its cached token (new
//! items reach the local store), says once that the cloud is away and until when it can go
//! on, `latchkey status` says the same, one-shot commands fail with a clear message, and the
//! daemon neither exits nor spins; once the cloud is back it fetches fresh tokens again.
//! The same with the cloud's PostgreSQL stopped and started under it. The sandbox provider
//! runs in its own process, so that it outlives the cloud's restart.

use super::agent::{set_items, Agent};
use latchkey_e2e::{free_port, json, Api, Backend, Browser, CloudProcess, OwnPg, SandboxOrg, TestDb};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Provider access tokens live this long: the cloud is asked at every sync (a token this
/// short is never reused while the cloud answers), and one fetched before the outage has
/// expired at the provider soon after the cloud is back.
const TOKEN_TTL_SECS: u64 = 40;

/// A `latchkey` process whose stdout lines are collected as they come.
struct Live {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Live {
    fn spawn(agent: &Agent, args: &[&str]) -> Self {
        let mut child = agent.command(args).spawn().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr: Arc<Mutex<String>> = Arc::default();
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut out = BufReader::new(out).lines();
            while let Ok(Some(line)) = out.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut err = BufReader::new(err).lines();
            while let Ok(Some(line)) = err.next_line().await {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Live { child, lines, stderr }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The first line from index `from` on that contains `needle`, waiting up to `within`;
    /// returns its index.
    async fn wait_for(&self, from: usize, needle: &str, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(i) = self.lines.lock().unwrap().iter().skip(from).position(|l| l.contains(needle)) {
                return from + i;
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needle:?} within {within:?}; stdout:\n{}\nstderr:\n{}",
                self.output(),
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn line(&self, i: usize) -> String {
        self.lines.lock().unwrap()[i].clone()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

/// A sandbox in its own process, a cloud on a port of its own using it, the member
/// connected, and a paired agent whose `latchkey run` has synced the first 30 items.
struct World {
    _provider: CloudProcess,
    _provider_db: TestDb,
    sandbox: Api,
    cloud: CloudProcess,
    port: u16,
    public: String,
    env: Vec<(String, String)>,
    /// The agent's `[[connector]]` (and `cloud_poll`) lines.
    connectors: String,
    agent: Agent,
    run: Live,
    /// The index of the first sync's line.
    synced: usize,
}

impl World {
    async fn start(db: &TestDb) -> Self {
        let provider_db = TestDb::new(Backend::Sqlite).await;
        let provider = CloudProcess::spawn(&provider_db, &[("LATCHKEY_SANDBOX", "1")]).await;
        let sandbox = provider.api();
        let config = latchkey_e2e::sandbox_provider_config(db.dir.path(), &provider.base).to_str().unwrap().to_owned();
        let port = free_port();
        let public = format!("http://127.0.0.1:{port}");
        let env = vec![
            ("LATCHKEY_CONFIG".to_owned(), config),
            ("LATCHKEY_PUBLIC_URL".to_owned(), public.clone()),
            ("LATCHKEY_TOKEN_RATE_LIMIT".to_owned(), "0".to_owned()),
        ];
        let cloud = spawn_cloud(db, port, &env).await;
        let api = cloud.api();
        let org = SandboxOrg::setup_at(&api, &sandbox, &public).await;
        SandboxOrg::faults(&sandbox, json!({"auto_approve": true, "access_token_ttl_secs": TOKEN_TTL_SECS})).await;
        let browser = Browser::new();
        assert!(browser.login(&api.base, &org.member).await.status.is_redirection());
        let (_, page) = browser.connect(&api.base, "acme", "sandbox").await;
        assert_eq!(page.status, 200, "{}\n{}", page.text, cloud.log_text());
        set_items(&sandbox, 30).await;

        let connectors = format!(
            "cloud_poll = \"1s\"\n\n[[connector]]\nname = \"sandbox\"\nkind = \"sandbox\"\norg = \"acme\"\n\
             connector_key = \"sandbox\"\nschedule = \"10s\"\nbase_url = \"{}/sandbox\"\n",
            provider.base
        );
        let agent = Agent::new(&public, &connectors);
        agent.login(&api, &org.member).await;
        let run = Live::spawn(&agent, &["run"]);
        let synced = run.wait_for(0, "sandbox: 30 new events", Duration::from_secs(30)).await;
        World {
            _provider: provider,
            _provider_db: provider_db,
            sandbox,
            cloud,
            port,
            public,
            env,
            connectors,
            agent,
            run,
            synced,
        }
    }

    /// Stops `run` with SIGTERM; asserts a clean exit and that `status` no longer speaks
    /// of a running daemon.
    async fn stop(mut self) {
        let pid = self.run.child.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let code = tokio::time::timeout(Duration::from_secs(30), self.run.child.wait()).await.unwrap().unwrap().code();
        assert_eq!(code, Some(0), "{}", self.run.output());
        let status = self.agent.run(&["status"]).await;
        assert!(!status.stdout.contains("`latchkey run`"), "{}", status.stdout);
    }
}

async fn spawn_cloud(db: &TestDb, port: u16, env: &[(String, String)]) -> CloudProcess {
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    CloudProcess::spawn_on(db, port, &borrowed).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_rides_through_a_cloud_restart() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut w = World::start(&db).await;
    let (run, agent, public) = (&mut w.run, &w.agent, w.public.clone());

    // The cloud dies (SIGKILL, as a crashed host): `run` says so once, with until when the
    // connector goes on with its cached token.
    w.cloud.kill();
    let killed = Instant::now();
    let away = run.wait_for(w.synced, "cloud unreachable since", Duration::from_secs(15)).await;
    let line = run.line(away);
    assert!(line.contains("retrying; sandbox: syncing with the cached token until "), "{line}");

    // Another machine's daemon, started while the cloud is away, has no token to go on
    // with: it says so, fails each sync after retrying for half its schedule, and neither
    // exits nor spins.
    let mut cold = Agent::new(&public, &w.connectors);
    let pat = std::fs::read_to_string(agent.data_dir().join("pat")).unwrap();
    cold.env.push(("LATCHKEY_PAT".into(), pat.trim().to_owned()));
    let mut cold_run = Live::spawn(&cold, &["run"]);
    let line = cold_run.line(cold_run.wait_for(0, "cloud unreachable since", Duration::from_secs(15)).await);
    assert!(line.contains("sandbox: no valid token cached, its syncs wait for the cloud"), "{line}");

    // New items at the provider reach the local store while the cloud is away.
    set_items(&w.sandbox, 45).await;
    run.wait_for(away, "sandbox: 15 new events", Duration::from_secs(25)).await;
    assert_eq!(agent.tally("sandbox").await.0, 45);

    // `latchkey status` says what the daemon sees, and exits 1.
    let status = agent.run(&["status"]).await;
    assert_eq!(status.code, Some(1), "{}\n{}", status.stdout, status.stderr);
    for wanted in [
        "NOT reachable",
        "`latchkey run` (pid ",
        "cloud unreachable since ",
        "retrying",
        "token:      syncing with the cached token until ",
        "stored:     45 events",
    ] {
        assert!(status.stdout.contains(wanted), "{wanted:?} in:\n{}", status.stdout);
    }

    let failed = cold_run.wait_for(0, "sandbox: error: could not reach the cloud at ", Duration::from_secs(20)).await;
    assert!(cold_run.line(failed).contains("; next try at "), "{}", cold_run.output());
    let status = cold.run(&["status"]).await;
    assert!(status.stdout.contains("token:      no valid token cached: syncs wait for the cloud"), "{}", status.stdout);

    // One-shot commands retry briefly, then fail clearly: no stack trace, no secret.
    for args in [&["token", "sandbox"][..], &["sync", "sandbox"][..]] {
        let started = Instant::now();
        let r = agent.run(args).await;
        let took = started.elapsed();
        let err = r.fails(1);
        assert!(took < Duration::from_secs(20), "{args:?} took {took:?}");
        assert!(err.contains(&format!("could not reach the cloud at {public}")), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("lk_pat_"), "{args:?}: {err}");
        assert!(r.stdout.trim().is_empty(), "{args:?} printed: {}", r.stdout);
    }

    // Away for longer than a sync interval (10 s); the daemon runs on.
    tokio::time::sleep(Duration::from_secs(22).saturating_sub(killed.elapsed())).await;
    assert!(run.running(), "the daemon is still running:\n{}", run.output());

    // Back on the same port: `run` says so once, and fetches fresh tokens again.
    let _restarted = spawn_cloud(&db, w.port, &w.env).await;
    let back = run.wait_for(away, "cloud reachable again (unreachable from ", Duration::from_secs(15)).await;
    let out = run.output();
    assert_eq!(out.matches("cloud unreachable since").count(), 1, "one line per outage:\n{out}");
    assert!(!out.contains("cannot follow the cloud"), "the poll stays quiet in an outage:\n{out}");
    assert!(!out.contains("sandbox: error"), "no sync failed while the cached token lasted:\n{out}");
    let errors = cold_run.output().matches("sandbox: error").count();
    assert!((1..=3).contains(&errors), "a try per scheduled run, no spin: {errors}\n{}", cold_run.output());
    assert!(cold_run.running(), "{}", cold_run.output());
    set_items(&w.sandbox, 60).await;
    run.wait_for(back, "sandbox: 15 new events", Duration::from_secs(25)).await;
    // The daemon that had no token syncs at its next run.
    let deadline = Instant::now() + Duration::from_secs(25);
    while cold.tally("sandbox").await.0 < 60 {
        assert!(Instant::now() < deadline, "the cold daemon did not catch up:\n{}", cold_run.output());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every token fetched before the outage has expired at the provider by now: a sync
    // that succeeds from here on ran with a fresh one.
    tokio::time::sleep(Duration::from_secs(TOKEN_TTL_SECS + 2).saturating_sub(killed.elapsed())).await;
    let from = run.len();
    let next = run.wait_for(from, "sandbox: ", Duration::from_secs(20)).await;
    assert!(run.line(next).contains("sandbox: 0 new events"), "{}", run.output());
    assert_eq!(agent.tally("sandbox").await.0, 60);

    let status = agent.run(&["status"]).await;
    assert_eq!(status.code, Some(0), "{}\n{}", status.stdout, status.stderr);
    assert!(status.stdout.contains("(reachable)"), "{}", status.stdout);
    assert!(status.stdout.contains("cloud reachable again since "), "{}", status.stdout);
    assert!(!status.stdout.contains("cached token"), "{}", status.stdout);
    w.stop().await;
}

/// The cloud's PostgreSQL stops for 15 s under a running agent: the cloud answers its
/// requests with 5xx meanwhile (503 with `Retry-After` once it drains; whatever it answers,
/// never a token), and the agent syncs on with its cached token, then recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_rides_through_a_database_outage() {
    let Some(pg) = OwnPg::start() else { return };
    let db = TestDb::at(Backend::Postgres, pg.url());
    let mut w = World::start(&db).await;
    let run = &mut w.run;

    pg.stop();
    let stopped = Instant::now();
    let away = run.wait_for(w.synced, "cloud unreachable since", Duration::from_secs(30)).await;
    let line = run.line(away);
    assert!(
        line.contains("(it answered 503 Service Unavailable), retrying; sandbox: syncing with the cached token until "),
        "{line}"
    );
    set_items(&w.sandbox, 45).await;
    let status = w.agent.run(&["status"]).await;
    assert_eq!(status.code, Some(1), "{}\n{}", status.stdout, status.stderr);
    for wanted in
        ["`latchkey run` (pid ", "cloud unreachable since ", "token:      syncing with the cached token until "]
    {
        assert!(status.stdout.contains(wanted), "{wanted:?} in:\n{}", status.stdout);
    }
    run.wait_for(away, "sandbox: 15 new events", Duration::from_secs(40)).await;
    assert!(run.running(), "the daemon is still running:\n{}", run.output());

    tokio::time::sleep(Duration::from_secs(15).saturating_sub(stopped.elapsed())).await;
    pg.start_again();
    let back = run.wait_for(away, "cloud reachable again (unreachable from ", Duration::from_secs(30)).await;
    let out = run.output();
    assert_eq!(out.matches("cloud unreachable since").count(), 1, "one line per outage:\n{out}");
    assert!(!out.contains("sandbox: error"), "no sync failed while the cached token lasted:\n{out}");
    set_items(&w.sandbox, 60).await;
    run.wait_for(back, "sandbox: 15 new events", Duration::from_secs(25)).await;
    assert_eq!(w.agent.tally("sandbox").await.0, 60);
    w.stop().await;
}
