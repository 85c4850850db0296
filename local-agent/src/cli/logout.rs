//! `latchkey logout`: revokes this machine's token at the cloud and forgets it.

use super::{Agent, Paths};
use crate::error::Result;
use crate::pat_store::{self, PatSource};
use std::process::ExitCode;

pub(super) async fn logout(paths: &Paths) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    let Some(source) = agent.pat_source.clone() else {
        println!("This machine is not paired; nothing to do.");
        return Ok(ExitCode::SUCCESS);
    };
    let revoked = agent.cloud.revoke().await;
    let deleted = paths.pat_store().delete()?;
    match &revoked {
        Ok(()) => println!("Revoked this machine's token at {}.", agent.cloud.base_display()),
        Err(e) => {
            eprintln!(
                "error: could not revoke the token at the cloud: {e}\n\
                 Unpair this machine on the cloud's Devices page to make sure it stops working."
            );
        }
    }
    if deleted {
        println!("Deleted {}.", paths.pat_store().path().display());
    }
    match source {
        PatSource::Env => println!("{} is still set in your environment; unset it.", pat_store::ENV),
        PatSource::Config => println!("Remove `pat` from {}.", agent.config.path.display()),
        PatSource::File(_) => {}
    }
    Ok(if revoked.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
