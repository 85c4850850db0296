//! The built-in provider definitions.
//!
//! Every fact here (endpoints, client authentication, PKCE, scope separator, refresh-token
//! rotation, userinfo shape) was checked against the page in the definition's `docs_url`
//! (or the sources listed in `docs/providers.md`), which also records the facts that could
//! not be confirmed. Keep the two in step: a test fails if a built-in is missing from the doc.
//!
//! Conventions used below:
//! * `rotates_refresh_tokens` is `true` whenever the provider documents (or is known to)
//!   return a new refresh token on refresh — even "sometimes" — because treating a stable
//!   token as rotating is harmless while the reverse loses grants.
//! * `revocation_url` is only set where the endpoint takes an RFC 7009 style `token=`
//!   request, or GitHub's token deletion (`revocation_method = github_token`); providers
//!   with another bespoke revocation call (Dropbox, Strava) have none.
//! * `issuer` is only set where the provider advertises RFC 9207 support.

use std::collections::BTreeMap;

use latchkey_shared::agent_connectors;

use super::{Pkce, ProviderDef, RevocationMethod, TokenAuthMethod, TokenRequestFormat, UserinfoMethod};

use Pkce::{Required, Supported};
use TokenAuthMethod::{ClientSecretBasic, ClientSecretPost};

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn list(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn map(v: &[(&str, &str)]) -> BTreeMap<String, String> {
    v.iter().map(|(k, x)| ((*k).to_owned(), (*x).to_owned())).collect()
}

/// A definition with the common defaults; each provider below overrides what differs.
fn base(name: &str, display_name: &str, authorization_url: &str, token_url: &str) -> ProviderDef {
    ProviderDef {
        name: name.to_owned(),
        display_name: display_name.to_owned(),
        authorization_url: authorization_url.to_owned(),
        token_url: token_url.to_owned(),
        revocation_url: None,
        revocation_method: RevocationMethod::Rfc7009,
        userinfo_url: None,
        userinfo_method: UserinfoMethod::Get,
        userinfo_body: None,
        userinfo_headers: BTreeMap::new(),
        account_id_field: "id".to_owned(),
        account_name_field: None,
        issuer: None,
        jwks_uri: None,
        scopes: Vec::new(),
        scope_separator: " ".to_owned(),
        scope_param: "scope".to_owned(),
        pkce: Supported,
        token_auth_method: ClientSecretPost,
        token_request_format: TokenRequestFormat::Form,
        token_response_pointer: None,
        extra_authorize_params: BTreeMap::new(),
        rotates_refresh_tokens: false,
        oidc: false,
        docs_url: None,
        console_url: None,
        suggested_scopes: agent_connectors::scopes_for(name),
    }
}

/// Every built-in provider definition, in alphabetical order of name.
pub fn all() -> Vec<ProviderDef> {
    vec![
        // Atlassian Cloud (Jira, Confluence, …) OAuth 2.0 (3LO). The token endpoint is
        // documented with JSON bodies; refresh tokens rotate; `offline_access` yields one.
        ProviderDef {
            userinfo_url: s("https://api.atlassian.com/me"),
            account_id_field: "account_id".into(),
            account_name_field: s("name"),
            scopes: list(&["read:me", "offline_access"]),
            pkce: Pkce::None,
            token_request_format: TokenRequestFormat::Json,
            extra_authorize_params: map(&[("audience", "api.atlassian.com"), ("prompt", "consent")]),
            rotates_refresh_tokens: true,
            docs_url: s("https://developer.atlassian.com/cloud/oauth/getting-started/implementing-oauth-3lo/"),
            console_url: s("https://developer.atlassian.com/console/myapps/"),
            ..base(
                "atlassian",
                "Atlassian",
                "https://auth.atlassian.com/authorize",
                "https://auth.atlassian.com/oauth/token",
            )
        },
        // Discord: discovery document advertises S256 PKCE, basic+post auth and RFC 9207.
        ProviderDef {
            revocation_url: s("https://discord.com/api/oauth2/token/revoke"),
            userinfo_url: s("https://discord.com/api/users/@me"),
            account_name_field: s("username"),
            issuer: s("https://discord.com"),
            scopes: list(&["identify"]),
            token_auth_method: ClientSecretBasic,
            rotates_refresh_tokens: true,
            docs_url: s("https://discord.com/developers/docs/topics/oauth2"),
            console_url: s("https://discord.com/developers/applications"),
            ..base("discord", "Discord", "https://discord.com/oauth2/authorize", "https://discord.com/api/oauth2/token")
        },
        // Dropbox: `token_access_type=offline` is what yields a (long-lived, non-rotating)
        // refresh token. Its userinfo is an RPC call: POST with a JSON `null` body.
        ProviderDef {
            userinfo_url: s("https://api.dropboxapi.com/2/users/get_current_account"),
            userinfo_method: UserinfoMethod::Post,
            userinfo_body: s("null"),
            account_id_field: "account_id".into(),
            account_name_field: s("/name/display_name"),
            token_auth_method: ClientSecretBasic,
            extra_authorize_params: map(&[("token_access_type", "offline")]),
            docs_url: s("https://dropbox.tech/developers/using-oauth-2-0-with-offline-access"),
            console_url: s("https://www.dropbox.com/developers/apps"),
            ..base(
                "dropbox",
                "Dropbox",
                "https://www.dropbox.com/oauth2/authorize",
                "https://api.dropboxapi.com/oauth2/token",
            )
        },
        // GitHub (OAuth apps and GitHub Apps). PKCE supported since July 2025. OAuth-app
        // tokens do not expire; GitHub-App user tokens expire and their refresh tokens are
        // single-use. Revocation is not RFC 7009: we delete the one token
        // (`DELETE /applications/{client_id}/token`), as deleting the grant would also end a
        // newer grant of the same member.
        ProviderDef {
            revocation_url: s("https://api.github.com/applications/{client_id}/token"),
            revocation_method: RevocationMethod::GithubToken,
            userinfo_url: s("https://api.github.com/user"),
            account_name_field: s("login"),
            scopes: list(&["read:user"]),
            rotates_refresh_tokens: true,
            docs_url: s("https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps"),
            console_url: s("https://github.com/settings/developers"),
            ..base(
                "github",
                "GitHub",
                "https://github.com/login/oauth/authorize",
                "https://github.com/login/oauth/access_token",
            )
        },
        // GitLab.com (Doorkeeper): refresh invalidates the old access and refresh token.
        ProviderDef {
            revocation_url: s("https://gitlab.com/oauth/revoke"),
            userinfo_url: s("https://gitlab.com/api/v4/user"),
            account_name_field: s("username"),
            scopes: list(&["read_user"]),
            rotates_refresh_tokens: true,
            docs_url: s("https://docs.gitlab.com/api/oauth2/"),
            console_url: s("https://gitlab.com/-/user_settings/applications"),
            ..base("gitlab", "GitLab", "https://gitlab.com/oauth/authorize", "https://gitlab.com/oauth/token")
        },
        // Google (also YouTube: add e.g. https://www.googleapis.com/auth/youtube.readonly).
        // `access_type=offline` + `prompt=consent` make Google return a refresh token every
        // time; refresh tokens are not rotated. Google advertises RFC 9207.
        ProviderDef {
            revocation_url: s("https://oauth2.googleapis.com/revoke"),
            userinfo_url: s("https://openidconnect.googleapis.com/v1/userinfo"),
            account_id_field: "sub".into(),
            account_name_field: s("email"),
            issuer: s("https://accounts.google.com"),
            scopes: list(&["openid", "email", "profile"]),
            extra_authorize_params: map(&[("access_type", "offline"), ("prompt", "consent")]),
            oidc: true,
            docs_url: s("https://developers.google.com/identity/protocols/oauth2/web-server"),
            console_url: s("https://console.cloud.google.com/apis/credentials"),
            ..base(
                "google",
                "Google",
                "https://accounts.google.com/o/oauth2/v2/auth",
                "https://oauth2.googleapis.com/token",
            )
        },
        // Kick (OAuth 2.1): PKCE S256 mandatory; refresh returns a new refresh token.
        ProviderDef {
            revocation_url: s("https://id.kick.com/oauth/revoke"),
            userinfo_url: s("https://api.kick.com/public/v1/users"),
            account_id_field: "/data/0/user_id".into(),
            account_name_field: s("/data/0/name"),
            scopes: list(&["user:read"]),
            pkce: Required,
            rotates_refresh_tokens: true,
            docs_url: s("https://docs.kick.com/getting-started/generating-tokens-oauth2-flow"),
            console_url: s("https://kick.com/settings/developer"),
            ..base("kick", "Kick", "https://id.kick.com/oauth/authorize", "https://id.kick.com/oauth/token")
        },
        // Linear: comma-separated scopes; refresh tokens (mandatory since 2026-04-01) rotate.
        // Identity comes from the GraphQL API (`viewer`).
        ProviderDef {
            revocation_url: s("https://api.linear.app/oauth/revoke"),
            userinfo_url: s("https://api.linear.app/graphql"),
            userinfo_method: UserinfoMethod::Post,
            userinfo_body: s(r#"{"query":"{ viewer { id name } }"}"#),
            account_id_field: "/data/viewer/id".into(),
            account_name_field: s("/data/viewer/name"),
            scopes: list(&["read"]),
            scope_separator: ",".into(),
            rotates_refresh_tokens: true,
            docs_url: s("https://linear.app/developers/oauth-2-0-authentication"),
            console_url: s("https://linear.app/settings/api"),
            ..base("linear", "Linear", "https://linear.app/oauth/authorize", "https://api.linear.app/oauth/token")
        },
        // Microsoft identity platform, multi-tenant `common` v2.0 endpoints. Refresh tokens
        // replace themselves on every use. No RFC 7009 endpoint; the issuer is per tenant.
        ProviderDef {
            userinfo_url: s("https://graph.microsoft.com/oidc/userinfo"),
            account_id_field: "sub".into(),
            account_name_field: s("email"),
            scopes: list(&["openid", "profile", "email", "offline_access"]),
            rotates_refresh_tokens: true,
            oidc: true,
            docs_url: s("https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow"),
            console_url: s("https://aka.ms/AppRegistrations"),
            ..base(
                "microsoft",
                "Microsoft",
                "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
                "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            )
        },
        // Notion public connections: Basic auth, JSON bodies, `owner=user`, no scopes.
        // Refresh returns a new access and refresh token. /v1/users/me needs Notion-Version
        // and returns the bot; the human who authorized it is under bot.owner.user.
        ProviderDef {
            revocation_url: s("https://api.notion.com/v1/oauth/revoke"),
            userinfo_url: s("https://api.notion.com/v1/users/me"),
            userinfo_headers: map(&[("Notion-Version", "2022-06-28")]),
            account_id_field: "/bot/owner/user/id".into(),
            account_name_field: s("/bot/owner/user/name"),
            pkce: Pkce::None,
            token_auth_method: ClientSecretBasic,
            token_request_format: TokenRequestFormat::Json,
            extra_authorize_params: map(&[("owner", "user")]),
            rotates_refresh_tokens: true,
            docs_url: s("https://developers.notion.com/reference/create-a-token"),
            console_url: s("https://www.notion.so/profile/integrations"),
            ..base(
                "notion",
                "Notion",
                "https://api.notion.com/v1/oauth/authorize",
                "https://api.notion.com/v1/oauth/token",
            )
        },
        // Reddit: `duration=permanent` for a refresh token; HTTP Basic at the token endpoint;
        // refresh responses carry a new refresh token (announced 2021). Reddit requires a
        // unique, descriptive User-Agent on every request, token endpoint included.
        ProviderDef {
            revocation_url: s("https://www.reddit.com/api/v1/revoke_token"),
            userinfo_url: s("https://oauth.reddit.com/api/v1/me"),
            account_name_field: s("name"),
            scopes: list(&["identity"]),
            pkce: Pkce::None,
            token_auth_method: ClientSecretBasic,
            extra_authorize_params: map(&[("duration", "permanent")]),
            rotates_refresh_tokens: true,
            docs_url: s("https://github.com/reddit-archive/reddit/wiki/OAuth2"),
            console_url: s("https://www.reddit.com/prefs/apps"),
            ..base(
                "reddit",
                "Reddit",
                "https://www.reddit.com/api/v1/authorize",
                "https://www.reddit.com/api/v1/access_token",
            )
        },
        // Slack "OAuth v2" user-token flow: user scopes go in `user_scope`, comma-separated,
        // and the user token comes back under `authed_user`. With token rotation enabled,
        // refresh tokens rotate. auth.test identifies the token's user.
        ProviderDef {
            revocation_url: s("https://slack.com/api/auth.revoke"),
            userinfo_url: s("https://slack.com/api/auth.test"),
            userinfo_method: UserinfoMethod::Post,
            account_id_field: "user_id".into(),
            account_name_field: s("user"),
            scopes: list(&["users:read"]),
            scope_separator: ",".into(),
            scope_param: "user_scope".into(),
            token_auth_method: ClientSecretBasic,
            token_response_pointer: s("/authed_user"),
            rotates_refresh_tokens: true,
            docs_url: s("https://docs.slack.dev/reference/methods/oauth.v2.access"),
            console_url: s("https://api.slack.com/apps"),
            ..base("slack", "Slack", "https://slack.com/oauth/v2/authorize", "https://slack.com/api/oauth.v2.access")
        },
        // Spotify: Basic auth; a refresh response may carry a new refresh token.
        ProviderDef {
            userinfo_url: s("https://api.spotify.com/v1/me"),
            account_name_field: s("display_name"),
            scopes: list(&["user-read-private", "user-read-email"]),
            token_auth_method: ClientSecretBasic,
            rotates_refresh_tokens: true,
            docs_url: s("https://developer.spotify.com/documentation/web-api/tutorials/code-flow"),
            console_url: s("https://developer.spotify.com/dashboard"),
            ..base(
                "spotify",
                "Spotify",
                "https://accounts.spotify.com/authorize",
                "https://accounts.spotify.com/api/token",
            )
        },
        // Strava: comma-separated scopes; refresh may return a new refresh token.
        // Deauthorization (POST /oauth/deauthorize?access_token=) is not RFC 7009.
        ProviderDef {
            userinfo_url: s("https://www.strava.com/api/v3/athlete"),
            account_name_field: s("username"),
            scopes: list(&["read"]),
            scope_separator: ",".into(),
            pkce: Pkce::None,
            rotates_refresh_tokens: true,
            docs_url: s("https://developers.strava.com/docs/authentication/"),
            console_url: s("https://www.strava.com/settings/api"),
            ..base("strava", "Strava", "https://www.strava.com/oauth/authorize", "https://www.strava.com/oauth/token")
        },
        // Twitch: client_secret_post only (per its OIDC discovery document); identity from
        // the OIDC userinfo endpoint, which needs the `openid` scope; preferred_username is
        // requested through the `claims` parameter.
        ProviderDef {
            revocation_url: s("https://id.twitch.tv/oauth2/revoke"),
            userinfo_url: s("https://id.twitch.tv/oauth2/userinfo"),
            account_id_field: "sub".into(),
            account_name_field: s("preferred_username"),
            scopes: list(&["openid"]),
            pkce: Pkce::None,
            extra_authorize_params: map(&[("claims", r#"{"userinfo":{"preferred_username":null}}"#)]),
            rotates_refresh_tokens: true,
            docs_url: s("https://dev.twitch.tv/docs/authentication/getting-tokens-oauth/"),
            console_url: s("https://dev.twitch.tv/console/apps"),
            ..base("twitch", "Twitch", "https://id.twitch.tv/oauth2/authorize", "https://id.twitch.tv/oauth2/token")
        },
        // X (Twitter) OAuth 2.0: PKCE mandatory; confidential clients use Basic auth;
        // `offline.access` yields a refresh token, which is single-use.
        ProviderDef {
            revocation_url: s("https://api.x.com/2/oauth2/revoke"),
            userinfo_url: s("https://api.x.com/2/users/me"),
            account_id_field: "/data/id".into(),
            account_name_field: s("/data/username"),
            scopes: list(&["tweet.read", "users.read", "offline.access"]),
            pkce: Required,
            token_auth_method: ClientSecretBasic,
            rotates_refresh_tokens: true,
            docs_url: s("https://docs.x.com/fundamentals/authentication/oauth-2-0/authorization-code"),
            console_url: s("https://developer.x.com/en/portal/dashboard"),
            ..base("x", "X (Twitter)", "https://x.com/i/oauth2/authorize", "https://api.x.com/2/oauth2/token")
        },
        // Zoom user-level OAuth: Basic auth; every refresh returns a new refresh token and
        // invalidates the old one. Scopes are configured on the app, so none are sent.
        ProviderDef {
            revocation_url: s("https://zoom.us/oauth/revoke"),
            userinfo_url: s("https://api.zoom.us/v2/users/me"),
            account_name_field: s("display_name"),
            token_auth_method: ClientSecretBasic,
            rotates_refresh_tokens: true,
            docs_url: s("https://developers.zoom.us/docs/rooms/oauth/"),
            console_url: s("https://marketplace.zoom.us/user/build"),
            ..base("zoom", "Zoom", "https://zoom.us/oauth/authorize", "https://zoom.us/oauth/token")
        },
    ]
}
