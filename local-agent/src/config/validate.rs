//! Checking each key of `latchkey.toml` once it is read, with errors that name the file, the
//! key and the fix.

use super::load::RawConnector;
use super::{interpolate, is_private_channel, ConnectorConfig, HttpJsonConfig, Kind, Transport, DEFAULT_CURSOR_PARAM};
use crate::error::{Error, Result};
use crate::schedule::{self, Schedule};
use latchkey_shared::secret::SecretString;
use std::collections::HashSet;
use std::time::Duration;
use url::Url;

/// The part of the file being checked, the top level or one `[[connector]]`: where a problem
/// is for its message, and the environment its values are interpolated from.
#[derive(Clone, Copy)]
pub(super) struct Section<'a> {
    file: &'a str,
    /// A connector's index, and its name once that is known to be usable.
    connector: Option<(usize, &'a str)>,
    env: &'a dyn Fn(&str) -> Option<String>,
    transport: Transport,
}

impl<'a> Section<'a> {
    pub(super) fn top(file: &'a str, env: &'a dyn Fn(&str) -> Option<String>, transport: Transport) -> Self {
        Section { file, connector: None, env, transport }
    }

    fn problem(&self, key: &str, problem: &str, fix: &str) -> Error {
        let whereabouts = match self.connector {
            None => format!("key `{key}`"),
            Some((index, "")) => format!("[[connector]] #{}, key `{key}`", index + 1),
            Some((index, name)) => format!("[[connector]] #{} (\"{name}\"), key `{key}`", index + 1),
        };
        Error::Config(format!("{}: {whereabouts}: {problem}\n  fix: {fix}", self.file))
    }

    /// `value` with its `${VAR}`s replaced.
    fn text(&self, key: &str, value: &str) -> Result<String> {
        interpolate(value, self.env).map_err(|p| self.problem(key, &p.0, &p.1))
    }

    fn optional(&self, key: &str, value: Option<&str>) -> Result<Option<String>> {
        value.map(|v| self.text(key, v)).transpose()
    }

    /// An http-json key that must be there and not blank.
    fn required(&self, key: &str, value: Option<&str>, example: &str) -> Result<String> {
        match self.optional(key, value)? {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(self.missing(key, example)),
        }
    }

    fn missing(&self, key: &str, example: &str) -> Error {
        self.problem(key, "is missing; kind = \"http-json\" needs it", &format!("add {key} = {example}"))
    }

    /// A name, slug or key: what `valid_name` allows; `what` says which, for the message.
    fn name(&self, key: &str, value: &str, what: &str, fix: &str) -> Result<String> {
        let name = self.text(key, value)?;
        if valid_name(&name) {
            Ok(name)
        } else {
            Err(self.problem(key, &format!("\"{name}\" is not {what}"), fix))
        }
    }

    /// An absolute http(s) URL over which a token cannot be read on the network, unless
    /// `--insecure` allows plain http:// to any host. `fix` says what to write instead.
    fn url(&self, key: &str, value: &str, fix: &str) -> Result<Url> {
        let url = parse_http_url(value).map_err(|p| self.problem(key, &p, fix))?;
        if self.transport == Transport::Secure && !is_private_channel(&url) {
            return Err(self.problem(
                key,
                &format!(
                    "\"{value}\" is plain http:// to another machine: the tokens sent there would cross \
                     the network readable by anyone on the way"
                ),
                &format!(
                    "{fix}; http:// is fine only for localhost or 127.0.0.1 (for a test setup on a network \
                     you trust, run latchkey with --insecure)"
                ),
            ));
        }
        Ok(url)
    }

    fn pointer(&self, key: &str, pointer: &str, fix: &str) -> Result<()> {
        check_pointer(pointer).map_err(|p| self.problem(key, &p, fix))
    }

    /// A field name, or a JSON pointer when it starts with `/`.
    fn field(&self, key: &str, field: &str, fix: &str) -> Result<()> {
        if field.starts_with('/') {
            self.pointer(key, field, fix)
        } else {
            Ok(())
        }
    }
}

pub(super) fn cloud_url(top: &Section<'_>, value: &str) -> Result<Url> {
    let cloud_url = top.text("cloud_url", value)?;
    let cloud_url =
        top.url("cloud_url", &cloud_url, "write the cloud's address, like \"https://latchkey.example.com\"")?;
    if cloud_url.query().is_some() || cloud_url.fragment().is_some() {
        return Err(top.problem(
            "cloud_url",
            "has a query or fragment",
            "write only the cloud's address, like \"https://latchkey.example.com\"",
        ));
    }
    Ok(without_trailing_slash(cloud_url))
}

