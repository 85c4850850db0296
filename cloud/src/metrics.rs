//! Prometheus metrics at `GET /metrics`: HTTP answers by route and status, the
//! connection-token endpoint's outcomes, refreshes at providers, the refresh lease, the
//! audit queue, the database pool and outages, the drain, connections by status, and
//! webhook deliveries. Labels are bounded (matched route templates, fixed outcome codes,
//! configured provider names); never a token or an id. The names are a contract with the
//! alerts and the dashboard in `deploy/`.
//!
//! Counters are counted where things happen; the gauges of things that are cheap to look
//! at (pool, audit queue, drain) are sampled at scrape time ([`Sampled`]); connections by
//! status, which costs a query, is set by the background refresher once per interval.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    provider: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

/// Put on a response (by `error`) that failed because the database could not be reached;
/// [`track`] counts it.
#[derive(Clone, Copy, Debug)]
pub struct DbUnavailable {
    /// The pool gave up waiting for a connection.
    pub pool_timed_out: bool,
}

/// Values read at scrape time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sampled {
    pub pool_in_use: u32,
    pub pool_idle: u32,
    pub pool_max: u32,
    pub audit_queue_depth: usize,
    pub audit_queue_capacity: usize,
    pub draining: bool,
}

/// Every connection status, so one that empties shows 0 rather than its last count.
const CONNECTION_STATUSES: [&str; 5] = ["active", "failing", "exhausted", "needs_reauth", "revoked"];

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    http: Family<HttpLabels, Counter>,
    http_seconds: Family<HttpLabels, Histogram>,
    pub token_answers: Family<OutcomeLabels, Counter>,
    refreshes: Family<RefreshLabels, Counter>,
    refresh_seconds: Family<ProviderLabels, Histogram>,
    /// A request waited for another task's or replica's refresh of its connection.
    pub lease_waits: Counter,
    /// A refresh lease was taken whose holder let it run out without releasing it.
    pub lease_takeovers: Counter,
    audit_queue_depth: Gauge,
    audit_queue_capacity: Gauge,
    /// Audit events refused (queue full) or lost (unwritable at shutdown).
    pub audit_dropped: Counter,
    db_pool: Family<StateLabels, Gauge>,
    db_pool_max: Gauge,
    db_acquire_timeouts: Counter,
    db_unavailable: Counter,
    draining: Gauge,
    connections: Family<StatusLabels, Gauge>,
    pub webhooks: Family<OutcomeLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("latchkey");
        let http = Family::<HttpLabels, Counter>::default();
        let http_seconds = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let token_answers = Family::<OutcomeLabels, Counter>::default();
        let refreshes = Family::<RefreshLabels, Counter>::default();
        // 10 ms to ~41 s: providers answer in tens of milliseconds, time out in seconds.
        let refresh_seconds = Family::<ProviderLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 13))
        });
        let webhooks = Family::<OutcomeLabels, Counter>::default();
        let m = Metrics {
            registry: Registry::default(),
            http,
            http_seconds,
            token_answers,
            refreshes,
            refresh_seconds,
            lease_waits: Counter::default(),
            lease_takeovers: Counter::default(),
            audit_queue_depth: Gauge::default(),
            audit_queue_capacity: Gauge::default(),
            audit_dropped: Counter::default(),
            db_pool: Family::default(),
            db_pool_max: Gauge::default(),
            db_acquire_timeouts: Counter::default(),
            db_unavailable: Counter::default(),
            draining: Gauge::default(),
            connections: Family::default(),
            webhooks,
        };
        registry.register("http_requests", "HTTP requests answered, by route and status", m.http.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by route and status",
            m.http_seconds.clone(),
        );
        registry.register(
            "connection_token_answers",
            "Answers of POST /oauth/connection-token, by outcome",
            m.token_answers.clone(),
        );
        registry.register(
            "provider_refreshes",
            "Refreshes attempted at providers, by provider and outcome",
            m.refreshes.clone(),
        );
        registry.register(
            "provider_refresh_duration_seconds",
            "Time of the provider's token call of a refresh, by provider",
            m.refresh_seconds.clone(),
        );
        registry.register(
            "refresh_lease_waits",
            "Requests that waited for another task's or replica's refresh of their connection",
            m.lease_waits.clone(),
        );
        registry.register(
            "refresh_lease_takeovers",
            "Refresh leases taken after their holder let them run out unreleased (a dead or cut-off replica)",
            m.lease_takeovers.clone(),
        );
        registry.register("audit_queue_depth", "Audit events waiting for the writer", m.audit_queue_depth.clone());
        registry.register(
            "audit_queue_capacity",
            "Audit events that may wait before requests are refused",
            m.audit_queue_capacity.clone(),
        );
        registry.register(
            "audit_dropped",
            "Audit events refused (queue full) or lost (unwritable at shutdown)",
            m.audit_dropped.clone(),
        );
        registry.register("db_pool_connections", "Database connections by state", m.db_pool.clone());
        registry.register(
            "db_pool_max_connections",
            "Most database connections this replica opens",
            m.db_pool_max.clone(),
        );
        registry.register(
            "db_acquire_timeouts",
            "Waits for a database connection that gave up: the database is slow or unreachable",
            m.db_acquire_timeouts.clone(),
        );
        registry.register(
            "db_unavailable",
            "Requests answered 503 because the database could not be reached",
            m.db_unavailable.clone(),
        );
        registry.register("draining", "1 from the first stop signal until exit", m.draining.clone());
        registry.register(
            "connections",
            "Connections by status across the database (sampled by the background refresher)",
            m.connections.clone(),
        );
        registry.register(
            "webhook_deliveries",
            "Webhook events published and delivery attempts, by outcome",
            m.webhooks.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn count(family: &Family<OutcomeLabels, Counter>, outcome: &str) {
        family.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc();
    }

    /// One refresh at `provider` ended with `outcome`.
    pub fn count_refresh(&self, provider: &str, outcome: &str) {
        self.refreshes
            .get_or_create(&RefreshLabels { provider: provider.to_owned(), outcome: outcome.to_owned() })
            .inc();
    }

    /// The provider's token call of a refresh took `seconds`.
    pub fn observe_refresh(&self, provider: &str, seconds: f64) {
        self.refresh_seconds.get_or_create(&ProviderLabels { provider: provider.to_owned() }).observe(seconds);
    }

    /// A database error met outside a request (background work): counts a pool wait
    /// that gave up.
    pub fn db_error(&self, e: &sqlx::Error) {
        if matches!(e, sqlx::Error::PoolTimedOut) {
            self.db_acquire_timeouts.inc();
        }
    }

    /// Connections by status, as counted in the database just now.
    pub fn set_connections(&self, counts: &[(String, i64)]) {
        for status in CONNECTION_STATUSES {
            if !counts.iter().any(|(s, _)| s == status) {
                self.connections.get_or_create(&StatusLabels { status: status.to_owned() }).set(0);
            }
        }
        for (status, n) in counts {
            self.connections.get_or_create(&StatusLabels { status: status.clone() }).set(*n);
        }
    }

    /// The text exposition, with the scrape-time values set first.
    pub fn render(&self, sampled: &Sampled) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.db_pool.get_or_create(&StateLabels { state: "in_use".into() }).set(i64::from(sampled.pool_in_use));
        self.db_pool.get_or_create(&StateLabels { state: "idle".into() }).set(i64::from(sampled.pool_idle));
        self.db_pool_max.set(i64::from(sampled.pool_max));
        self.audit_queue_depth.set(gauge(sampled.audit_queue_depth));
        self.audit_queue_capacity.set(gauge(sampled.audit_queue_capacity));
        self.draining.set(i64::from(sampled.draining));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Middleware: counts and times every answer by its route template, and the answers the
/// database's absence made (marked [`DbUnavailable`]).
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let labels = HttpLabels { method, route, status: response.status().as_u16() };
    metrics.http.get_or_create(&labels).inc();
    metrics.http_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    if let Some(marker) = response.extensions().get::<DbUnavailable>() {
        metrics.db_unavailable.inc();
        if marker.pool_timed_out {
            metrics.db_acquire_timeouts.inc();
        }
    }
    response
}
