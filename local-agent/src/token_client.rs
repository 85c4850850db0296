//! Provider access tokens from the cloud, cached in memory per (org, connector, connection) until
//! shortly before they expire, with one fetch in flight per key.
//!
//! Tokens live only in memory (never on disk, never in a log); the PAT stays inside the
//! [`CloudClient`], which sends it only to the configured cloud.

use crate::cloud::CloudClient;
use crate::config::ConnectorConfig;
use crate::error::Result;
use latchkey_shared::secret::SecretString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A cached token is not handed out within this long of its expiry.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// How long a token without `expires_at` is reused (a provider 401 ends it sooner).
pub const NO_EXPIRY_TTL: Duration = Duration::from_secs(300);

/// (org, connector key, connection): each account has its own token.
type Key = (String, String, Option<String>);

#[derive(Clone)]
struct Cached {
    token: SecretString,
    reuse_until: Instant,
}

/// The token cache in front of `POST /oauth/connection-token`.
pub struct TokenClient {
    cloud: Arc<CloudClient>,
    slots: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
}

impl TokenClient {
    pub fn new(cloud: Arc<CloudClient>) -> Self {
        Self { cloud, slots: Mutex::new(HashMap::new()) }
    }

    pub fn cloud(&self) -> &CloudClient {
        &self.cloud
    }

    fn slot(&self, c: &ConnectorConfig) -> Arc<tokio::sync::Mutex<Option<Cached>>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry((c.org.clone(), c.connector_key.clone(), c.connection.clone())).or_default().clone()
    }

    /// A usable access token for `c`: the cached one, or a fresh one. Concurrent callers
    /// for one key wait for a single fetch.
    pub async fn token(&self, c: &ConnectorConfig) -> Result<SecretString> {
        let slot = self.slot(c);
        let mut cached = slot.lock().await;
        if let Some(hit) = cached.as_ref().filter(|hit| Instant::now() < hit.reuse_until) {
            return Ok(hit.token.clone());
        }
        *cached = None;
        let fresh = self.fetch(c).await?;
        let token = fresh.token.clone();
        if Instant::now() < fresh.reuse_until {
            *cached = Some(fresh);
        }
        Ok(token)
    }

    /// A token fetched from the cloud now, whatever is cached (`latchkey token`). It
    /// replaces the cached one.
    pub async fn fresh(&self, c: &ConnectorConfig) -> Result<SecretString> {
        let slot = self.slot(c);
        let mut cached = slot.lock().await;
        let fresh = self.fetch(c).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh).filter(|f| Instant::now() < f.reuse_until);
        Ok(token)
    }

    /// Forgets `stale` (a provider refused it). A token another caller has fetched
    /// meanwhile is kept.
    pub async fn invalidate(&self, c: &ConnectorConfig, stale: &SecretString) {
        let slot = self.slot(c);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|hit| hit.token == *stale) {
            *cached = None;
        }
    }

    async fn fetch(&self, c: &ConnectorConfig) -> Result<Cached> {
        let resp = self.cloud.connection_token(c).await?;
        let reuse_until = reuse_until(resp.expires_at.as_deref(), OffsetDateTime::now_utc(), Instant::now());
        Ok(Cached { token: resp.access_token, reuse_until })
    }
}

