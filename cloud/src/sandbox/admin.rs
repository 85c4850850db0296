//! Test hooks, each behind the admin secret (`X-Sandbox-Admin`): `GET /sandbox/admin/stats`,
//! `GET|PUT /sandbox/admin/faults`, `POST /sandbox/admin/reset`, `POST /sandbox/admin/clients`,
//! `PUT /sandbox/admin/items`, `POST /sandbox/admin/rotate_key` (in `oidc`); and the RFC 8414
//! metadata document, which is public.

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use super::oidc::IdTokenFault;
use super::wire::{no_store_json, OAuthError};
use super::{grant_id, Sandbox, ADMIN_HEADER};

/// Lets a request through to a hook only with the admin secret: without it anyone who
/// reaches the cloud could register clients, switch faults or read every grant.
pub(super) async fn require_secret(State(sb): State<Sandbox>, req: Request, next: Next) -> Response {
    let presented = req.headers().get(ADMIN_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if sb.admits(presented) {
        next.run(req).await
    } else {
        OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("the sandbox admin hooks need the header {ADMIN_HEADER} with the secret printed at start"),
        )
        .into_response()
    }
}

/// Longest accepted `token_delay_ms` (five minutes).
pub const MAX_TOKEN_DELAY_MS: u64 = 300_000;
/// Longest accepted `access_token_ttl_secs` (one year).
pub const MAX_ACCESS_TOKEN_TTL_SECS: u64 = 31_536_000;

/// The fault switches of the token endpoint (and `auto_approve` of the authorize
/// endpoint). `token_status` and `token_delay_ms` apply to every token request;
/// `token_429_retry_after`, `refresh_invalid_grant` and `refresh_invalid_grant_in_200`
/// only to `refresh_token` grants. When several are set, `token_status` wins, then 429,
/// then `refresh_invalid_grant`, then `refresh_invalid_grant_in_200`. `token_expires_in`
/// shapes every successful token answer; `issue_refresh_tokens` only code exchanges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Faults {
    /// Wait this long before answering a token request.
    pub token_delay_ms: u64,
    /// Answer token requests with this status (400–599) and an OAuth error body.
    pub token_status: Option<u16>,
    /// Answer refreshes with 429 and this `Retry-After`.
    pub token_429_retry_after: Option<u64>,
    /// Answer refreshes with 400 `invalid_grant` (the grant itself is left intact).
    pub refresh_invalid_grant: bool,
    /// Answer refreshes with HTTP 200 and `{"error": "invalid_grant"}`, as GitHub does.
    pub refresh_invalid_grant_in_200: bool,
    /// Lifetime of new access tokens (0: expired at once).
    pub access_token_ttl_secs: u64,
    /// Rotate refresh tokens on every refresh (a reused one revokes the grant).
    pub rotate_refresh_tokens: bool,
    /// Skip the consent page and approve at once.
    pub auto_approve: bool,
    /// Answer 429 (`Retry-After: 1`) to token requests beyond this many at once, like a
    /// provider protecting itself.
    pub token_concurrency_limit: Option<u64>,
    /// Send this as `expires_in` instead of the real lifetime (a number or a string, as a
    /// careless or hostile provider might: huge, negative, fractional).
    pub token_expires_in: Option<Value>,
    /// Issue a refresh token with each code exchange (off: like an app without offline
    /// access, whose grant ends when its access token expires).
    pub issue_refresh_tokens: bool,
    /// Spoil the ID tokens of `openid` code exchanges this way.
    pub id_token_fault: Option<IdTokenFault>,
    /// Leave `iss` out of authorization redirects (RFC 9207).
    pub omit_redirect_iss: bool,
    /// Send this `iss` on authorization redirects instead of the sandbox's issuer.
    pub redirect_iss: Option<String>,
    /// What the metadata documents say as `authorization_response_iss_parameter_supported`.
    pub advertise_redirect_iss: bool,
}

