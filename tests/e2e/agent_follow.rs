//! The agent follows the cloud (issue 14): `latchkey connect` waits for the consent and runs
//! the first sync, `disconnect` revokes the grant at the provider after a confirmation,
//! `latchkey run` reloads its config and syncs a connection made while it runs within
//! seconds, `status` tells a revoked device and a typo'd org or connector as such, and
//! `service install` writes the user unit. `latchkey` runs as a real process against a real
//! cloud serving the sandbox provider; consents go through the cloud's pages.

use super::agent::{set_items, Agent, SANDBOX_CONNECTOR};
use super::connection_accounts::{connect_as, owner_of};
use latchkey_e2e::{backend_tests, binary, consent, json, Api, Backend, Browser, Cloud, SandboxOrg, TestDb};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

backend_tests!(
    connect_syncs_then_disconnect_revokes,
    typos_and_a_revoked_device_are_named,
    run_follows_config_and_cloud,
    two_accounts_are_named_in_the_config
);

/// A cloud serving the sandbox (no token rate limit), the `acme` org, and a paired agent
/// with `connectors` in its config.
async fn paired(db: &TestDb, connectors: &str) -> (Cloud, Api, SandboxOrg, Agent) {
    let cloud = Cloud::start_with(db, |c| {
        c.sandbox = true;
        c.token_rate_limit = 0;
    })
    .await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let agent = Agent::new(&api.base, connectors);
    agent.login(&api, &org.member).await;
    (cloud, api, org, agent)
}

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

    fn len(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Waits for the process to end (a minute at most); returns its exit code.
    async fn finish(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("did not finish in a minute; stdout:\n{}", self.output()))
            .unwrap();
        // Let the readers take the last lines.
        tokio::time::sleep(Duration::from_millis(200)).await;
        status.code()
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let ok = std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap();
        assert!(ok.success(), "kill -{name} {pid}");
    }
}

/// The member's connections as the cloud lists them to the member's login.
async fn connections(api: &Api, org: &SandboxOrg) -> Vec<serde_json::Value> {
    api.get("/v1/orgs/acme/connections", Some(&org.member.access)).await.ok(200).as_array().unwrap().clone()
}

async fn connect_syncs_then_disconnect_revokes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, org, agent) = paired(&db, SANDBOX_CONNECTOR).await;
    set_items(&api, 50).await;

    // `connect` waits for the consent given in the browser, then runs the first sync, and
    // its output ends with what was synced.
    let mut connect = Live::spawn(&agent, &["connect", "sandbox", "--no-browser"]);
    connect.wait_for(0, "Waiting for the connection", Duration::from_secs(30)).await;
    assert!(connect.output().contains(&format!("{}/connect/acme/sandbox", api.base)), "{}", connect.output());
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(connect.finish().await, Some(0), "{}", connect.output());
    let out = connect.output();
    assert!(out.contains("Connected as sandbox-user."), "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("sandbox: 50 new events"), "the output ends with the sync: {out}");
    assert!(!out.contains("Next: `latchkey sync"), "{out}");
    assert_eq!(agent.tally("sandbox").await.0, 50);

    // Connected already: without a terminal to ask on, it says how to add another account.
    let again = agent.run(&["connect", "sandbox", "--no-browser"]).await;
    let said = again.ok();
    assert!(said.contains("already connected") && said.contains("latchkey connect sandbox --add"), "{said}");

    // `disconnect` wants a confirmation; without a terminal, only --yes gives it.
    let refused = agent.run(&["disconnect", "sandbox"]).await;
    assert!(refused.fails(2).contains("--yes"), "{}", refused.stderr);
    assert_eq!(connections(&api, &org).await.len(), 1, "nothing was disconnected without a confirmation");
    let done = agent.run(&["disconnect", "sandbox", "--yes"]).await;
    assert!(done.ok().contains("Disconnected sandbox (sandbox-user)"), "{}", done.stdout);
    assert_eq!(connections(&api, &org).await, Vec::<serde_json::Value>::new(), "the cloud holds no connection");
    let stats = SandboxOrg::stats(&api).await;
    let grants = stats["grants"].as_array().unwrap();
    assert!(
        !grants.is_empty() && grants.iter().all(|g| g["revoked"] == json!(true)),
        "revoked at the provider: {stats}"
    );
    assert_eq!(agent.tally("sandbox").await.0, 50, "the synced events stay");
    let status = agent.run(&["status"]).await;
    assert!(status.stdout.contains("not connected — run `latchkey connect sandbox`"), "{}", status.stdout);
    let nothing = agent.run(&["disconnect", "sandbox", "--yes"]).await;
    assert!(nothing.ok().contains("not connected"), "{}", nothing.stdout);

    // `--no-sync` connects and stops there.
    set_items(&api, 80).await;
    let mut connect = Live::spawn(&agent, &["connect", "sandbox", "--no-browser", "--no-sync"]);
    connect.wait_for(0, "Waiting for the connection", Duration::from_secs(30)).await;
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(connect.finish().await, Some(0), "{}", connect.output());
    let out = connect.output();
    assert!(out.contains("Connected as sandbox-user.") && out.contains("--no-sync"), "{out}");
    assert_eq!(agent.tally("sandbox").await.0, 50, "--no-sync synced nothing");
    assert_eq!(connections(&api, &org).await[0]["status"], "active");
}

