//! `latchkey connect`: opens the cloud's connect page for a connector (it asks the member
//! to confirm, then sends them to the provider) and waits until the connection is active.

use super::{Agent, Paths};
use crate::cloud::{CloudClient, Connection};
use crate::config::ConnectorConfig;
use crate::error::{Error, Result};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How often `connect` looks at the connection, and for how long.
const CONNECT_POLL: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(600);

pub(super) async fn connect(paths: &Paths, name: &str, no_browser: bool) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    let c = agent.config.connector(name)?;
    agent.require_pat()?;
    let url = agent.cloud.connect_url(c);
    if let Some(conn) = agent.cloud.connection(c).await?.filter(|conn| conn.status == "active") {
        let account = as_account(conn);
        println!("{name} is already connected{account}. To connect it again, open {url}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "To connect {name}, open this page (sign in to the cloud if asked), check the account it names, \
         continue, and approve at the provider:\n\n    {url}\n"
    );
    if !no_browser && crate::browser::open(agent.cloud.base(), url.as_str()) {
        println!("Your browser should have opened it.");
    }
    println!("Waiting for the connection (up to {} minutes)…", CONNECT_TIMEOUT.as_secs() / 60);
    let account = as_account(wait_until_active(&agent.cloud, c, name).await?);
    println!("Connected{account}. Next: `latchkey sync {name}`.");
    Ok(ExitCode::SUCCESS)
}

/// The consent happens in a browser, out of our sight: all there is to do is look again.
/// An unreachable cloud is worth another look too, since the wait is long.
async fn wait_until_active(cloud: &CloudClient, c: &ConnectorConfig, name: &str) -> Result<Connection> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        tokio::time::sleep(CONNECT_POLL).await;
        match cloud.connection(c).await {
            Ok(Some(conn)) if conn.status == "active" => return Ok(conn),
            Ok(_) | Err(Error::CloudUnreachable { .. }) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(Error::Pairing(format!(
                "{name} was not connected within {} minutes; run `latchkey connect {name}` to try again",
                CONNECT_TIMEOUT.as_secs() / 60
            )));
        }
    }
}

/// ` as {account}`, or nothing when the provider gave no account name.
fn as_account(conn: Connection) -> String {
    conn.account_name.map(|a| format!(" as {a}")).unwrap_or_default()
}
