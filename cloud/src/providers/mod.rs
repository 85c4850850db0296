//! The OAuth provider registry: what Latchkey knows about each OAuth provider.
//!
//! A [`ProviderDef`] is pure data — endpoints, scope conventions, client authentication,
//! PKCE support, how to identify the connected account — and carries no HTTP code. The
//! [`ProviderRegistry`] holds the built-in definitions (see [`builtin`] and
//! `docs/providers.md`) plus whatever the operator's config file adds or overrides under
//! `[providers.<name>]`:
//!
//! * a table whose name matches a built-in is a **partial override** ([`ProviderOverride`]):
//!   only the fields it gives replace the built-in's;
//! * any other table is a **complete new definition** ([`ProviderDef`]).
//!
//! Everything is validated when the registry is built ([`ProviderRegistry::with_config`]):
//! names are `[a-z0-9-]{1,32}`, every endpoint URL parses and uses `https` — except that
//! definitions and overrides coming from the config file may use plain `http` on loopback
//! hosts (`127.0.0.0/8`, `::1`, `localhost`), which is what tests and local mock providers
//! need. Built-in definitions are always `https`.
//!
//! How the other fields are meant to be used by the HTTP layer:
//!
//! * authorize URL: `authorization_url` + `response_type=code`, `client_id`, `redirect_uri`,
//!   `state`, the scopes joined with `scope_separator` under the parameter `scope_param`
//!   (omitted when there are no scopes), `code_challenge`/`code_challenge_method=S256` unless
//!   `pkce` is [`Pkce::None`], a `nonce` when `oidc` is true, then `extra_authorize_params`.
//! * token and revocation requests: client authentication per `token_auth_method`, body
//!   encoded per `token_request_format`; always send `Accept: application/json` (GitHub
//!   answers form-encoded otherwise). `revocation_url` is only set where the provider's
//!   endpoint accepts an RFC 7009 style `token=` request.
//! * token responses: read the token fields from [`ProviderDef::token_fields`] (Slack nests
//!   the user token under `authed_user`); parse a granted `scope` string with
//!   [`ProviderDef::parse_granted_scopes`].
//! * `rotates_refresh_tokens = true` means the provider may hand out a new refresh token on
//!   every refresh and invalidate the one just used: persist the new one in the same
//!   transaction and never run two refreshes of one grant at once. `false` means the refresh
//!   token is stable (a new one, if ever returned, should still be stored).
//! * `issuer`, when set, is the value the provider puts in the RFC 9207 `iss` authorization
//!   response parameter (and in OIDC ID tokens); it is only set for providers that advertise
//!   `authorization_response_iss_parameter_supported`.
//! * account identity: fetch `userinfo_url` with `userinfo_method` (+ `userinfo_body` as JSON,
//!   + `userinfo_headers`) and the bearer token, then [`ProviderDef::read_account`].

// Crates this module needs in `cloud/Cargo.toml` (all already pinned in the workspace
// lockfile): serde (derive), serde_json, thiserror, toml = "0.8" (workspace), url = "2".

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod builtin;

/// Whether the provider supports PKCE (RFC 7636, `S256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pkce {
    /// The provider rejects authorization requests without a code challenge.
    Required,
    /// The provider accepts PKCE; Latchkey sends it.
    Supported,
    /// The provider does not support PKCE (or it is not known to); Latchkey does not send it.
    None,
}

/// How the client authenticates to the token (and revocation) endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    /// HTTP Basic `client_id:client_secret` (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost,
}

/// Encoding of token and revocation request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenRequestFormat {
    /// `application/x-www-form-urlencoded`, as RFC 6749 specifies.
    #[default]
    Form,
    /// `application/json` (Notion, Atlassian document this).
    Json,
}

/// HTTP method for the userinfo request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserinfoMethod {
    /// `GET` (most providers).
    #[default]
    Get,
    /// `POST`, with `userinfo_body` as a JSON body when set (Dropbox, Linear GraphQL, Slack).
    Post,
}

fn default_scope_separator() -> String {
    " ".to_owned()
}

fn default_scope_param() -> String {
    "scope".to_owned()
}

fn default_account_id_field() -> String {
    "sub".to_owned()
}

fn default_pkce() -> Pkce {
    Pkce::Supported
}

