//! The agent's only door to the Latchkey cloud.
//!
//! [`CloudClient`] holds the PAT and attaches it only to requests whose URL it built
//! itself from the configured `cloud_url` and a fixed path, and it never follows a
//! redirect: the PAT cannot reach a connector's URL, a URL from a response, or anything
//! else. Device pairing and revocation (which send no PAT header) live here too, since they
//! talk to the same cloud.

use crate::config::ConnectorConfig;
use crate::error::{Error, Result};
use crate::retry::{self, RetryPolicy};
use latchkey_shared::secret::SecretString;
use latchkey_shared::wire::{ConnectionTokenRequest, ConnectionTokenResponse};
use latchkey_shared::Pat;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use std::time::{Duration, SystemTime};
use url::Url;

/// Every request to the cloud gives up after this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The OAuth client id the agent pairs as.
pub const CLIENT_ID: &str = "latchkey-agent";
/// RFC 8628's grant type.
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// An error body from the cloud: the contract's `{error, error_description}`, read
/// leniently (a code this agent does not know yet is still a code).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CloudErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub error_description: String,
    #[serde(default)]
    pub connect_url: Option<String>,
}

/// `GET /v1/orgs/{org}/connections/{key}`: a connection's status, never a token.
#[derive(Clone, Debug, Deserialize)]
pub struct Connection {
    #[serde(default)]
    pub id: String,
    /// `active`, `needs_reauth` or `revoked`.
    pub status: String,
    #[serde(default)]
    pub account_name: Option<String>,
    #[serde(default)]
    pub account_id: Option<String>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub connected_at: Option<String>,
}

/// `POST /oauth/device_authorization`'s answer (RFC 8628 3.2).
#[derive(Clone, Debug, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: SecretString,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default)]
    pub interval: Option<u64>,
}

/// One poll of `POST /oauth/token` (RFC 8628 3.4–3.5).
#[derive(Debug)]
pub enum DevicePoll {
    /// Approved: the device PAT.
    Granted(Pat),
    /// Not approved yet.
    Pending,
    /// Polling too fast: wait 5 s more from now on.
    SlowDown,
    /// The member denied the request.
    Denied,
    /// The code expired.
    Expired,
}

#[derive(Deserialize)]
struct DeviceToken {
    access_token: SecretString,
}

/// The HTTP client for the configured cloud.
#[derive(Debug)]
pub struct CloudClient {
    base: Url,
    http: reqwest::Client,
    pat: Option<Pat>,
    policy: RetryPolicy,
}

