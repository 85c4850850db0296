//! Provider access tokens from the cloud, cached in memory per (org, connector, connection) until
//! shortly before they expire, with one fetch in flight per key.
//!
//! When the cloud is away (unreachable, or answering 5xx: a restart, a lost replica, its
//! database down), a cached token that the provider still accepts is handed out after one
//! quick retry, so that syncs go on; a cloud failure never throws such a token away. Without
//! one, the fetch retries with backoff for as long as the caller's [`Patience`] allows.
//!
//! Tokens live only in memory (never on disk, never in a log); the PAT stays inside the
//! [`CloudClient`], which sends it only to the configured cloud.

use crate::cloud::CloudClient;
use crate::config::ConnectorConfig;
use crate::error::Result;
use crate::retry::RetryPolicy;
use latchkey_shared::secret::SecretString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A cached token is not handed out within this long of its expiry while the cloud answers.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// While the cloud is away, a cached token is handed out until this long before its expiry
/// (clocks differ a little; a provider 401 ends it sooner anyway).
pub const VALID_MARGIN: Duration = Duration::from_secs(5);
/// How long a token without `expires_at` is reused (a provider 401 ends it sooner).
pub const NO_EXPIRY_TTL: Duration = Duration::from_secs(300);
/// `latchkey run` retries a token fetch (no valid token cached) for half the connector's
/// schedule, within these bounds, then tries again at the next scheduled run.
pub const SCHEDULE_BUDGET_MIN: Duration = Duration::from_secs(5);
pub const SCHEDULE_BUDGET_MAX: Duration = Duration::from_secs(300);

/// (org, connector key, connection): each account has its own token.
type Key = (String, String, Option<String>);

#[derive(Clone)]
struct Cached {
    token: SecretString,
    /// Handed out without asking the cloud until then.
    reuse_until: Instant,
    /// Handed out while the cloud is away until then.
    valid_until: Instant,
    /// After a failed fetch, the cloud is not asked again before then (each page of a sync
    /// asks for the token; one try per page would slow the sync for nothing).
    quiet_until: Option<Instant>,
}

/// After the cloud was found away, a valid cached token is handed out without asking it
/// again for this long.
const QUIET: Duration = Duration::from_secs(5);

/// How long a fetch may retry when no valid token is cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// A command someone waits on (`latchkey sync`, `latchkey token`): the cloud client's
    /// policy ([`RetryPolicy::CLOUD`]: a few seconds).
    Command,
    /// `latchkey run`: half the connector's schedule (5 s to 5 min).
    Schedule,
}

impl Patience {
    fn policy(self, c: &ConnectorConfig, cloud: &CloudClient) -> RetryPolicy {
        match self {
            Patience::Command => *cloud.policy(),
            Patience::Schedule => RetryPolicy::within(schedule_budget(c)),
        }
    }
}

/// How long `latchkey run` retries a token fetch for `c` when no valid token is cached.
pub fn schedule_budget(c: &ConnectorConfig) -> Duration {
    (c.schedule.interval() / 2).clamp(SCHEDULE_BUDGET_MIN, SCHEDULE_BUDGET_MAX)
}

/// The token cache in front of `POST /oauth/connection-token`.
pub struct TokenClient {
    cloud: Arc<CloudClient>,
    patience: Patience,
    slots: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
    /// Until when each cached token is valid (wall clock), readable without waiting for a
    /// fetch in flight: what `latchkey run` reports during an outage.
    valid: Mutex<HashMap<Key, OffsetDateTime>>,
}

impl TokenClient {
    /// A cache for a command someone waits on.
    pub fn new(cloud: Arc<CloudClient>) -> Self {
        Self::with_patience(cloud, Patience::Command)
    }

    pub fn with_patience(cloud: Arc<CloudClient>, patience: Patience) -> Self {
        Self { cloud, patience, slots: Mutex::new(HashMap::new()), valid: Mutex::new(HashMap::new()) }
    }

    pub fn cloud(&self) -> &CloudClient {
        &self.cloud
    }

    fn key(c: &ConnectorConfig) -> Key {
        (c.org.clone(), c.connector_key.clone(), c.connection.clone())
    }

