//! Talking to providers: the token endpoint (code exchange, refresh), revocation and
//! userinfo, with timeouts, and every failure classified for the refresh policy.
//!
//! URLs come only from the provider registry, never from a request. We wrote this on
//! reqwest rather than the `oauth2` crate because the policy needs to tell a timeout
//! (unknown outcome) from a 5xx or 429 (transient, with `Retry-After`) from
//! `invalid_grant` (also inside an HTTP 200, as GitHub sends it), and because providers'
//! quirks (Slack's nested user token, JSON token requests) live in the registry data.

use crate::oauth::credentials::AppCredentials;
use crate::providers::{ProviderDef, RevocationMethod, TokenAuthMethod, TokenRequestFormat};
use base64::Engine;
use latchkey_shared::secret::SecretString;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// How a token request failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No answer in time: the provider may or may not have acted (and rotated).
    #[error("the provider did not answer in time")]
    Timeout,
    /// 5xx or 429: try again later; the grant is untouched.
    #[error("the provider is unavailable (HTTP {status})")]
    Unavailable { status: u16, retry_after: Option<Duration> },
    /// The grant was revoked or expired at the provider.
    #[error("the provider refused the grant (invalid_grant{})", .0.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    InvalidGrant(Option<String>),
    /// Any other OAuth error (invalid_client, unauthorized_client, …).
    #[error("the provider refused the request: {error}")]
    Rejected { status: u16, error: String },
    /// Could not reach the provider at all.
    #[error("cannot reach the provider: {0}")]
    Network(String),
    /// An answer we cannot read.
    #[error("unreadable answer from the provider: {0}")]
    Malformed(String),
}

/// Tokens as the provider issued them.
#[derive(Debug)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub token_type: String,
    pub expires_in: Option<i64>,
    pub scope: Option<String>,
    /// The OpenID Connect ID token, when the provider sent one (code exchange with `openid`).
    pub id_token: Option<SecretString>,
}

/// An HTTP client for providers, with timeouts on everything; it also keeps the OpenID
/// metadata and keys it fetched (`super::oidc`).
#[derive(Clone, Debug)]
pub struct ProviderClient {
    pub(super) http: reqwest::Client,
    pub(super) oidc: std::sync::Arc<super::oidc::OidcCache>,
}