async fn typos_and_a_revoked_device_are_named(backend: Backend) {
    let db = TestDb::new(backend).await;
    let connectors = "[[connector]]\nname = \"good\"\nkind = \"sandbox\"\norg = \"acme\"\nconnector_key = \"sandbox\"\n\n\
                      [[connector]]\nname = \"wrongorg\"\nkind = \"sandbox\"\norg = \"acme-typo\"\nconnector_key = \"sandbox\"\n\n\
                      [[connector]]\nname = \"wrongkey\"\nkind = \"sandbox\"\norg = \"acme\"\nconnector_key = \"sandbx\"\n";
    let (_cloud, api, org, agent) = paired(&db, connectors).await;
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);

    // A typo fails `connect` at once, naming what exists, instead of a ten-minute wait.
    let started = Instant::now();
    let r = agent.run(&["connect", "wrongorg", "--no-browser"]).await;
    let err = r.fails(1);
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    for wanted in ["the cloud has no org `acme-typo`", "orgs you are in: acme", "fix: correct `org`", "latchkey.toml"] {
        assert!(err.contains(wanted), "{wanted:?} in:\n{err}");
    }
    assert!(!r.stdout.contains("Waiting"), "{}", r.stdout);
    let r = agent.run(&["connect", "wrongkey", "--no-browser"]).await;
    let err = r.fails(1);
    for wanted in ["org `acme` has no connector `sandbx`", "its connectors: sandbox", "fix: correct `connector_key`"] {
        assert!(err.contains(wanted), "{wanted:?} in:\n{err}");
    }
    let r = agent.run(&["sync", "wrongkey"]).await;
    assert!(r.fails(1).contains("has no connector `sandbx`; its connectors: sandbox"), "{}", r.stderr);

    // `status` says the same, next to the connector that is fine.
    let status = agent.run(&["status"]).await;
    assert_eq!(status.code, Some(1), "{}", status.stdout);
    for wanted in [
        "paired:     yes",
        "active, as sandbox-user",
        "the cloud has no org `acme-typo` that you can see; orgs you are in: acme",
        "org `acme` has no connector `sandbx`; its connectors: sandbox",
    ] {
        assert!(status.stdout.contains(wanted), "{wanted:?} in:\n{}", status.stdout);
    }

    // The device is unpaired on the cloud: `status` says so, never "paired: yes".
    let devices = api.get("/v1/devices", Some(&org.member.access)).await.ok(200);
    let id = devices[0]["id"].as_str().unwrap().to_owned();
    api.delete(&format!("/v1/devices/{id}"), Some(&org.member.access)).await.ok(204);
    let status = agent.run(&["status"]).await;
    assert_eq!(status.code, Some(1), "{}", status.stdout);
    assert!(
        status.stdout.contains("paired:     no — not paired (revoked on the cloud) — run `latchkey login`"),
        "{}",
        status.stdout
    );
    assert!(!status.stdout.contains("paired:     yes"), "{}", status.stdout);
    assert!(!status.stdout.contains("does not accept this machine's token"), "{}", status.stdout);
}

