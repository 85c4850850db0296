//! The sandbox OAuth 2.0 provider: a real authorization server over HTTP, served by the
//! cloud itself (only when explicitly enabled) for the demo and the end-to-end tests, in
//! place of real providers.
//!
//! Everything lives in process memory behind one `Mutex` inside an `Arc`, so a
//! [`Sandbox`] is cheap to clone; in multi-replica tests one process serves it for all.
//!
//! Routes (see [`Sandbox::router`]), all under `/sandbox`:
//!
//! * `GET /sandbox/authorize` — validates the client and the *exact* redirect URI (a bad one
//!   gets an error page, never a redirect: RFC 6749 §4.1.2.1), requires PKCE `S256`, then
//!   shows a consent page (or approves at once when the `auto_approve` fault is on).
//! * `POST /sandbox/authorize` — the consent form: approve → `302 redirect_uri?code&state&iss`
//!   (RFC 9207), deny → `error=access_denied`. Codes are 256-bit random, single use, live
//!   60 s and are bound to client, redirect URI, code challenge, scope and user.
//! * `POST /sandbox/token` — `authorization_code` (with PKCE) and `refresh_token` grants;
//!   client authentication by HTTP Basic or in the body. A reused code revokes the grant
//!   issued from it; with rotation on (the default) a reused refresh token revokes the whole
//!   grant.
//! * `POST /sandbox/revoke` — RFC 7009: a refresh token revokes the whole grant, an access
//!   token only itself, unknown tokens still answer 200.
//! * `DELETE /sandbox/applications/{client_id}/token` — GitHub's token deletion, for
//!   providers defined with `revocation_method = "github_token"`: HTTP Basic for the client
//!   in the path, JSON `{"access_token"}`; revokes that access token only; 204, or 404.
//! * `GET /sandbox/userinfo` and the data API `GET /sandbox/api/items` — bearer access token.
//! * `GET /sandbox/.well-known/oauth-authorization-server` — RFC 8414 metadata;
//!   `GET /sandbox/.well-known/openid-configuration` — the same as OpenID discovery, and
//!   `GET /sandbox/.well-known/jwks.json` — the ID-token signing key (see `oidc`): with the
//!   `openid` scope the code exchange returns an ES256 `id_token` carrying the request's
//!   `nonce`.
//! * `/sandbox/admin/{stats,faults,reset,clients,items,rotate_key}` — test hooks, each refused (401)
//!   without the header `X-Sandbox-Admin: <secret>` given to [`Sandbox::new`]; the router
//!   is mounted only when the sandbox is explicitly enabled, on a loopback listener or in
//!   dev mode.
//!
//! Every error is an OAuth JSON body `{"error", "error_description"}` with the RFC's status
//! code (the authorize endpoint shows HTML pages instead, as a browser is on the other
//! end); no input makes it answer 500 or panic, unless the `token_status` fault says so.

mod admin;
mod authorize;
mod items;
mod oidc;
mod resource;
mod token;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::providers::{Pkce, ProviderDef, RevocationMethod, TokenAuthMethod, TokenRequestFormat, UserinfoMethod};
use latchkey_shared::secret::SecretString;

pub use admin::Faults;
pub use oidc::IdTokenFault;

/// Data-API items a new sandbox serves.
pub const DEFAULT_ITEMS: usize = 250;
/// Upper bound for [`Sandbox::set_items`] (larger values are clamped).
pub const MAX_ITEMS: usize = 10_000_000;
/// Scopes the sandbox knows, in canonical order. With `openid` the code exchange also
/// returns an ID token.
pub const SCOPES: [&str; 3] = ["openid", "profile", "items:read"];
/// Scopes of an authorization request that names none, and the provider's defaults.
pub const DEFAULT_SCOPES: [&str; 2] = ["profile", "items:read"];
/// The user approved when the consent form or `login_hint` gives none.
pub const DEFAULT_USER: &str = "sandbox-user";

