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
//!
//! Where each part lives:
//!
//! * `definition.rs`: [`ProviderDef`], the enums its fields use, and the helpers that read
//!   token and userinfo responses;
//! * `overrides.rs`: [`ProviderOverride`] and its merge onto a built-in;
//! * `validate.rs`: [`ProviderDef::validate`], [`RegistryError`], [`DefinitionSource`] and the
//!   name rules;
//! * `registry.rs`: [`ProviderRegistry`], which combines the built-ins with the config file;
//! * `builtin.rs` ([`builtin`]): the built-in definitions themselves.

pub mod builtin;
mod definition;
mod overrides;
pub mod pacing;
mod registry;
#[cfg(test)]
mod test_support;
mod validate;

pub use definition::{Pkce, ProviderDef, RevocationMethod, TokenAuthMethod, TokenRequestFormat, UserinfoMethod};
pub use overrides::ProviderOverride;
pub use registry::ProviderRegistry;
pub use validate::{is_valid_provider_name, DefinitionSource, RegistryError};
