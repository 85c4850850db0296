//! `latchkey login`: pairs this machine with the cloud and stores its token.

use super::Paths;
use crate::cloud::CloudClient;
use crate::error::Result;
use crate::pat_store;
use std::process::ExitCode;

pub(super) async fn login(paths: &Paths, no_browser: bool) -> Result<ExitCode> {
    let config = paths.load_config()?;
    let cloud = CloudClient::new(config.cloud_url.clone(), None)?;
    let mut stdout = std::io::stdout();
    let pat = crate::pairing::login(&cloud, &mut stdout, !no_browser).await?;
    let store = paths.pat_store();
    store.save(&pat)?;
    println!("Paired. This machine's token is stored in {} (readable only by you).", store.path().display());
    if std::env::var_os(pat_store::ENV).is_some() {
        println!(
            "Note: {} is set in your environment and overrides the stored token; unset it to use this one.",
            pat_store::ENV
        );
    } else if config.pat.is_some() {
        println!("Note: `pat` in {} overrides the stored token; remove it to use this one.", config.path.display());
    }
    println!("Next: `latchkey connect NAME` for each connector, then `latchkey sync`.");
    Ok(ExitCode::SUCCESS)
}
