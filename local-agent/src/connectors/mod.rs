//! Connectors: each pages through one provider API with a provider access token and
//! turns the answers into [`Event`]s.
//!
//! A connector's requests go through [`ProviderHttp`], which carries only the provider
//! access token it is handed — never the PAT — and follows redirects only on the same
//! origin. A connector that reads a URL from a response (a `Link` header, a `next` field)
//! follows it only on the origin of its configured API.

pub mod github;
pub mod http_json;
pub mod sandbox;
pub mod spotify;

use crate::cloud::{describe, snippet};
use crate::config::{ConnectorConfig, Kind};
use crate::error::{Error, Result};
use crate::retry::{self, RetryPolicy};
use latchkey_shared::secret::SecretString;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::StatusCode;
use std::future::Future;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use url::Url;

/// A provider request gives up after this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One item synced from a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The provider's id of the item, unique within the connector.
    pub external_id: String,
    /// When it happened, as fixed-width RFC 3339 UTC (`2024-01-02T03:04:05.000Z`).
    pub occurred_at: Option<String>,
    /// The item as the provider sent it (JSON).
    pub payload: String,
}

/// One page of items and where the next page starts (`None`: this was the last).
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub items: Vec<Event>,
    pub next_cursor: Option<String>,
    /// How many items the whole stream holds, where the API says (for the progress bar).
    pub total: Option<u64>,
}

/// What a sync does when a page brought nothing new (and an earlier sync finished).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaughtUp {
    /// Keep walking: pages are not ordered newest first.
    Continue,
    /// Everything older in this stream is stored: go on at this cursor (`None`: done).
    Jump(Option<String>),
}

/// A provider API walked page by page, newest first where the API allows.
pub trait Connector: Send + Sync {
    /// Fetches the page at `cursor` (`None`: the first, newest page).
    fn fetch_page(
        &self,
        http: &ProviderHttp,
        token: &SecretString,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<Page>> + Send;

    /// Where to go once the page fetched at `cursor` added nothing new.
    fn caught_up(&self, cursor: Option<&str>) -> CaughtUp;
}

/// The connector a `[[connector]]` entry describes.
pub enum AnyConnector {
    Sandbox(sandbox::Sandbox),
    Github(github::Github),
    Spotify(spotify::Spotify),
    HttpJson(http_json::HttpJson),
}

impl AnyConnector {
    /// Builds the connector of `c`; `cloud_url` is the sandbox's default home.
    pub fn from_config(c: &ConnectorConfig, cloud_url: &Url) -> Result<Self> {
        Ok(match c.kind {
            Kind::Sandbox => AnyConnector::Sandbox(sandbox::Sandbox::new(c.base_url.clone().unwrap_or_else(|| {
                let mut url = cloud_url.clone();
                if let Ok(mut path) = url.path_segments_mut() {
                    path.pop_if_empty().push("sandbox");
                }
                url
            }))),
            Kind::Github => AnyConnector::Github(github::Github::new(base_or(c, github::DEFAULT_BASE)?)),
            Kind::Spotify => AnyConnector::Spotify(spotify::Spotify::new(base_or(c, spotify::DEFAULT_BASE)?)),
            Kind::HttpJson => {
                let settings = c.http_json.clone().ok_or_else(|| {
                    Error::Config(format!("connector `{}` is kind = \"http-json\" but has no url/items/id", c.name))
                })?;
                AnyConnector::HttpJson(http_json::HttpJson::new(settings))
            }
        })
    }
}

fn base_or(c: &ConnectorConfig, default: &str) -> Result<Url> {
    match &c.base_url {
        Some(url) => Ok(url.clone()),
        None => Url::parse(default).map_err(|e| Error::Config(format!("built-in base URL {default}: {e}"))),
    }
}

impl Connector for AnyConnector {
    async fn fetch_page(&self, http: &ProviderHttp, token: &SecretString, cursor: Option<&str>) -> Result<Page> {
        match self {
            AnyConnector::Sandbox(c) => c.fetch_page(http, token, cursor).await,
            AnyConnector::Github(c) => c.fetch_page(http, token, cursor).await,
            AnyConnector::Spotify(c) => c.fetch_page(http, token, cursor).await,
            AnyConnector::HttpJson(c) => c.fetch_page(http, token, cursor).await,
        }
    }

    fn caught_up(&self, cursor: Option<&str>) -> CaughtUp {
        match self {
            AnyConnector::Sandbox(c) => c.caught_up(cursor),
            AnyConnector::Github(c) => c.caught_up(cursor),
            AnyConnector::Spotify(c) => c.caught_up(cursor),
            AnyConnector::HttpJson(c) => c.caught_up(cursor),
        }
    }
}

/// A provider's answer: headers and body.
pub struct ProviderResponse {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The HTTP client connectors use: the provider access token only, same-origin redirects
/// only, a timeout, and retries on timeouts, 5xx and 429 (`Retry-After` honoured).
pub struct ProviderHttp {
    client: reqwest::Client,
    connector: String,
    policy: RetryPolicy,
}

impl ProviderHttp {
    pub fn new(connector: &str) -> Result<Self> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let same = attempt.previous().first().is_some_and(|first| same_origin(first, attempt.url()));
            if same && attempt.previous().len() < 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let client = reqwest::Client::builder()
            .user_agent(crate::USER_AGENT)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .redirect(policy)
            .build()
            .map_err(|e| Error::ProviderUnreachable {
                connector: connector.to_owned(),
                url: String::new(),
                reason: describe(&e),
            })?;
        Ok(Self { client, connector: connector.to_owned(), policy: RetryPolicy::PROVIDER })
    }

