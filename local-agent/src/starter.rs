//! The starter config that `latchkey init` writes: the commented example file, with the
//! cloud URL and, when asked for, ready-to-use `[[connector]]` tables filled in, so a
//! first run (`latchkey init --org demo --connector sandbox`) needs no hand-editing.

use crate::config::{self, Config, Transport};
use crate::error::{Error, Result};
use std::path::Path;

/// The connector kinds `init` can add without further settings. (`http-json` needs a URL
/// and JSON pointers that only its user knows, so it stays a commented example.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StarterKind {
    Sandbox,
    Github,
    Spotify,
}

impl StarterKind {
    fn as_str(self) -> &'static str {
        match self {
            StarterKind::Sandbox => "sandbox",
            StarterKind::Github => "github",
            StarterKind::Spotify => "spotify",
        }
    }

    /// How often `latchkey run` syncs it: often for a demo or a play history, hourly for
    /// an API with a tight rate limit.
    fn schedule(self) -> &'static str {
        match self {
            StarterKind::Sandbox | StarterKind::Spotify => "15m",
            StarterKind::Github => "1h",
        }
    }
}

/// What `latchkey init` was asked for.
pub struct Starter<'a> {
    pub cloud_url: Option<&'a str>,
    pub org: Option<&'a str>,
    pub connectors: &'a [StarterKind],
    /// Whether `--insecure` allows a plain http:// cloud URL off this machine.
    pub transport: Transport,
}

impl Starter<'_> {
    /// The file's text, validated as the agent will load it.
    pub fn render(&self) -> Result<String> {
        let mut text = config::EXAMPLE.to_owned();
        if let Some(url) = self.cloud_url {
            let line = format!("cloud_url = {}", quote(url));
            text = text.replacen(&format!("cloud_url = {}", quote(DEFAULT_CLOUD_URL)), &line, 1);
        }
        match (self.org, self.connectors.is_empty()) {
            (None, false) => {
                return Err(Error::Usage(
                    "--connector needs --org: the cloud org that publishes it, e.g. `--org demo`".into(),
                ))
            }
            (Some(_), true) => {
                return Err(Error::Usage(
                    "--org only says where --connector's connectors live; add e.g. `--connector sandbox`".into(),
                ))
            }
            _ => {}
        }
        let mut seen = Vec::new();
        for kind in self.connectors {
            if seen.contains(kind) {
                continue;
            }
            seen.push(*kind);
            let org = self.org.unwrap_or_default();
            text.push_str(&format!(
                "\n# Added by `latchkey init`: the org's `{key}` connector.\n\
                 [[connector]]\n\
                 name = {name}\n\
                 kind = {name}\n\
                 org = {org}\n\
                 connector_key = {name}\n\
                 schedule = \"{schedule}\"\n",
                key = kind.as_str(),
                name = quote(kind.as_str()),
                org = quote(org),
                schedule = kind.schedule(),
            ));
        }
        // No environment here: a `${…}` stays literal, as it will be written.
        Config::parse(&text, Path::new("the file `latchkey init` would write"), &|_| None, self.transport)?;
        Ok(text)
    }
}

/// The `cloud_url` line of the example file.
const DEFAULT_CLOUD_URL: &str = "http://127.0.0.1:8080";

/// A TOML basic string.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(cloud_url: Option<&str>, org: Option<&str>, connectors: &[StarterKind]) -> Result<String> {
        Starter { cloud_url, org, connectors, transport: Transport::Secure }.render()
    }

    #[test]
    fn the_plain_starter_is_the_example() {
        assert_eq!(render(None, None, &[]).ok().as_deref(), Some(config::EXAMPLE));
    }

    #[test]
    fn connectors_are_ready_to_use() {
        let text = render(Some("http://127.0.0.1:9999"), Some("demo"), &[StarterKind::Sandbox, StarterKind::Github])
            .unwrap_or_else(|e| panic!("{e}"));
        let c =
            Config::parse(&text, Path::new("t.toml"), &|_| None, Transport::Secure).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cloud_url.as_str(), "http://127.0.0.1:9999/");
        let got: Vec<(&str, &str, &str, &str)> = c
            .connectors
            .iter()
            .map(|c| (c.name.as_str(), c.kind.as_str(), c.org.as_str(), c.connector_key.as_str()))
            .collect();
        assert_eq!(got, [("sandbox", "sandbox", "demo", "sandbox"), ("github", "github", "demo", "github")]);
    }

    #[test]
    fn a_repeated_connector_is_added_once() {
        let text =
            render(None, Some("demo"), &[StarterKind::Sandbox, StarterKind::Sandbox]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text.matches("\n[[connector]]").count(), 1);
    }

    #[test]
    fn half_a_request_says_what_is_missing() {
        let e = render(None, None, &[StarterKind::Sandbox]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("--org"), "{e}");
        let e = render(None, Some("demo"), &[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("--connector"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_before_anything_is_written() {
        let e = render(Some("ftp://x"), None, &[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("cloud_url"), "{e}");
        let e = render(None, Some("a\"b"), &[StarterKind::Sandbox]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("org"), "{e}");
    }
}
