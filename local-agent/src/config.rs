//! The agent's config file, `latchkey.toml`: where it lives, `${VAR}` interpolation, and
//! validation at load with errors that name the file, the key and the fix.
//!
//! Nothing here talks to a network; a loaded [`Config`] is known to be well formed.

use crate::error::{Error, Result};
use crate::schedule::{self, Schedule};
use latchkey_shared::secret::SecretString;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use url::Url;

/// The starter file `latchkey init` writes.
pub const EXAMPLE: &str = include_str!("../latchkey.example.toml");
/// The config file's name in the config dir.
pub const FILE_NAME: &str = "latchkey.toml";
/// The query parameter of an http-json cursor when the config names none.
pub const DEFAULT_CURSOR_PARAM: &str = "cursor";

/// The config file's default path: `$XDG_CONFIG_HOME/latchkey/latchkey.toml` or the
/// platform's equivalent.
pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "latchkey").map(|d| d.config_dir().join(FILE_NAME))
}

/// The data dir's default: `$XDG_DATA_HOME/latchkey` or the platform's equivalent.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "latchkey").map(|d| d.data_dir().to_path_buf())
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
    pub connectors: Vec<ConnectorConfig>,
}

/// One `[[connector]]`.
#[derive(Clone, Debug)]
pub struct ConnectorConfig {
    pub name: String,
    pub kind: Kind,
    pub org: String,
    pub connector_key: String,
    pub schedule: Schedule,
    /// Overrides the provider API's base URL.
    pub base_url: Option<Url>,
    /// Only for `kind = "http-json"`.
    pub http_json: Option<HttpJsonConfig>,
}

/// The generic connector's settings.
#[derive(Clone, Debug)]
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
    /// Reads and validates the file at `path`, interpolating from the environment.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Config(format!(
                    "{}: no config file here.\n  fix: run `latchkey init` to write a starter file, \
                     or point --config / LATCHKEY_CONFIG at yours",
                    path.display()
                )))
            }
            Err(e) => return Err(Error::Config(format!("{}: cannot read the config file: {e}", path.display()))),
        };
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Validates `text` as if read from `path`; `env` looks up `${VAR}`s.
    pub fn parse(text: &str, path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            Error::Config(format!(
                "{}: {}\n  fix: correct the key or value shown above; `latchkey init --print` shows every key",
                path.display(),
                e.to_string().trim_end()
            ))
        })?;
        let file = path.display().to_string();
        let at = |key: &str| Place { file: &file, connector: None, key: key.to_owned() };

        let cloud_url = interpolate(&raw.cloud_url, env).map_err(|p| at("cloud_url").problem(&p.0, &p.1))?;
        let cloud_url = parse_http_url(&cloud_url).map_err(|p| {
            at("cloud_url").problem(&p, "write the cloud's address, like \"https://latchkey.example.com\"")
        })?;
        if cloud_url.query().is_some() || cloud_url.fragment().is_some() {
            return Err(at("cloud_url").problem(
                "has a query or fragment",
                "write only the cloud's address, like \"https://latchkey.example.com\"",
            ));
        }
        let cloud_url = without_trailing_slash(cloud_url);

        let pat = match raw.pat {
            None => None,
            Some(value) => {
                let value = interpolate(&value, env).map_err(|p| at("pat").problem(&p.0, &p.1))?;
                if let Err(e) = latchkey_shared::Pat::parse(value.trim()) {
                    return Err(at("pat").problem(
                        &format!("is not a Latchkey personal access token ({e})"),
                        "remove `pat` to use the token `latchkey login` stores, or set it to \"${LATCHKEY_PAT}\"",
                    ));
                }
                Some(SecretString::new(value.trim().to_owned()))
            }
        };

        let mut names = HashSet::new();
        let mut connectors = Vec::with_capacity(raw.connector.len());
        for (index, rc) in raw.connector.into_iter().enumerate() {
            let c = validate_connector(rc, index, &file, env)?;
            if !names.insert(c.name.clone()) {
                return Err(Place { file: &file, connector: Some((index, &c.name)), key: "name".into() }.problem(
                    &format!("another [[connector]] is already named \"{}\"", c.name),
                    "give every connector its own name",
                ));
            }
            connectors.push(c);
        }
        Ok(Config { path: path.to_path_buf(), cloud_url, pat, connectors })
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