impl Faults {
    /// The `iss` for authorization redirects: the issuer, unless a fault says otherwise.
    pub(super) fn redirect_iss<'a>(&'a self, issuer: &'a str) -> Option<&'a str> {
        if self.omit_redirect_iss {
            None
        } else {
            Some(self.redirect_iss.as_deref().unwrap_or(issuer))
        }
    }
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            token_delay_ms: 0,
            token_status: None,
            token_429_retry_after: None,
            refresh_invalid_grant: false,
            refresh_invalid_grant_in_200: false,
            access_token_ttl_secs: 3600,
            rotate_refresh_tokens: true,
            auto_approve: false,
            token_concurrency_limit: None,
            token_expires_in: None,
            issue_refresh_tokens: true,
            id_token_fault: None,
            omit_redirect_iss: false,
            redirect_iss: None,
            advertise_redirect_iss: true,
        }
    }
}

/// A `PUT /sandbox/admin/faults` body: missing fields keep their value; `null` clears the
/// optional ones.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultsPatch {
    token_delay_ms: Option<u64>,
    #[serde(default, deserialize_with = "nullable")]
    token_status: Option<Option<u16>>,
    #[serde(default, deserialize_with = "nullable")]
    token_429_retry_after: Option<Option<u64>>,
    refresh_invalid_grant: Option<bool>,
    refresh_invalid_grant_in_200: Option<bool>,
    access_token_ttl_secs: Option<u64>,
    rotate_refresh_tokens: Option<bool>,
    auto_approve: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    token_concurrency_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    token_expires_in: Option<Option<Value>>,
    issue_refresh_tokens: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    id_token_fault: Option<Option<IdTokenFault>>,
    omit_redirect_iss: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    redirect_iss: Option<Option<String>>,
    advertise_redirect_iss: Option<bool>,
}

/// Distinguishes a field given as `null` (`Some(None)`) from a missing one (`None`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl FaultsPatch {
    fn apply(self, faults: &mut Faults) -> Result<(), String> {
        if let Some(Some(status)) = self.token_status {
            if !(400..=599).contains(&status) {
                return Err(format!("token_status must be from 400 to 599, not {status}"));
            }
        }
        if self.token_delay_ms.is_some_and(|d| d > MAX_TOKEN_DELAY_MS) {
            return Err(format!("token_delay_ms must be at most {MAX_TOKEN_DELAY_MS}"));
        }
        if self.access_token_ttl_secs.is_some_and(|t| t > MAX_ACCESS_TOKEN_TTL_SECS) {
            return Err(format!("access_token_ttl_secs must be at most {MAX_ACCESS_TOKEN_TTL_SECS}"));
        }
        if let Some(Some(iss)) = &self.redirect_iss {
            if iss.is_empty() || iss.len() > 512 || iss.chars().any(char::is_control) {
                return Err("redirect_iss must be 1 to 512 characters without control characters".to_owned());
            }
        }
        if let Some(Some(v)) = &self.token_expires_in {
            if !(v.is_number() || v.is_string()) {
                return Err("token_expires_in must be a number or a string".to_owned());
            }
        }
        let mut next = faults.clone();
        if let Some(v) = self.token_delay_ms {
            next.token_delay_ms = v;
        }
        if let Some(v) = self.token_status {
            next.token_status = v;
        }
        if let Some(v) = self.token_429_retry_after {
            next.token_429_retry_after = v;
        }
        if let Some(v) = self.refresh_invalid_grant {
            next.refresh_invalid_grant = v;
        }
        if let Some(v) = self.refresh_invalid_grant_in_200 {
            next.refresh_invalid_grant_in_200 = v;
        }
        if let Some(v) = self.access_token_ttl_secs {
            next.access_token_ttl_secs = v;
        }
        if let Some(v) = self.rotate_refresh_tokens {
            next.rotate_refresh_tokens = v;
        }
        if let Some(v) = self.auto_approve {
            next.auto_approve = v;
        }
        if let Some(v) = self.token_concurrency_limit {
            next.token_concurrency_limit = v;
        }
        if let Some(v) = self.token_expires_in {
            next.token_expires_in = v;
        }
        if let Some(v) = self.issue_refresh_tokens {
            next.issue_refresh_tokens = v;
        }
        if let Some(v) = self.id_token_fault {
            next.id_token_fault = v;
        }
        if let Some(v) = self.omit_redirect_iss {
            next.omit_redirect_iss = v;
        }
        if let Some(v) = self.redirect_iss {
            next.redirect_iss = v;
        }
        if let Some(v) = self.advertise_redirect_iss {
            next.advertise_redirect_iss = v;
        }
        *faults = next;
        Ok(())
    }
}

