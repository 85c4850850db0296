//! `latchkey status`: the cloud, the pairing, and each connector's connection and last sync.
//! It exits 1 when anything it shows needs attention, so that a script can check on it too.
//!
//! It tells the truth or says it cannot: the pairing is checked with an authenticated call
//! (a revoked device is "not paired", never "paired: yes" next to an error), an unknown org
//! or connector is named as such with what the member can see, and a connection that needs
//! the member says what and the exact command or URL.
//!
//! When a `latchkey run` is running, it also says what that daemon has seen of the cloud:
//! since when it has been away, and until when each connector syncs with its cached token.

use super::{Agent, Paths};
use crate::cloud::{CloudClient, Connection};
use crate::config::ConnectorConfig;
use crate::error::{Error, Result};
use crate::pat_store::PatSource;
use crate::run_state::{self, RunState};
use crate::store::{Store, SyncRun};
use std::process::ExitCode;

/// What the pairing check found.
#[derive(PartialEq, Eq)]
enum Pairing {
    /// The cloud accepts the token.
    Paired,
    /// There is a token, but the cloud could not be asked.
    Unchecked,
    /// No token, or the cloud refused it.
    NotPaired,
}

pub(super) async fn status(paths: &Paths) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    println!("config:     {}", agent.config.path.display());
    println!("data:       {}", paths.data_dir.display());
    let reachable = print_cloud(&agent.cloud, &agent.cloud.healthz().await);
    let daemon = run_state::read(&paths.data_dir);
    print_daemon(daemon.as_ref());
    let pairing = pairing(&agent, reachable).await;
    let away = daemon.as_ref().is_some_and(|d| d.cloud_away_since.is_some());
    let mut healthy = reachable && pairing == Pairing::Paired && !away;
    let store = paths.store().await?;
    if agent.config.connectors.is_empty() {
        println!("connectors: none — add a [[connector]] to {}", agent.config.path.display());
    }
    for c in &agent.config.connectors {
        healthy &= connector_section(&agent, &store, c, pairing == Pairing::Paired).await?;
        if let Some(d) = daemon.as_ref().filter(|d| d.cloud_away_since.is_some()) {
            print_cached_token(d, c);
        }
    }
    store.close().await;
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Prints the cloud's line; returns whether the cloud is up.
fn print_cloud(cloud: &CloudClient, health: &Result<()>) -> bool {
    let base = cloud.base_display();
    match health {
        Ok(()) => println!("cloud:      {base} (reachable)"),
        Err(Error::CloudUnreachable { reason, .. }) => {
            println!("cloud:      {base} — NOT reachable: {reason}; check `cloud_url` and that the cloud is up");
        }
        Err(e) => println!("cloud:      {base} — not healthy: {e}"),
    }
    health.is_ok()
}

/// What a running `latchkey run` has seen of the cloud, under the cloud's line.
fn print_daemon(daemon: Option<&RunState>) {
    let Some(d) = daemon else {
        return;
    };
    match (&d.cloud_away_since, &d.cloud_back_at) {
        (Some(since), _) => println!(
            "            `latchkey run` (pid {}): cloud unreachable since {}{}, retrying",
            d.pid,
            run_state::clock_of(since),
            d.cloud_away_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        (None, Some(back)) => println!(
            "            `latchkey run` (pid {}): cloud reachable again since {}{}",
            d.pid,
            run_state::clock_of(back),
            d.last_outage_secs.map(|s| format!(", after {} unreachable", run_state::span(s))).unwrap_or_default()
        ),
        (None, None) => println!("            `latchkey run` (pid {}): running, the cloud answering", d.pid),
    }
}

/// During an outage: whether `latchkey run` can go on syncing connector `c`.
fn print_cached_token(d: &RunState, c: &ConnectorConfig) {
    match d.cached_until.get(&c.name) {
        Some(until) => println!("  token:      syncing with the cached token until {}", run_state::clock_of(until)),
        None => {
            println!("  token:      no valid token cached: syncs wait for the cloud (retried at each scheduled run)")
        }
    }
}

/// Checks the token with a cheap authenticated call (`GET /v1/connections`) and prints the
/// pairing's line.
async fn pairing(agent: &Agent, reachable: bool) -> Pairing {
    let Some(source) = agent.pat_source.as_ref() else {
        println!("paired:     no — run `latchkey login`");
        return Pairing::NotPaired;
    };
    if !reachable {
        println!("paired:     unknown — a token is at hand ({source}), but the cloud cannot be asked");
        return Pairing::Unchecked;
    }
    // One try: a status is a snapshot, and should not hang on a cloud that is away.
    match agent.cloud.connections_polled().await {
        Ok(_) => {
            println!("paired:     yes (token from {source})");
            Pairing::Paired
        }
        Err(Error::PatRejected { .. }) => {
            println!("paired:     no — not paired (revoked on the cloud) — run `latchkey login`");
            if let PatSource::Env | PatSource::Config = source {
                println!("            (the refused token comes from {source}; replace it there)");
            }
            Pairing::NotPaired
        }
        Err(e) => {
            println!("paired:     unknown — a token is at hand ({source}), but checking it failed: {e}");
            Pairing::Unchecked
        }
    }
}

/// Prints one connector's section; returns whether all is well with it.
async fn connector_section(agent: &Agent, store: &Store, c: &ConnectorConfig, paired: bool) -> Result<bool> {
    println!();
    let which = c.connection.as_ref().map(|l| format!(", connection \"{l}\"")).unwrap_or_default();
    println!(
        "{} ({}, org {}, connector {}{which}, every {})",
        c.name,
        c.kind.as_str(),
        c.org,
        c.connector_key,
        c.schedule
    );
    let (connection, healthy) = connection(agent, c, paired).await;
    println!("  connection: {}", connection.replace('\n', "\n              "));
    let stored = store.count(&c.name).await?;
    print_last_sync(&c.name, store.last_run(&c.name).await?.as_ref());
    println!("  stored:     {stored} event{}", if stored == 1 { "" } else { "s" });
    Ok(healthy)
}

/// The connection as the cloud knows it, and whether it is usable. When the cloud cannot be
/// asked, the lines above already say why, and the connection counts as no further problem.
async fn connection(agent: &Agent, c: &ConnectorConfig, paired: bool) -> (String, bool) {
    if !paired {
        return ("unknown (see above)".to_owned(), true);
    }
    match agent.cloud.connection(c).await {
        Ok(Some(conn)) => describe(agent, c, &conn),
        Ok(None) => (format!("not connected — run `latchkey connect {}`", c.name), false),
        Err(e) => (e.to_string(), false),
    }
}

fn describe(agent: &Agent, c: &ConnectorConfig, conn: &Connection) -> (String, bool) {
    let label = conn.label.as_ref().map(|l| format!(" \"{l}\"")).unwrap_or_default();
    let account = conn.account_name.as_ref().map(|a| format!(", as {a}")).unwrap_or_default();
    match crate::attention::of(c, conn, &agent.cloud.connect_url(c)) {
        None => (format!("active{account}{label}"), true),
        Some(a) => (format!("{}{account}{label} — {}", a.status, a.advice), false),
    }
}

fn print_last_sync(name: &str, run: Option<&SyncRun>) {
    match run {
        Some(run) => {
            let when = run.finished_at.as_deref().unwrap_or(&run.started_at);
            let mut line = format!("{} at {when}, {} new", run.status, run.items_added);
            if let Some(error) = &run.error {
                line.push_str(&format!(" — {error}"));
            }
            println!("  last sync:  {line}");
        }
        None => println!("  last sync:  never — run `latchkey sync {name}`"),
    }
}