/// Lifetime of an authorization code.
const CODE_TTL: Duration = Duration::from_secs(60);
/// The header that carries the admin secret to the test hooks.
pub const ADMIN_HEADER: &str = "x-sandbox-admin";

/// Used codes are remembered this long after expiry, to detect reuse.
const CODE_MEMORY: Duration = Duration::from_secs(600);
/// Below this many stored codes / access tokens, no purge runs.
const PURGE_FLOOR: usize = 1024;

/// The sandbox provider. Clones share one state.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    /// The cloud's public URL + `/sandbox`, without a trailing slash.
    base_url: String,
    /// SHA-256 of the secret the admin hooks require.
    admin_secret_hash: [u8; 32],
    state: Mutex<State>,
    /// Token requests being answered now, and the most at once since start.
    token_in_flight: std::sync::atomic::AtomicU64,
    token_peak_in_flight: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Sandbox {
    // No client secrets or tokens in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sandbox").field("base_url", &self.inner.base_url).finish_non_exhaustive()
    }
}

impl Sandbox {
    /// A sandbox whose public address is `base_url` (the cloud's public URL + `/sandbox`,
    /// e.g. `http://127.0.0.1:8080/sandbox`). It is also the RFC 9207 and OpenID issuer. Its
    /// admin hooks answer only requests carrying `admin_secret` in [`ADMIN_HEADER`]. Fails
    /// only if no ID-token signing key can be generated.
    pub fn new(base_url: String, admin_secret: &SecretString) -> Result<Self, ring::error::Unspecified> {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let admin_secret_hash = sha256(admin_secret.expose().as_bytes());
        let state = State::new(oidc::SigningKey::generate()?, oidc::SigningKey::generate()?);
        Ok(Self {
            inner: Arc::new(Inner {
                base_url,
                admin_secret_hash,
                state: Mutex::new(state),
                token_in_flight: Default::default(),
                token_peak_in_flight: Default::default(),
            }),
        })
    }

    /// A fresh random admin secret, for a start that was given none.
    pub fn generate_admin_secret() -> SecretString {
        SecretString::new(random_token("sbx_admin_"))
    }

    /// Counts a token request in flight until the guard drops; returns how many are now.
    fn token_call(&self) -> (TokenCall<'_>, u64) {
        use std::sync::atomic::Ordering;
        let now = self.inner.token_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.token_peak_in_flight.fetch_max(now, Ordering::SeqCst);
        (TokenCall(&self.inner.token_in_flight), now)
    }

    fn token_peak_in_flight(&self) -> u64 {
        self.inner.token_peak_in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether `presented` is the admin secret (compared in constant time).
    fn admits(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        sha256(presented.as_bytes()).ct_eq(&self.inner.admin_secret_hash).into()
    }

    /// Registers (or replaces) a client with its one exact redirect URI.
    pub fn register_client(&self, client_id: &str, client_secret: &str, redirect_uri: &str) {
        self.lock().clients.insert(
            client_id.to_owned(),
            Client { secret_hash: sha256(client_secret.as_bytes()), redirect_uri: redirect_uri.to_owned() },
        );
    }

    /// Every sandbox route, with its state, at paths starting with `/sandbox`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/sandbox/authorize", get(authorize::authorize_get).post(authorize::authorize_post))
            .route("/sandbox/token", post(token::token))
            .route("/sandbox/revoke", post(token::revoke))
            .route("/sandbox/applications/{client_id}/token", axum::routing::delete(token::delete_token))
            .route("/sandbox/userinfo", get(resource::userinfo))
            .route("/sandbox/api/items", get(resource::items))
            .route("/sandbox/.well-known/oauth-authorization-server", get(admin::metadata))
            .route("/sandbox/.well-known/openid-configuration", get(oidc::openid_configuration))
            .route("/sandbox/.well-known/jwks.json", get(oidc::jwks))
            .merge(
                Router::new()
                    .route("/sandbox/admin/stats", get(admin::stats))
                    .route("/sandbox/admin/faults", get(admin::get_faults).put(admin::put_faults))
                    .route("/sandbox/admin/reset", post(admin::reset))
                    .route("/sandbox/admin/clients", post(admin::register_client))
                    .route("/sandbox/admin/items", axum::routing::put(admin::set_items))
                    .route("/sandbox/admin/rotate_key", post(oidc::rotate_key))
                    .route_layer(axum::middleware::from_fn_with_state(self.clone(), admin::require_secret)),
            )
            .method_not_allowed_fallback(|| async {
                wire::OAuthError::new(StatusCode::METHOD_NOT_ALLOWED, "invalid_request", "method not allowed here")
            })
            .with_state(self.clone())
    }

