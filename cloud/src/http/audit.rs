//! The audit log: a member's own events and an org's (admins).

use crate::access::Principal;
use crate::accounts;
use crate::audit::AuditEntry;
use crate::error::Result;
use crate::http::extract::{Path, Query};
use crate::orgs;
use crate::state::AppState;
use axum::extract::State;
use latchkey_shared::ErrorBody;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(my_audit)).routes(routes!(org_audit))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// How many events, newest first (1–1000, default 100).
    limit: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct MyAuditQuery {
    /// How many events, newest first (1–1000, default 100).
    limit: Option<i64>,
    /// Only events older than this one: the last `id` of the previous page.
    before: Option<String>,
}

/// The caller's own audit events: logins, token fetches (with the PAT or device), changes.
#[utoipa::path(get, path = "/v1/me/audit", tag = "audit", params(MyAuditQuery), responses((status = 200, body = Vec<AuditEntry>)))]
async fn my_audit(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<MyAuditQuery>,
) -> Result<axum::Json<Vec<AuditEntry>>> {
    Ok(axum::Json(accounts::audit(&state, &principal, q.limit.unwrap_or(100), q.before.as_deref()).await?))
}

/// An org's audit events (owners and admins).
#[utoipa::path(get, path = "/v1/orgs/{org}/audit", tag = "audit", params(("org" = String, Path), AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn org_audit(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<Vec<AuditEntry>>> {
    Ok(axum::Json(orgs::audit(&state, &principal, &org, q.limit.unwrap_or(100)).await?))
}
