//! Checks that a provider definition is usable before it enters the registry, and the
//! errors that say which provider, which field and how to fix it.

use super::{ProviderDef, ProviderOverride, RevocationMethod, UserinfoMethod};

/// Where a definition came from; decides whether loopback `http` URLs are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefinitionSource {
    /// Compiled into Latchkey: every URL must be `https`.
    BuiltIn,
    /// From the operator's config file (a new provider or an override of a built-in):
    /// `http` is allowed on loopback hosts only.
    ConfigFile,
}

/// A provider definition that cannot be used. Every message names the provider, the field
/// and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The `[providers.<name>]` key is not a valid provider name.
    #[error(
        "provider name {name:?} is not valid: use 1 to 32 characters of lowercase letters a-z, \
         digits 0-9 and '-' (rename the [providers.{name}] table in the config file)"
    )]
    InvalidName {
        /// The offending name.
        name: String,
    },
    /// The table could not be read as a definition (unknown field, wrong type, missing field).
    #[error(
        "provider {provider:?}: {message} (fix the [providers.{provider}] table in the config \
         file; {hint}; docs/providers.md lists the fields)"
    )]
    Parse {
        /// Provider name.
        provider: String,
        /// The deserializer's message (names the field).
        message: String,
        /// Whether this was read as an override or a new definition, and what that needs.
        hint: &'static str,
    },
    /// A field has an unusable value.
    #[error("provider {provider:?}: field `{field}` {problem}; {fix}")]
    InvalidField {
        /// Provider name.
        provider: String,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        fix: String,
    },
}

