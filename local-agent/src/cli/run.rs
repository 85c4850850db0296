//! `latchkey run`: syncs every connector on its schedule until SIGINT or SIGTERM, one
//! timestamped line per sync, and follows along:
//!
//! - **The config file.** It is read again when its content changes (looked at every
//!   second) and on SIGHUP. Connectors added start at once, removed ones stop after the page
//!   in hand, changed ones restart; an invalid file is reported and the running config kept.
//!   `cloud_url` and `pat` are fixed for the life of the process (a change is reported).
//! - **The cloud.** Every `cloud_poll` (default 5 s) it lists the member's connections
//!   (`GET /v1/connections`, which the device token may read). A connection that became
//!   usable since the last look — new, reconnected, recovered — wakes the connectors that use
//!   it, so a consent given while `run` runs is synced within seconds, not at the next tick.
//!   Polling rather than a server-sent event stream: a short stateless request survives a
//!   cloud restart or drain, any replica answers it, and proxies that buffer or cut long
//!   responses do not matter (see docs/agent.md).
//! - **Outages.** When the cloud is away (restarting, a replica lost, its database down),
//!   each connector goes on syncing with its cached token while the provider accepts it,
//!   and without one retries within half its schedule, then at its next run; the daemon
//!   never exits for it. The outage is logged once when it starts and once when it ends, and
//!   recorded for `latchkey status`.

use super::outage::OutageWatch;
use super::{Agent, Paths};
use crate::attention;
use crate::cloud::{CloudClient, Connection};
use crate::config::{Config, ConnectorConfig};
use crate::error::Result;
use crate::progress::Progress;
use crate::shutdown::{Shutdown, Trigger};
use crate::store::Store;
use crate::sync::{self, SyncContext, SyncOptions};
use crate::token_client::{Patience, TokenClient};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use url::Url;

/// How often the config file (and the cloud's outage state) is looked at.
const CONFIG_CHECK: Duration = Duration::from_secs(1);
/// After a failed sync, the next one waits at least this long, whatever the schedule says.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);

pub(super) async fn run_forever(paths: &Paths) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    agent.require_pat()?;
    let shared = Shared {
        store: Arc::new(paths.store().await?),
        tokens: Arc::new(TokenClient::with_patience(agent.cloud.clone(), Patience::Schedule)),
        cloud_url: Arc::new(agent.config.cloud_url.clone()),
    };
    let stop = Shutdown::on_signals("Stopping: finishing the pages in hand…");
    let mut config = agent.config.clone();
    log(&format!(
        "running {} until SIGINT or SIGTERM; reloading {} when it changes or on SIGHUP; {}",
        plural(config.connectors.len(), "connector"),
        config.path.display(),
        match config.cloud_poll {
            Some(every) => format!("asking the cloud for new connections every {}", secs(every)),
            None => String::from("not following the cloud (cloud_poll = \"off\")"),
        }
    ));
    if config.connectors.is_empty() {
        log(&format!("no connectors yet: add a [[connector]] to {} and it starts at once", config.path.display()));
    }
    let mut follower = Follower::new(agent.cloud.clone());
    // Before any sync starts, so that a connection made from now on is seen as new.
    if config.cloud_poll.is_some() {
        tokio::select! {
            _ = follower.poll(&[]) => {}
            () = stop.wait() => {}
        }
    }
    let mut watch = OutageWatch::new(agent.cloud.clone(), shared.tokens.clone(), paths.data_dir.clone());
    let mut crew = Crew::default();
    crew.apply(&shared, &config.connectors);
    let mut file = ConfigFile::new(config.path.clone());
    let mut hangup = Hangup::new();
    let mut config_tick = tokio::time::interval(CONFIG_CHECK);
    config_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (following, wanted) = tokio::sync::watch::channel(Follow::of(&config));
    let (woken, mut wake) = tokio::sync::mpsc::unbounded_channel();
    let follow_task = tokio::spawn(follow(follower, wanted, woken));
    loop {
        tokio::select! {
            () = stop.wait() => break,
            _ = config_tick.tick() => {
                if file.changed() {
                    reload(paths, &mut config, &mut crew, &shared, "the file changed");
                    following.send_replace(Follow::of(&config));
                }
                for line in watch.tick(&config.connectors) {
                    log(&line);
                }
            }
            () = hangup.recv() => {
                file.changed();
                reload(paths, &mut config, &mut crew, &shared, "SIGHUP");
                following.send_replace(Follow::of(&config));
            }
            Some(name) = wake.recv() => crew.wake(&name),
        }
    }
    follow_task.abort();
    crew.stop_all().await;
    watch.stop();
    shared.store.close().await;
    log("stopped");
    Ok(ExitCode::SUCCESS)
}

fn cloud_interval(every: Option<Duration>) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// What the follower needs from the config: how often to poll, and the connectors to wake.
#[derive(Clone)]
struct Follow {
    every: Option<Duration>,
    connectors: Vec<ConnectorConfig>,
}

