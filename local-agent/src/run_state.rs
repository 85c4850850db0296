//! What a running `latchkey run` knows about the cloud, for `latchkey status` (another
//! process) to show: since when the cloud has been away, and until when each connector can
//! go on syncing with its cached token. A small JSON file in the data dir, written on each
//! change and removed when `run` stops. It holds times only, never a token.

use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The file's name in the data dir.
pub const FILE_NAME: &str = "run-state.json";

/// One `latchkey run`'s view of the cloud.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// The `latchkey run` process.
    pub pid: u32,
    /// Since when the cloud has been away (RFC 3339), while it is.
    #[serde(default)]
    pub cloud_away_since: Option<String>,
    /// What the latest failed request met.
    #[serde(default)]
    pub cloud_away_reason: Option<String>,
    /// During an outage: each connector's cached token's end of validity (RFC 3339); a
    /// connector without one is left out.
    #[serde(default)]
    pub cached_until: BTreeMap<String, String>,
    /// The end of the last outage (RFC 3339) and how long it lasted.
    #[serde(default)]
    pub cloud_back_at: Option<String>,
    #[serde(default)]
    pub last_outage_secs: Option<u64>,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Writes the state (readable by the owner only, replaced atomically).
pub fn write(data_dir: &Path, state: &RunState) -> Result<()> {
    let text = serde_json::to_vec_pretty(state).unwrap_or_default();
    crate::private_file::write(&path(data_dir), &[&text, b"\n"])
}

/// The state of a `latchkey run` that is still running, if there is one.
pub fn read(data_dir: &Path) -> Option<RunState> {
    let text = std::fs::read(path(data_dir)).ok()?;
    let state: RunState = serde_json::from_slice(&text).ok()?;
    process_alive(state.pid).then_some(state)
}

/// Removes the file (on a clean stop).
pub fn remove(data_dir: &Path) {
    let _ = std::fs::remove_file(path(data_dir));
}

/// Whether process `pid` still runs. Where this cannot be told cheaply, it is assumed to
/// (the file is removed on every clean stop anyway).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// `2026-12-03T08:31:02Z`.
pub fn stamp(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).replace_nanosecond(0).unwrap_or(t).format(&Rfc3339).unwrap_or_default()
}

/// `08:31:02 UTC`: a time of day for messages.
pub fn clock(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:02}:{:02}:{:02} UTC", t.hour(), t.minute(), t.second())
}

/// [`clock`] of an RFC 3339 time, or the text as it is.
pub fn clock_of(text: &str) -> String {
    OffsetDateTime::parse(text, &Rfc3339).map(clock).unwrap_or_else(|_| text.to_owned())
}

/// `25 s`, `3 min 5 s`, `2 h 10 min`.
pub fn span(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 if secs.is_multiple_of(60) => format!("{} min", secs / 60),
        60..=3599 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_back_and_gone_when_the_process_is() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let mut state = RunState { pid: std::process::id(), ..RunState::default() };
        state.cloud_away_since = Some("2026-12-03T08:31:02Z".into());
        state.cached_until.insert("sandbox".into(), "2026-12-03T08:32:10Z".into());
        write(dir.path(), &state).unwrap();
        assert_eq!(read(dir.path()), Some(state.clone()));
        if cfg!(target_os = "linux") {
            // A pid that cannot be running (above the kernel's pid_max).
            write(dir.path(), &RunState { pid: 4_194_304 + 1, ..state }).unwrap();
            assert_eq!(read(dir.path()), None, "a `run` that died is not reported as running");
        }
        remove(dir.path());
        assert!(!path(dir.path()).exists());
    }

    #[test]
    fn times_for_people() {
        let t = OffsetDateTime::parse("2026-12-03T08:31:02.123Z", &Rfc3339).unwrap();
        assert_eq!(clock(t), "08:31:02 UTC");
        assert_eq!(stamp(t), "2026-12-03T08:31:02Z");
        assert_eq!(clock_of("2026-12-03T09:00:00+01:00"), "08:00:00 UTC");
        assert_eq!(clock_of("whenever"), "whenever");
        assert_eq!(
            (span(25), span(120), span(185), span(7800)),
            ("25 s".into(), "2 min".into(), "3 min 5 s".into(), "2 h 10 min".into())
        );
    }
}