pub(super) fn pat(top: &Section<'_>, value: &str) -> Result<SecretString> {
    let value = top.text("pat", value)?;
    if let Err(e) = latchkey_shared::Pat::parse(value.trim()) {
        return Err(top.problem(
            "pat",
            &format!("is not a Latchkey personal access token ({e})"),
            "remove `pat` to use the token `latchkey login` stores, or set it to \"${LATCHKEY_PAT}\"",
        ));
    }
    Ok(SecretString::new(value.trim().to_owned()))
}

/// `cloud_poll`: how often `latchkey run` asks the cloud what changed; `"off"` for never.
pub(super) fn cloud_poll(top: &Section<'_>, value: Option<&str>) -> Result<Option<Duration>> {
    let Some(text) = top.optional("cloud_poll", value)? else {
        return Ok(Some(super::DEFAULT_CLOUD_POLL));
    };
    if text.trim() == "off" {
        return Ok(None);
    }
    let fix = "use a number and a unit from \"1s\" to \"1h\", like \"5s\" (the default), or \"off\"";
    match schedule::parse_duration(&text) {
        Ok(d) if d < Duration::from_secs(1) => Err(top.problem("cloud_poll", "is shorter than 1s", fix)),
        Ok(d) if d > Duration::from_secs(3600) => Err(top.problem("cloud_poll", "is longer than 1h", fix)),
        Ok(d) => Ok(Some(d)),
        Err(why) => Err(top.problem("cloud_poll", &format!("\"{text}\" {why}"), fix)),
    }
}

/// Every `[[connector]]`, each checked, and no two of one name.
pub(super) fn connectors(top: &Section<'_>, raw: Vec<RawConnector>) -> Result<Vec<ConnectorConfig>> {
    let mut names = HashSet::new();
    let mut connectors = Vec::with_capacity(raw.len());
    for (index, rc) in raw.into_iter().enumerate() {
        let c = connector(top, index, rc)?;
        if !names.insert(c.name.clone()) {
            return Err(Section { connector: Some((index, &c.name)), ..*top }.problem(
                "name",
                &format!("another [[connector]] is already named \"{}\"", c.name),
                "give every connector its own name",
            ));
        }
        connectors.push(c);
    }
    Ok(connectors)
}

fn connector(top: &Section<'_>, index: usize, rc: RawConnector) -> Result<ConnectorConfig> {
    // Until the name is known to be usable, messages place the connector by its index alone.
    let unnamed = Section { connector: Some((index, "")), ..*top };
    let name = unnamed.name(
        "name",
        &rc.name,
        "a usable name",
        "use 1 to 64 letters, digits, `-` or `_`, starting with a letter or digit",
    )?;
    let at = Section { connector: Some((index, &name)), ..*top };
    let org =
        at.name("org", &rc.org, "an org slug or id", "write the cloud org's slug as its page shows it, like \"acme\"")?;
    let connector_key = at.name(
        "connector_key",
        &rc.connector_key,
        "a connector key",
        "write the org's connector key as its page shows it, like \"spotify\"",
    )?;
    let connection = connection(&at, rc.connection.as_deref())?;
    let schedule = schedule_of(&at, rc.schedule.as_deref())?;
    let base_url = base_url(&at, rc.base_url.as_deref())?;
    let http_json = if rc.kind == Kind::HttpJson {
        Some(http_json(&at, &rc, base_url.is_some())?)
    } else {
        no_http_json_keys(&at, &rc)?;
        None
    };
    Ok(ConnectorConfig { name, kind: rc.kind, org, connector_key, connection, schedule, base_url, http_json })
}

/// `connection`: a label (as the cloud's org page shows it) or a connection id.
fn connection(at: &Section<'_>, value: Option<&str>) -> Result<Option<String>> {
    let Some(label) = at.optional("connection", value)? else {
        return Ok(None);
    };
    let fix = "write the label of the account as the cloud's org page shows it, like \"work\", or its id; \
               leave `connection` out when you have one account on this connector";
    if label.trim().is_empty() {
        return Err(at.problem("connection", "is empty", fix));
    }
    if label.trim() != label || label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(at.problem(
            "connection",
            &format!(
                "\"{}\" is not a label: at most 100 characters, no control characters, no spaces at either end",
                label.escape_debug()
            ),
            fix,
        ));
    }
    Ok(Some(label))
}