/// Authorization request parameters Latchkey sets itself; `extra_authorize_params` may not
/// set them.
const RESERVED_AUTHORIZE_PARAMS: &[&str] =
    &["response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "nonce"];

/// Whether `name` is a valid provider name: `[a-z0-9-]{1,32}`.
#[must_use]
pub fn is_valid_provider_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether the URL's host is a loopback host: `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl ProviderDef {
    fn field_error(&self, field: &'static str, problem: impl Into<String>, fix: impl Into<String>) -> RegistryError {
        RegistryError::InvalidField { provider: self.name.clone(), field, problem: problem.into(), fix: fix.into() }
    }

    fn check_url(&self, field: &'static str, value: &str, source: DefinitionSource) -> Result<(), RegistryError> {
        let url = url::Url::parse(value).map_err(|e| {
            self.field_error(
                field,
                format!("is not a valid absolute URL ({value:?}: {e})"),
                "give a full URL such as \"https://provider.example/oauth/token\"",
            )
        })?;
        if url.host().is_none() {
            return Err(self.field_error(
                field,
                format!("has no host ({value:?})"),
                "give a full URL such as \"https://provider.example/oauth/token\"",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.field_error(
                field,
                "contains credentials",
                "remove the user:password@ part; client credentials belong in the OAuth app settings",
            ));
        }
        if url.fragment().is_some() {
            return Err(self.field_error(field, format!("has a #fragment ({value:?})"), "remove the #... part"));
        }
        match (url.scheme(), source) {
            ("https", _) => Ok(()),
            ("http", DefinitionSource::ConfigFile) if is_loopback_host(&url) => Ok(()),
            ("http", DefinitionSource::ConfigFile) => Err(self.field_error(
                field,
                format!("uses plain http on a non-loopback host ({value:?})"),
                "use https; plain http is only allowed for 127.0.0.0/8, [::1] and localhost",
            )),
            ("http", DefinitionSource::BuiltIn) => Err(self.field_error(
                field,
                format!("uses plain http ({value:?})"),
                "built-in providers must use https",
            )),
            (scheme, _) => {
                Err(self.field_error(field, format!("uses the scheme {scheme:?} ({value:?})"), "use an https URL"))
            }
        }
    }

    fn check_field_ref(&self, field: &'static str, value: &str) -> Result<(), RegistryError> {
        if value.is_empty() || value == "/" {
            return Err(self.field_error(
                field,
                "is empty",
                "give a JSON field name such as \"id\" or a JSON pointer such as \"/data/id\"",
            ));
        }
        Ok(())
    }

    /// Checks this definition. `source` decides whether loopback `http` URLs are allowed.
    ///
    /// # Errors
    ///
    /// The first problem found, naming the provider, the field and the fix.
    pub fn validate(&self, source: DefinitionSource) -> Result<(), RegistryError> {
        if !is_valid_provider_name(&self.name) {
            return Err(RegistryError::InvalidName { name: self.name.clone() });
        }
        if self.display_name.trim().is_empty() {
            return Err(self.field_error(
                "display_name",
                "is empty",
                "set display_name to the name users should see, e.g. \"Acme\"",
            ));
        }
        self.check_url("authorization_url", &self.authorization_url, source)?;
        self.check_url("token_url", &self.token_url, source)?;
        if let Some(u) = &self.revocation_url {
            self.check_url("revocation_url", u, source)?;
        }
        if let Some(u) = &self.userinfo_url {
            self.check_url("userinfo_url", u, source)?;
        }
        if let Some(u) = &self.issuer {
            self.check_url("issuer", u, source)?;
        }
        if let Some(u) = &self.jwks_uri {
            self.check_url("jwks_uri", u, source)?;
        }
        if let Some(u) = &self.docs_url {
            self.check_url("docs_url", u, source)?;
        }
        if let Some(u) = &self.console_url {
            self.check_url("console_url", u, source)?;
        }
        if self.revocation_method == RevocationMethod::GithubToken
            && !self.revocation_url.as_deref().is_some_and(|u| u.contains("{client_id}"))
        {
            return Err(self.field_error(
                "revocation_method",
                "is \"github_token\" but revocation_url has no {client_id}",
                "set revocation_url = \"https://api.github.com/applications/{client_id}/token\"",
            ));
        }
        if self.userinfo_body.is_some() {
            if self.userinfo_method != UserinfoMethod::Post {
                return Err(self.field_error(
                    "userinfo_body",
                    "is set but userinfo_method is not \"post\"",
                    "set userinfo_method = \"post\" or remove userinfo_body",
                ));
            }
            if self.userinfo_url.is_none() {
                return Err(self.field_error(
                    "userinfo_body",
                    "is set without a userinfo_url",
                    "set userinfo_url or remove userinfo_body",
                ));
            }
        }
        for (k, v) in &self.userinfo_headers {
            let name_ok =
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !name_ok {
                return Err(self.field_error(
                    "userinfo_headers",
                    format!("has an invalid header name {k:?}"),
                    "use a plain HTTP header name such as \"Notion-Version\"",
                ));
            }
            if k.eq_ignore_ascii_case("authorization") {
                return Err(self.field_error(
                    "userinfo_headers",
                    "sets Authorization",
                    "remove it; Latchkey sends the access token itself",
                ));
            }
            if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(self.field_error(
                    "userinfo_headers",
                    format!("header {k:?} has a control character in its value"),
                    "remove line breaks from the value",
                ));
            }
        }
        self.check_field_ref("account_id_field", &self.account_id_field)?;
        if let Some(f) = &self.account_name_field {
            self.check_field_ref("account_name_field", f)?;
        }
        if let Some(p) = &self.token_response_pointer {
            if !p.starts_with('/') || p.len() < 2 {
                return Err(self.field_error(
                    "token_response_pointer",
                    format!("is not a JSON pointer ({p:?})"),
                    "give a JSON pointer such as \"/authed_user\"",
                ));
            }
        }
        if self.scope_separator.is_empty() {
            return Err(self.field_error("scope_separator", "is empty", "use \" \" (the OAuth default) or \",\""));
        }
        if self.scope_param.is_empty() || RESERVED_AUTHORIZE_PARAMS.contains(&self.scope_param.as_str()) {
            return Err(self.field_error(
                "scope_param",
                format!("is {:?}", self.scope_param),
                "use \"scope\" unless the provider documents another parameter",
            ));
        }
        for s in &self.scopes {
            if s.is_empty() || s.contains(&self.scope_separator) || s.chars().any(char::is_whitespace) {
                return Err(self.field_error(
                    "scopes",
                    format!("contains {s:?}, which is empty or contains the separator or whitespace"),
                    "list each scope as its own string, e.g. scopes = [\"read\", \"write\"]",
                ));
            }
        }
        for k in self.extra_authorize_params.keys() {
            if k.is_empty() || RESERVED_AUTHORIZE_PARAMS.contains(&k.as_str()) || *k == self.scope_param {
                return Err(self.field_error(
                    "extra_authorize_params",
                    format!("sets {k:?}, which Latchkey sets itself"),
                    "remove it (scopes go in `scopes`)",
                ));
            }
        }
        Ok(())
    }
}

