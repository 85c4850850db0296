//! One sync run of one connector: resume at the stored cursor (or start at the newest
//! page), fetch page after page with a cached access token, and commit each page with its
//! cursor in one transaction. The next page is fetched while the current one is written.
//!
//! A provider 401 drops the cached token and the page is fetched once more with a new
//! one. Once a connector has finished a walk, a later run stops as soon as a page brings
//! nothing new (for providers that list newest first); `--full` walks everything.

use crate::config::ConnectorConfig;
use crate::connectors::{AnyConnector, CaughtUp, Connector, Page, ProviderHttp};
use crate::error::{Error, Result};
use crate::progress::{Counts, Progress};
use crate::shutdown::Shutdown;
use crate::store::{RunStatus, Store};
use crate::token_client::TokenClient;
use std::time::{Duration, Instant};
use url::Url;

/// How a run is asked to go.
#[derive(Clone, Copy, Debug, Default)]
pub struct SyncOptions {
    /// Walk every page even when caught up.
    pub full: bool,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Walked to the last page.
    Completed,
    /// Stopped at the first page with nothing new: everything older was stored already.
    CaughtUp,
    /// Stopped by a signal after finishing a page; the next run resumes there.
    Interrupted,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct SyncReport {
    pub connector: String,
    pub outcome: Outcome,
    pub counts: Counts,
    /// Whether it resumed an unfinished walk.
    pub resumed: bool,
    pub elapsed: Duration,
}

impl SyncReport {
    /// New events per second.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.counts.added as f64 / secs
        } else {
            0.0
        }
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        let how = match self.outcome {
            Outcome::Completed => "done",
            Outcome::CaughtUp => "up to date",
            Outcome::Interrupted => "interrupted; the next sync resumes where this one stopped",
        };
        format!(
            "{}: {} new event{} ({} fetched in {} page{}, {:.1} s, {:.0} new/s{}); {how}",
            self.connector,
            self.counts.added,
            if self.counts.added == 1 { "" } else { "s" },
            self.counts.fetched,
            self.counts.pages,
            if self.counts.pages == 1 { "" } else { "s" },
            self.elapsed.as_secs_f64(),
            self.rate(),
            if self.resumed { ", resumed" } else { "" },
        )
    }
}

/// What one sync needs.
pub struct SyncContext<'a> {
    pub cloud_url: &'a Url,
    pub tokens: &'a TokenClient,
    pub store: &'a Store,
    pub stop: &'a Shutdown,
}

/// Runs one sync of `c`, recording it in `sync_runs`.
pub async fn sync_once(
    ctx: &SyncContext<'_>,
    c: &ConnectorConfig,
    options: SyncOptions,
    progress: &mut Progress,
) -> Result<SyncReport> {
    let connector = AnyConnector::from_config(c, ctx.cloud_url)?;
    let http = ProviderHttp::new(&c.name)?;
    let run = ctx.store.start_run(&c.name).await?;
    let started = Instant::now();
    let mut tally = Tally::default();
    let walk = Walk { ctx, c, connector: &connector, http: &http };
    let result = walk.run(options, progress, &mut tally).await;
    let Tally { counts, resumed } = tally;
    progress.finish();
    let (status, error) = match &result {
        Ok(Outcome::Interrupted) => (RunStatus::Interrupted, None),
        Ok(_) => (RunStatus::Completed, None),
        Err(e) => (RunStatus::Failed, Some(e.to_string())),
    };
    ctx.store.finish_run(run, status, counts.added, error.as_deref()).await?;
    let outcome = result?;
    Ok(SyncReport { connector: c.name.clone(), outcome, counts, resumed, elapsed: started.elapsed() })
}

/// What a run has done so far (kept when it fails, for `sync_runs`).
#[derive(Default)]
struct Tally {
    counts: Counts,
    resumed: bool,
}

/// One walk through a connector's pages.
struct Walk<'a> {
    ctx: &'a SyncContext<'a>,
    c: &'a ConnectorConfig,
    connector: &'a AnyConnector,
    http: &'a ProviderHttp,
}

