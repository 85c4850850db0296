//! `latchkey run`: syncs every connector on its schedule until SIGINT or SIGTERM, one
//! timestamped line per sync.

use super::{Agent, Paths};
use crate::config::ConnectorConfig;
use crate::error::Result;
use crate::progress::Progress;
use crate::shutdown::Shutdown;
use crate::sync::{self, SyncContext, SyncOptions};
use crate::token_client::TokenClient;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

pub(super) async fn run_forever(paths: &Paths) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    agent.require_connectors()?;
    agent.require_pat()?;
    let store = Arc::new(paths.store().await?);
    let tokens = Arc::new(TokenClient::new(agent.cloud.clone()));
    let stop = Shutdown::on_signals("Stopping: finishing the pages in hand…");
    let cloud_url = Arc::new(agent.config.cloud_url.clone());
    log(&format!(
        "running {} connector{} until SIGINT or SIGTERM",
        agent.config.connectors.len(),
        if agent.config.connectors.len() == 1 { "" } else { "s" }
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for c in agent.config.connectors.clone() {
        let (store, tokens, stop, cloud_url) = (store.clone(), tokens.clone(), stop.clone(), cloud_url.clone());
        tasks.spawn(async move {
            let ctx = SyncContext { cloud_url: &cloud_url, tokens: &tokens, store: &store, stop: &stop };
            sync_on_schedule(&ctx, &c).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    store.close().await;
    log("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The schedule counts from the start of one sync to the start of the next, so a slow sync
/// does not push every later one back.
async fn sync_on_schedule(ctx: &SyncContext<'_>, c: &ConnectorConfig) {
    loop {
        let started = Instant::now();
        match sync::sync_once(ctx, c, SyncOptions::default(), &mut Progress::Quiet).await {
            Ok(report) => log(&report.summary()),
            Err(e) => log(&format!("error: {e}")),
        }
        if ctx.stop.requested() {
            break;
        }
        let wait = c.schedule.interval().saturating_sub(started.elapsed());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = ctx.stop.wait() => break,
        }
    }
}

fn log(line: &str) {
    let now = crate::store::fixed_utc(time::OffsetDateTime::now_utc());
    println!("{now} {line}");
}