/// The deserializer's message, prefixed with the offending field when the message does not
/// name it (type errors and unknown enum values lose the field name when read from a
/// `toml::Value`). The field is found by reading each key on its own as an override, in
/// which every field is optional.
pub(super) fn parse_message(value: &toml::Value, err: &toml::de::Error) -> String {
    let message = err.message().trim().to_owned();
    let Some(table) = value.as_table() else {
        return format!("expected a table, found {}", value.type_str());
    };
    for (key, v) in table {
        let mut single = toml::map::Map::new();
        single.insert(key.clone(), v.clone());
        if toml::Value::Table(single).try_into::<ProviderOverride>().is_err() {
            if message.contains(&format!("`{key}`")) {
                return message;
            }
            return format!("field `{key}`: {message}");
        }
    }
    message
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::providers::test_support::config;
    use crate::providers::ProviderRegistry;

    #[test]
    fn new_provider_with_public_http_url_is_refused() {
        let err = ProviderRegistry::with_config(config(
            r#"
            [providers.acme]
            display_name = "Acme"
            authorization_url = "https://acme.example/oauth/authorize"
            token_url = "http://acme.example/oauth/token"
            "#,
        ))
        .unwrap_err();
        assert!(matches!(err, RegistryError::InvalidField { field: "token_url", .. }));
        let msg = err.to_string();
        assert!(msg.contains("\"acme\""), "{msg}");
        assert!(msg.contains("token_url"), "{msg}");
        assert!(msg.contains("use https"), "{msg}");
        assert!(msg.contains("loopback") || msg.contains("localhost"), "{msg}");
    }

    #[test]
    fn override_with_public_http_url_is_refused() {
        let err = ProviderRegistry::with_config(config(
            r#"
            [providers.github]
            token_url = "http://10.0.0.5/login/oauth/access_token"
            "#,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("\"github\""));
        assert!(err.to_string().contains("token_url"));
    }

    #[test]
    fn other_schemes_and_bad_urls_are_refused() {
        for (url, field) in [
            ("ftp://127.0.0.1/token", "token_url"),
            ("not a url", "token_url"),
            ("https://user:pw@acme.example/token", "token_url"),
            ("http://127.0.0.1.evil.example/token", "token_url"),
            ("http://localhost.evil.example/token", "token_url"),
        ] {
            let src = format!(
                "[providers.acme]\ndisplay_name = \"Acme\"\n\
                 authorization_url = \"https://acme.example/a\"\ntoken_url = \"{url}\"\n"
            );
            let err = ProviderRegistry::with_config(config(&src)).unwrap_err();
            assert!(matches!(&err, RegistryError::InvalidField { field: f, .. } if *f == field), "{url}: {err}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = ProviderRegistry::with_config(config(
            r#"
            [providers.acme]
            display_name = "Acme"
            authorization_url = "https://acme.example/a"
            token_url = "https://acme.example/t"
            colour = "red"
            "#,
        ))
        .unwrap_err();
        assert!(matches!(err, RegistryError::Parse { .. }));
        let msg = err.to_string();
        assert!(msg.contains("colour") && msg.contains("\"acme\""), "{msg}");

        let err = ProviderRegistry::with_config(config("[providers.spotify]\ntoken_urll = \"https://x.example/t\"\n"))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("token_urll") && msg.contains("\"spotify\""), "{msg}");
        assert!(msg.contains("overrides the built-in"), "{msg}");

        // The name comes from the key, never from a field.
        let err = ProviderRegistry::with_config(config(
            "[providers.acme]\nname = \"other\"\ndisplay_name = \"Acme\"\n\
             authorization_url = \"https://acme.example/a\"\ntoken_url = \"https://acme.example/t\"\n",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");

        // Bad values name their field.
        let err = ProviderRegistry::with_config(config("[providers.twitch]\npkce = \"maybe\"\n")).unwrap_err();
        assert!(err.to_string().contains("field `pkce`"), "{err}");
        let err = ProviderRegistry::with_config(config(
            "[providers.acme]\ndisplay_name = \"Acme\"\nauthorization_url = \"https://a.example/a\"\n\
             token_url = \"https://a.example/t\"\nscopes = \"read\"\n",
        ))
        .unwrap_err();
        assert!(err.to_string().contains("field `scopes`"), "{err}");
    }

    #[test]
    fn missing_required_field_is_reported() {
        let err = ProviderRegistry::with_config(config(
            "[providers.acme]\ndisplay_name = \"Acme\"\nauthorization_url = \"https://a.example/a\"\n",
        ))
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("token_url") && msg.contains("new provider"), "{msg}");
    }

    #[test]
    fn invalid_names_are_refused() {
        for name in ["Acme", "acme_corp", "", "a23456789012345678901234567890123", "ac me"] {
            let mut custom = BTreeMap::new();
            custom.insert(name.to_owned(), toml::Value::Table(toml::map::Map::new()));
            let err = ProviderRegistry::with_config(custom).unwrap_err();
            assert!(matches!(err, RegistryError::InvalidName { .. }), "{name:?}: {err}");
        }
        assert!(is_valid_provider_name("a2345678901234567890123456789012"));
        assert!(is_valid_provider_name("my-idp-2"));
    }

    #[test]
    fn reserved_and_inconsistent_fields_are_refused() {
        let base = "[providers.acme]\ndisplay_name = \"Acme\"\n\
                    authorization_url = \"https://a.example/a\"\ntoken_url = \"https://a.example/t\"\n";
        for (extra, field) in [
            ("extra_authorize_params = { state = \"x\" }", "extra_authorize_params"),
            ("extra_authorize_params = { scope = \"x\" }", "extra_authorize_params"),
            ("scopes = [\"a b\"]", "scopes"),
            ("scope_separator = \"\"", "scope_separator"),
            ("userinfo_body = \"{}\"", "userinfo_body"),
            ("account_id_field = \"\"", "account_id_field"),
            ("token_response_pointer = \"authed_user\"", "token_response_pointer"),
            ("userinfo_headers = { Authorization = \"x\" }", "userinfo_headers"),
            ("display_name = \" \"", "display_name"),
            ("revocation_method = \"github_token\"", "revocation_method"),
            ("revocation_url = \"https://a.example/token\"\nrevocation_method = \"github_token\"", "revocation_method"),
        ] {
            let src = if extra.starts_with("display_name") {
                base.replace("display_name = \"Acme\"", extra)
            } else {
                format!("{base}{extra}\n")
            };
            let err = ProviderRegistry::with_config(config(&src)).unwrap_err();
            assert!(matches!(&err, RegistryError::InvalidField { field: f, .. } if *f == field), "{extra}: {err}");
        }
    }

    #[test]
    fn error_messages_are_specific() {
        let err = RegistryError::InvalidName { name: "Bad".into() };
        assert!(err.to_string().contains("[providers.Bad]"));
    }
}
