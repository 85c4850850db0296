//! [`ProviderDef`]: one provider's endpoints and conventions as pure data, the enums its
//! fields use, and the helpers that read token and userinfo responses the provider's way.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// How a token is revoked at `revocation_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationMethod {
    /// RFC 7009: `POST` with `token` and `token_type_hint`, client authentication as at the
    /// token endpoint. A refresh token is sent when there is one (it ends the grant).
    #[default]
    Rfc7009,
    /// GitHub's token deletion: `DELETE` of the URL with `{client_id}` filled in, HTTP
    /// Basic client authentication, JSON body `{"access_token": …}`. Only the access token
    /// is sent: GitHub's grant deletion would also end a newer grant of the same member.
    GithubToken,
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
    /// Revocation endpoint, if the provider has one: RFC 7009 style (`token=` in the body),
    /// or as `revocation_method` says.
    #[serde(default)]
    pub revocation_url: Option<String>,
    /// How `revocation_url` is called (default `rfc7009`).
    #[serde(default)]
    pub revocation_method: RevocationMethod,
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
    /// Expected RFC 9207 `iss` value / OIDC issuer. ID tokens are verified against it, with
    /// the keys of `jwks_uri` or of the issuer's discovery document.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The provider's JWKS (ID-token signing keys), when not taken from the issuer's
    /// `/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks_uri: Option<String>,
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
    /// The provider's developer console, where an admin registers the OAuth app (client id,
    /// secret, redirect URI). The admin pages link to it.
    #[serde(default)]
    pub console_url: Option<String>,
    /// The scopes the local agent's connector for this provider needs (see
    /// `latchkey_shared::agent_connectors`); suggested when an app is configured and a
    /// connector published. Empty when the agent has no connector for it.
    #[serde(default)]
    pub suggested_scopes: Vec<String>,
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::providers::{builtin, ProviderRegistry};

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
}