    fn slot(&self, c: &ConnectorConfig) -> Arc<tokio::sync::Mutex<Option<Cached>>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(Self::key(c)).or_default().clone()
    }

    /// Records what `slot` now holds for `c`, for [`TokenClient::valid_until`].
    fn remember(&self, c: &ConnectorConfig, cached: Option<&Cached>) {
        let mut valid = self.valid.lock().unwrap_or_else(PoisonError::into_inner);
        let left = cached.map(|hit| hit.valid_until.saturating_duration_since(Instant::now()));
        match left {
            Some(left) if !left.is_zero() => {
                valid.insert(Self::key(c), OffsetDateTime::now_utc() + left);
            }
            _ => {
                valid.remove(&Self::key(c));
            }
        }
    }

    /// Until when the token cached for `c` can be used while the cloud is away (wall
    /// clock), if one is cached and not expired.
    pub fn valid_until(&self, c: &ConnectorConfig) -> Option<OffsetDateTime> {
        let valid = self.valid.lock().unwrap_or_else(PoisonError::into_inner);
        valid.get(&Self::key(c)).copied().filter(|at| *at > OffsetDateTime::now_utc())
    }

    /// A usable access token for `c`: the cached one, or a fresh one; the cached one still
    /// when the cloud is away and it is still valid. Concurrent callers for one key wait for
    /// a single fetch.
    pub async fn token(&self, c: &ConnectorConfig) -> Result<SecretString> {
        let slot = self.slot(c);
        let mut cached = slot.lock().await;
        let now = Instant::now();
        let quiet = |hit: &Cached| hit.quiet_until.is_some_and(|q| now < q) && now < hit.valid_until;
        if let Some(hit) = cached.as_ref().filter(|hit| now < hit.reuse_until || quiet(hit)) {
            return Ok(hit.token.clone());
        }
        let fallback = cached.as_ref().filter(|hit| now < hit.valid_until).map(|hit| hit.token.clone());
        let policy =
            if fallback.is_some() { RetryPolicy::CLOUD_WITH_FALLBACK } else { self.patience.policy(c, &self.cloud) };
        match self.fetch(c, &policy).await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                *cached = Some(fresh).filter(|f| Instant::now() < f.valid_until);
                self.remember(c, cached.as_ref());
                Ok(token)
            }
            Err(e) if e.is_cloud_outage() => match fallback {
                Some(token) => {
                    if let Some(hit) = cached.as_mut() {
                        hit.quiet_until = Some(Instant::now() + QUIET);
                    }
                    Ok(token)
                }
                None => {
                    *cached = None;
                    self.remember(c, None);
                    Err(e)
                }
            },
            Err(e) => {
                // The cloud answered and refused (revoked, reconnect needed…): the
                // cached token is no longer ours to use.
                *cached = None;
                self.remember(c, None);
                Err(e)
            }
        }
    }

    /// A token fetched from the cloud now, whatever is cached (`latchkey token`). It
    /// replaces the cached one; a failure leaves the cache as it was.
    pub async fn fresh(&self, c: &ConnectorConfig) -> Result<SecretString> {
        let slot = self.slot(c);
        let mut cached = slot.lock().await;
        let fresh = self.fetch(c, &self.patience.policy(c, &self.cloud)).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh).filter(|f| Instant::now() < f.valid_until);
        self.remember(c, cached.as_ref());
        Ok(token)
    }

    /// Forgets `stale` (a provider refused it). A token another caller has fetched
    /// meanwhile is kept.
    pub async fn invalidate(&self, c: &ConnectorConfig, stale: &SecretString) {
        let slot = self.slot(c);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|hit| hit.token == *stale) {
            *cached = None;
            self.remember(c, None);
        }
    }

    async fn fetch(&self, c: &ConnectorConfig, policy: &RetryPolicy) -> Result<Cached> {
        let resp = self.cloud.connection_token_with(c, policy).await?;
        let (now_utc, now) = (OffsetDateTime::now_utc(), Instant::now());
        let expires_at = resp.expires_at.as_deref();
        Ok(Cached {
            token: resp.access_token,
            reuse_until: until(expires_at, EXPIRY_MARGIN, now_utc, now),
            valid_until: until(expires_at, VALID_MARGIN, now_utc, now),
            quiet_until: None,
        })
    }
}

/// Until when a token expiring at `expires_at` (RFC 3339, or none) may be handed out.
pub fn reuse_until(expires_at: Option<&str>, now_utc: OffsetDateTime, now: Instant) -> Instant {
    until(expires_at, EXPIRY_MARGIN, now_utc, now)
}