fn faults_json(faults: &Faults) -> Response {
    no_store_json(StatusCode::OK, serde_json::to_value(faults).unwrap_or(Value::Null))
}

/// `GET /sandbox/admin/faults`: the current switches.
pub(super) async fn get_faults(State(sb): State<Sandbox>) -> Response {
    let faults = sb.lock().faults.clone();
    faults_json(&faults)
}

/// `PUT /sandbox/admin/faults`: changes the given switches, answers the whole set.
pub(super) async fn put_faults(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let patch: FaultsPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return OAuthError::invalid_request(format!("faults body: {e}")).into_response(),
    };
    let mut st = sb.lock();
    match patch.apply(&mut st.faults) {
        Ok(()) => faults_json(&st.faults),
        Err(message) => OAuthError::invalid_request(message).into_response(),
    }
}

/// `POST /sandbox/admin/reset`: every fault back to its default (grants, tokens and
/// counters stay). Answers the faults.
pub(super) async fn reset(State(sb): State<Sandbox>) -> Response {
    let mut st = sb.lock();
    st.faults = Faults::default();
    faults_json(&st.faults)
}

/// `GET /sandbox/admin/stats`: grants with their token-request counters, revocations.
///
/// `token_requests` counts every token request that named the grant (by its refresh token
/// or, for a reused code, its authorization code), failed ones included;
/// `failed_token_requests` counts those answered with an error (injected faults included).
/// `revocations` counts authenticated `/sandbox/revoke` requests, whatever the token.
pub(super) async fn stats(State(sb): State<Sandbox>) -> Response {
    let st = sb.lock();
    let grants: Vec<Value> = st
        .grants
        .iter()
        .enumerate()
        .map(|(i, g)| {
            json!({
                "id": grant_id(i),
                "user": g.user,
                "client_id": g.client_id,
                "scope": g.scope,
                "token_requests": {
                    "authorization_code": g.code_requests,
                    "refresh_token": g.refresh_requests,
                },
                "failed_token_requests": g.failed_requests,
                "revoked": g.revoked,
            })
        })
        .collect();
    no_store_json(
        StatusCode::OK,
        json!({
            "grants": grants,
            "revocations": st.revocations,
            "token_requests_total": st.token_requests_total,
            "token_requests_peak_in_flight": sb.token_peak_in_flight(),
            "items": st.items,
        }),
    )
}

/// `GET /sandbox/.well-known/oauth-authorization-server` (RFC 8414).
pub(super) async fn metadata(State(sb): State<Sandbox>) -> Response {
    no_store_json(StatusCode::OK, Value::Object(super::oidc::metadata(&sb)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClient {
    client_id: String,
    client_secret: String,
    redirect_uri: String,
}

/// `POST /sandbox/admin/clients`: registers an OAuth client, as a developer console would.
pub(super) async fn register_client(State(sb): State<Sandbox>, body: Bytes) -> Response {
    let client: NewClient = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return OAuthError::invalid_request(format!("body: {e}")).into_response(),
    };
    let valid = |s: &str| !s.is_empty() && s.len() <= 512 && !s.chars().any(char::is_control);
    if !valid(&client.client_id) || !valid(&client.client_secret) || url::Url::parse(&client.redirect_uri).is_err() {
        return OAuthError::invalid_request("client_id, client_secret and an absolute redirect_uri are required")
            .into_response();
    }
    sb.register_client(&client.client_id, &client.client_secret, &client.redirect_uri);
    no_store_json(StatusCode::CREATED, json!({ "client_id": client.client_id, "redirect_uri": client.redirect_uri }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemCount {
    count: usize,
}

/// `PUT /sandbox/admin/items`: how many items the data API serves.
pub(super) async fn set_items(State(sb): State<Sandbox>, body: Bytes) -> Response {
    match serde_json::from_slice::<ItemCount>(&body) {
        Ok(ItemCount { count }) if count <= super::MAX_ITEMS => {
            sb.set_items(count);
            no_store_json(StatusCode::OK, json!({ "items": count }))
        }
        Ok(_) => OAuthError::invalid_request(format!("count: at most {}", super::MAX_ITEMS)).into_response(),
        Err(e) => OAuthError::invalid_request(format!("body: {e}")).into_response(),
    }
}
