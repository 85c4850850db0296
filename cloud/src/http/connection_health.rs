//! `GET /v1/orgs/{org}/connections/health`: every member's connections, for the org's
//! admins. Never a token.

use crate::access::Principal;
use crate::connection_health::{self, ConnectionHealth};
use crate::error::Result;
use crate::http::extract::{Path, Query};
use crate::state::AppState;
use axum::extract::State;
use latchkey_shared::ErrorBody;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(org_health))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct HealthQuery {
    /// Only connections in this status: `active`, `refreshing`, `failing`,
    /// `needs_reauth`, `exhausted` or `revoked`.
    #[param(pattern = "^(active|refreshing|failing|needs_reauth|exhausted|revoked)$")]
    status: Option<String>,
}

/// Every member's connections in the org, with their health (owners and admins; a PAT
/// needs `orgs:read`). Never a token.
#[utoipa::path(get, path = "/v1/orgs/{org}/connections/health", tag = "connections",
    params(("org" = String, Path), HealthQuery),
    responses((status = 200, body = Vec<ConnectionHealth>), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn org_health(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
    Query(q): Query<HealthQuery>,
) -> Result<axum::Json<Vec<ConnectionHealth>>> {
    Ok(axum::Json(connection_health::list(&state, &principal, &org, q.status.as_deref()).await?))
}
