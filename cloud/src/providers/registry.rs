//! [`ProviderRegistry`]: the built-in providers plus the operator's `[providers.*]` tables,
//! each validated before it is added.

use std::collections::BTreeMap;

use super::validate::parse_message;
use super::{builtin, is_valid_provider_name, DefinitionSource, ProviderDef, ProviderOverride, RegistryError};

/// All providers Latchkey can connect to, keyed by name.
#[derive(Debug, Clone)]
pub struct ProviderRegistry {
    providers: BTreeMap<String, ProviderDef>,
}

impl ProviderRegistry {
    /// The built-in providers only.
    #[must_use]
    pub fn builtin() -> Self {
        let providers = builtin::all().into_iter().map(|p| (p.name.clone(), p)).collect();
        Self { providers }
    }

    /// Whether `name` is a built-in provider.
    #[must_use]
    pub fn is_builtin(name: &str) -> bool {
        builtin::all().iter().any(|p| p.name == name)
    }

    /// The built-ins plus the config file's `[providers.*]` tables: a table named like a
    /// built-in overrides the fields it gives; any other table is a new provider. Everything
    /// is validated.
    ///
    /// # Errors
    ///
    /// The first problem found: an invalid table name, a table that does not deserialize
    /// (unknown field, wrong type, missing required field) or a field that fails
    /// [`ProviderDef::validate`].
    pub fn with_config(custom: BTreeMap<String, toml::Value>) -> Result<Self, RegistryError> {
        let mut registry = Self::builtin();
        for (name, value) in custom {
            if !is_valid_provider_name(&name) {
                return Err(RegistryError::InvalidName { name });
            }
            let def = match registry.providers.get(&name) {
                Some(base) => {
                    let ov: ProviderOverride =
                        value.clone().try_into().map_err(|e: toml::de::Error| RegistryError::Parse {
                            provider: name.clone(),
                            message: parse_message(&value, &e),
                            hint: "it overrides the built-in provider of that name, so it \
                                       may only set known fields and needs none of them",
                        })?;
                    let mut def = base.clone();
                    ov.apply_to(&mut def);
                    def
                }
                None => {
                    let mut def: ProviderDef =
                        value.clone().try_into().map_err(|e: toml::de::Error| RegistryError::Parse {
                            provider: name.clone(),
                            message: parse_message(&value, &e),
                            hint: "it is a new provider, so it needs at least display_name, \
                                       authorization_url and token_url; its name comes from \
                                       the table key",
                        })?;
                    def.name = name.clone();
                    def
                }
            };
            def.validate(DefinitionSource::ConfigFile)?;
            registry.providers.insert(name, def);
        }
        Ok(registry)
    }

    /// Adds (or replaces) a provider the process defines itself, like the sandbox.
    pub fn add(&mut self, def: ProviderDef) {
        self.providers.insert(def.name.clone(), def);
    }

    /// The provider called `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&ProviderDef> {
        self.providers.get(name)
    }

    /// All providers, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &ProviderDef> {
        self.providers.values()
    }

    /// Number of providers.
    #[must_use]
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Whether there are no providers (never true in practice).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::providers::test_support::config;
    use crate::providers::{Pkce, TokenAuthMethod};

    const REQUIRED_BUILTINS: &[&str] = &[
        "github",
        "gitlab",
        "google",
        "microsoft",
        "spotify",
        "twitch",
        "kick",
        "discord",
        "slack",
        "notion",
        "linear",
        "dropbox",
        "strava",
        "zoom",
        "atlassian",
        "reddit",
        "x",
    ];

    #[test]
    fn all_builtins_are_valid_and_https() {
        let reg = ProviderRegistry::builtin();
        for name in REQUIRED_BUILTINS {
            assert!(reg.get(name).is_some(), "missing built-in {name}");
        }
        for p in reg.iter() {
            p.validate(DefinitionSource::BuiltIn).unwrap_or_else(|e| panic!("built-in {} invalid: {e}", p.name));
            let mut urls = vec![&p.authorization_url, &p.token_url];
            urls.extend(p.revocation_url.iter());
            urls.extend(p.userinfo_url.iter());
            urls.extend(p.issuer.iter());
            urls.extend(p.jwks_uri.iter());
            urls.extend(p.docs_url.iter());
            urls.extend(p.console_url.iter());
            for u in urls {
                assert!(u.starts_with("https://"), "{}: {u} is not https", p.name);
            }
            assert!(p.docs_url.is_some(), "{} has no docs_url", p.name);
            assert!(p.console_url.is_some(), "{} has no console_url", p.name);
            assert!(p.userinfo_url.is_some(), "{} has no userinfo_url", p.name);
        }
    }

    #[test]
    fn builtin_names_are_unique() {
        let all = builtin::all();
        assert_eq!(all.len(), ProviderRegistry::builtin().len());
    }

    #[test]
    fn providers_doc_lists_every_builtin() {
        let doc = include_str!("../../../docs/providers.md");
        for p in builtin::all() {
            assert!(doc.contains(&format!("`{}`", p.name)), "docs/providers.md does not mention `{}`", p.name);
        }
    }

    #[test]
    fn new_provider_from_config() {
        let reg = ProviderRegistry::with_config(config(
            r#"
            [providers.acme]
            display_name = "Acme"
            authorization_url = "https://acme.example/oauth/authorize"
            token_url = "https://acme.example/oauth/token"
            revocation_url = "https://acme.example/oauth/revoke"
            userinfo_url = "https://acme.example/api/me"
            account_id_field = "sub"
            account_name_field = "name"
            issuer = "https://acme.example"
            scopes = ["read"]
            scope_separator = " "
            pkce = "required"
            token_auth_method = "client_secret_basic"

            [providers.mock]
            display_name = "Local mock"
            authorization_url = "http://127.0.0.1:8765/authorize"
            token_url = "http://127.0.0.1:8765/token"
            "#,
        ))
        .unwrap();
        let acme = reg.get("acme").unwrap();
        assert_eq!(acme.name, "acme");
        assert_eq!(acme.pkce, Pkce::Required);
        assert_eq!(acme.token_auth_method, TokenAuthMethod::ClientSecretBasic);
        let mock = reg.get("mock").unwrap();
        assert_eq!(mock.scope_separator, " ");
        assert_eq!(mock.scope_param, "scope");
        assert_eq!(mock.account_id_field, "sub");
        assert_eq!(mock.pkce, Pkce::Supported);
        assert!(!mock.rotates_refresh_tokens);
    }
}