    /// Replaces the retry policy (tests use short waits).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn connector(&self) -> &str {
        &self.connector
    }

    /// `GET url` with `Authorization: Bearer <token>` and the given extra headers.
    /// A 401 is [`Error::ProviderUnauthorized`], so the sync can fetch a new token.
    pub async fn get(
        &self,
        url: &Url,
        token: &SecretString,
        headers: &[(&'static str, &str)],
    ) -> Result<ProviderResponse> {
        let mut extra = HeaderMap::new();
        extra.insert(ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                extra.insert(*name, v);
            }
        }
        let build = || self.client.get(url.clone()).bearer_auth(token.expose()).headers(extra.clone());
        let resp = retry::send(&self.policy, build).await.map_err(|e| self.unreachable(url, &e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| self.unreachable(url, &e))?.to_vec();
        if status.is_success() {
            return Ok(ProviderResponse { headers, body });
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(Error::ProviderUnauthorized { connector: self.connector.clone() });
        }
        let detail = if status.is_redirection() {
            match headers.get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()) {
                Some(to) => format!("a redirect to {to}, which is not followed (another origin)"),
                None => "a redirect without a Location".to_owned(),
            }
        } else {
            snippet(&String::from_utf8_lossy(&body))
        };
        Err(Error::Provider {
            connector: self.connector.clone(),
            status: status.as_u16(),
            url: display_url(url),
            detail,
        })
    }

    fn unreachable(&self, url: &Url, e: &reqwest::Error) -> Error {
        Error::ProviderUnreachable { connector: self.connector.clone(), url: display_url(url), reason: describe(e) }
    }

    /// A connector error about a response it does not understand.
    pub fn bad_answer(&self, url: &Url, what: impl std::fmt::Display) -> Error {
        Error::Connector { connector: self.connector.clone(), message: format!("{} answered {what}", display_url(url)) }
    }
}

/// A URL for messages, without its query (which may carry cursors).
fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Whether `a` and `b` share scheme, host and port.
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

/// RFC 3339 text as fixed-width UTC with milliseconds, so text order is time order.
/// `None` when it is not RFC 3339.
pub fn normalize_time(text: &str) -> Option<String> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).ok().map(crate::store::fixed_utc)
}

/// An id from JSON: a string as it is, a number as written.
pub fn id_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A JSON id that may be a string or a number (for typed, borrowed parsing).
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub enum IdValue<'a> {
    Str(#[serde(borrow)] std::borrow::Cow<'a, str>),
    Num(serde_json::Number),
}

impl IdValue<'_> {
    pub fn text(&self) -> String {
        match self {
            IdValue::Str(s) => s.to_string(),
            IdValue::Num(n) => n.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_normalise_to_fixed_width_utc() {
        assert_eq!(normalize_time("2023-01-01T00:00:00Z").as_deref(), Some("2023-01-01T00:00:00.000Z"));
        assert_eq!(normalize_time("2024-05-06T07:08:09.123456Z").as_deref(), Some("2024-05-06T07:08:09.123Z"));
        assert_eq!(normalize_time("2024-05-06T09:08:09+02:00").as_deref(), Some("2024-05-06T07:08:09.000Z"));
        assert_eq!(normalize_time("yesterday"), None);
        assert_eq!(normalize_time("2024-05-06"), None);
    }

    #[test]
    fn origins() {
        let u = |s: &str| Url::parse(s).unwrap_or_else(|e| panic!("{e}"));
        assert!(same_origin(&u("https://a.example/x"), &u("https://a.example:443/y?z")));
        assert!(!same_origin(&u("https://a.example/x"), &u("http://a.example/x")));
        assert!(!same_origin(&u("https://a.example/x"), &u("https://b.a.example/x")));
        assert!(!same_origin(&u("http://127.0.0.1:1/x"), &u("http://127.0.0.1:2/x")));
    }

    #[test]
    fn ids() {
        assert_eq!(id_text(&serde_json::json!("a1")).as_deref(), Some("a1"));
        assert_eq!(id_text(&serde_json::json!(42)).as_deref(), Some("42"));
        assert_eq!(id_text(&serde_json::json!("")), None);
        assert_eq!(id_text(&serde_json::json!(null)), None);
        assert_eq!(id_text(&serde_json::json!({"a": 1})), None);
    }

    #[test]
    fn the_sandbox_lives_under_the_cloud_by_default() {
        let c = ConnectorConfig {
            name: "s".into(),
            kind: Kind::Sandbox,
            org: "o".into(),
            connector_key: "k".into(),
            connection: None,
            schedule: crate::schedule::DEFAULT,
            base_url: None,
            http_json: None,
        };
        let cloud = Url::parse("http://127.0.0.1:8080/").unwrap_or_else(|e| panic!("{e}"));
        match AnyConnector::from_config(&c, &cloud) {
            Ok(AnyConnector::Sandbox(s)) => assert_eq!(s.base().as_str(), "http://127.0.0.1:8080/sandbox"),
            _ => panic!("a sandbox connector"),
        }
    }
}