fn schedule_of(at: &Section<'_>, value: Option<&str>) -> Result<Schedule> {
    match at.optional("schedule", value)? {
        None => Ok(schedule::DEFAULT),
        Some(s) => Schedule::parse(&s).map_err(|why| {
            at.problem(
                "schedule",
                &format!("\"{s}\" {why}"),
                "use a number and a unit, like \"30s\", \"15m\", \"1h\" or \"1d\" (sums like \"1h30m\" work too)",
            )
        }),
    }
}

fn base_url(at: &Section<'_>, value: Option<&str>) -> Result<Option<Url>> {
    let Some(u) = at.optional("base_url", value)? else {
        return Ok(None);
    };
    let url = at.url("base_url", &u, "write the API's base URL, like \"https://api.example.com\"")?;
    Ok(Some(without_trailing_slash(url)))
}

/// A stray http-json key on another kind is more likely a wrong `kind` than a harmless extra.
fn no_http_json_keys(at: &Section<'_>, rc: &RawConnector) -> Result<()> {
    let http_only = [
        ("url", &rc.url),
        ("items", &rc.items),
        ("id", &rc.id),
        ("next", &rc.next),
        ("cursor_param", &rc.cursor_param),
        ("occurred_at", &rc.occurred_at),
    ];
    match http_only.iter().find(|(_, v)| v.is_some()) {
        Some((key, _)) => Err(at.problem(
            key,
            &format!("is only for kind = \"http-json\", and this connector is kind = \"{}\"", rc.kind.as_str()),
            &format!("remove `{key}`, or set kind = \"http-json\""),
        )),
        None => Ok(()),
    }
}

fn http_json(at: &Section<'_>, rc: &RawConnector, has_base_url: bool) -> Result<HttpJsonConfig> {
    if has_base_url {
        return Err(at.problem(
            "base_url",
            "is not used by kind = \"http-json\"",
            "remove base_url and put the first page's full URL in `url`",
        ));
    }
    let url = at.required("url", rc.url.as_deref(), "\"https://api.example.com/items\" (the first page)")?;
    let url = at.url("url", &url, "write the first page's URL, like \"https://api.example.com/items\"")?;
    let items = items(at, rc.items.as_deref())?;
    let id = at.required("id", rc.id.as_deref(), "\"id\" (the field of an item that identifies it)")?;
    at.field("id", &id, "write a field name like \"id\" or a JSON pointer like \"/meta/id\"")?;
    let next = at.optional("next", rc.next.as_deref())?.filter(|n| !n.is_empty());
    if let Some(next) = &next {
        at.pointer("next", next, "write a JSON pointer like \"/next\" or \"/paging/cursor\"")?;
    }
    let cursor_param = cursor_param(at, rc.cursor_param.as_deref())?;
    let occurred_at = at.optional("occurred_at", rc.occurred_at.as_deref())?.filter(|o| !o.is_empty());
    if let Some(o) = &occurred_at {
        at.field("occurred_at", o, "write a field name like \"created_at\" or a JSON pointer")?;
    }
    Ok(HttpJsonConfig { url, items, id, next, cursor_param, occurred_at })
}

fn items(at: &Section<'_>, value: Option<&str>) -> Result<String> {
    // `items = ""` is the whole document (a top-level array), so only absence is an error.
    let items = at.optional("items", value)?.ok_or_else(|| {
        at.missing("items", "\"/items\" (a JSON pointer to the array of items; \"\" for a top-level array)")
    })?;
    at.pointer(
        "items",
        &items,
        "write a JSON pointer like \"/items\" or \"/data/results\" (\"\" for a top-level array)",
    )?;
    Ok(items)
}

