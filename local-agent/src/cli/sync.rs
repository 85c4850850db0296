//! `latchkey sync`: syncs one connector, or every connector, once. A failure is followed
//! by what the connection needs, when the cloud says it needs something.

use super::{Agent, Paths};
use crate::config::ConnectorConfig;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::shutdown::Shutdown;
use crate::sync::{self, Outcome, SyncContext, SyncOptions};
use crate::token_client::TokenClient;
use std::process::ExitCode;

pub(super) async fn sync_command(paths: &Paths, name: Option<&str>, options: SyncOptions) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    let connectors = match name {
        Some(name) => vec![agent.config.connector(name)?.clone()],
        None => {
            agent.require_connectors()?;
            agent.config.connectors.clone()
        }
    };
    agent.require_pat()?;
    let failed = sync_each(&agent, paths, &connectors, options).await?;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Syncs each of `connectors` once with progress, printing each summary (or error and
/// guidance); returns whether any failed or was interrupted.
pub(super) async fn sync_each(
    agent: &Agent,
    paths: &Paths,
    connectors: &[ConnectorConfig],
    options: SyncOptions,
) -> Result<bool> {
    let store = paths.store().await?;
    let tokens = TokenClient::new(agent.cloud.clone());
    let stop = Shutdown::on_signals("Stopping after the page in hand…");
    let ctx = SyncContext { cloud_url: &agent.config.cloud_url, tokens: &tokens, store: &store, stop: &stop };
    let mut failed = false;
    for c in connectors {
        let mut progress = Progress::for_sync(&c.name);
        match sync::sync_once(&ctx, c, options, &mut progress).await {
            Ok(report) => {
                println!("{}", report.summary());
                if report.outcome == Outcome::Interrupted {
                    failed = true;
                    break;
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                if let Some(advice) = guidance(agent, c, &e).await {
                    eprintln!("  {}: {advice}", c.name);
                }
                failed = true;
            }
        }
        if stop.requested() {
            break;
        }
    }
    store.close().await;
    Ok(failed)
}

/// After a failed sync: what the connection needs, when the error does not say it already
/// and the cloud reports the connection in a state that needs the member.
async fn guidance(agent: &Agent, c: &ConnectorConfig, e: &Error) -> Option<String> {
    let says_it_already = matches!(
        e,
        Error::NotLoggedIn
            | Error::PatRejected { .. }
            | Error::PatScope { .. }
            | Error::NotAMember { .. }
            | Error::NotConnected { .. }
            | Error::UnknownOrg { .. }
            | Error::UnknownConnector { .. }
            | Error::UnknownConnection { .. }
            | Error::AmbiguousConnection { .. }
            | Error::CloudUnreachable { .. }
            | Error::CloudUnavailable { .. }
            | Error::RateLimited { .. }
            | Error::Config(_)
            | Error::Usage(_)
    );
    if says_it_already {
        return None;
    }
    let conn = agent.cloud.connection(c).await.ok()??;
    crate::attention::of(c, &conn, &agent.cloud.connect_url(c)).map(|a| format!("{} — {}", a.status, a.advice))
}