/// Where a config problem is, for messages.
struct Place<'a> {
    file: &'a str,
    connector: Option<(usize, &'a str)>,
    key: String,
}

impl Place<'_> {
    fn problem(&self, problem: &str, fix: &str) -> Error {
        let whereabouts = match self.connector {
            None => format!("key `{}`", self.key),
            Some((index, "")) => format!("[[connector]] #{}, key `{}`", index + 1, self.key),
            Some((index, name)) => format!("[[connector]] #{} (\"{name}\"), key `{}`", index + 1, self.key),
        };
        Error::Config(format!("{}: {whereabouts}: {problem}\n  fix: {fix}", self.file))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cloud_url: String,
    pat: Option<String>,
    #[serde(default)]
    connector: Vec<RawConnector>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    name: String,
    kind: Kind,
    org: String,
    connector_key: String,
    schedule: Option<String>,
    base_url: Option<String>,
    url: Option<String>,
    items: Option<String>,
    id: Option<String>,
    next: Option<String>,
    cursor_param: Option<String>,
    occurred_at: Option<String>,
}

fn validate_connector(
    rc: RawConnector,
    index: usize,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ConnectorConfig> {
    let early = Place { file, connector: Some((index, "")), key: "name".into() };
    let name = interpolate(&rc.name, env).map_err(|p| early.problem(&p.0, &p.1))?;
    if !valid_name(&name) {
        return Err(early.problem(
            &format!("\"{name}\" is not a usable name"),
            "use 1 to 64 letters, digits, `-` or `_`, starting with a letter or digit",
        ));
    }
    let at = |key: &str| Place { file, connector: Some((index, name.as_str())), key: key.to_owned() };
    let text = |key: &str, value: &str| interpolate(value, env).map_err(|p| at(key).problem(&p.0, &p.1));
    let optional = |key: &str, value: &Option<String>| value.as_deref().map(|v| text(key, v)).transpose();

    let org = text("org", &rc.org)?;
    if !valid_name(&org) {
        return Err(at("org").problem(
            &format!("\"{org}\" is not an org slug or id"),
            "write the cloud org's slug as its page shows it, like \"acme\"",
        ));
    }
    let connector_key = text("connector_key", &rc.connector_key)?;
    if !valid_name(&connector_key) {
        return Err(at("connector_key").problem(
            &format!("\"{connector_key}\" is not a connector key"),
            "write the org's connector key as its page shows it, like \"spotify\"",
        ));
    }
    let schedule = match optional("schedule", &rc.schedule)? {
        None => schedule::DEFAULT,
        Some(s) => Schedule::parse(&s).map_err(|why| {
            at("schedule").problem(
                &format!("\"{s}\" {why}"),
                "use a number and a unit, like \"30s\", \"15m\", \"1h\" or \"1d\" (sums like \"1h30m\" work too)",
            )
        })?,
    };
    let base_url =
        match optional("base_url", &rc.base_url)? {
            None => None,
            Some(u) => Some(without_trailing_slash(parse_http_url(&u).map_err(|p| {
                at("base_url").problem(&p, "write the API's base URL, like \"https://api.example.com\"")
            })?)),
        };

    let http_only = [
        ("url", &rc.url),
        ("items", &rc.items),
        ("id", &rc.id),
        ("next", &rc.next),
        ("cursor_param", &rc.cursor_param),
        ("occurred_at", &rc.occurred_at),
    ];
    let http_json = if rc.kind == Kind::HttpJson {
        if base_url.is_some() {
            return Err(at("base_url").problem(
                "is not used by kind = \"http-json\"",
                "remove base_url and put the first page's full URL in `url`",
            ));
        }
        let required = |key: &str, value: &Option<String>, example: &str| -> Result<String> {
            match optional(key, value)? {
                Some(v) if !v.trim().is_empty() => Ok(v),
                _ => {
                    Err(at(key).problem("is missing; kind = \"http-json\" needs it", &format!("add {key} = {example}")))
                }
            }
        };
        let url = required("url", &rc.url, "\"https://api.example.com/items\" (the first page)")?;
        let url = parse_http_url(&url)
            .map_err(|p| at("url").problem(&p, "write the first page's URL, like \"https://api.example.com/items\""))?;
        // `items = ""` is the whole document (a top-level array), so only absence is an error.
        let items = optional("items", &rc.items)?.ok_or_else(|| {
            at("items").problem(
                "is missing; kind = \"http-json\" needs it",
                "add items = \"/items\" (a JSON pointer to the array of items; \"\" for a top-level array)",
            )
        })?;
        check_pointer(&items).map_err(|p| {
            at("items")
                .problem(&p, "write a JSON pointer like \"/items\" or \"/data/results\" (\"\" for a top-level array)")
        })?;
        let id = required("id", &rc.id, "\"id\" (the field of an item that identifies it)")?;
        if id.starts_with('/') {
            check_pointer(&id).map_err(|p| {
                at("id").problem(&p, "write a field name like \"id\" or a JSON pointer like \"/meta/id\"")
            })?;
        }
        let next = optional("next", &rc.next)?.filter(|n| !n.is_empty());
        if let Some(next) = &next {
            check_pointer(next)
                .map_err(|p| at("next").problem(&p, "write a JSON pointer like \"/next\" or \"/paging/cursor\""))?;
        }
        let cursor_param =
            optional("cursor_param", &rc.cursor_param)?.unwrap_or_else(|| DEFAULT_CURSOR_PARAM.to_owned());
        if cursor_param.trim().is_empty() {
            return Err(at("cursor_param")
                .problem("is empty", "write the query parameter name, like \"cursor\" or \"page_token\""));
        }
        let occurred_at = optional("occurred_at", &rc.occurred_at)?.filter(|o| !o.is_empty());
        if let Some(o) = occurred_at.as_deref().filter(|o| o.starts_with('/')) {
            check_pointer(o).map_err(|p| {
                at("occurred_at").problem(&p, "write a field name like \"created_at\" or a JSON pointer")
            })?;
        }
        Some(HttpJsonConfig { url, items, id, next, cursor_param, occurred_at })
    } else {
        if let Some((key, _)) = http_only.iter().find(|(_, v)| v.is_some()) {
            return Err(at(key).problem(
                &format!("is only for kind = \"http-json\", and this connector is kind = \"{}\"", rc.kind.as_str()),
                &format!("remove `{key}`, or set kind = \"http-json\""),
            ));
        }
        None
    };
    Ok(ConnectorConfig { name, kind: rc.kind, org, connector_key, schedule, base_url, http_json })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_pointer(pointer: &str) -> Result<(), String> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(format!("\"{pointer}\" is not a JSON pointer (it must start with `/`)"))
    }
}

