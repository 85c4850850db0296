//! The caller's own connections.

use crate::access::{ClientMeta, Principal};
use crate::connections::{self, Connection};
use crate::error::Result;
use crate::http::extract::Path;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_shared::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_all)).routes(routes!(list_in_org)).routes(routes!(get_one, disconnect))
}

/// The caller's connections in every org.
#[utoipa::path(get, path = "/v1/connections", tag = "connections", responses((status = 200, body = Vec<Connection>)))]
async fn list_all(State(state): State<AppState>, principal: Principal) -> Result<axum::Json<Vec<Connection>>> {
    Ok(axum::Json(connections::list(&state, &principal, None).await?))
}

/// The caller's connections in one org.
#[utoipa::path(get, path = "/v1/orgs/{org}/connections", tag = "connections", params(("org" = String, Path)),
    responses((status = 200, body = Vec<Connection>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_in_org(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<axum::Json<Vec<Connection>>> {
    Ok(axum::Json(connections::list(&state, &principal, Some(&org)).await?))
}

/// The caller's connection for a connector: status and account, never a token.
#[utoipa::path(get, path = "/v1/orgs/{org}/connections/{key}", tag = "connections", params(("org" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = Connection), (status = 404, body = ErrorBody)))]
async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path((org, key)): Path<(String, String)>,
) -> Result<axum::Json<Connection>> {
    Ok(axum::Json(connections::get(&state, &principal, &org, &key).await?))
}

/// Disconnect: revoke at the provider where possible, then forget the tokens.
#[utoipa::path(delete, path = "/v1/orgs/{org}/connections/{key}", tag = "connections", params(("org" = String, Path), ("key" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn disconnect(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, key)): Path<(String, String)>,
) -> Result<StatusCode> {
    connections::disconnect_own(&state, &principal, &meta, &org, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
