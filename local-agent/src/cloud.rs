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
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;
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
    /// Only on `ambiguous_connection`: the labels to choose from.
    #[serde(default)]
    pub connections: Option<Vec<String>>,
}

/// `GET /v1/orgs/{org}/connections/{key}` (and the lists): a connection's status, never
/// a token.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Connection {
    #[serde(default)]
    pub id: String,
    /// The org's slug.
    #[serde(default)]
    pub org: String,
    #[serde(default)]
    pub connector_key: String,
    /// The member's name for this account (a cloud without labels sends none).
    #[serde(default)]
    pub label: Option<String>,
    /// `active`, `failing`, `needs_reauth`, `exhausted` or `revoked`.
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

/// `GET /v1/orgs/{org}/connectors`: one connector of an org, as a member sees it.
#[derive(Clone, Debug, Deserialize)]
pub struct OrgConnector {
    pub key: String,
    #[serde(default)]
    pub display_name: String,
}

/// `GET /v1/orgs`: one org (needs `orgs:read`, which a device token does not have).
#[derive(Clone, Debug, Deserialize)]
struct OrgEntry {
    slug: String,
}

#[derive(Deserialize)]
struct DeviceToken {
    access_token: SecretString,
}

/// The cloud has been away (unreachable, or answering 5xx) since `since`, as this client
/// saw it: the start of the first request that failed, retries included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outage {
    pub since: OffsetDateTime,
    /// What the latest failed request met (no URL, no secret).
    pub reason: String,
}