async fn run_follows_config_and_cloud(backend: Backend) {
    let db = TestDb::new(backend).await;
    let first = "cloud_poll = \"1s\"\n\n[[connector]]\nname = \"first\"\nkind = \"sandbox\"\norg = \"acme\"\n\
                 connector_key = \"sandbox\"\nschedule = \"15m\"\n";
    let (_cloud, api, org, agent) = paired(&db, first).await;
    set_items(&api, 30).await;
    let config = agent.dir.path().join("latchkey.toml");
    let write_config = |text: &str| {
        // As an editor saves: a new file renamed over the old one.
        let tmp = agent.dir.path().join("latchkey.toml.new");
        std::fs::write(&tmp, format!("cloud_url = \"{}\"\n\n{text}", api.base)).unwrap();
        std::fs::rename(&tmp, &config).unwrap();
    };

    let mut run = Live::spawn(&agent, &["run"]);
    let at = run.wait_for(0, "first: error: connector `first` is not connected", Duration::from_secs(30)).await;

    // A connection made while `run` runs is synced within seconds, not at the next tick
    // (15 minutes away).
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let consented = Instant::now();
    let woke = run
        .wait_for(at, "first: connection \"sandbox-user\" is active on the cloud: syncing now", Duration::from_secs(10))
        .await;
    run.wait_for(woke, "first: 30 new events", Duration::from_secs(10)).await;
    assert!(consented.elapsed() < Duration::from_secs(10), "synced {:?} after the consent", consented.elapsed());
    assert_eq!(agent.tally("first").await.0, 30);

    // SIGHUP reloads (here: nothing changed).
    let from = run.len();
    run.signal("HUP");
    run.wait_for(from, "config reloaded (SIGHUP): no connector changed", Duration::from_secs(10)).await;

    // A connector added to the file starts without a restart, and syncs at once.
    let from = run.len();
    let second = "[[connector]]\nname = \"second\"\nkind = \"sandbox\"\norg = \"acme\"\nconnector_key = \"sandbox\"\n";
    write_config(&format!("cloud_poll = \"1s\"\n\n{}\n{second}", &first[first.find("[[connector]]").unwrap()..]));
    let at = run.wait_for(from, "config reloaded (the file changed): added second", Duration::from_secs(10)).await;
    run.wait_for(at, "second: 30 new events", Duration::from_secs(15)).await;
    assert_eq!(agent.tally("second").await.0, 30);

    // An invalid file is reported, and the running config kept.
    let from = run.len();
    write_config("cloud_poll = \"1s\"\n\n[[connector]]\nname = \"broken\"\nkind = \"myspace\"\n");
    let at = run
        .wait_for(
            from,
            "config not reloaded (the file changed); still running the previous one",
            Duration::from_secs(10),
        )
        .await;
    run.wait_for(at, "unknown variant `myspace`", Duration::from_secs(1)).await;
    assert_eq!(run.child.try_wait().unwrap(), None, "still running");

    // A connector removed from the file stops.
    let from = run.len();
    write_config(&format!("cloud_poll = \"1s\"\n\n{second}"));
    run.wait_for(from, "config reloaded (the file changed): removed first", Duration::from_secs(10)).await;

    run.signal("TERM");
    assert_eq!(run.finish().await, Some(0), "{}", run.output());
    assert!(run.output().ends_with("stopped"), "{}", run.output());
}

