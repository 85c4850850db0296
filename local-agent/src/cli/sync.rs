//! `latchkey sync`: syncs one connector, or every connector, once.

use super::{Agent, Paths};
use crate::error::Result;
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
    let store = paths.store().await?;
    let tokens = TokenClient::new(agent.cloud.clone());
    let stop = Shutdown::on_signals("Stopping after the page in hand…");
    let ctx = SyncContext { cloud_url: &agent.config.cloud_url, tokens: &tokens, store: &store, stop: &stop };
    let mut failed = false;
    for c in &connectors {
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
                failed = true;
            }
        }
        if stop.requested() {
            break;
        }
    }
    store.close().await;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