fn cursor_param(at: &Section<'_>, value: Option<&str>) -> Result<String> {
    let cursor_param = at.optional("cursor_param", value)?.unwrap_or_else(|| DEFAULT_CURSOR_PARAM.to_owned());
    if cursor_param.trim().is_empty() {
        return Err(at.problem(
            "cursor_param",
            "is empty",
            "write the query parameter name, like \"cursor\" or \"page_token\"",
        ));
    }
    Ok(cursor_param)
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{error, parse};
    use super::super::{Config, Transport};
    use std::path::Path;

    #[test]
    fn pat_comes_from_the_environment() {
        let token = latchkey_shared::Pat::generate();
        let text = "cloud_url = \"http://127.0.0.1:8080\"\npat = \"${MY_PAT}\"\n";
        let lookup = |name: &str| (name == "MY_PAT").then(|| token.secret().expose().clone());
        let c = Config::parse(text, Path::new("x.toml"), &lookup, Transport::Secure).unwrap_or_else(|e| panic!("{e}"));
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
            (connector("connection = \"\""), vec!["key `connection`: is empty", "fix: write the label"]),
            (connector("connection = \" work\""), vec!["key `connection`", "is not a label"]),
            (connector("connection = \"${NOT_SET}\""), vec!["key `connection`", "NOT_SET, which is not set"]),
            (format!("cloud_poll = \"0s\"\n{base}"), vec!["key `cloud_poll`: is shorter than 1s", "\"off\""]),
            (format!("cloud_poll = \"2h\"\n{base}"), vec!["key `cloud_poll`: is longer than 1h"]),
            (format!("cloud_poll = \"soon\"\n{base}"), vec!["key `cloud_poll`", "\"soon\""]),
        ];
        for (text, wanted) in cases {
            let e = error(&text);
            for w in wanted {
                assert!(e.contains(w), "expected {w:?} in the error for\n{text}\ngot:\n{e}");
            }
        }
    }

    /// A PAT or an access token sent over plain http:// to another machine can be read by
    /// anyone on the network path; loopback traffic never leaves the machine.
    #[test]
    fn plain_http_to_another_machine_is_refused() {
        let with_cloud = |url: &str| format!("cloud_url = \"{url}\"\n");
        let with_connector = |key: &str, url: &str| {
            let kind = if key == "url" { "http-json\"\nitems = \"/items\"\nid = \"id" } else { "github" };
            format!(
                "cloud_url = \"https://c.example\"\n[[connector]]\nname = \"gh\"\nkind = \"{kind}\"\norg = \"a\"\n\
                 connector_key = \"b\"\n{key} = \"{url}\"\n"
            )
        };
        let secure = |text: &str| Config::parse(text, Path::new("/etc/latchkey.toml"), &|_| None, Transport::Secure);
        let insecure =
            |text: &str| Config::parse(text, Path::new("/etc/latchkey.toml"), &|_| None, Transport::Insecure);
        let remote = [
            "http://latchkey.example.com",
            "http://10.0.0.7:8080",
            "http://[fe80::1]",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "http://[::ffff:7f00:1]",
        ];
        let local = [
            "http://127.0.0.1:8080",
            "http://127.9.8.7",
            "http://localhost:3000",
            "http://LOCALHOST",
            "http://[::1]:80",
            "https://latchkey.example.com",
            "https://10.0.0.7",
        ];
        for (key, text) in remote.iter().flat_map(|u| {
            [
                ("cloud_url", with_cloud(u)),
                ("base_url", with_connector("base_url", u)),
                ("url", with_connector("url", u)),
            ]
        }) {
            let e = error(&text);
            for wanted in
                [&format!("key `{key}`") as &str, "plain http:// to another machine", "fix:", "https://", "--insecure"]
            {
                assert!(e.contains(wanted), "expected {wanted:?} in the error for\n{text}\ngot:\n{e}");
            }
            let allowed = insecure(&text).unwrap_or_else(|e| panic!("--insecure allows {text}: {e}"));
            let flagged: Vec<String> = allowed.plain_http_urls().into_iter().map(|(what, _)| what).collect();
            let wanted = if key == "cloud_url" { String::from("cloud_url") } else { format!("connector `gh`, {key}") };
            assert_eq!(flagged, [wanted], "{text}");
        }
        for text in local.iter().flat_map(|u| [with_cloud(u), with_connector("base_url", u), with_connector("url", u)])
        {
            let c = secure(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(c.plain_http_urls().is_empty(), "{text}");
        }
    }

    #[test]
    fn connection_and_cloud_poll() {
        let text = "cloud_poll = \"off\"\ncloud_url = \"https://c.example\"\n[[connector]]\nname = \"gh\"\nkind = \"github\"\n\
                    org = \"a\"\nconnector_key = \"b\"\nconnection = \"work@example.com\"\n";
        let c = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cloud_poll, None);
        assert_eq!(c.connectors[0].connection.as_deref(), Some("work@example.com"));
        let c = parse("cloud_url = \"https://c.example\"\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.cloud_poll, Some(super::super::DEFAULT_CLOUD_POLL));
        assert_eq!(
            parse("cloud_poll = \"2s\"\ncloud_url = \"https://c.example\"\n")
                .ok()
                .and_then(|c| c.cloud_poll)
                .map(|d| d.as_secs()),
            Some(2)
        );
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
}