/// `service install --print` shows the unit for this platform, built from deploy/ with this
/// agent's binary, config and data dir; `--no-enable` writes it where the service manager
/// looks (here under a temporary XDG_CONFIG_HOME) and `uninstall` removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_install_writes_the_unit_for_this_platform() {
    let home = tempfile::tempdir().unwrap();
    let mut agent = Agent::new("http://127.0.0.1:9", "");
    agent.env.push(("HOME".into(), home.path().display().to_string()));
    agent.env.push(("XDG_CONFIG_HOME".into(), home.path().join("config").display().to_string()));
    let bin = binary("latchkey");
    let config = agent.dir.path().join("latchkey.toml");
    let data = agent.data_dir();

    let printed = agent.run(&["service", "install", "--print"]).await.ok().to_owned();
    let plist = agent.run(&["service", "install", "--kind", "launchd", "--print"]).await.ok().to_owned();
    assert!(plist.contains(&format!("<string>{}</string>\n    <string>run</string>", bin.display())), "{plist}");
    assert!(plist.contains(&format!("<string>{}</string>", data.display())), "{plist}");
    assert!(plist.contains("<key>RunAtLoad</key>"), "{plist}");

    if cfg!(target_os = "linux") {
        for wanted in [
            format!("ExecStart=\"{}\" run", bin.display()),
            format!("Environment=\"LATCHKEY_DATA_DIR={}\"", data.display()),
            format!("Environment=\"LATCHKEY_CONFIG={}\"", config.display()),
            format!("ReadWritePaths=-\"{}\"", data.display()),
            "WantedBy=default.target".to_owned(),
        ] {
            assert!(printed.contains(&wanted), "{wanted:?} in:\n{printed}");
        }
        let unit = home.path().join("config/systemd/user/latchkey-agent.service");
        assert!(!unit.exists(), "--print writes nothing");
        let installed = agent.run(&["service", "install", "--no-enable"]).await;
        assert!(installed.ok().contains(&unit.display().to_string()), "{}", installed.stdout);
        assert!(
            installed.stdout.contains("latchkey login"),
            "it says the machine is not paired yet: {}",
            installed.stdout
        );
        assert_eq!(std::fs::read_to_string(&unit).unwrap(), printed, "the file is what --print shows");
        let removed = agent.run(&["service", "uninstall", "--no-enable"]).await;
        assert!(removed.ok().contains("Removed"), "{}", removed.stdout);
        assert!(!unit.exists());
    } else if cfg!(target_os = "macos") {
        assert_eq!(printed, plist);
    }
}

/// Two accounts on one connector: the agent does not guess. A connector entry without a
/// `connection` fails with both labels and the line to add; with the line, the token and
/// the sync are the named account's.
async fn two_accounts_are_named_in_the_config(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, org, agent) = paired(&db, SANDBOX_CONNECTOR).await;
    set_items(&api, 20).await;
    let browser = Browser::new();
    assert!(browser.login(&api.base, &org.member).await.status.is_redirection());
    SandboxOrg::faults(&api, json!({"auto_approve": true})).await;
    connect_as(&api, &browser, "", "alice").await;
    connect_as(&api, &browser, "?add=1", "bob").await;

    let refused = agent.run(&["sync", "sandbox"]).await;
    assert_ne!(refused.code, Some(0), "a sync with two accounts and none named: {}", refused.stdout);
    for needle in ["alice", "bob", "connection = \""] {
        assert!(refused.stderr.contains(needle), "{needle:?} not in:\n{}", refused.stderr);
    }
    assert_eq!(agent.tally("sandbox").await.0, 0, "nothing synced from a guessed account");

    let config = agent.dir.path().join("latchkey.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("schedule = \"15m\"", "schedule = \"15m\"\nconnection = \"bob\"")).unwrap();
    let token = agent.run(&["token", "sandbox"]).await;
    assert_eq!(owner_of(&api, token.ok().trim()).await, "bob", "the named account's token");
    agent.run(&["sync", "sandbox"]).await.ok();
    assert_eq!(agent.tally("sandbox").await.0, 20, "bob's items synced");
}
