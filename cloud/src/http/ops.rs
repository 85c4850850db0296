//! Operations: liveness, readiness, metrics.

use crate::error::{Error, Result};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_shared::{ErrorBody, ErrorCode};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    status: &'static str,
}

/// The process is up (also while it drains: it still answers).
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// This replica should get traffic: it is not shutting down and its database answers
/// (within a second).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health),
        (status = 503, description = "draining (shutting down) or the database is unreachable", body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Health>> {
    if state.drain.is_draining() {
        return Err(Error::client(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            "draining: this replica is shutting down",
        ));
    }
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        Error::client(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ServiceUnavailable, "database unreachable")
    })?;
    Ok(axum::Json(Health { status: "ready" }))
}

/// `GET /metrics`: the Prometheus text exposition, with the pool, the audit queue and the
/// drain read now.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let pool = state.store.stats();
    let sampled = crate::metrics::Sampled {
        pool_in_use: pool.in_use,
        pool_idle: pool.idle,
        pool_max: pool.max,
        audit_queue_depth: state.audit.queue_depth(),
        audit_queue_capacity: state.audit.queue_capacity(),
        draining: state.drain.is_draining(),
    };
    (
        [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        state.metrics.render(&sampled),
    )
        .into_response()
}
