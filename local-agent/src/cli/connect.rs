//! `latchkey connect`: checks that the connector's org and key exist (a typo fails at once,
//! naming what exists), opens the cloud's connect page (it asks the member to confirm,
//! then sends them to the provider), waits until the connection is active, and runs the
//! first sync.
//!
//! With an account already connected it offers to add another (asked on a terminal,
//! `--add` otherwise), through the page's `?add=1`; `--label` names the new connection.

use super::{prompt, sync, Agent, Paths};
use crate::cloud::{CloudClient, Connection};
use crate::config::ConnectorConfig;
use crate::error::{Error, Result};
use crate::sync::SyncOptions;
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use url::Url;

/// How often `connect` looks at the connection, and for how long.
const CONNECT_POLL: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(600);

/// What the command line asked for.
pub(super) struct Options {
    pub no_browser: bool,
    pub no_sync: bool,
    pub add: bool,
    pub label: Option<String>,
}

/// What this run of `connect` is for.
enum Goal {
    /// The first account on the connector, or the configured one not held yet.
    Connect,
    /// Consent again for an account whose grant needs it.
    Reconnect(Box<Connection>),
    /// Another account next to those held.
    Add,
}

pub(super) async fn connect(paths: &Paths, name: &str, options: Options) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    let c = agent.config.connector(name)?.clone();
    agent.require_pat()?;
    if let Some(label) = &options.label {
        check_label(label)?;
    }
    // A typo'd org or connector key fails here, with what exists, not after ten minutes.
    agent.cloud.check_connector(&c).await?;
    let held = agent.cloud.connections_on(&c).await?;
    let held_before = held.clone();
    let Some(goal) = choose(&agent, &c, &held, &options).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let url = match &goal {
        Goal::Add => agent.cloud.add_url(&c),
        Goal::Reconnect(conn) => reconnect_url(&agent.cloud, &c, conn),
        Goal::Connect => agent.cloud.connect_url(&c),
    };
    println!(
        "To connect {name}, open this page (sign in to the cloud if asked), check the account it names, \
         continue, and approve at the provider:\n\n    {url}\n"
    );
    if !options.no_browser && crate::browser::open(agent.cloud.base(), url.as_str()) {
        println!("Your browser should have opened it.");
    }
    println!("Waiting for the connection (up to {} minutes)…", CONNECT_TIMEOUT.as_secs() / 60);
    let mut conn = wait_for_change(&agent.cloud, &c, &held_before).await?;
    // The label the member asked for, or the one the config names for a connection it
    // did not hold yet.
    let config_label_free = c.connection.as_deref().is_some_and(|w| !held.iter().any(|conn| names_any(w, conn)));
    let wanted_label = options.label.clone().or_else(|| c.connection.clone().filter(|_| config_label_free));
    if let Some(label) = wanted_label.filter(|l| conn.label.as_deref() != Some(l)) {
        match agent.cloud.relabel(&c, &conn.id, &label).await {
            Ok(renamed) => conn = renamed,
            Err(e) => eprintln!("warning: connected, but could not name the connection \"{label}\": {e}"),
        }
    }
    let account = as_account(&conn);
    let label = conn.display_label();
    if matches!(goal, Goal::Add) && !names(&c, &conn) {
        // Syncing the new account under this connector's name would mix two accounts in one
        // stream (and the cloud refuses to guess which one a plain request means).
        println!("Connected another account{account}, labelled \"{label}\".");
        println!(
            "To sync it, add a [[connector]] for it to {} with the line\n    connection = \"{label}\"\n\
             and give the existing one the label of its account (`latchkey status` lists them).",
            agent.config.path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("Connected{account}.");
    if options.no_sync {
        println!("Not syncing (--no-sync); `latchkey sync {name}` syncs it when you want.");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Running the first sync of {name}…");
    let failed = sync::sync_each(&agent, paths, std::slice::from_ref(&c), SyncOptions::default()).await?;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What to do, given the connections the member holds on the connector; `None` when
/// there is nothing to do (already connected, and no other account wanted).
async fn choose(agent: &Agent, c: &ConnectorConfig, held: &[Connection], options: &Options) -> Result<Option<Goal>> {
    if options.add {
        return Ok(Some(Goal::Add));
    }
    let mine: Vec<&Connection> = match &c.connection {
        Some(wanted) => held.iter().filter(|conn| names_any(wanted, conn)).collect(),
        None => held.iter().collect(),
    };
    if mine.is_empty() {
        // Nothing yet, or the config names an account not connected yet.
        return Ok(Some(if held.is_empty() { Goal::Connect } else { Goal::Add }));
    }
    if let Some(stale) = mine.iter().find(|conn| !crate::attention::usable(&conn.status)) {
        return Ok(Some(Goal::Reconnect(Box::new((*stale).clone()))));
    }
    let accounts: Vec<String> = mine.iter().map(|conn| describe(conn)).collect();
    println!("{} is already connected: {}.", c.name, accounts.join(", "));
    if prompt::interactive() {
        if prompt::confirm("Connect another account on it?").await? {
            return Ok(Some(Goal::Add));
        }
        return Ok(None);
    }
    println!(
        "To connect another account on it, run `latchkey connect {} --add` (or open {}).",
        c.name,
        agent.cloud.add_url(c)
    );
    Ok(None)
}

/// The page that reconnects `conn`: by its label, else its id.
fn reconnect_url(cloud: &CloudClient, c: &ConnectorConfig, conn: &Connection) -> Url {
    let mut url = cloud.url(&["connect", &c.org, &c.connector_key]);
    let which = conn.label.clone().unwrap_or_else(|| conn.id.clone());
    url.query_pairs_mut().append_pair("connection", &which);
    url
}

/// Polls until a connection on the connector is new and usable, or was held but is usable
/// again or was connected anew. The consent happens in a browser, out of our sight: all
/// there is to do is look again. An unreachable cloud is worth another look too, since the
/// wait is long.
async fn wait_for_change(cloud: &CloudClient, c: &ConnectorConfig, before: &[Connection]) -> Result<Connection> {
    let before: HashMap<&str, &Connection> = before.iter().map(|conn| (conn.id.as_str(), conn)).collect();
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        tokio::time::sleep(CONNECT_POLL).await;
        match cloud.connections_on(c).await {
            Ok(now) => {
                let changed = now.into_iter().find(|conn| {
                    crate::attention::usable(&conn.status)
                        && match before.get(conn.id.as_str()) {
                            None => true,
                            Some(old) => {
                                !crate::attention::usable(&old.status) || old.connected_at != conn.connected_at
                            }
                        }
                });
                if let Some(conn) = changed {
                    return Ok(conn);
                }
            }
            // The cloud restarting while the member consents: ask again at the next poll.
            Err(e) if e.is_cloud_outage() => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(Error::Pairing(format!(
                "{name} was not connected within {} minutes; run `latchkey connect {name}` to try again",
                CONNECT_TIMEOUT.as_secs() / 60,
                name = c.name
            )));
        }
    }
}

/// Whether the config's `connection` of `c` names `conn`.
fn names(c: &ConnectorConfig, conn: &Connection) -> bool {
    c.connection.as_deref().is_some_and(|wanted| names_any(wanted, conn))
}

fn names_any(wanted: &str, conn: &Connection) -> bool {
    conn.id == wanted || conn.label.as_deref() == Some(wanted)
}

fn check_label(label: &str) -> Result<()> {
    if label.trim().is_empty()
        || label.trim() != label
        || label.chars().count() > 100
        || label.chars().any(char::is_control)
    {
        return Err(Error::Usage(format!(
            "--label \"{}\" is not a label: 1 to 100 characters, no control characters, no spaces at either end",
            label.escape_debug()
        )));
    }
    Ok(())
}

/// `"label" (account)`, or whichever of the two there is.
fn describe(conn: &Connection) -> String {
    match (&conn.label, &conn.account_name) {
        (Some(label), Some(account)) if label != account => format!("\"{label}\" ({account})"),
        (Some(label), _) => format!("\"{label}\""),
        (None, Some(account)) => account.clone(),
        (None, None) => conn.id.clone(),
    }
}

/// ` as {account}`, or nothing when the provider gave no account name.
fn as_account(conn: &Connection) -> String {
    conn.account_name.as_ref().map(|a| format!(" as {a}")).unwrap_or_default()
}