impl CloudClient {
    /// A client for the cloud at `base`, with the PAT to send it (if paired).
    pub fn new(base: Url, pat: Option<Pat>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent())
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::CloudUnreachable {
                url: base.as_str().trim_end_matches('/').to_owned(),
                reason: describe(&e),
            })?;
        Ok(Self { base, http, pat, policy: RetryPolicy::CLOUD })
    }

    /// Replaces the retry policy (tests use short waits).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The configured cloud URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The cloud URL for messages, without a trailing slash.
    pub fn base_display(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_owned()
    }

    /// Whether a PAT is at hand.
    pub fn is_paired(&self) -> bool {
        self.pat.is_some()
    }

    /// `{cloud}/{segments…}`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// The consent page of a connector: `{cloud}/connect/{org}/{connector_key}`.
    pub fn connect_url(&self, c: &ConnectorConfig) -> Url {
        self.url(&["connect", &c.org, &c.connector_key])
    }

    /// A request carrying the PAT. Refuses any URL that is not on the cloud's origin.
    fn with_pat(&self, method: Method, url: Url) -> Result<reqwest::RequestBuilder> {
        let pat = self.pat.as_ref().ok_or(Error::NotLoggedIn)?;
        if url.origin() != self.base.origin() {
            // Unreachable by construction; kept so a future change cannot leak the PAT.
            return Err(Error::Usage(format!(
                "refusing to send this machine's token to {}",
                url.origin().ascii_serialization()
            )));
        }
        Ok(self.http.request(method, url).bearer_auth(pat.secret().expose()))
    }

    /// Sends a prepared request with retries.
    async fn send(&self, request: &reqwest::RequestBuilder) -> Result<reqwest::Response> {
        // Our bodies are in memory, so a request always clones; `None` cannot happen.
        let fresh = || request.try_clone().unwrap_or_else(|| self.http.request(Method::GET, "about:invalid"));
        retry::send(&self.policy, fresh).await.map_err(|e| self.unreachable(&e))
    }

    fn unreachable(&self, e: &reqwest::Error) -> Error {
        Error::CloudUnreachable { url: self.base_display(), reason: describe(e) }
    }

    /// `GET /healthz`: one try.
    pub async fn healthz(&self) -> Result<()> {
        let resp = self.http.get(self.url(&["healthz"])).send().await.map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.error_from("GET /healthz", resp).await)
        }
    }

    /// `GET /v1/orgs/{org}/connections/{key}` with the PAT; `None` when not connected.
    pub async fn connection(&self, c: &ConnectorConfig) -> Result<Option<Connection>> {
        let url = self.url(&["v1", "orgs", &c.org, "connections", &c.connector_key]);
        let request = self.with_pat(Method::GET, url)?;
        let resp = self.send(&request).await?;
        match resp.status() {
            StatusCode::OK => resp.json().await.map(Some).map_err(|e| self.unreachable(&e)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.connector_error(c, "read connection status", resp).await),
        }
    }

    /// `POST /oauth/connection-token`: a provider access token for `c`, retried on
    /// timeouts and 5xx (`Retry-After` honoured).
    pub async fn connection_token(&self, c: &ConnectorConfig) -> Result<ConnectionTokenResponse> {
        let url = self.url(&["oauth", "connection-token"]);
        let body =
            ConnectionTokenRequest { org: c.org.clone(), connector_key: c.connector_key.clone(), connection: None };
        let request = self.with_pat(Method::POST, url)?.json(&body);
        let resp = self.send(&request).await?;
        if resp.status() == StatusCode::OK {
            return resp.json().await.map_err(|e| self.unreachable(&e));
        }
        Err(self.connector_error(c, "fetch access tokens", resp).await)
    }

    /// Maps an error answer about connector `c` to what the member should do.
    async fn connector_error(&self, c: &ConnectorConfig, what: &str, resp: reqwest::Response) -> Error {
        let status = resp.status();
        let retry_after = retry::retry_after(resp.headers(), SystemTime::now());
        let text = resp.text().await.unwrap_or_default();
        let body: CloudErrorBody = serde_json::from_str(&text).unwrap_or_default();
        match (status.as_u16(), body.error.as_str()) {
            (401, _) => Error::PatRejected { cloud: self.base_display() },
            (403, "insufficient_scope") => Error::PatScope { what: what.to_owned() },
            (403, "not_a_member") => Error::NotAMember { name: c.name.clone(), org: c.org.clone() },
            (404, _) => {
                Error::NotConnected { name: c.name.clone(), org: c.org.clone(), connector_key: c.connector_key.clone() }
            }
            (409, "reauth_required") => Error::ReauthRequired {
                name: c.name.clone(),
                // Shown to the member, never requested by the agent.
                connect_url: body.connect_url.unwrap_or_else(|| self.connect_url(c).to_string()),
            },
            (429, _) => Error::RateLimited { retry_after_secs: retry_after.map_or(60, |d| d.as_secs().max(1)) },
            _ => cloud_error(what, status, &body, &text),
        }
    }

    async fn error_from(&self, what: &str, resp: reqwest::Response) -> Error {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let body: CloudErrorBody = serde_json::from_str(&text).unwrap_or_default();
        cloud_error(what, status, &body, &text)
    }

    /// `POST /oauth/revoke` (RFC 7009) with this machine's PAT.
    pub async fn revoke(&self) -> Result<()> {
        let pat = self.pat.as_ref().ok_or(Error::NotLoggedIn)?;
        let form = [("token", pat.secret().expose().as_str())];
        let url = self.url(&["oauth", "revoke"]);
        let resp = retry::send(&self.policy, || self.http.post(url.clone()).form(&form))
            .await
            .map_err(|e| self.unreachable(&e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.error_from("POST /oauth/revoke", resp).await)
        }
    }

    /// `POST /oauth/device_authorization`: starts pairing.
    pub async fn device_authorization(&self) -> Result<DeviceAuthorization> {
        let url = self.url(&["oauth", "device_authorization"]);
        let resp = retry::send(&self.policy, || self.http.post(url.clone()).form(&[("client_id", CLIENT_ID)]))
            .await
            .map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(self.error_from("POST /oauth/device_authorization", resp).await);
        }
        resp.json()
            .await
            .map_err(|e| Error::Pairing(format!("the cloud's device authorization answer is not understood: {e}")))
    }

    /// One poll of `POST /oauth/token` for `device_code`.
    pub async fn poll_device(&self, device_code: &SecretString) -> Result<DevicePoll> {
        let url = self.url(&["oauth", "token"]);
        let form =
            [("grant_type", DEVICE_GRANT), ("device_code", device_code.expose().as_str()), ("client_id", CLIENT_ID)];
        let resp = retry::send(&self.policy, || self.http.post(url.clone()).form(&form))
            .await
            .map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let text = SecretString::new(resp.text().await.map_err(|e| self.unreachable(&e))?);
        if status.is_success() {
            let token: DeviceToken = serde_json::from_str(text.expose()).map_err(|_| {
                Error::Pairing("the cloud's token answer has no usable access_token; try `latchkey login` again".into())
            })?;
            let pat = Pat::parse(token.access_token.expose()).map_err(|e| {
                Error::Pairing(format!("the cloud answered with a token that is not a Latchkey PAT ({e})"))
            })?;
            return Ok(DevicePoll::Granted(pat));
        }
        let body: CloudErrorBody = serde_json::from_str(text.expose()).unwrap_or_default();
        Ok(match body.error.as_str() {
            "authorization_pending" => DevicePoll::Pending,
            "slow_down" => DevicePoll::SlowDown,
            "access_denied" => DevicePoll::Denied,
            "expired_token" => DevicePoll::Expired,
            _ => return Err(cloud_error("POST /oauth/token", status, &body, text.expose())),
        })
    }
}