/// Parses an absolute http(s) URL with a host.
fn parse_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("\"{text}\" is not a URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("\"{text}\" is not an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("\"{text}\" has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("\"{text}\" carries a user name or password; credentials do not belong in URLs"));
    }
    Ok(url)
}

fn without_trailing_slash(mut url: Url) -> Url {
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    url
}

/// A failed interpolation: (problem, fix).
#[derive(Debug, PartialEq, Eq)]
pub struct InterpolationError(pub String, pub String);

/// Replaces `${NAME}` with the variable's value and `$$` with `$`. A `$` followed by
/// anything else stays as it is.
pub fn interpolate(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err(InterpolationError(
                    format!("\"{value}\" has a `${{` without its closing `}}`"),
                    "write ${NAME} to read the variable NAME, or $$ for a literal dollar sign".into(),
                ));
            };
            let name = &tail[..end];
            let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(InterpolationError(
                    format!("`${{{name}}}` is not a variable name"),
                    "use letters, digits and `_` in ${NAME}, or write $$ for a literal dollar sign".into(),
                ));
            }
            match env(name) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(InterpolationError(
                        format!("refers to the environment variable {name}, which is not set"),
                        format!("set {name} in the environment, or change the value"),
                    ))
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "ORG" => Some("acme".into()),
            "TOKEN" => Some("lk_pat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/latchkey.toml"), &env)
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(_) => String::from("<no error>"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2, "config errors exit 2: {e}");
                e.to_string()
            }
        }
    }

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

    #[test]
    fn pat_comes_from_the_environment() {
        let token = latchkey_shared::Pat::generate();
        let text = "cloud_url = \"http://127.0.0.1:8080\"\npat = \"${MY_PAT}\"\n";
        let lookup = |name: &str| (name == "MY_PAT").then(|| token.secret().expose().clone());
        let c = Config::parse(text, Path::new("x.toml"), &lookup).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.pat.as_ref().map(|p| p.expose().as_str()), Some(token.secret().expose().as_str()));
        assert!(!format!("{c:?}").contains(token.secret().expose().as_str()), "the PAT never prints");
        let e = error("cloud_url = \"http://127.0.0.1:8080\"\npat = \"${MISSING_PAT}\"\n");
        assert!(e.contains("key `pat`") && e.contains("MISSING_PAT, which is not set"), "{e}");
        let e = error("cloud_url = \"http://127.0.0.1:8080\"\npat = \"hunter2\"\n");
        assert!(e.contains("is not a Latchkey personal access token") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn errors_name_the_file_the_key_and_the_fix() {
        let base = "cloud_url = \"https://c.example\"\n";
        let connector = |extra: &str| {
            format!("{base}[[connector]]\nname = \"music\"\nkind = \"spotify\"\norg = \"acme\"\nconnector_key = \"k\"\n{extra}")
        };
        let cases: Vec<(String, Vec<&str>)> = vec![
            ("colud_url = \"x\"".into(), vec!["/etc/latchkey.toml", "unknown field `colud_url`", "fix:"]),
            (String::new(), vec!["missing field `cloud_url`"]),
            ("cloud_url = \"ftp://c.example\"".into(), vec!["key `cloud_url`", "not an http:// or https:// URL", "fix:"]),
            ("cloud_url = \"c.example\"".into(), vec!["key `cloud_url`", "is not a URL"]),
            ("cloud_url = \"https://u:p@c.example\"".into(), vec!["key `cloud_url`", "user name or password"]),
            ("cloud_url = \"https://c.example/?x=1\"".into(), vec!["key `cloud_url`", "query"]),
            (connector("schedule = \"15x\""), vec!["[[connector]] #1 (\"music\"), key `schedule`", "\"15x\"", "fix: use a number and a unit"]),
            (connector("shedule = \"15m\""), vec!["unknown field `shedule`", "line 7"]),
            (connector("kind = \"x\""), vec!["duplicate key"]),
            (connector("url = \"https://x.example\""), vec!["key `url`", "only for kind = \"http-json\"", "fix: remove `url`"]),
            (connector("base_url = \"nope\""), vec!["key `base_url`", "is not a URL"]),
            (connector("schedule = \"${NOT_SET}\""), vec!["key `schedule`", "NOT_SET, which is not set", "fix: set NOT_SET"]),
            (connector("[[connector]]\nname = \"music\"\nkind = \"sandbox\"\norg = \"a\"\nconnector_key = \"b\""), vec!["#2 (\"music\"), key `name`", "already named \"music\""]),
            (format!("{base}[[connector]]\nname = \"my music\"\nkind = \"spotify\"\norg = \"a\"\nconnector_key = \"b\""), vec!["#1, key `name`", "not a usable name"]),
            (format!("{base}[[connector]]\nname = \"m\"\nkind = \"myspace\"\norg = \"a\"\nconnector_key = \"b\""), vec!["unknown variant `myspace`", "http-json"]),
            (format!("{base}[[connector]]\nname = \"m\"\nkind = \"spotify\"\norg = \"${{EMPTY}}\"\nconnector_key = \"b\""), vec!["key `org`", "is not an org slug or id"]),
            (format!("{base}[[connector]]\nname = \"m\"\nkind = \"spotify\"\norg = \"a\""), vec!["missing field `connector_key`"]),
        ];
        for (text, wanted) in cases {
            let e = error(&text);
            for w in wanted {
                assert!(e.contains(w), "expected {w:?} in the error for\n{text}\ngot:\n{e}");
            }
        }
    }

    #[test]
    fn http_json_needs_its_fields() {
        let head = "cloud_url = \"https://c.example\"\n[[connector]]\nname = \"feed\"\nkind = \"http-json\"\norg = \"a\"\nconnector_key = \"b\"\n";
        let e = error(head);
        assert!(
            e.contains("key `url`: is missing; kind = \"http-json\" needs it") && e.contains("fix: add url ="),
            "{e}"
        );
        let e = error(&format!("{head}url = \"https://api.example/items\"\n"));
        assert!(e.contains("key `items`: is missing"), "{e}");
        let e = error(&format!("{head}url = \"https://api.example/items\"\nitems = \"/items\"\n"));
        assert!(e.contains("key `id`: is missing"), "{e}");
        let e = error(&format!("{head}url = \"https://api.example/items\"\nitems = \"items\"\nid = \"id\"\n"));
        assert!(e.contains("key `items`") && e.contains("not a JSON pointer"), "{e}");
        let e = error(&format!(
            "{head}url = \"https://api.example/items\"\nitems = \"/items\"\nid = \"id\"\nnext = \"next\"\n"
        ));
        assert!(e.contains("key `next`") && e.contains("not a JSON pointer"), "{e}");
        let e = error(&format!("{head}url = \"https://api.example/items\"\nitems = \"/items\"\nid = \"id\"\nbase_url = \"https://x.example\"\n"));
        assert!(e.contains("key `base_url`") && e.contains("not used by kind"), "{e}");
        let ok = parse(&format!(
            "{head}url = \"https://api.example/items\"\nitems = \"\"\nid = \"/meta/id\"\ncursor_param = \"page\"\n"
        ));
        let ok = ok.unwrap_or_else(|e| panic!("{e}"));
        let h = ok.connectors[0].http_json.as_ref().unwrap_or_else(|| panic!("settings"));
        assert_eq!(
            (h.items.as_str(), h.id.as_str(), h.cursor_param.as_str(), h.next.as_deref()),
            ("", "/meta/id", "page", None)
        );
    }

    #[test]
    fn a_missing_file_says_to_run_init() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let e = Config::load(&dir.path().join("latchkey.toml")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("latchkey.toml") && e.contains("latchkey init"), "{e}");
    }

    #[test]
    fn interpolation() {
        let ok = |s: &str| interpolate(s, &env).unwrap_or_else(|e| panic!("{s}: {e:?}"));
        assert_eq!(ok("plain"), "plain");
        assert_eq!(ok("${ORG}"), "acme");
        assert_eq!(ok("x-${ORG}-${ORG}-y"), "x-acme-acme-y");
        assert_eq!(ok("cost: $$5"), "cost: $5");
        assert_eq!(ok("$$${ORG}"), "$acme");
        assert_eq!(ok("a $ b $x"), "a $ b $x");
        assert_eq!(ok("${EMPTY}"), "");
        assert_eq!(ok("trailing $"), "trailing $");
        let err = |s: &str| interpolate(s, &env).err().unwrap_or_else(|| panic!("{s} should fail"));
        assert!(err("${NOPE}").0.contains("NOPE, which is not set"));
        assert!(err("${ORG").0.contains("without its closing"));
        assert!(err("${}").0.contains("not a variable name"));
        assert!(err("${1A}").0.contains("not a variable name"));
        assert!(err("${A-B}").0.contains("not a variable name"));
        // A value is interpolated once: a `$` inside a variable's value stays as it is.
        let nested = |name: &str| (name == "A").then(|| "${B}".to_owned());
        assert_eq!(interpolate("${A}", &nested).ok().as_deref(), Some("${B}"));
    }
}
