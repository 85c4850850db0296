//! How `latchkey events` shows an event to a person: its time, connector and id, then
//! the payload's readable text fields (a title-like field first) instead of raw JSON.
//! `--json` prints the payload whole.

/// Fields that name the thing, then fields that say whose it is: shown first, in this
/// order, when present.
const LEADING: &[&[&str]] =
    &[&["title", "name", "track", "full_name", "subject", "summary"], &["artist", "author", "owner", "by"]];
/// Widest summary, in characters.
const MAX_CHARS: usize = 100;

/// The readable text of a payload: its short string fields, title first, joined by ` · `.
/// Ids, times and URLs are left out (the line shows the id and time already). A payload
/// that is not a JSON object is shown as it is.
pub fn summary(payload: &str, external_id: &str) -> String {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str::<serde_json::Value>(payload) else {
        return truncate(payload.trim());
    };
    let readable = |key: &str, value: &str| {
        !value.is_empty()
            && value != external_id
            && key != "id"
            && !key.ends_with("_at")
            && !key.ends_with("_id")
            && !value.starts_with("http://")
            && !value.starts_with("https://")
    };
    let strings = || fields.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.as_str(), s)));
    let mut parts: Vec<&str> = LEADING
        .iter()
        .filter_map(|keys| {
            keys.iter().find_map(|key| strings().find(|(k, v)| k == key && readable(k, v)).map(|(_, v)| v))
        })
        .collect();
    for (key, value) in strings() {
        if readable(key, value) && !parts.contains(&value) {
            parts.push(value);
        }
    }
    if parts.is_empty() {
        return truncate(payload.trim());
    }
    truncate(&parts.join(" · "))
}

fn truncate(text: &str) -> String {
    let line = text.replace(['\n', '\r', '\t'], " ");
    if line.chars().count() <= MAX_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(MAX_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_play_reads_as_its_track_then_the_rest() {
        let payload = r#"{"album":"Comets","artist":"Rosa Quinn","duration_ms":361744,"id":"trk_000299","played_at":"2023-01-03T01:52:41Z","track":"Lucky Signals"}"#;
        assert_eq!(summary(payload, "trk_000299"), "Lucky Signals · Rosa Quinn · Comets");
    }

    #[test]
    fn ids_times_and_urls_are_left_out() {
        let payload = r#"{"full_name":"rust-lang/rust","html_url":"https://github.com/rust-lang/rust","node_id":"MDEw","description":"Empowering everyone","updated_at":"2024-01-01T00:00:00Z"}"#;
        assert_eq!(summary(payload, "724712"), "rust-lang/rust · Empowering everyone");
    }

    #[test]
    fn other_payloads_are_shown_as_they_are() {
        assert_eq!(summary("[1,2,3]", "x"), "[1,2,3]");
        assert_eq!(summary(r#"{"id":"a","n":1}"#, "a"), r#"{"id":"a","n":1}"#);
        let long = format!("{{\"title\":\"{}\"}}", "a".repeat(300));
        assert_eq!(summary(&long, "x").chars().count(), MAX_CHARS);
    }
}
