//! `latchkey status`: the cloud, the pairing, and each connector's connection and last sync.
//! It exits 1 when anything it shows needs attention, so that a script can check on it too.

use super::{Agent, Paths};
use crate::cloud::CloudClient;
use crate::config::ConnectorConfig;
use crate::error::{Error, Result};
use crate::pat_store::PatSource;
use crate::store::{Store, SyncRun};
use std::process::ExitCode;

pub(super) async fn status(paths: &Paths) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    println!("config:     {}", agent.config.path.display());
    println!("data:       {}", paths.data_dir.display());
    let reachable = print_cloud(&agent.cloud, &agent.cloud.healthz().await);
    let paired = print_pairing(agent.pat_source.as_ref());
    let mut healthy = reachable && paired;
    let store = paths.store().await?;
    if agent.config.connectors.is_empty() {
        println!("connectors: none — add a [[connector]] to {}", agent.config.path.display());
    }
    for c in &agent.config.connectors {
        healthy &= connector_section(&agent, &store, c, reachable).await?;
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

/// Prints the pairing's line; returns whether this machine is paired.
fn print_pairing(source: Option<&PatSource>) -> bool {
    match source {
        Some(source) => println!("paired:     yes (token from {source})"),
        None => println!("paired:     no — run `latchkey login`"),
    }
    source.is_some()
}

/// Prints one connector's section; returns whether all is well with it.
async fn connector_section(agent: &Agent, store: &Store, c: &ConnectorConfig, reachable: bool) -> Result<bool> {
    println!();
    println!("{} ({}, org {}, connector {}, every {})", c.name, c.kind.as_str(), c.org, c.connector_key, c.schedule);
    let (connection, healthy) = connection(agent, c, reachable).await;
    println!("  connection: {connection}");
    let stored = store.count(&c.name).await?;
    print_last_sync(&c.name, store.last_run(&c.name).await?.as_ref());
    println!("  stored:     {stored} event{}", if stored == 1 { "" } else { "s" });
    Ok(healthy)
}

/// The connection as the cloud knows it, and whether it is usable. When the cloud cannot be
/// asked, the lines above already say why, and the connection counts as no further problem.
async fn connection(agent: &Agent, c: &ConnectorConfig, reachable: bool) -> (String, bool) {
    if !reachable || !agent.cloud.is_paired() {
        return ("unknown (see above)".to_owned(), true);
    }
    match agent.cloud.connection(c).await {
        Ok(Some(conn)) if conn.status == "active" => match &conn.account_name {
            Some(account) => (format!("active, as {account}"), true),
            None => ("active".to_owned(), true),
        },
        Ok(Some(conn)) => (format!("{} — run `latchkey connect {}`", conn.status, c.name), false),
        Ok(None) => (format!("not connected — run `latchkey connect {}`", c.name), false),
        Err(e) => (e.to_string(), false),
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
