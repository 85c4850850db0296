//! `latchkey events`: lists synced events from the local database, newest first, as lines
//! for people or JSON for scripts.

use super::Paths;
use crate::error::{Error, Result};
use crate::store::{EventFilter, StoredEvent};
use std::io::Write;
use std::process::ExitCode;

/// One line of `latchkey events --json`.
#[derive(serde::Serialize)]
struct JsonEvent<'a> {
    connector: &'a str,
    external_id: &'a str,
    occurred_at: Option<&'a str>,
    synced_at: &'a str,
    payload: Payload<'a>,
}

/// The payload as the JSON it is (or as text, should a row hold something else).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Json(&'a serde_json::value::RawValue),
    Text(&'a str),
}

pub(super) async fn events(paths: &Paths, filter: &EventFilter, json: bool) -> Result<ExitCode> {
    let store = paths.store().await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = store
        .for_each_event(filter, |e| {
            let written = if json { write_json(&mut out, &e) } else { write_text(&mut out, &e) };
            written.map_err(|source| Error::io("stdout", source))
        })
        .await;
    let flushed = out.flush().map_err(|source| Error::io("stdout", source));
    store.close().await;
    match result.and_then(|n| flushed.map(|()| n)) {
        Ok(0) if !json => {
            eprintln!("No events yet; run `latchkey sync`.");
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => Ok(ExitCode::SUCCESS),
        // `latchkey events | head`: the reader left; that is fine.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    }
}

/// One event as a JSON line, its payload as the JSON it is.
fn write_json(out: &mut impl Write, e: &StoredEvent) -> std::io::Result<()> {
    let payload = match serde_json::from_str::<&serde_json::value::RawValue>(&e.payload) {
        Ok(raw) => Payload::Json(raw),
        Err(_) => Payload::Text(&e.payload),
    };
    let line = JsonEvent {
        connector: &e.connector,
        external_id: &e.external_id,
        occurred_at: e.occurred_at.as_deref(),
        synced_at: &e.synced_at,
        payload,
    };
    serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::from).and_then(|()| out.write_all(b"\n"))
}

/// One event as a line for people: when, where from, which, and a summary of what.
fn write_text(out: &mut impl Write, e: &StoredEvent) -> std::io::Result<()> {
    let when = e.occurred_at.as_deref().map_or_else(|| "-".to_owned(), short_time);
    let text = crate::event_text::summary(&e.payload, &e.external_id);
    writeln!(out, "{when}  {}  {}  {text}", e.connector, e.external_id)
}

/// `2023-01-03T01:52:41.000Z` as `2023-01-03 01:52:41Z`: still UTC, easier on the eye.
fn short_time(stored: &str) -> String {
    let whole_seconds = stored.strip_suffix(".000Z").map(|t| format!("{t}Z"));
    whole_seconds.as_deref().unwrap_or(stored).replacen('T', " ", 1)
}

/// `--since`/`--until`: RFC 3339, or `YYYY-MM-DD` meaning midnight UTC.
pub(super) fn parse_time(flag: &str, text: &str) -> Result<String> {
    if let Some(t) = crate::connectors::normalize_time(text) {
        return Ok(t);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(text.trim(), &date_format) {
        Ok(date) => Ok(crate::store::fixed_utc(date.midnight().assume_utc())),
        Err(_) => Err(Error::Usage(format!(
            "{flag} {text:?} is not a time; use RFC 3339 like 2024-05-01T12:00:00Z, or a date like 2024-05-01"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_on_the_command_line() {
        assert_eq!(parse_time("--since", "2024-05-01").ok().as_deref(), Some("2024-05-01T00:00:00.000Z"));
        assert_eq!(
            parse_time("--since", "2024-05-01T12:00:00+02:00").ok().as_deref(),
            Some("2024-05-01T10:00:00.000Z")
        );
        let e = parse_time("--until", "last tuesday").err().unwrap_or_else(|| panic!("an error"));
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--until"));
    }

    #[test]
    fn times_read_well() {
        assert_eq!(short_time("2023-01-03T01:52:41.000Z"), "2023-01-03 01:52:41Z");
        assert_eq!(short_time("2023-01-03T01:52:41.250Z"), "2023-01-03 01:52:41.250Z");
    }
}