/// Until when a token expiring at `expires_at` (RFC 3339, or none) may be handed out.
pub fn reuse_until(expires_at: Option<&str>, now_utc: OffsetDateTime, now: Instant) -> Instant {
    let Some(expires_at) = expires_at else {
        return now + NO_EXPIRY_TTL;
    };
    let Ok(at) = OffsetDateTime::parse(expires_at, &Rfc3339) else {
        // An expiry we cannot read: use the token once, do not keep it.
        return now;
    };
    let left = at - now_utc - EXPIRY_MARGIN;
    match Duration::try_from(left) {
        Ok(left) => now + left,
        Err(_) => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Kind;
    use crate::retry::RetryPolicy;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use latchkey_shared::Pat;
    use std::sync::atomic::{AtomicU32, Ordering};
    use url::Url;

    #[test]
    fn reuse_until_keeps_a_margin() {
        let now_utc = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap_or_else(|e| panic!("{e}"));
        let now = Instant::now();
        let at =
            |secs: i64| (now_utc + time::Duration::seconds(secs)).format(&Rfc3339).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reuse_until(Some(&at(3600)), now_utc, now), now + Duration::from_secs(3540));
        assert_eq!(reuse_until(Some(&at(61)), now_utc, now), now + Duration::from_secs(1));
        assert_eq!(reuse_until(Some(&at(30)), now_utc, now), now, "within the margin: not reused");
        assert_eq!(reuse_until(Some(&at(-30)), now_utc, now), now);
        assert_eq!(reuse_until(None, now_utc, now), now + NO_EXPIRY_TTL);
        assert_eq!(reuse_until(Some("tomorrow"), now_utc, now), now);
    }

    #[derive(Clone)]
    struct Fake {
        hits: Arc<AtomicU32>,
        /// Seconds until expiry of issued tokens.
        ttl: i64,
        status: u16,
    }

    async fn issue(State(f): State<Fake>, headers: axum::http::HeaderMap) -> axum::response::Response {
        let n = f.hits.fetch_add(1, Ordering::SeqCst);
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(auth.starts_with("Bearer lk_pat_"), "the PAT goes to the cloud");
        tokio::time::sleep(Duration::from_millis(50)).await;
        if f.status != 200 {
            let body = serde_json::json!({"error": "reauth_required", "error_description": "reconnect", "connect_url": "http://x.example/connect/acme/sbx"});
            return (StatusCode::from_u16(f.status).unwrap_or(StatusCode::OK), axum::Json(body)).into_response();
        }
        let expires = (OffsetDateTime::now_utc() + time::Duration::seconds(f.ttl)).format(&Rfc3339).unwrap_or_default();
        axum::Json(
            serde_json::json!({"access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_at": expires}),
        )
        .into_response()
    }

    async fn fake_cloud(ttl: i64, status: u16) -> (TokenClient, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let app = axum::Router::new().route("/oauth/connection-token", axum::routing::post(issue)).with_state(Fake {
            hits: hits.clone(),
            ttl,
            status,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = Url::parse(&format!("http://{addr}")).unwrap_or_else(|e| panic!("{e}"));
        let fast = RetryPolicy { base: Duration::from_millis(5), ..RetryPolicy::CLOUD };
        let cloud = CloudClient::new(base, Some(Pat::generate())).unwrap_or_else(|e| panic!("{e}")).with_policy(fast);
        (TokenClient::new(Arc::new(cloud)), hits)
    }

    fn connector(key: &str) -> ConnectorConfig {
        ConnectorConfig {
            name: "sbx".into(),
            kind: Kind::Sandbox,
            org: "acme".into(),
            connector_key: key.into(),
            connection: None,
            schedule: crate::schedule::DEFAULT,
            base_url: None,
            http_json: None,
        }
    }

    #[tokio::test]
    async fn cached_per_key_with_one_fetch_in_flight() {
        let (tokens, hits) = fake_cloud(3600, 200).await;
        let c = connector("sandbox");
        let all = futures_join(&tokens, &c, 8).await;
        assert!(all.iter().all(|t| t == "tok-0"), "{all:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 1, "eight callers, one fetch");
        // Another connector key is another cache entry.
        let other = tokens.token(&connector("other")).await.map(|t| t.expose().clone()).unwrap_or_default();
        assert_eq!(other, "tok-1");
        // A refused token is dropped; the next call fetches again.
        tokens.invalidate(&c, &SecretString::from("not-the-cached-one")).await;
        assert_eq!(tokens.token(&c).await.map(|t| t.expose().clone()).unwrap_or_default(), "tok-0");
        tokens.invalidate(&c, &SecretString::from("tok-0")).await;
        assert_eq!(tokens.token(&c).await.map(|t| t.expose().clone()).unwrap_or_default(), "tok-2");
        // `fresh` always asks.
        assert_eq!(tokens.fresh(&c).await.map(|t| t.expose().clone()).unwrap_or_default(), "tok-3");
        assert_eq!(tokens.token(&c).await.map(|t| t.expose().clone()).unwrap_or_default(), "tok-3");
    }

    async fn futures_join(tokens: &TokenClient, c: &ConnectorConfig, n: usize) -> Vec<String> {
        let mut set = Vec::new();
        for _ in 0..n {
            set.push(tokens.token(c));
        }
        let mut out = Vec::new();
        // Poll them together: a join of all futures.
        let results = join_all(set).await;
        for r in results {
            out.push(r.map(|t| t.expose().clone()).unwrap_or_else(|e| e.to_string()));
        }
        out
    }

    async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
        let mut pinned: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
        let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (f, out) in pinned.iter_mut().zip(outputs.iter_mut()) {
                if out.is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => *out = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        outputs.into_iter().flatten().collect()
    }

    #[tokio::test]
    async fn a_token_about_to_expire_is_not_reused() {
        let (tokens, hits) = fake_cloud(30, 200).await;
        let c = connector("sandbox");
        let first = tokens.token(&c).await.map(|t| t.expose().clone()).unwrap_or_default();
        let second = tokens.token(&c).await.map(|t| t.expose().clone()).unwrap_or_default();
        assert_ne!(first, second);
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn reauth_required_names_the_connect_url_and_the_command() {
        let (tokens, hits) = fake_cloud(3600, 409).await;
        let e = tokens.token(&connector("sandbox")).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("http://x.example/connect/acme/sbx") && e.contains("latchkey connect sbx"), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 1, "a 409 is not retried");
    }

    #[tokio::test]
    async fn errors_say_what_to_do() {
        let (tokens, hits) = fake_cloud(3600, 401).await;
        let e = tokens.token(&connector("sandbox")).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("latchkey login"), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let (tokens, hits) = fake_cloud(3600, 503).await;
        let e = tokens.token(&connector("sandbox")).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("503"), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 4, "5xx is retried, four tries in all");
    }
}