fn default_token_auth_method() -> TokenAuthMethod {
    TokenAuthMethod::ClientSecretBasic
}

/// One OAuth provider's definition. Deserialized from a `[providers.<name>]` config table
/// (unknown fields are refused); `name` comes from the table key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDef {
    /// Registry key, e.g. `github`. Filled in from the config table name.
    #[serde(skip_deserializing, default)]
    pub name: String,
    /// Human-readable name shown in the UI.
    pub display_name: String,
    /// Authorization endpoint.
    pub authorization_url: String,
    /// Token endpoint.
    pub token_url: String,
    /// RFC 7009 style revocation endpoint (`token=` in the body), if the provider has one.
    #[serde(default)]
    pub revocation_url: Option<String>,
    /// Endpoint returning the connected account as JSON.
    #[serde(default)]
    pub userinfo_url: Option<String>,
    /// Method for `userinfo_url` (default `get`).
    #[serde(default)]
    pub userinfo_method: UserinfoMethod,
    /// JSON body sent with a `post` userinfo request (e.g. a GraphQL query).
    #[serde(default)]
    pub userinfo_body: Option<String>,
    /// Extra static headers for the userinfo request (e.g. `Notion-Version`).
    #[serde(default)]
    pub userinfo_headers: BTreeMap<String, String>,
    /// Field of the userinfo JSON holding the account id: a JSON pointer (`/data/id`) or a
    /// plain top-level field name (`sub`). Default `sub`.
    #[serde(default = "default_account_id_field")]
    pub account_id_field: String,
    /// Field holding a human-readable account name (same two forms).
    #[serde(default)]
    pub account_name_field: Option<String>,
    /// Expected RFC 9207 `iss` value / OIDC issuer.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Scopes requested when the operator's connector does not say otherwise.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Separator used to join scopes (default a space; some providers use `,`).
    #[serde(default = "default_scope_separator")]
    pub scope_separator: String,
    /// Authorization request parameter carrying the scopes (default `scope`; Slack user
    /// tokens use `user_scope`).
    #[serde(default = "default_scope_param")]
    pub scope_param: String,
    /// PKCE support (default `supported`).
    #[serde(default = "default_pkce")]
    pub pkce: Pkce,
    /// Client authentication at the token endpoint (default `client_secret_basic`).
    #[serde(default = "default_token_auth_method")]
    pub token_auth_method: TokenAuthMethod,
    /// Body encoding of token/revocation requests (default `form`).
    #[serde(default)]
    pub token_request_format: TokenRequestFormat,
    /// JSON pointer to the object holding `access_token`/`refresh_token`/`expires_in` in
    /// token responses, when not at the top level (Slack: `/authed_user`).
    #[serde(default)]
    pub token_response_pointer: Option<String>,
    /// Extra fixed parameters added to every authorization request.
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
    /// Whether refreshing may rotate (replace and invalidate) the refresh token.
    #[serde(default)]
    pub rotates_refresh_tokens: bool,
    /// Whether to send (and expect back in the ID token) an OIDC `nonce`.
    #[serde(default)]
    pub oidc: bool,
    /// Where the facts in this definition are documented.
    #[serde(default)]
    pub docs_url: Option<String>,
}

/// A config-file partial override of a built-in provider: every field is optional and
/// replaces the built-in's value when given.
///
/// For optional fields (`revocation_url`, `userinfo_url`, `userinfo_body`,
/// `account_name_field`, `issuer`, `token_response_pointer`, `docs_url`) an empty string
/// removes the built-in's value. The maps (`extra_authorize_params`, `userinfo_headers`) are
/// merged key by key; an empty value removes that key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ProviderOverride {
    pub display_name: Option<String>,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub revocation_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub userinfo_method: Option<UserinfoMethod>,
    pub userinfo_body: Option<String>,
    pub userinfo_headers: Option<BTreeMap<String, String>>,
    pub account_id_field: Option<String>,
    pub account_name_field: Option<String>,
    pub issuer: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub scope_separator: Option<String>,
    pub scope_param: Option<String>,
    pub pkce: Option<Pkce>,
    pub token_auth_method: Option<TokenAuthMethod>,
    pub token_request_format: Option<TokenRequestFormat>,
    pub token_response_pointer: Option<String>,
    pub extra_authorize_params: Option<BTreeMap<String, String>>,
    pub rotates_refresh_tokens: Option<bool>,
    pub oidc: Option<bool>,
    pub docs_url: Option<String>,
}