impl Follow {
    fn of(config: &Config) -> Self {
        Follow { every: config.cloud_poll, connectors: config.connectors.clone() }
    }
}

/// Polls the cloud every `cloud_poll` in a task of its own, so that a slow or unreachable
/// cloud never holds up a config reload, the outage report or a stop; sends the names of
/// the connectors to wake.
async fn follow(
    mut follower: Follower,
    mut wanted: tokio::sync::watch::Receiver<Follow>,
    wake: tokio::sync::mpsc::UnboundedSender<String>,
) {
    let mut every = wanted.borrow_and_update().every;
    let mut tick = cloud_interval(every);
    loop {
        tokio::select! {
            _ = tick.tick(), if every.is_some() => {}
            changed = wanted.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = wanted.borrow_and_update().every;
                if now != every {
                    every = now;
                    tick = cloud_interval(every);
                }
                continue;
            }
        }
        let connectors = wanted.borrow().connectors.clone();
        for name in follower.poll(&connectors).await {
            if wake.send(name).is_err() {
                return;
            }
        }
    }
}

/// Reads the config again and applies its connectors; an invalid file changes nothing.
fn reload(paths: &Paths, config: &mut Config, crew: &mut Crew, shared: &Shared, why: &str) {
    let new = match paths.load_config() {
        Ok(new) => new,
        Err(e) => {
            log(&format!("config not reloaded ({why}); still running the previous one. {e}"));
            return;
        }
    };
    if new.cloud_url != config.cloud_url || new.pat != config.pat {
        log("`cloud_url` or `pat` changed: they apply once `latchkey run` restarts; the connectors are reloaded now");
    }
    let changes = crew.apply(shared, &new.connectors);
    let mut parts = Vec::new();
    for (what, names) in [("added", &changes.added), ("removed", &changes.removed), ("changed", &changes.changed)] {
        if !names.is_empty() {
            parts.push(format!("{what} {}", names.join(", ")));
        }
    }
    if parts.is_empty() {
        parts.push(String::from("no connector changed"));
    }
    log(&format!("config reloaded ({why}): {}", parts.join("; ")));
    let (cloud_url, pat) = (config.cloud_url.clone(), config.pat.clone());
    *config = new;
    // Kept as the process started with them (see above).
    config.cloud_url = cloud_url;
    config.pat = pat;
}

/// What every connector's task shares.
#[derive(Clone)]
struct Shared {
    store: Arc<Store>,
    tokens: Arc<TokenClient>,
    cloud_url: Arc<Url>,
}

/// One running connector.
struct Member {
    config: ConnectorConfig,
    wake: Arc<Notify>,
    stop: Trigger,
    task: JoinHandle<()>,
}

/// The running connectors, by name.
#[derive(Default)]
struct Crew {
    members: BTreeMap<String, Member>,
    /// Tasks asked to stop (removed connectors), awaited on exit.
    retiring: Vec<JoinHandle<()>>,
}

#[derive(Default)]
struct Changes {
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
}

impl Crew {
    /// Makes the running connectors those of `wanted`.
    fn apply(&mut self, shared: &Shared, wanted: &[ConnectorConfig]) -> Changes {
        let mut changes = Changes::default();
        let gone: Vec<String> =
            self.members.keys().filter(|name| !wanted.iter().any(|c| &c.name == *name)).cloned().collect();
        for name in gone {
            if let Some(m) = self.members.remove(&name) {
                m.stop.fire();
                self.retiring.push(m.task);
                changes.removed.push(name);
            }
        }
        for c in wanted {
            let previous = match self.members.remove(&c.name) {
                Some(m) if m.config == *c => {
                    self.members.insert(c.name.clone(), m);
                    continue;
                }
                Some(m) => {
                    m.stop.fire();
                    changes.changed.push(c.name.clone());
                    Some(m.task)
                }
                None => {
                    changes.added.push(c.name.clone());
                    None
                }
            };
            self.members.insert(c.name.clone(), spawn(shared, c.clone(), previous));
        }
        changes
    }

    /// Asks connector `name` to sync now (after the sync in hand, if one runs).
    fn wake(&self, name: &str) {
        if let Some(m) = self.members.get(name) {
            m.wake.notify_one();
        }
    }