    /// The provider definition pointing at this sandbox.
    pub fn provider_def(&self) -> ProviderDef {
        let base = &self.inner.base_url;
        ProviderDef {
            name: "sandbox".to_owned(),
            display_name: "Sandbox".to_owned(),
            authorization_url: format!("{base}/authorize"),
            token_url: format!("{base}/token"),
            revocation_url: Some(format!("{base}/revoke")),
            revocation_method: RevocationMethod::Rfc7009,
            userinfo_url: Some(format!("{base}/userinfo")),
            userinfo_method: UserinfoMethod::Get,
            userinfo_body: None,
            userinfo_headers: BTreeMap::new(),
            account_id_field: "sub".to_owned(),
            account_name_field: Some("name".to_owned()),
            issuer: Some(base.clone()),
            // From the discovery document, as for most OpenID providers.
            jwks_uri: None,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            scope_separator: " ".to_owned(),
            scope_param: "scope".to_owned(),
            pkce: Pkce::Required,
            token_auth_method: TokenAuthMethod::ClientSecretBasic,
            token_request_format: TokenRequestFormat::Form,
            token_response_pointer: None,
            extra_authorize_params: BTreeMap::new(),
            rotates_refresh_tokens: true,
            oidc: true,
            docs_url: None,
            // Clients are registered with `POST /sandbox/admin/clients`, not in a console.
            console_url: None,
            suggested_scopes: latchkey_shared::agent_connectors::scopes_for("sandbox"),
        }
    }

    /// How many data-API items each user has (default [`DEFAULT_ITEMS`], at most
    /// [`MAX_ITEMS`]).
    pub fn set_items(&self, count: usize) {
        self.lock().items = count.min(MAX_ITEMS);
    }

    /// The issuer / public base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent-enough test state.
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A registered client.
struct Client {
    secret_hash: [u8; 32],
    redirect_uri: String,
}

/// An issued authorization code.
struct AuthCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: String,
    user: String,
    /// The authorization request's `nonce`, for the ID token.
    nonce: Option<String>,
    expires_at: Instant,
    used: bool,
    /// The grant created by exchanging this code.
    grant: Option<usize>,
}

/// A grant: what one consent produced. Its id is `grant_<index + 1>`.
struct Grant {
    user: String,
    client_id: String,
    scope: String,
    code_requests: u64,
    refresh_requests: u64,
    failed_requests: u64,
    revoked: bool,
}

struct AccessToken {
    grant: usize,
    scope: String,
    expires_at: Instant,
    revoked: bool,
}

struct RefreshToken {
    grant: usize,
    /// Rotated away: presenting it again revokes the grant.
    used: bool,
}

/// One token request in flight; dropped when it is answered or its client goes away.
struct TokenCall<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for TokenCall<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The whole mutable state.
struct State {
    clients: HashMap<String, Client>,
    codes: HashMap<String, AuthCode>,
    grants: Vec<Grant>,
    access_tokens: HashMap<String, AccessToken>,
    refresh_tokens: HashMap<String, RefreshToken>,
    faults: Faults,
    items: usize,
    revocations: u64,
    token_requests_total: u64,
    purge_codes_at: usize,
    purge_access_at: usize,
    /// Signs ID tokens; published in the JWKS.
    signing_key: oidc::SigningKey,
    /// Never published: signs the `bad_signature` fault's ID tokens.
    foreign_key: oidc::SigningKey,
}