fn set_optional(target: &mut Option<String>, value: Option<String>) {
    if let Some(v) = value {
        *target = if v.is_empty() { None } else { Some(v) };
    }
}

fn merge_map(target: &mut BTreeMap<String, String>, value: Option<BTreeMap<String, String>>) {
    if let Some(map) = value {
        for (k, v) in map {
            if v.is_empty() {
                target.remove(&k);
            } else {
                target.insert(k, v);
            }
        }
    }
}

impl ProviderOverride {
    /// Applies this override on top of `base` (see the type docs for the merge rules).
    pub fn apply_to(self, base: &mut ProviderDef) {
        if let Some(v) = self.display_name {
            base.display_name = v;
        }
        if let Some(v) = self.authorization_url {
            base.authorization_url = v;
        }
        if let Some(v) = self.token_url {
            base.token_url = v;
        }
        set_optional(&mut base.revocation_url, self.revocation_url);
        set_optional(&mut base.userinfo_url, self.userinfo_url);
        if let Some(v) = self.userinfo_method {
            base.userinfo_method = v;
        }
        set_optional(&mut base.userinfo_body, self.userinfo_body);
        merge_map(&mut base.userinfo_headers, self.userinfo_headers);
        if let Some(v) = self.account_id_field {
            base.account_id_field = v;
        }
        set_optional(&mut base.account_name_field, self.account_name_field);
        set_optional(&mut base.issuer, self.issuer);
        if let Some(v) = self.scopes {
            base.scopes = v;
        }
        if let Some(v) = self.scope_separator {
            base.scope_separator = v;
        }
        if let Some(v) = self.scope_param {
            base.scope_param = v;
        }
        if let Some(v) = self.pkce {
            base.pkce = v;
        }
        if let Some(v) = self.token_auth_method {
            base.token_auth_method = v;
        }
        if let Some(v) = self.token_request_format {
            base.token_request_format = v;
        }
        set_optional(&mut base.token_response_pointer, self.token_response_pointer);
        merge_map(&mut base.extra_authorize_params, self.extra_authorize_params);
        if let Some(v) = self.rotates_refresh_tokens {
            base.rotates_refresh_tokens = v;
        }
        if let Some(v) = self.oidc {
            base.oidc = v;
        }
        set_optional(&mut base.docs_url, self.docs_url);
    }
}

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

fn lookup<'a>(v: &'a Value, field: &str) -> Option<&'a Value> {
    if field.starts_with('/') {
        v.pointer(field)
    } else {
        v.get(field)
    }
}

fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl ProviderDef {
    /// Reads `(account id, account name)` from a userinfo response. Each field may be a JSON
    /// pointer (starting with `/`) or a plain top-level field name; numeric values are
    /// stringified. `None` when the id is missing, empty or not a string/number.
    #[must_use]
    pub fn read_account(&self, v: &Value) -> Option<(String, Option<String>)> {
        let id = lookup(v, &self.account_id_field).and_then(scalar_to_string)?;
        let name = self.account_name_field.as_deref().and_then(|f| lookup(v, f)).and_then(scalar_to_string);
        Some((id, name))
    }

    /// The object in a token response that holds `access_token`, `refresh_token`,
    /// `expires_in` and `scope`: the object at `token_response_pointer` when it exists and
    /// contains an `access_token`, otherwise the response itself (Slack nests the user token
    /// in the code exchange but not in refresh responses).
    #[must_use]
    pub fn token_fields<'a>(&self, response: &'a Value) -> &'a Value {
        self.token_response_pointer
            .as_deref()
            .and_then(|p| response.pointer(p))
            .filter(|inner| inner.get("access_token").is_some())
            .unwrap_or(response)
    }

    /// Joins scopes for the authorization request with this provider's separator.
    #[must_use]
    pub fn scope_string(&self, scopes: &[String]) -> String {
        scopes.join(&self.scope_separator)
    }

    /// Splits a granted-scope string from a token response. Providers are inconsistent
    /// (GitHub answers comma-separated although it takes space-separated scopes), so this
    /// splits on the provider's separator, whitespace and commas alike.
    #[must_use]
    pub fn parse_granted_scopes(&self, granted: &str) -> Vec<String> {
        let sep = self.scope_separator.as_str();
        granted
            .split(|c: char| c.is_whitespace() || c == ',' || sep.chars().eq(std::iter::once(c)))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

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
        if let Some(u) = &self.docs_url {
            self.check_url("docs_url", u, source)?;
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
fn parse_message(value: &toml::Value, err: &toml::de::Error) -> String {
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

impl fmt::Display for Pkce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pkce::Required => "required",
            Pkce::Supported => "supported",
            Pkce::None => "none",
        })
    }
}