    /// Stops every connector after its page in hand, and waits for them.
    async fn stop_all(self) {
        let mut tasks = self.retiring;
        for (_, m) in self.members {
            m.stop.fire();
            tasks.push(m.task);
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Starts connector `c`; when it replaces a running one (`previous`), once that one stopped,
/// so that two runs never write one connector's stream at once.
fn spawn(shared: &Shared, c: ConnectorConfig, previous: Option<JoinHandle<()>>) -> Member {
    let wake = Arc::new(Notify::new());
    let (stop, shutdown) = Shutdown::manual();
    let (shared, task_wake, config) = (shared.clone(), wake.clone(), c.clone());
    let task = tokio::spawn(async move {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        let ctx =
            SyncContext { cloud_url: &shared.cloud_url, tokens: &shared.tokens, store: &shared.store, stop: &shutdown };
        sync_on_schedule(&ctx, &config, &task_wake).await;
    });
    Member { config: c, wake, stop, task }
}

/// The schedule counts from the start of one sync to the start of the next, so a slow sync
/// does not push every later one back. A wake-up syncs at once.
async fn sync_on_schedule(ctx: &SyncContext<'_>, c: &ConnectorConfig, wake: &Notify) {
    loop {
        let started = Instant::now();
        let mut wait = c.schedule.interval();
        match sync::sync_once(ctx, c, SyncOptions::default(), &mut Progress::Quiet).await {
            Ok(report) => {
                log(&report.summary());
                wait = wait.saturating_sub(started.elapsed());
            }
            Err(e) => {
                wait = wait.saturating_sub(started.elapsed()).max(PAUSE_AFTER_FAILURE);
                let next = time::OffsetDateTime::now_utc() + wait;
                // An outage is the cloud's, not the connector's: say when it is tried again.
                let when = if e.is_cloud_outage() {
                    format!("; next try at {}", crate::run_state::clock(next))
                } else {
                    String::new()
                };
                log(&format!("{}: error: {e}{when}", c.name));
            }
        }
        if ctx.stop.requested() {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
            () = ctx.stop.wait() => break,
        }
    }
}

/// Follows the member's connections on the cloud by polling `GET /v1/connections`.
struct Follower {
    cloud: Arc<CloudClient>,
    /// Each connection's status at the last look (by id); `None` before the first.
    known: Option<HashMap<String, String>>,
    /// The last failure, logged once rather than at every poll.
    failing: Option<String>,
}

impl Follower {
    fn new(cloud: Arc<CloudClient>) -> Self {
        Follower { cloud, known: None, failing: None }
    }

    /// One look; returns the names of the connectors to sync now: those using a connection
    /// that became usable since the last look. One try: the next poll comes soon, and an
    /// outage is reported once by the [`OutageWatch`], not here at every poll.
    async fn poll(&mut self, connectors: &[ConnectorConfig]) -> Vec<String> {
        let list = match self.cloud.connections_polled().await {
            Ok(list) => list,
            Err(e) if e.is_cloud_outage() => return Vec::new(),
            Err(e) => {
                let text = e.to_string();
                if self.failing.as_deref() != Some(text.as_str()) {
                    log(&format!("cannot follow the cloud's connections: {text}"));
                    self.failing = Some(text);
                }
                return Vec::new();
            }
        };
        if self.failing.take().is_some() {
            log("following the cloud's connections again");
        }
        let now: HashMap<String, String> = list.iter().map(|c| (c.id.clone(), c.status.clone())).collect();
        let Some(before) = self.known.replace(now) else {
            return Vec::new();
        };
        let mut wake = Vec::new();
        for conn in &list {
            let was = before.get(&conn.id).map(String::as_str);
            let is_usable = attention::usable(&conn.status);
            if is_usable == was.is_some_and(attention::usable) && was.is_some() {
                continue;
            }
            for c in connectors.iter().filter(|c| uses(c, conn)) {
                if is_usable {
                    log(&format!(
                        "{}: connection \"{}\" is {} on the cloud: syncing now",
                        c.name,
                        conn.display_label(),
                        conn.status
                    ));
                    wake.push(c.name.clone());
                } else if let Some(a) = attention::of(c, conn, &self.cloud.connect_url(c)) {
                    log(&format!("{}: connection \"{}\" is {}: {}", c.name, conn.display_label(), a.status, a.advice));
                }
            }
        }
        wake
    }
}

/// Whether connector `c` syncs with connection `conn`.
fn uses(c: &ConnectorConfig, conn: &Connection) -> bool {
    conn.org == c.org
        && conn.connector_key == c.connector_key
        && c.connection.as_deref().is_none_or(|w| conn.id == w || conn.label.as_deref() == Some(w))
}

/// The config file's content at the last look.
struct ConfigFile {
    path: PathBuf,
    last: Option<Vec<u8>>,
}

impl ConfigFile {
    fn new(path: PathBuf) -> Self {
        let last = std::fs::read(&path).ok();
        ConfigFile { path, last }
    }

    /// Whether the content differs from the last look (a missing file counts as content).
    /// Comparing the bytes, not the modification time, catches an editor's quick second
    /// save and ignores a `touch`.
    fn changed(&mut self) -> bool {
        let now = std::fs::read(&self.path).ok();
        if now == self.last {
            false
        } else {
            self.last = now;
            true
        }
    }
}

/// SIGHUP, where there is such a thing.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        #[cfg(unix)]
        let signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        #[cfg(unix)]
        if signal.is_none() {
            log("cannot listen for SIGHUP; the config is still reloaded when the file changes");
        }
        Hangup {
            #[cfg(unix)]
            signal,
        }
    }

    /// The next SIGHUP (never, where there is none).
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = self.signal.as_mut() {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

pub(super) fn log(line: &str) {
    let now = crate::store::fixed_utc(time::OffsetDateTime::now_utc());
    println!("{now} {line}");
}
