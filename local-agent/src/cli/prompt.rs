//! Yes/no questions on the terminal. A question is only ever asked when both stdin and
//! stdout are a terminal; scripts and services get a flag instead, never a hang.

use crate::error::{Error, Result};
use std::io::{BufRead, IsTerminal, Write};

/// Whether there is a person at a terminal to ask.
pub(super) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Asks `question` with a `[y/N]` and reads the answer; anything but y/yes is a no.
pub(super) async fn confirm(question: &str) -> Result<bool> {
    let question = question.to_owned();
    let answer = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut out = std::io::stdout().lock();
        write!(out, "{question} [y/N] ")?;
        out.flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line)
    })
    .await
    .map_err(|e| Error::Usage(format!("could not read your answer: {e}")))?
    .map_err(|e| Error::io("stdin", e))?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}