impl ProviderClient {
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION"), " (managed OAuth token broker)"))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { http, oidc: std::sync::Arc::default() }
    }

    /// Exchanges an authorization code (with its PKCE verifier).
    pub async fn exchange_code(
        &self,
        def: &ProviderDef,
        creds: &AppCredentials,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&SecretString>,
    ) -> Result<TokenSet, TokenError> {
        let mut params = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
        ];
        if let Some(v) = verifier {
            params.push(("code_verifier", v.expose().clone()));
        }
        self.token_request(def, creds, params).await
    }

    /// Trades a refresh token for new tokens.
    pub async fn refresh(
        &self,
        def: &ProviderDef,
        creds: &AppCredentials,
        refresh_token: &SecretString,
    ) -> Result<TokenSet, TokenError> {
        let params =
            vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", refresh_token.expose().clone())];
        self.token_request(def, creds, params).await
    }

    /// Revokes `token` (whose kind `hint` names) as the provider's `revocation_method`
    /// says. `Ok(false)` when the provider has no revocation endpoint.
    pub async fn revoke(
        &self,
        def: &ProviderDef,
        creds: &AppCredentials,
        token: &SecretString,
        hint: &str,
    ) -> Result<bool, String> {
        let Some(url) = &def.revocation_url else { return Ok(false) };
        let request = match def.revocation_method {
            RevocationMethod::Rfc7009 => {
                let params = vec![("token", token.expose().clone()), ("token_type_hint", hint.to_owned())];
                self.authenticated(def, creds, url, params)
            }
            RevocationMethod::GithubToken => {
                let id = url::form_urlencoded::byte_serialize(creds.client_id.expose().as_bytes()).collect::<String>();
                self.http
                    .delete(url.replace("{client_id}", &id))
                    .basic_auth(creds.client_id.expose(), Some(creds.client_secret.expose()))
                    .header("accept", "application/vnd.github+json")
                    .json(&serde_json::json!({ "access_token": token.expose() }))
            }
        };
        let resp = request.send().await.map_err(|e| describe(&e))?;
        let status = resp.status();
        if status.is_success() {
            Ok(true)
        } else {
            Err(format!("revocation answered HTTP {}", status.as_u16()))
        }
    }

    /// The provider account's id and display name.
    pub async fn account(
        &self,
        def: &ProviderDef,
        access_token: &SecretString,
    ) -> Result<(String, Option<String>), String> {
        let Some(url) = &def.userinfo_url else {
            return Ok(("unknown".to_owned(), None));
        };
        let mut req = match def.userinfo_method {
            crate::providers::UserinfoMethod::Get => self.http.get(url),
            crate::providers::UserinfoMethod::Post => {
                let r = self.http.post(url);
                match &def.userinfo_body {
                    Some(body) => r.header("content-type", "application/json").body(body.clone()),
                    None => r,
                }
            }
        };
        req = req.bearer_auth(access_token.expose()).header("accept", "application/json");
        for (k, v) in &def.userinfo_headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().await.map_err(|e| describe(&e))?;
        if !resp.status().is_success() {
            return Err(format!("userinfo answered HTTP {}", resp.status().as_u16()));
        }
        let body: Value = resp.json().await.map_err(|_| "userinfo is not JSON".to_owned())?;
        def.read_account(&body).ok_or_else(|| format!("userinfo has no `{}`", def.account_id_field))
    }

    async fn token_request(
        &self,
        def: &ProviderDef,
        creds: &AppCredentials,
        params: Vec<(&'static str, String)>,
    ) -> Result<TokenSet, TokenError> {
        let resp = self.authenticated(def, creds, &def.token_url, params).send().await.map_err(|e| {
            if e.is_timeout() {
                TokenError::Timeout
            } else {
                TokenError::Network(describe(&e))
            }
        })?;
        let status = resp.status().as_u16();
        let retry_after =
            resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let is_form = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let text = resp.text().await.map_err(|e| {
            if e.is_timeout() {
                TokenError::Timeout
            } else {
                TokenError::Network(describe(&e))
            }
        })?;
        if status == 429 || status >= 500 {
            return Err(TokenError::Unavailable { status, retry_after });
        }
        let body: Value = if is_form {
            Value::Object(
                url::form_urlencoded::parse(text.as_bytes())
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                    .collect(),
            )
        } else {
            serde_json::from_str(&text).map_err(|_| TokenError::Malformed(format!("HTTP {status}, not JSON")))?
        };
        // Errors may come with any status, 200 included (GitHub, Slack).
        if let Some(error) = body.get("error").and_then(Value::as_str) {
            let description =
                body.get("error_description").and_then(Value::as_str).map(|d| d.chars().take(200).collect());
            return Err(if error == "invalid_grant" {
                TokenError::InvalidGrant(description)
            } else {
                TokenError::Rejected { status, error: error.chars().take(64).collect() }
            });
        }
        if !(200..300).contains(&status) {
            return Err(TokenError::Rejected { status, error: format!("HTTP {status}") });
        }
        let fields = def.token_fields(&body);
        let access_token = fields
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| TokenError::Malformed("no access_token".into()))?;
        Ok(TokenSet {
            access_token: SecretString::new(access_token.to_owned()),
            refresh_token: fields.get("refresh_token").and_then(Value::as_str).map(|s| SecretString::new(s.to_owned())),
            token_type: fields.get("token_type").and_then(Value::as_str).unwrap_or("Bearer").to_owned(),
            expires_in: fields.get("expires_in").and_then(expires_in),
            id_token: fields
                .get("id_token")
                .or_else(|| body.get("id_token"))
                .and_then(Value::as_str)
                .map(|s| SecretString::new(s.to_owned())),
            scope: fields.get("scope").and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")),
                _ => None,
            }),
        })
    }

    /// A POST to a provider endpoint with client authentication and the body encoding its
    /// definition asks for.
    fn authenticated(
        &self,
        def: &ProviderDef,
        creds: &AppCredentials,
        url: &str,
        mut params: Vec<(&'static str, String)>,
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.post(url).header("accept", "application/json");
        match def.token_auth_method {
            TokenAuthMethod::ClientSecretBasic => {
                // RFC 6749 2.3.1: form-encode id and secret before joining them.
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!("{}:{}", enc(creds.client_id.expose()), enc(creds.client_secret.expose()));
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                req = req.header("authorization", format!("Basic {encoded}"));
            }
            TokenAuthMethod::ClientSecretPost => {
                params.push(("client_id", creds.client_id.expose().clone()));
                params.push(("client_secret", creds.client_secret.expose().clone()));
            }
        }
        match def.token_request_format {
            TokenRequestFormat::Form => req.form(&params),
            TokenRequestFormat::Json => {
                let map: serde_json::Map<String, Value> =
                    params.into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect();
                req.json(&map)
            }
        }
    }
}