impl State {
    fn new(signing_key: oidc::SigningKey, foreign_key: oidc::SigningKey) -> Self {
        Self {
            clients: HashMap::new(),
            codes: HashMap::new(),
            grants: Vec::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            faults: Faults::default(),
            items: DEFAULT_ITEMS,
            revocations: 0,
            token_requests_total: 0,
            purge_codes_at: PURGE_FLOOR,
            purge_access_at: PURGE_FLOOR,
            signing_key,
            foreign_key,
        }
    }

    fn issue_code(&mut self, code: AuthCode) -> String {
        if self.codes.len() >= self.purge_codes_at {
            let now = Instant::now();
            self.codes.retain(|_, c| c.expires_at.checked_add(CODE_MEMORY).is_none_or(|t| t > now));
            self.purge_codes_at = PURGE_FLOOR.max(self.codes.len().saturating_mul(2));
        }
        let value = random_token("sbx_code_");
        self.codes.insert(value.clone(), code);
        value
    }

    fn create_grant(&mut self, user: String, client_id: String, scope: String) -> usize {
        self.grants.push(Grant {
            user,
            client_id,
            scope,
            code_requests: 1,
            refresh_requests: 0,
            failed_requests: 0,
            revoked: false,
        });
        self.grants.len() - 1
    }

    /// A new access token for `grant`, and its lifetime in seconds.
    fn issue_access_token(&mut self, grant: usize, scope: String) -> (String, u64) {
        let now = Instant::now();
        if self.access_tokens.len() >= self.purge_access_at {
            self.access_tokens.retain(|_, t| t.expires_at > now && !t.revoked);
            self.purge_access_at = PURGE_FLOOR.max(self.access_tokens.len().saturating_mul(2));
        }
        let ttl = self.faults.access_token_ttl_secs;
        // An unrepresentable expiry (never with the validated TTL) means already expired.
        let expires_at = now.checked_add(Duration::from_secs(ttl)).unwrap_or(now);
        let value = random_token("sbx_at_");
        self.access_tokens.insert(value.clone(), AccessToken { grant, scope, expires_at, revoked: false });
        (value, ttl)
    }

    fn issue_refresh_token(&mut self, grant: usize) -> String {
        let value = random_token("sbx_rt_");
        self.refresh_tokens.insert(value.clone(), RefreshToken { grant, used: false });
        value
    }

    /// Revokes a grant: every access and refresh token issued under it stops working.
    fn revoke_grant(&mut self, grant: usize) {
        if let Some(g) = self.grants.get_mut(grant) {
            g.revoked = true;
        }
    }
}

fn grant_id(index: usize) -> String {
    format!("grant_{}", index + 1)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `prefix` + 256 random bits, base64url.
fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The stable subject identifier of a sandbox user.
pub fn subject_for(username: &str) -> String {
    let digest = sha256(format!("latchkey-sandbox-user:{username}").as_bytes());
    let hex: String = digest.iter().take(10).map(|b| format!("{b:02x}")).collect();
    format!("usr_{hex}")
}

/// Parses a space-separated scope string into the canonical form (known scopes only, in
/// [`SCOPES`] order); the error names the first unknown scope.
fn canonical_scope(raw: &str) -> Result<String, String> {
    let mut wanted = [false; SCOPES.len()];
    for part in raw.split(' ').filter(|s| !s.is_empty()) {
        match SCOPES.iter().position(|s| *s == part) {
            Some(i) => {
                if let Some(w) = wanted.get_mut(i) {
                    *w = true;
                }
            }
            None => return Err(part.to_owned()),
        }
    }
    Ok(SCOPES.iter().zip(wanted).filter(|(_, w)| *w).map(|(s, _)| *s).collect::<Vec<_>>().join(" "))
}

fn scope_contains(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}