impl Walk<'_> {
    async fn run(&self, options: SyncOptions, progress: &mut Progress, tally: &mut Tally) -> Result<Outcome> {
        let Walk { ctx, c, connector, http } = *self;
        let counts = &mut tally.counts;
        let store = ctx.store;
        let mut cursor = store.resume_cursor(&c.name).await?;
        tally.resumed = cursor.is_some();
        let may_stop_early = !options.full && store.has_completed_run(&c.name).await?;
        let fetch = |cursor: Option<String>| async move {
            tokio::select! {
                page = fetch_page(ctx.tokens, c, connector, http, cursor.as_deref()) => page.map(Some),
                () = ctx.stop.wait() => Ok(None),
            }
        };
        let Some(mut page) = fetch(cursor.clone()).await? else {
            return Ok(Outcome::Interrupted);
        };
        loop {
            let next = page.next_cursor.clone();
            // Write this page while the next one is on its way.
            let commit = store.commit_page(&c.name, &page.items, next.as_deref());
            let (added, prefetched) = match &next {
                Some(n) if !ctx.stop.requested() => {
                    let (added, prefetched) = tokio::join!(commit, fetch(Some(n.clone())));
                    (added?, Some(prefetched))
                }
                _ => (commit.await?, None),
            };
            counts.pages += 1;
            counts.fetched += page.items.len() as u64;
            counts.added += added;
            counts.total = page.total.or(counts.total);
            progress.page(*counts);

            if next.is_none() {
                return Ok(Outcome::Completed);
            }
            if may_stop_early && added == 0 && !page.items.is_empty() {
                match connector.caught_up(cursor.as_deref()) {
                    CaughtUp::Continue => {}
                    CaughtUp::Jump(None) => {
                        store.clear_cursor(&c.name).await?;
                        return Ok(Outcome::CaughtUp);
                    }
                    CaughtUp::Jump(Some(jump)) => {
                        store.commit_page(&c.name, &[], Some(&jump)).await?;
                        if ctx.stop.requested() {
                            return Ok(Outcome::Interrupted);
                        }
                        let Some(jumped) = fetch(Some(jump.clone())).await? else {
                            return Ok(Outcome::Interrupted);
                        };
                        cursor = Some(jump);
                        page = jumped;
                        continue;
                    }
                }
            }
            if ctx.stop.requested() {
                return Ok(Outcome::Interrupted);
            }
            page = match prefetched {
                Some(fetched) => match fetched? {
                    Some(page) => page,
                    None => return Ok(Outcome::Interrupted),
                },
                None => match fetch(next.clone()).await? {
                    Some(page) => page,
                    None => return Ok(Outcome::Interrupted),
                },
            };
            cursor = next;
        }
    }
}

