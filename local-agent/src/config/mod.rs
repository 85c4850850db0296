//! The agent's config file, `latchkey.toml`: where it lives, `${VAR}` interpolation, and
//! validation at load with errors that name the file, the key and the fix.
//!
//! Nothing here talks to a network; a loaded [`Config`] is known to be well formed.
//! Reading the file and interpolation are in `load`, the checks of each key in `validate`.

mod load;
mod validate;

pub use load::{interpolate, InterpolationError};

use crate::error::{Error, Result};
use crate::schedule::Schedule;
use latchkey_shared::secret::SecretString;
use serde::Deserialize;
use std::path::PathBuf;
use url::Url;

/// The starter file `latchkey init` writes.
pub const EXAMPLE: &str = include_str!("../../latchkey.example.toml");
/// The config file's name in the config dir.
pub const FILE_NAME: &str = "latchkey.toml";
/// The query parameter of an http-json cursor when the config names none.
pub const DEFAULT_CURSOR_PARAM: &str = "cursor";
/// How often `latchkey run` asks the cloud what changed, when the config does not say.
pub const DEFAULT_CLOUD_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// The config file's default path: `$XDG_CONFIG_HOME/latchkey/latchkey.toml` or the
/// platform's equivalent.
pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "latchkey").map(|d| d.config_dir().join(FILE_NAME))
}

/// The data dir's default: `$XDG_DATA_HOME/latchkey` or the platform's equivalent.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "latchkey").map(|d| d.data_dir().to_path_buf())
}

/// Whether plain `http://` may carry tokens off this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `https://`, or `http://` to a loopback host only: the default.
    Secure,
    /// `--insecure`: `http://` to any host, for a test setup on a network one trusts.
    Insecure,
}

/// Whether requests to `url` stay unreadable to the network: https, or a loopback host
/// (`localhost`, 127.0.0.0/8, `::1`), whose traffic never leaves this machine.
pub fn is_private_channel(url: &Url) -> bool {
    url.scheme() == "https"
        || match url.host() {
            Some(url::Host::Domain(name)) => name == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

/// What a connector talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Sandbox,
    Github,
    Spotify,
    HttpJson,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sandbox => "sandbox",
            Kind::Github => "github",
            Kind::Spotify => "spotify",
            Kind::HttpJson => "http-json",
        }
    }
}

/// A loaded, validated config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (for messages).
    pub path: PathBuf,
    /// The cloud, without a trailing slash. The PAT goes here and nowhere else.
    pub cloud_url: Url,
    /// A PAT given in the config (usually `"${LATCHKEY_PAT}"`).
    pub pat: Option<SecretString>,
    /// How often `latchkey run` polls `GET /v1/connections` to follow the cloud
    /// (`cloud_poll`); `None` when set to `"off"`.
    pub cloud_poll: Option<std::time::Duration>,
    pub connectors: Vec<ConnectorConfig>,
}

/// One `[[connector]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorConfig {
    pub name: String,
    pub kind: Kind,
    pub org: String,
    pub connector_key: String,
    /// Which of the member's connections (accounts) on the connector: a label or an id.
    /// Needed only when the member holds several.
    pub connection: Option<String>,
    pub schedule: Schedule,
    /// Overrides the provider API's base URL.
    pub base_url: Option<Url>,
    /// Only for `kind = "http-json"`.
    pub http_json: Option<HttpJsonConfig>,
}

/// The generic connector's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpJsonConfig {
    /// The first page. A next-page URL is followed only on this URL's origin.
    pub url: Url,
    /// JSON pointer to the array of items.
    pub items: String,
    /// Field (or JSON pointer) of an item that identifies it.
    pub id: String,
    /// JSON pointer to the next page: a URL or a cursor.
    pub next: Option<String>,
    /// Query parameter a cursor is sent in.
    pub cursor_param: String,
    /// Field (or JSON pointer) with the item's RFC 3339 time.
    pub occurred_at: Option<String>,
}

