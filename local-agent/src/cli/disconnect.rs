//! `latchkey disconnect`: disconnects a connector's connection on the cloud, which revokes
//! the grant at the provider, after a confirmation (`--yes` for scripts; without a terminal
//! and without `--yes` it refuses rather than guess). The events already synced stay in the
//! local database.

use super::{prompt, Agent, Paths};
use crate::error::{Error, Result};
use std::process::ExitCode;

pub(super) async fn disconnect(paths: &Paths, name: &str, yes: bool) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    let c = agent.config.connector(name)?.clone();
    agent.require_pat()?;
    let Some(conn) = agent.cloud.connection(&c).await? else {
        println!("{name} is not connected on the cloud (org {}, connector {}); nothing to do.", c.org, c.connector_key);
        return Ok(ExitCode::SUCCESS);
    };
    let account = conn.account_name.as_ref().map(|a| format!(" ({a})")).unwrap_or_default();
    let what = format!("{name}{account} in org {}, connector {}", c.org, c.connector_key);
    if !yes {
        if !prompt::interactive() {
            return Err(Error::Usage(format!(
                "not disconnecting {what} without a confirmation, and there is no terminal to ask on; \
                 run `latchkey disconnect {name} --yes` to disconnect it"
            )));
        }
        let question = format!(
            "Disconnect {what}? The cloud revokes the grant at the provider; `latchkey connect {name}` connects it again."
        );
        if !prompt::confirm(&question).await? {
            println!("Not disconnected.");
            return Ok(ExitCode::SUCCESS);
        }
    }
    // Name the very connection read above, so that a second account is never hit by mistake.
    let mut exact = c.clone();
    exact.connection = Some(conn.id.clone());
    agent.cloud.disconnect(&exact).await?;
    println!(
        "Disconnected {what}: the grant is revoked at the provider. The events synced so far stay in the local \
         database; `latchkey connect {name}` connects it again."
    );
    Ok(ExitCode::SUCCESS)
}
