//! `latchkey token`: prints a fresh access token for a connector.

use super::{Agent, Paths};
use crate::error::Result;
use crate::token_client::TokenClient;
use std::process::ExitCode;

pub(super) async fn token(paths: &Paths, name: &str) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    let c = agent.config.connector(name)?;
    agent.require_pat()?;
    let tokens = TokenClient::new(agent.cloud.clone());
    let token = tokens.fresh(c).await?;
    println!("{}", token.expose());
    Ok(ExitCode::SUCCESS)
}