/// `margin` before `expires_at` (RFC 3339), as an `Instant`; [`NO_EXPIRY_TTL`] from now
/// without an expiry; now for an expiry that cannot be read (use the token once, keep it
/// not).
fn until(expires_at: Option<&str>, margin: Duration, now_utc: OffsetDateTime, now: Instant) -> Instant {
    let Some(expires_at) = expires_at else {
        return now + NO_EXPIRY_TTL;
    };
    let Ok(at) = OffsetDateTime::parse(expires_at, &Rfc3339) else {
        return now;
    };
    let left = at - now_utc - margin;
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
        /// When not 0: answer this status instead, with `Retry-After: 1` (an outage).
        down: Arc<AtomicU32>,
    }

    async fn issue(State(f): State<Fake>, headers: axum::http::HeaderMap) -> axum::response::Response {
        let n = f.hits.fetch_add(1, Ordering::SeqCst);
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(auth.starts_with("Bearer lk_pat_"), "the PAT goes to the cloud");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let down = f.down.load(Ordering::SeqCst);
        if down != 0 {
            let status = u16::try_from(down).ok().and_then(|s| StatusCode::from_u16(s).ok());
            let body = serde_json::json!({"error": "temporarily_unavailable", "error_description": "the database is unavailable"});
            return (status.unwrap_or(StatusCode::SERVICE_UNAVAILABLE), [("retry-after", "1")], axum::Json(body))
                .into_response();
        }
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
        let (tokens, hits, _) = switchable_cloud(ttl, status, Patience::Command).await;
        (tokens, hits)
    }

    /// A fake cloud that can be switched to answer an outage status.
    async fn switchable_cloud(
        ttl: i64,
        status: u16,
        patience: Patience,
    ) -> (TokenClient, Arc<AtomicU32>, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let down = Arc::new(AtomicU32::new(0));
        let app = axum::Router::new().route("/oauth/connection-token", axum::routing::post(issue)).with_state(Fake {
            hits: hits.clone(),
            ttl,
            status,
            down: down.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = Url::parse(&format!("http://{addr}")).unwrap_or_else(|e| panic!("{e}"));
        let fast = RetryPolicy { base: Duration::from_millis(5), ..RetryPolicy::CLOUD };
        let cloud = CloudClient::new(base, Some(Pat::generate())).unwrap_or_else(|e| panic!("{e}")).with_policy(fast);
        (TokenClient::with_patience(Arc::new(cloud), patience), hits, down)
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

    fn text(t: Result<SecretString>) -> String {
        t.map(|t| t.expose().clone()).unwrap_or_else(|e| format!("error: {e}"))
    }

    /// A token the provider still accepts carries syncs through an outage: handed out after
    /// one quick retry, then without asking for a while; a fresh one once the cloud is back.
    #[tokio::test]
    async fn a_valid_cached_token_carries_syncs_through_an_outage() {
        // 30 s left: never reused while the cloud answers (within the margin), yet valid.
        let (tokens, hits, down) = switchable_cloud(30, 200, Patience::Schedule).await;
        let c = connector("sandbox");
        assert_eq!(text(tokens.token(&c).await), "tok-0");
        assert_eq!(text(tokens.token(&c).await), "tok-1", "within the margin: fetched again");
        assert!(tokens.cloud().outage().is_none());

        down.store(503, Ordering::SeqCst);
        let started = Instant::now();
        assert_eq!(text(tokens.token(&c).await), "tok-1", "the cached token, not an error");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "no long wait with a token at hand: {:?}",
            started.elapsed()
        );
        assert_eq!(hits.load(Ordering::SeqCst), 4, "two tries, then the cache");
        let outage = tokens.cloud().outage().unwrap_or_else(|| panic!("the outage is noted"));
        assert!(outage.reason.contains("503"), "{}", outage.reason);
        let until = tokens.valid_until(&c).unwrap_or_else(|| panic!("the cached token's validity is known"));
        let left = until - OffsetDateTime::now_utc();
        assert!(left > time::Duration::seconds(15) && left <= time::Duration::seconds(25), "{left}");
        // Page after page, the cloud is not asked again at once.
        assert_eq!(text(tokens.token(&c).await), "tok-1");
        assert_eq!(hits.load(Ordering::SeqCst), 4);

        // Back: a fresh token, and the outage is over.
        down.store(0, Ordering::SeqCst);
        assert_eq!(text(tokens.fresh(&c).await), "tok-4");
        assert!(tokens.cloud().outage().is_none());

        // A refusal (not an outage) ends the cached token at once.
        down.store(404, Ordering::SeqCst);
        assert!(text(tokens.token(&c).await).starts_with("error: "));
        assert_eq!(tokens.valid_until(&c), None);
    }

    /// Without a valid token, `latchkey run` retries for half the schedule (at least 5 s),
    /// then says the cloud is away; `Retry-After` paces the tries.
    #[tokio::test]
    async fn without_a_token_the_daemon_retries_within_its_budget() {
        let (tokens, hits, down) = switchable_cloud(3600, 200, Patience::Schedule).await;
        down.store(503, Ordering::SeqCst);
        let mut c = connector("sandbox");
        c.schedule = crate::schedule::Schedule::parse("10s").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(schedule_budget(&c), Duration::from_secs(5));
        let started = Instant::now();
        let e = tokens.token(&c).await.err().unwrap_or_else(|| panic!("no token while the cloud is away"));
        let took = started.elapsed();
        assert!(e.is_cloud_outage(), "{e}");
        let said = e.to_string();
        assert!(said.contains("is not serving right now (it answered 503: the database is unavailable)"), "{said}");
        assert!(took >= Duration::from_secs(3) && took <= Duration::from_secs(7), "{took:?}");
        let n = hits.load(Ordering::SeqCst);
        assert!((4..=6).contains(&n), "one try a second (Retry-After: 1): {n}");
        down.store(0, Ordering::SeqCst);
        assert_eq!(text(tokens.token(&c).await), format!("tok-{n}"));
        assert!(tokens.cloud().outage().is_none());
    }
}