/// Fetches a page with a cached token; on a provider 401, once more with a new token.
async fn fetch_page(
    tokens: &TokenClient,
    c: &ConnectorConfig,
    connector: &AnyConnector,
    http: &ProviderHttp,
    cursor: Option<&str>,
) -> Result<Page> {
    let token = tokens.token(c).await?;
    match connector.fetch_page(http, &token, cursor).await {
        Err(Error::ProviderUnauthorized { .. }) => {
            tokens.invalidate(c, &token).await;
            let token = tokens.token(c).await?;
            connector.fetch_page(http, &token, cursor).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::CloudClient;
    use crate::config::{HttpJsonConfig, Kind};
    use crate::retry::RetryPolicy;
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use latchkey_shared::Pat;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// A cloud (connection tokens) and a provider (a numbered list, newest first, pages of
    /// `PAGE`, items `n` down to 1, cursor = the next item's number) in one server.
    #[derive(Clone, Default)]
    struct World {
        items: Arc<AtomicUsize>,
        tokens_issued: Arc<AtomicU32>,
        /// Reject this many provider requests with 401.
        reject: Arc<AtomicU32>,
        /// Fail provider requests from this page number on (0: never).
        fail_at_page: Arc<AtomicU32>,
        provider_requests: Arc<AtomicU32>,
        seen_auth: Arc<Mutex<Vec<String>>>,
        /// Tokens the provider has been told about.
        valid: Arc<Mutex<Vec<String>>>,
    }

    const PAGE: usize = 25;

    async fn issue(State(w): State<World>) -> axum::response::Response {
        let n = w.tokens_issued.fetch_add(1, Ordering::SeqCst);
        let token = format!("prov-{n}");
        w.valid.lock().map(|mut v| v.push(token.clone())).unwrap_or_default();
        axum::Json(serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_at": null}))
            .into_response()
    }

    async fn items(
        State(w): State<World>,
        headers: HeaderMap,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::response::Response {
        let page_no = w.provider_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        w.seen_auth.lock().map(|mut s| s.push(auth.clone())).unwrap_or_default();
        if w.reject.load(Ordering::SeqCst) > 0 {
            w.reject.fetch_sub(1, Ordering::SeqCst);
            return (StatusCode::UNAUTHORIZED, "expired").into_response();
        }
        let token = auth.strip_prefix("Bearer ").unwrap_or("");
        if !w.valid.lock().map(|v| v.iter().any(|t| t == token)).unwrap_or(false) {
            return (StatusCode::UNAUTHORIZED, "unknown token").into_response();
        }
        let fail = w.fail_at_page.load(Ordering::SeqCst);
        if fail != 0 && page_no >= fail {
            return (StatusCode::BAD_REQUEST, "boom").into_response();
        }
        let total = w.items.load(Ordering::SeqCst);
        let top = q.get("cursor").and_then(|c| c.parse::<usize>().ok()).unwrap_or(total).min(total);
        let bottom = top.saturating_sub(PAGE);
        let list: Vec<serde_json::Value> =
            (bottom + 1..=top).rev().map(|i| serde_json::json!({"id": format!("it{i:05}"), "n": i})).collect();
        let next = (bottom > 0).then(|| bottom.to_string());
        axum::Json(serde_json::json!({"items": list, "next": next, "next_cursor": next})).into_response()
    }

    async fn world(items_n: usize) -> (World, Url) {
        let w = World::default();
        w.items.store(items_n, Ordering::SeqCst);
        let app = axum::Router::new()
            .route("/oauth/connection-token", axum::routing::post(issue))
            .route("/api/items", axum::routing::get(items))
            .with_state(w.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (w, Url::parse(&format!("http://{addr}")).unwrap_or_else(|e| panic!("{e}")))
    }

    fn feed(base: &Url) -> ConnectorConfig {
        let mut url = base.clone();
        url.set_path("/api/items");
        ConnectorConfig {
            name: "feed".into(),
            kind: Kind::HttpJson,
            org: "acme".into(),
            connector_key: "feed".into(),
            connection: None,
            schedule: crate::schedule::DEFAULT,
            base_url: None,
            http_json: Some(HttpJsonConfig {
                url,
                items: "/items".into(),
                id: "id".into(),
                next: Some("/next".into()),
                cursor_param: "cursor".into(),
                occurred_at: None,
            }),
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        tokens: TokenClient,
        base: Url,
        world: World,
        pat: String,
    }

    async fn fixture(items_n: usize) -> Fixture {
        let (world, base) = world(items_n).await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = Store::open(&dir.path().join("latchkey.db")).await.unwrap_or_else(|e| panic!("{e}"));
        let pat = Pat::generate();
        let pat_text = pat.secret().expose().clone();
        let cloud = CloudClient::new(base.clone(), Some(pat)).unwrap_or_else(|e| panic!("{e}"));
        let cloud = cloud.with_policy(RetryPolicy { base: Duration::from_millis(5), ..RetryPolicy::CLOUD });
        Fixture { _dir: dir, store, tokens: TokenClient::new(Arc::new(cloud)), base, world, pat: pat_text }
    }

    impl Fixture {
        async fn sync(&self, options: SyncOptions, stop: &Shutdown) -> Result<SyncReport> {
            let ctx = SyncContext { cloud_url: &self.base, tokens: &self.tokens, store: &self.store, stop };
            sync_once(&ctx, &feed(&self.base), options, &mut Progress::Quiet).await
        }
    }

    fn never() -> Shutdown {
        let (trigger, stop) = Shutdown::manual();
        std::mem::forget(trigger);
        stop
    }

    #[tokio::test]
    async fn a_full_walk_then_nothing_new_then_only_the_new() {
        let f = fixture(110).await;
        let first = f.sync(SyncOptions::default(), &never()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((first.outcome, first.counts.added, first.counts.pages), (Outcome::Completed, 110, 5));
        assert_eq!(f.store.count("feed").await.unwrap_or(0), 110);
        assert_eq!(f.store.resume_cursor("feed").await.unwrap_or_default(), None, "a finished walk clears the cursor");
        // http-json pages are not known to be newest first: it walks all again, adding none.
        let again = f.sync(SyncOptions::default(), &never()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((again.outcome, again.counts.added, again.counts.fetched), (Outcome::Completed, 0, 110));
        f.world.items.store(130, Ordering::SeqCst);
        let more = f.sync(SyncOptions::default(), &never()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(more.counts.added, 20);
        assert_eq!(f.store.count("feed").await.unwrap_or(0), 130);
        assert_eq!(f.world.tokens_issued.load(Ordering::SeqCst), 1, "one token, cached across runs");
        // The provider saw the provider token only, never the PAT.
        let seen = f.world.seen_auth.lock().map(|s| s.clone()).unwrap_or_default();
        assert!(seen.iter().all(|a| a == "Bearer prov-0" && !a.contains(&f.pat)), "{seen:?}");
    }

    #[tokio::test]
    async fn a_failed_page_keeps_what_was_committed_and_resumes_there() {
        let f = fixture(200).await;
        f.world.fail_at_page.store(4, Ordering::SeqCst);
        let e = f.sync(SyncOptions::default(), &never()).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("400") && e.contains("boom"), "{e}");
        assert_eq!(f.store.count("feed").await.unwrap_or(0), 75, "three pages committed");
        assert_eq!(f.store.resume_cursor("feed").await.unwrap_or_default().as_deref(), Some("cursor 125"));
        let last = f.store.last_run("feed").await.unwrap_or_default().unwrap_or_else(|| panic!("a run"));
        assert_eq!((last.status.as_str(), last.items_added), ("failed", 75));
        assert!(last.error.unwrap_or_default().contains("boom"));

        f.world.fail_at_page.store(0, Ordering::SeqCst);
        let requests_before = f.world.provider_requests.load(Ordering::SeqCst);
        let resumed = f.sync(SyncOptions::default(), &never()).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(resumed.resumed);
        assert_eq!((resumed.outcome, resumed.counts.added, resumed.counts.pages), (Outcome::Completed, 125, 5));
        assert_eq!(f.world.provider_requests.load(Ordering::SeqCst) - requests_before, 5, "no page fetched twice");
        assert_eq!(f.store.count("feed").await.unwrap_or(0), 200);
    }

    #[tokio::test]
    async fn a_provider_401_fetches_a_new_token_once() {
        let f = fixture(30).await;
        f.world.reject.store(1, Ordering::SeqCst);
        let report = f.sync(SyncOptions::default(), &never()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.counts.added, 30);
        assert_eq!(f.world.tokens_issued.load(Ordering::SeqCst), 2);
        // Refused twice in a row: a clear error, not a loop.
        f.world.reject.store(5, Ordering::SeqCst);
        let e = f.sync(SyncOptions { full: true }, &never()).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("401") && e.contains("latchkey connect feed"), "{e}");
        assert_eq!(f.world.tokens_issued.load(Ordering::SeqCst), 3, "the cached token, then one fresh one");
    }

    #[tokio::test]
    async fn a_stop_finishes_the_page_in_hand() {
        let f = fixture(100).await;
        let (trigger, stop) = Shutdown::manual();
        trigger.fire();
        let report = f.sync(SyncOptions::default(), &stop).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.outcome, Outcome::Interrupted);
        let last = f.store.last_run("feed").await.unwrap_or_default().unwrap_or_else(|| panic!("a run"));
        assert_eq!(last.status, "interrupted");
    }

    #[tokio::test]
    async fn caught_up_stops_early_for_newest_first_connectors() {
        // The sandbox connector against the same world (it answers `next_cursor` too).
        let f = fixture(100).await;
        let sandbox = ConnectorConfig {
            name: "sbx".into(),
            kind: Kind::Sandbox,
            org: "acme".into(),
            connector_key: "sbx".into(),
            connection: None,
            schedule: crate::schedule::DEFAULT,
            base_url: Some(f.base.clone()),
            http_json: None,
        };
        let stop = never();
        let ctx = SyncContext { cloud_url: &f.base, tokens: &f.tokens, store: &f.store, stop: &stop };
        let run = |options| {
            let ctx = &ctx;
            let sandbox = &sandbox;
            async move { sync_once(ctx, sandbox, options, &mut Progress::Quiet).await.unwrap_or_else(|e| panic!("{e}")) }
        };
        let first = run(SyncOptions::default()).await;
        assert_eq!((first.outcome, first.counts.added, first.counts.pages), (Outcome::Completed, 100, 4));
        // Ten newer items: page 1 brings them, page 2 brings nothing, and the walk stops.
        f.world.items.store(110, Ordering::SeqCst);
        let second = run(SyncOptions::default()).await;
        assert_eq!((second.outcome, second.counts.added, second.counts.pages), (Outcome::CaughtUp, 10, 2));
        assert_eq!(f.store.resume_cursor("sbx").await.unwrap_or_default(), None);
        // --full walks everything.
        let full = run(SyncOptions { full: true }).await;
        assert_eq!((full.outcome, full.counts.added, full.counts.pages), (Outcome::Completed, 0, 5));
        assert_eq!(f.store.count("sbx").await.unwrap_or(0), 110);
        // Before any finished walk there is no early stop: an interrupted first walk resumes
        // and completes rather than stopping at old items.
        let e = AnyConnector::from_config(&feed(&f.base), &f.base).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.caught_up(None), CaughtUp::Continue);
    }
}
