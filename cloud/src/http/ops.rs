//! Operations: liveness, readiness.

use crate::error::{Error, Result};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
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

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "database unreachable", body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Health>> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        Error::client(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ServiceUnavailable, "database unreachable")
    })?;
    Ok(axum::Json(Health { status: "ready" }))
}
