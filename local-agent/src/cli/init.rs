//! `latchkey init`: writes the starter config file.

use super::Paths;
use crate::error::{Error, Result};
use crate::starter::Starter;
use std::process::ExitCode;

pub(super) fn init(paths: &Paths, starter: &Starter<'_>, force: bool, print: bool) -> Result<ExitCode> {
    let text = starter.render()?;
    if print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let path = &paths.config;
    if path.exists() && !force {
        return Err(Error::Usage(format!(
            "{} already exists; edit it, or run `latchkey init` again with --force to replace it",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // It may come to hold a `pat`: private from the start.
    crate::private_file::write(path, &[text.as_bytes()])?;
    println!("Wrote {}.", path.display());
    if starter.connectors.is_empty() {
        println!("Next: check cloud_url, add a [[connector]] (examples are in the file), then run `latchkey login`.");
    } else {
        println!("Next: `latchkey login` to pair this machine with the cloud.");
    }
    Ok(ExitCode::SUCCESS)
}
