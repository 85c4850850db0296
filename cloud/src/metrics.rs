//! Prometheus metrics at `GET /metrics`: HTTP answers by route and status, the
//! connection-token endpoint's outcomes, and refreshes at providers by outcome. Labels
//! are bounded (matched route templates, fixed outcome codes); never a token or an id.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    http: Family<HttpLabels, Counter>,
    http_seconds: Family<HttpLabels, Histogram>,
    pub token_answers: Family<OutcomeLabels, Counter>,
    pub refreshes: Family<OutcomeLabels, Counter>,
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
        let refreshes = Family::<OutcomeLabels, Counter>::default();
        let webhooks = Family::<OutcomeLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered, by route and status", http.clone());
        registry.register("http_request_duration_seconds", "Time to answer, by route and status", http_seconds.clone());
        registry.register(
            "connection_token_answers",
            "Answers of POST /oauth/connection-token, by outcome",
            token_answers.clone(),
        );
        registry.register("provider_refreshes", "Refreshes attempted at providers, by outcome", refreshes.clone());
        registry.register(
            "webhook_deliveries",
            "Webhook events published and delivery attempts, by outcome",
            webhooks.clone(),
        );
        Metrics { registry, http, http_seconds, token_answers, refreshes, webhooks }
    }
}

impl Metrics {
    pub fn count(family: &Family<OutcomeLabels, Counter>, outcome: &str) {
        family.get_or_create(&OutcomeLabels { outcome: outcome.to_owned() }).inc();
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Middleware: counts and times every answer by its route template.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let labels = HttpLabels { method, route, status: response.status().as_u16() };
    metrics.http.get_or_create(&labels).inc();
    metrics.http_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub async fn serve(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        metrics.render(),
    )
        .into_response()
}
