//! Reading `latchkey.toml`: the file, its TOML, and `${VAR}` interpolation of its values.

use super::{validate, Config, Kind, Transport};
use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

impl Config {
    /// Reads and validates the file at `path`, interpolating from the environment.
    pub fn load(path: &Path, transport: Transport) -> Result<Config> {
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
        Self::parse(&text, path, &|name| std::env::var(name).ok(), transport)
    }

    /// Validates `text` as if read from `path`; `env` looks up `${VAR}`s.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        transport: Transport,
    ) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            Error::Config(format!(
                "{}: {}\n  fix: correct the key or value shown above; `latchkey init --print` shows every key",
                path.display(),
                e.to_string().trim_end()
            ))
        })?;
        let file = path.display().to_string();
        let top = validate::Section::top(&file, env, transport);
        let cloud_url = validate::cloud_url(&top, &raw.cloud_url)?;
        let pat = raw.pat.map(|value| validate::pat(&top, &value)).transpose()?;
        let cloud_poll = validate::cloud_poll(&top, raw.cloud_poll.as_deref())?;
        let connectors = validate::connectors(&top, raw.connector)?;
        Ok(Config { path: path.to_path_buf(), cloud_url, pat, cloud_poll, connectors })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cloud_url: String,
    pat: Option<String>,
    cloud_poll: Option<String>,
    #[serde(default)]
    connector: Vec<RawConnector>,
}

/// One `[[connector]]` as written: its values are not yet interpolated or checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnector {
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) org: String,
    pub(super) connector_key: String,
    pub(super) connection: Option<String>,
    pub(super) schedule: Option<String>,
    pub(super) base_url: Option<String>,
    pub(super) url: Option<String>,
    pub(super) items: Option<String>,
    pub(super) id: Option<String>,
    pub(super) next: Option<String>,
    pub(super) cursor_param: Option<String>,
    pub(super) occurred_at: Option<String>,
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
            let (variable, tail) = variable(value, tail, env)?;
            out.push_str(&variable);
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of the variable `tail` names (`tail` being what follows a `${` in `value`), and
/// what follows its `}`.
fn variable<'t>(
    value: &str,
    tail: &'t str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, &'t str), InterpolationError> {
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
        Some(v) => Ok((v, &tail[end + 1..])),
        None => Err(InterpolationError(
            format!("refers to the environment variable {name}, which is not set"),
            format!("set {name} in the environment, or change the value"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::env;
    use super::*;

    #[test]
    fn a_missing_file_says_to_run_init() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let e = Config::load(&dir.path().join("latchkey.toml"), Transport::Secure)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
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