fn cloud_error(what: &str, status: StatusCode, body: &CloudErrorBody, text: &str) -> Error {
    let (code, description) = if body.error.is_empty() {
        ("unexpected_answer".to_owned(), snippet(text))
    } else {
        (body.error.clone(), body.error_description.clone())
    };
    Error::Cloud { what: what.to_owned(), status: status.as_u16(), code, description }
}

/// The first line of a body, shortened, for messages.
pub fn snippet(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let mut out: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        out.push('…');
    }
    if out.is_empty() {
        out.push_str("(empty body)");
    }
    out
}

/// A transport error with its causes, without the URL (messages name it already).
pub fn describe(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    if e.is_timeout() {
        parts.push(String::from("timed out"));
    }
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        // hyper's wrappers ("client error (Connect)") say nothing the causes below do not.
        if !text.starts_with("client error") && !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(e.without_url_string());
    }
    parts.join(": ")
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            text = text.replace(&format!(" ({url})"), "").replace(url.as_str(), "");
        }
        text
    }
}

/// `latchkey/<version> (<host>)`: the cloud names a paired device after it.
fn user_agent() -> String {
    match hostname() {
        Some(host) => format!("{} ({host})", crate::USER_AGENT),
        None => crate::USER_AGENT.to_owned(),
    }
}