/// The HTTP client for the configured cloud.
#[derive(Debug)]
pub struct CloudClient {
    base: Url,
    http: reqwest::Client,
    pat: Option<Pat>,
    policy: RetryPolicy,
    /// The config file, named in messages that say which line to add.
    config_file: Option<String>,
    /// The current outage, if the last request found the cloud away. Every request through
    /// [`CloudClient::send_with`] updates it, so `latchkey run` reports an outage (and the
    /// recovery) once, whichever of its requests met it first.
    outage: Mutex<Option<Outage>>,
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
        Ok(Self { base, http, pat, policy: RetryPolicy::CLOUD, config_file: None, outage: Mutex::new(None) })
    }

    /// Names the config file in messages that tell which line to add to it.
    pub fn with_config_file(mut self, path: &std::path::Path) -> Self {
        self.config_file = Some(path.display().to_string());
        self
    }

    /// Replaces the retry policy (tests use short waits).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How requests to the cloud are retried unless a caller says otherwise.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
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

    /// The consent page of a connector: `{cloud}/connect/{org}/{connector_key}`, naming the
    /// configured connection (to reconnect that account).
    pub fn connect_url(&self, c: &ConnectorConfig) -> Url {
        let mut url = self.url(&["connect", &c.org, &c.connector_key]);
        if let Some(connection) = &c.connection {
            url.query_pairs_mut().append_pair("connection", connection);
        }
        url
    }

    /// The consent page for another account on a connector: `…?add=1`.
    pub fn add_url(&self, c: &ConnectorConfig) -> Url {
        let mut url = self.url(&["connect", &c.org, &c.connector_key]);
        url.query_pairs_mut().append_pair("add", "1");
        url
    }

    /// `{cloud}/v1/orgs/{org}/connections/{key}`, with `?connection=` when the config names one.
    fn connection_url(&self, c: &ConnectorConfig) -> Url {
        let mut url = self.url(&["v1", "orgs", &c.org, "connections", &c.connector_key]);
        if let Some(connection) = &c.connection {
            url.query_pairs_mut().append_pair("connection", connection);
        }
        url
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
        self.send_with(&self.policy, request).await
    }

    /// Sends a prepared request with retries per `policy`, and notes whether the cloud
    /// answered (any status below 500) or is away.
    async fn send_with(&self, policy: &RetryPolicy, request: &reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let started = OffsetDateTime::now_utc();
        // Our bodies are in memory, so a request always clones; `None` cannot happen.
        let fresh = || request.try_clone().unwrap_or_else(|| self.http.request(Method::GET, "about:invalid"));
        let result = retry::send(policy, fresh).await;
        match &result {
            Ok(resp) if resp.status().is_server_error() => {
                self.note_away(started, format!("it answered {}", resp.status()));
            }
            Ok(_) => self.note_back(),
            Err(e) => self.note_away(started, describe(e)),
        }
        result.map_err(|e| self.unreachable(&e))
    }

    fn note_away(&self, started: OffsetDateTime, reason: String) {
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        match outage.as_mut() {
            Some(o) => o.reason = reason,
            None => *outage = Some(Outage { since: started, reason }),
        }
    }

    fn note_back(&self) {
        *self.outage.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The current outage, if the latest request found the cloud away.
    pub fn outage(&self) -> Option<Outage> {
        self.outage.lock().unwrap_or_else(PoisonError::into_inner).clone()
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
        let request = self.with_pat(Method::GET, self.connection_url(c))?;
        let resp = self.send(&request).await?;
        match resp.status() {
            StatusCode::OK => resp.json().await.map(Some).map_err(|e| self.unreachable(&e)),
            StatusCode::NOT_FOUND => match self.diagnose_not_found(c).await? {
                Error::NotConnected { .. } => Ok(None),
                other => Err(other),
            },
            _ => Err(self.connector_error(c, "read connection status", resp).await),
        }
    }

    /// `GET /v1/connections`: the member's connections in every org. Cheap, and a 401
    /// here is the sure sign that this machine's token was revoked.
    pub async fn connections(&self) -> Result<Vec<Connection>> {
        self.connections_with(&self.policy).await
    }

    /// [`CloudClient::connections`] with one try, for a poll that comes again soon.
    pub async fn connections_polled(&self) -> Result<Vec<Connection>> {
        self.connections_with(&RetryPolicy::CLOUD_POLL).await
    }

    async fn connections_with(&self, policy: &RetryPolicy) -> Result<Vec<Connection>> {
        let request = self.with_pat(Method::GET, self.url(&["v1", "connections"]))?;
        let resp = self.send_with(policy, &request).await?;
        match resp.status() {
            StatusCode::OK => resp.json().await.map_err(|e| self.unreachable(&e)),
            StatusCode::UNAUTHORIZED => Err(Error::PatRejected { cloud: self.base_display() }),
            StatusCode::FORBIDDEN => Err(Error::PatScope { what: "list your connections".into() }),
            _ => Err(self.error_from("GET /v1/connections", resp).await),
        }
    }

    /// The member's connections on `c`'s connector (every account), from
    /// `GET /v1/orgs/{org}/connections`.
    pub async fn connections_on(&self, c: &ConnectorConfig) -> Result<Vec<Connection>> {
        let url = self.url(&["v1", "orgs", &c.org, "connections"]);
        let request = self.with_pat(Method::GET, url)?;
        let resp = self.send(&request).await?;
        if resp.status() != StatusCode::OK {
            return Err(self.connector_error(c, "read connection status", resp).await);
        }
        let all: Vec<Connection> = resp.json().await.map_err(|e| self.unreachable(&e))?;
        Ok(all.into_iter().filter(|conn| conn.connector_key == c.connector_key).collect())
    }

    /// `GET /v1/orgs/{org}/connectors`: the connectors the member can connect in `c`'s org.
    pub async fn org_connectors(&self, c: &ConnectorConfig) -> Result<Vec<OrgConnector>> {
        let url = self.url(&["v1", "orgs", &c.org, "connectors"]);
        let request = self.with_pat(Method::GET, url)?;
        let resp = self.send(&request).await?;
        match resp.status() {
            StatusCode::OK => resp.json().await.map_err(|e| self.unreachable(&e)),
            StatusCode::NOT_FOUND => Err(self.unknown_org(c).await),
            _ => Err(self.connector_error(c, "list the org's connectors", resp).await),
        }
    }

    /// Checks that `c`'s org and connector exist for this member, so that a typo fails at
    /// once with what exists instead.
    pub async fn check_connector(&self, c: &ConnectorConfig) -> Result<()> {
        let connectors = self.org_connectors(c).await?;
        if connectors.iter().any(|k| k.key == c.connector_key) {
            Ok(())
        } else {
            Err(Error::UnknownConnector {
                name: c.name.clone(),
                org: c.org.clone(),
                connector_key: c.connector_key.clone(),
                available: connectors.into_iter().map(|k| k.key).collect(),
                file: self.config_file_display(),
            })
        }
    }

    /// What a 404 about `c` means: no such org, no such connector, no such connection
    /// (label), or simply not connected yet.
    pub async fn diagnose_not_found(&self, c: &ConnectorConfig) -> Result<Error> {
        let not_connected =
            Error::NotConnected { name: c.name.clone(), org: c.org.clone(), connector_key: c.connector_key.clone() };
        match self.check_connector(c).await {
            Ok(()) => {}
            Err(e @ (Error::UnknownOrg { .. } | Error::UnknownConnector { .. } | Error::NotAMember { .. })) => {
                return Ok(e)
            }
            Err(e @ (Error::PatRejected { .. } | Error::CloudUnreachable { .. } | Error::CloudUnavailable { .. })) => {
                return Err(e)
            }
            // Anything else (an older cloud, a token without the scope): say what the 404 says.
            Err(_) => return Ok(not_connected),
        }
        let Some(wanted) = &c.connection else {
            return Ok(not_connected);
        };
        match self.connections_on(c).await {
            Ok(held) if !held.is_empty() => Ok(Error::UnknownConnection {
                name: c.name.clone(),
                connection: wanted.clone(),
                labels: held.iter().map(Connection::display_label).collect(),
                file: self.config_file_display(),
            }),
            _ => Ok(not_connected),
        }
    }

    /// "No such org", with the orgs the member can see: every org where `GET /v1/orgs`
    /// answers (a PAT with `orgs:read`), else the orgs of the member's connections.
    async fn unknown_org(&self, c: &ConnectorConfig) -> Error {
        let mut orgs: Vec<String> = Vec::new();
        if let Ok(request) = self.with_pat(Method::GET, self.url(&["v1", "orgs"])) {
            if let Ok(resp) = self.send(&request).await {
                if resp.status() == StatusCode::OK {
                    if let Ok(list) = resp.json::<Vec<OrgEntry>>().await {
                        orgs = list.into_iter().map(|o| o.slug).collect();
                    }
                }
            }
        }
        if orgs.is_empty() {
            if let Ok(connections) = self.connections().await {
                orgs = connections.into_iter().map(|c| c.org).filter(|o| !o.is_empty()).collect();
            }
        }
        orgs.sort();
        orgs.dedup();
        Error::UnknownOrg {
            name: c.name.clone(),
            org: c.org.clone(),
            suggestions: orgs,
            file: self.config_file_display(),
        }
    }

    fn config_file_display(&self) -> String {
        self.config_file.clone().unwrap_or_else(|| String::from("your latchkey.toml"))
    }

    /// `DELETE /v1/orgs/{org}/connections/{key}`: disconnects on the cloud, which revokes
    /// the grant at the provider.
    pub async fn disconnect(&self, c: &ConnectorConfig) -> Result<()> {
        let request = self.with_pat(Method::DELETE, self.connection_url(c))?;
        let resp = self.send(&request).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(self.connector_error(c, "disconnect", resp).await)
    }

    /// `PATCH /v1/orgs/{org}/connections/{key}` `{connection, label}`: names an account.
    pub async fn relabel(&self, c: &ConnectorConfig, connection_id: &str, label: &str) -> Result<Connection> {
        let url = self.url(&["v1", "orgs", &c.org, "connections", &c.connector_key]);
        let body = serde_json::json!({ "connection": connection_id, "label": label });
        let request = self.with_pat(Method::PATCH, url)?.json(&body);
        let resp = self.send(&request).await?;
        if resp.status() == StatusCode::OK {
            return resp.json().await.map_err(|e| self.unreachable(&e));
        }
        Err(self.connector_error(c, "name the connection", resp).await)
    }

    /// `POST /oauth/connection-token`: a provider access token for `c`, retried on
    /// timeouts and 5xx (`Retry-After` honoured).
    pub async fn connection_token(&self, c: &ConnectorConfig) -> Result<ConnectionTokenResponse> {
        self.connection_token_with(c, &self.policy).await
    }

    /// [`CloudClient::connection_token`], retried per `policy`. The request is idempotent
    /// (the cloud returns the same token or a fresher one), so retrying it is safe.
    pub async fn connection_token_with(
        &self,
        c: &ConnectorConfig,
        policy: &RetryPolicy,
    ) -> Result<ConnectionTokenResponse> {
        let url = self.url(&["oauth", "connection-token"]);
        let body = ConnectionTokenRequest {
            org: c.org.clone(),
            connector_key: c.connector_key.clone(),
            connection: c.connection.clone(),
        };
        let request = self.with_pat(Method::POST, url)?.json(&body);
        let resp = self.send_with(policy, &request).await?;
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
            (404, _) => match Box::pin(self.diagnose_not_found(c)).await {
                Ok(e) | Err(e) => e,
            },
            (409, "ambiguous_connection") => Error::AmbiguousConnection {
                name: c.name.clone(),
                labels: body.connections.unwrap_or_default(),
                file: self.config_file_display(),
            },
            (409, "reauth_required") => Error::ReauthRequired {
                name: c.name.clone(),
                // Shown to the member, never requested by the agent.
                connect_url: body.connect_url.unwrap_or_else(|| self.connect_url(c).to_string()),
            },
            (429, _) => Error::RateLimited { retry_after_secs: retry_after.map_or(60, |d| d.as_secs().max(1)) },
            (500..=599, _) => self.unavailable(status, &body),
            _ => cloud_error(what, status, &body, &text),
        }
    }

    async fn error_from(&self, what: &str, resp: reqwest::Response) -> Error {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let body: CloudErrorBody = serde_json::from_str(&text).unwrap_or_default();
        if status.is_server_error() {
            return self.unavailable(status, &body);
        }
        cloud_error(what, status, &body, &text)
    }

    /// A 5xx after retries. Only the contract's description is shown: a balancer's HTML
    /// error page says nothing useful.
    fn unavailable(&self, status: StatusCode, body: &CloudErrorBody) -> Error {
        Error::CloudUnavailable {
            url: self.base_display(),
            status: status.as_u16(),
            description: body.error_description.clone(),
        }
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

impl Connection {
    /// The connection's label, else its account name, else its id: how the member knows it.
    pub fn display_label(&self) -> String {
        self.label.clone().or_else(|| self.account_name.clone()).unwrap_or_else(|| self.id.clone())
    }
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
                "/v1/orgs/{org}/connectors",
                axum::routing::get(|| async {
                    axum::Json(serde_json::json!([{"key": "sandbox"}, {"key": "missing"}, {"key": "noscope"}]))
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
            connection: None,
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