impl Config {
    /// The URLs that carry a token in clear text across the network (only `--insecure`
    /// lets a config have any), each with the key it comes from, for a warning.
    pub fn plain_http_urls(&self) -> Vec<(String, &Url)> {
        let mut urls = vec![(String::from("cloud_url"), &self.cloud_url)];
        for c in &self.connectors {
            urls.extend(c.base_url.iter().map(|u| (format!("connector `{}`, base_url", c.name), u)));
            urls.extend(c.http_json.iter().map(|h| (format!("connector `{}`, url", c.name), &h.url)));
        }
        urls.retain(|(_, url)| !is_private_channel(url));
        urls
    }

    /// The connector called `name`, or a usage error listing the configured ones.
    pub fn connector(&self, name: &str) -> Result<&ConnectorConfig> {
        self.connectors.iter().find(|c| c.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.connectors.iter().map(|c| c.name.as_str()).collect();
            let known = if known.is_empty() {
                "none is configured yet".to_owned()
            } else {
                format!("configured: {}", known.join(", "))
            };
            Error::Usage(format!(
                "no connector named `{name}` in {} ({known}); add a [[connector]] with name = \"{name}\"",
                self.path.display()
            ))
        })
    }
}

/// What the config tests share: a fixed environment, and parsing as if from one fixed file.
#[cfg(test)]
mod test_support {
    use super::{Config, Transport};
    use crate::error::Result;
    use std::path::Path;

    pub(super) fn env(name: &str) -> Option<String> {
        match name {
            "ORG" => Some("acme".into()),
            "TOKEN" => Some("lk_pat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    pub(super) fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/latchkey.toml"), &env, Transport::Secure)
    }

    pub(super) fn error(text: &str) -> String {
        match parse(text) {
            Ok(_) => String::from("<no error>"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2, "config errors exit 2: {e}");
                e.to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::parse;
    use super::*;
    use crate::schedule;

    const GOOD: &str = r#"
        cloud_url = "https://cloud.example.com/"

        [[connector]]
        name = "music"
        kind = "spotify"
        org = "${ORG}"
        connector_key = "spotify"
        schedule = "15m"

        [[connector]]
        name = "sbx"
        kind = "sandbox"
        org = "acme"
        connector_key = "sandbox"
        base_url = "http://127.0.0.1:9000/sandbox/"

        [[connector]]
        name = "feed"
        kind = "http-json"
        org = "acme"
        connector_key = "acme-api"
        url = "https://api.example.com/items"
        items = "/items"
        id = "id"
        next = "/next"
    "#;

    #[test]
    fn a_good_file_loads() {
        let c = parse(GOOD).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cloud_url.as_str(), "https://cloud.example.com/");
        assert_eq!(c.connectors.len(), 3);
        assert_eq!(c.connectors[0].org, "acme");
        assert_eq!(c.connectors[0].schedule.interval().as_secs(), 900);
        assert_eq!(c.connectors[1].schedule, schedule::DEFAULT);
        assert_eq!(c.connectors[1].base_url.as_ref().map(Url::as_str), Some("http://127.0.0.1:9000/sandbox"));
        let h = c.connectors[2].http_json.as_ref().unwrap_or_else(|| panic!("http-json settings"));
        assert_eq!(h.cursor_param, "cursor");
        assert_eq!(h.next.as_deref(), Some("/next"));
        assert!(c.connector("music").is_ok());
        let unknown = c.connector("nope").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(unknown.contains("configured: music, sbx, feed"), "{unknown}");
    }

    #[test]
    fn the_starter_file_is_valid() {
        let c = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cloud_url.as_str(), "http://127.0.0.1:8080/");
        assert!(c.connectors.is_empty());
        // And every commented example in it is valid once uncommented.
        let uncommented: String = EXAMPLE
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.starts_with('[') || rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .filter(|l| !l.starts_with("pat ="))
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        let kinds: Vec<Kind> = c.connectors.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [Kind::Sandbox, Kind::Github, Kind::Spotify, Kind::HttpJson]);
        assert_eq!(
            c.connectors[3].http_json.as_ref().and_then(|h| h.occurred_at.clone()).as_deref(),
            Some("created_at")
        );
    }
}