fn hostname() -> Option<String> {
    let name = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())?;
    let name: String =
        name.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.').take(40).collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> CloudClient {
        let url = Url::parse(base).unwrap_or_else(|e| panic!("{e}"));
        CloudClient::new(url, Some(Pat::generate())).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn urls_are_built_from_the_cloud_url_and_encoded() {
        let c = client("https://cloud.example.com/");
        assert_eq!(c.url(&["oauth", "connection-token"]).as_str(), "https://cloud.example.com/oauth/connection-token");
        assert_eq!(
            c.url(&["v1", "orgs", "a/b?c", "connections", "k#1"]).as_str(),
            "https://cloud.example.com/v1/orgs/a%2Fb%3Fc/connections/k%231"
        );
        let prefixed = client("https://example.com/latchkey");
        assert_eq!(prefixed.url(&["healthz"]).as_str(), "https://example.com/latchkey/healthz");
    }

    #[test]
    fn the_pat_is_refused_for_other_origins() {
        let c = client("http://127.0.0.1:8080/");
        let elsewhere = Url::parse("http://127.0.0.1:9090/oauth/connection-token").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.with_pat(Method::GET, elsewhere).is_err());
        let home = c.url(&["healthz"]);
        assert!(c.with_pat(Method::GET, home).is_ok());
        let unpaired = CloudClient::new(c.base().clone(), None).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(unpaired.with_pat(Method::GET, c.url(&["x"])), Err(Error::NotLoggedIn)));
    }

    #[tokio::test]
    async fn connection_status_revocation_and_health() {
        use axum::http::StatusCode as S;
        use axum::response::IntoResponse;
        use std::sync::{Arc, Mutex};
        let revoked: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = revoked.clone();
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route(
                "/oauth/revoke",
                axum::routing::post(move |body: String| {
                    let seen = seen.clone();
                    async move {
                        seen.lock().map(|mut s| s.push(body)).unwrap_or_default();
                        S::OK
                    }
                }),
            )
            .route(
                "/v1/orgs/{org}/connections/{key}",
                axum::routing::get(|axum::extract::Path((_, key)): axum::extract::Path<(String, String)>| async move {
                    match key.as_str() {
                        "sandbox" => axum::Json(serde_json::json!({"id": "c1", "connector_key": "sandbox", "status": "active",
                            "account_name": "sandbox-user", "scopes": ["profile"], "expires_at": null, "connected_at": "2024-01-01T00:00:00Z"}))
                        .into_response(),
                        "noscope" => (S::FORBIDDEN, axum::Json(serde_json::json!({"error": "insufficient_scope", "error_description": "x"})))
                            .into_response(),
                        _ => (S::NOT_FOUND, axum::Json(serde_json::json!({"error": "not_found", "error_description": "x"}))).into_response(),
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let pat = Pat::generate();
        let pat_text = pat.secret().expose().clone();
        let cloud = CloudClient::new(Url::parse(&format!("http://{addr}")).unwrap(), Some(pat)).unwrap();
        let connector = |key: &str| ConnectorConfig {
            name: "n".into(),
            kind: crate::config::Kind::Sandbox,
            org: "acme".into(),
            connector_key: key.into(),
            schedule: crate::schedule::DEFAULT,
            base_url: None,
            http_json: None,
        };
        cloud.healthz().await.unwrap();
        let active = cloud.connection(&connector("sandbox")).await.unwrap().unwrap();
        assert_eq!((active.status.as_str(), active.account_name.as_deref()), ("active", Some("sandbox-user")));
        assert!(cloud.connection(&connector("missing")).await.unwrap().is_none());
        let e = cloud.connection(&connector("noscope")).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("not allowed to read connection status") && e.contains("latchkey login"), "{e}");
        cloud.revoke().await.unwrap();
        assert_eq!(revoked.lock().unwrap().clone(), [format!("token={pat_text}")]);
        assert_eq!(cloud.connect_url(&connector("k")).as_str(), format!("http://{addr}/connect/acme/k"));
    }

    #[test]
    fn snippets_are_short() {
        assert_eq!(snippet(""), "(empty body)");
        assert_eq!(snippet("one\ntwo"), "one");
        assert_eq!(snippet(&"x".repeat(500)).chars().count(), 201);
    }
}