/// The longest token lifetime we believe: a provider's number becomes an `expires_at`
/// by addition, so an absurd one must neither overflow nor keep a token for ages.
pub const MAX_EXPIRES_IN_SECS: i64 = 365 * 24 * 3600;
/// The shortest and longest provider `Retry-After` we honour: a past date must not make
/// us hammer the provider, and a huge value must not park a connection for years.
pub const RETRY_AFTER_SECS: std::ops::RangeInclusive<u64> = 1..=3600;

/// `expires_in` as a number or a numeric string (some providers send `"3600"`), clamped
/// to 0 ..= [`MAX_EXPIRES_IN_SECS`]. A negative value means already expired; one too big
/// for an integer is still a lifetime, just a capped one.
fn expires_in(v: &Value) -> Option<i64> {
    let secs = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if secs.is_nan() {
        return None;
    }
    // In range after the clamp, so the cast neither saturates nor wraps.
    Some(secs.clamp(0.0, MAX_EXPIRES_IN_SECS as f64) as i64)
}

/// `Retry-After` in seconds or as an HTTP date (RFC 9110 10.2.3), clamped to
/// [`RETRY_AFTER_SECS`].
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let secs = match value.parse::<u64>() {
        Ok(secs) => secs,
        // Digits that overflow a u64 are still a (very long) number of seconds.
        Err(_) if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => u64::MAX,
        Err(_) => {
            let when = httpdate::parse_http_date(value).ok()?;
            when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO).as_secs()
        }
    };
    Some(Duration::from_secs(secs.clamp(*RETRY_AFTER_SECS.start(), *RETRY_AFTER_SECS.end())))
}

/// A reqwest error without its URL (which could carry a token in a query string).
pub(super) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_both_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let future = SystemTime::now() + Duration::from_secs(90);
        let secs = parse_retry_after(&httpdate::fmt_http_date(future)).unwrap().as_secs();
        assert!((85..=90).contains(&secs), "{secs}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    /// A provider's `Retry-After` of zero, a past date, a huge number or a far-off date:
    /// never a retry within a second, never a wait past an hour, never an overflow.
    #[test]
    fn an_absurd_retry_after_is_clamped_to_one_second_to_an_hour() {
        let hour = Some(Duration::from_secs(3600));
        let second = Some(Duration::from_secs(1));
        assert_eq!(parse_retry_after("0"), second);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), second);
        assert_eq!(parse_retry_after(&u64::MAX.to_string()), hour);
        assert_eq!(parse_retry_after("99999999999999999999999999"), hour);
        assert_eq!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT"), hour);
    }

    /// `expires_in` as providers send it, sane or not: a year at most, never negative.
    #[test]
    fn an_absurd_expires_in_is_clamped_to_zero_to_a_year() {
        use serde_json::json;
        assert_eq!(expires_in(&json!(3600)), Some(3600));
        assert_eq!(expires_in(&json!("3600")), Some(3600));
        assert_eq!(expires_in(&json!(3599.9)), Some(3599));
        assert_eq!(expires_in(&json!(i64::MAX)), Some(MAX_EXPIRES_IN_SECS));
        assert_eq!(expires_in(&json!(u64::MAX)), Some(MAX_EXPIRES_IN_SECS));
        assert_eq!(expires_in(&json!(1e300)), Some(MAX_EXPIRES_IN_SECS));
        assert_eq!(expires_in(&json!("99999999999999999999999")), Some(MAX_EXPIRES_IN_SECS));
        assert_eq!(expires_in(&json!(-5)), Some(0));
        assert_eq!(expires_in(&json!("soon")), None);
        assert_eq!(expires_in(&json!(null)), None);
    }
}