impl fmt::Display for TokenAuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenAuthMethod::ClientSecretPost => "client_secret_post",
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(src: &str) -> BTreeMap<String, toml::Value> {
        #[derive(Deserialize)]
        struct File {
            providers: BTreeMap<String, toml::Value>,
        }
        toml::from_str::<File>(src).unwrap().providers
    }

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
            urls.extend(p.docs_url.iter());
            for u in urls {
                assert!(u.starts_with("https://"), "{}: {u} is not https", p.name);
            }
            assert!(p.docs_url.is_some(), "{} has no docs_url", p.name);
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
    fn builtin_serializes_and_round_trips_through_toml() {
        for p in builtin::all() {
            let text = toml::to_string(&p).unwrap();
            // `name` is not accepted from the table; strip it as a config file would.
            let mut v: toml::Value = toml::from_str(&text).unwrap();
            v.as_table_mut().unwrap().remove("name");
            let mut back: ProviderDef = v.try_into().unwrap();
            back.name = p.name.clone();
            assert_eq!(back, p);
        }
    }

    #[test]
    fn override_of_builtin_with_loopback_urls_works() {
        let reg = ProviderRegistry::with_config(config(
            r#"
            [providers.google]
            authorization_url = "http://127.0.0.1:9000/authorize"
            token_url = "http://localhost:9000/token"
            userinfo_url = "http://[::1]:9000/userinfo"
            revocation_url = ""
            extra_authorize_params = { hd = "example.com", prompt = "" }
            "#,
        ))
        .unwrap();
        let g = reg.get("google").unwrap();
        assert_eq!(g.authorization_url, "http://127.0.0.1:9000/authorize");
        assert_eq!(g.token_url, "http://localhost:9000/token");
        assert_eq!(g.userinfo_url.as_deref(), Some("http://[::1]:9000/userinfo"));
        assert_eq!(g.revocation_url, None);
        // Untouched fields keep the built-in's values.
        assert_eq!(g.display_name, "Google");
        assert_eq!(g.scopes, vec!["openid", "email", "profile"]);
        assert_eq!(g.issuer.as_deref(), Some("https://accounts.google.com"));
        // Maps merge: hd added, prompt removed, access_type kept.
        assert_eq!(g.extra_authorize_params.get("hd").map(String::as_str), Some("example.com"));
        assert_eq!(g.extra_authorize_params.get("prompt"), None);
        assert_eq!(g.extra_authorize_params.get("access_type").map(String::as_str), Some("offline"));
        // Other built-ins are still there.
        assert!(reg.get("github").is_some());
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
    fn read_account_handles_pointers_plain_fields_and_numbers() {
        let mut p = builtin::all().into_iter().find(|p| p.name == "github").unwrap();
        // GitHub: plain fields, numeric id.
        let me = json!({"id": 583231, "login": "octocat"});
        assert_eq!(p.read_account(&me), Some(("583231".into(), Some("octocat".into()))));

        // Pointer form, string id.
        p.account_id_field = "/data/id".into();
        p.account_name_field = Some("/data/username".into());
        let v = json!({"data": {"id": "2244994945", "username": "XDevelopers"}});
        assert_eq!(p.read_account(&v), Some(("2244994945".into(), Some("XDevelopers".into()))));

        // Pointer into an array, numeric id (Kick).
        p.account_id_field = "/data/0/user_id".into();
        p.account_name_field = Some("/data/0/name".into());
        let v = json!({"data": [{"user_id": 123456, "name": "Scorfly"}], "message": "OK"});
        assert_eq!(p.read_account(&v), Some(("123456".into(), Some("Scorfly".into()))));

        // Missing name is fine, missing / empty / non-scalar id is not.
        p.account_id_field = "id".into();
        p.account_name_field = Some("login".into());
        assert_eq!(p.read_account(&json!({"id": 7})), Some(("7".into(), None)));
        assert_eq!(p.read_account(&json!({"login": "x"})), None);
        assert_eq!(p.read_account(&json!({"id": ""})), None);
        assert_eq!(p.read_account(&json!({"id": {"a": 1}})), None);
        assert_eq!(p.read_account(&json!({"id": true})), None);
        // A plain field name is not treated as a pointer (dots and slashes are literal).
        p.account_id_field = "user.id".into();
        assert_eq!(p.read_account(&json!({"user.id": "u1"})), Some(("u1".into(), None)));
    }

    #[test]
    fn builtin_accounts_read_from_documented_shapes() {
        let reg = ProviderRegistry::builtin();
        let cases = [
            ("google", json!({"sub": "1099", "email": "a@example.com"}), "1099", "a@example.com"),
            ("twitch", json!({"sub": "141981764", "preferred_username": "twitchdev"}), "141981764", "twitchdev"),
            ("kick", json!({"data": [{"user_id": 721956, "name": "Scorfly"}]}), "721956", "Scorfly"),
            ("x", json!({"data": {"id": "2244994945", "username": "XDevelopers"}}), "2244994945", "XDevelopers"),
            (
                "notion",
                json!({"object": "user", "id": "bot", "bot": {"owner": {"type": "user", "user": {"id": "5389a034", "name": "christine"}}}}),
                "5389a034",
                "christine",
            ),
            (
                "dropbox",
                json!({"account_id": "dbid:AAH4", "name": {"display_name": "Franz Ferdinand"}}),
                "dbid:AAH4",
                "Franz Ferdinand",
            ),
            ("linear", json!({"data": {"viewer": {"id": "u-1", "name": "Ada"}}}), "u-1", "Ada"),
            ("slack", json!({"ok": true, "user": "grace", "user_id": "W12345678"}), "W12345678", "grace"),
            ("strava", json!({"id": 134815, "username": "marianne_t"}), "134815", "marianne_t"),
        ];
        for (name, body, id, display) in cases {
            let p = reg.get(name).unwrap();
            assert_eq!(p.read_account(&body), Some((id.to_owned(), Some(display.to_owned()))), "{name}");
        }
    }

    #[test]
    fn slack_token_fields_use_authed_user_then_fall_back() {
        let reg = ProviderRegistry::builtin();
        let slack = reg.get("slack").unwrap();
        let exchange = json!({
            "ok": true, "app_id": "A0KRD7HC3",
            "authed_user": {"id": "U1234", "scope": "users:read", "access_token": "xoxp-1", "token_type": "user"},
            "team": {"id": "T9TK3CUKW"}
        });
        assert_eq!(slack.token_fields(&exchange)["access_token"], "xoxp-1");
        let refresh =
            json!({"ok": true, "access_token": "xoxe.xoxp-2", "refresh_token": "xoxe-1-x", "expires_in": 43200});
        assert_eq!(slack.token_fields(&refresh)["access_token"], "xoxe.xoxp-2");
        let github = reg.get("github").unwrap();
        assert_eq!(github.token_fields(&refresh)["access_token"], "xoxe.xoxp-2");
    }

    #[test]
    fn scope_helpers() {
        let reg = ProviderRegistry::builtin();
        let strava = reg.get("strava").unwrap();
        assert_eq!(strava.scope_string(&["read".into(), "activity:read_all".into()]), "read,activity:read_all");
        let google = reg.get("google").unwrap();
        assert_eq!(google.scope_string(&google.scopes), "openid email profile");
        let github = reg.get("github").unwrap();
        assert_eq!(github.parse_granted_scopes("repo,gist read:user"), vec!["repo", "gist", "read:user"]);
    }

    #[test]
    fn error_messages_are_specific() {
        let err = RegistryError::InvalidName { name: "Bad".into() };
        assert!(err.to_string().contains("[providers.Bad]"));
    }
}
