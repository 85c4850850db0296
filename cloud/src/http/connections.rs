//! The caller's own connections. With several on one connector, `connection` (a label or
//! an id, as a query parameter or in the body) picks one; none named is 409
//! `ambiguous_connection`.

use crate::access::{ClientMeta, Principal};
use crate::connections::{self, Connection, Relabel};
use crate::error::Result;
use crate::http::extract::{Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_shared::ErrorBody;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_all))
        .routes(routes!(list_in_org))
        .routes(routes!(get_one, disconnect, relabel))
}

/// Which of the caller's connections on a connector a request means.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct Which {
    /// The connection's label or id; needed only with several connections on the connector.
    #[param(min_length = 1)]
    connection: Option<String>,
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
#[utoipa::path(get, path = "/v1/orgs/{org}/connections/{key}", tag = "connections",
    params(("org" = String, Path), ("key" = String, Path), Which),
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "several connections and none named: `ambiguous_connection`")))]
async fn get_one(
    State(state): State<AppState>,
    principal: Principal,
    Path((org, key)): Path<(String, String)>,
    Query(which): Query<Which>,
) -> Result<axum::Json<Connection>> {
    Ok(axum::Json(connections::get(&state, &principal, &org, &key, which.connection.as_deref()).await?))
}

/// Rename a connection: its label is unique per member and connector.
#[utoipa::path(patch, path = "/v1/orgs/{org}/connections/{key}", tag = "connections",
    params(("org" = String, Path), ("key" = String, Path)), request_body = Relabel,
    responses((status = 200, body = Connection), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the label is taken (`conflict`), or several connections and none named (`ambiguous_connection`)")))]
async fn relabel(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, key)): Path<(String, String)>,
    Json(body): Json<Relabel>,
) -> Result<axum::Json<Connection>> {
    let renamed =
        connections::relabel(&state, &principal, &meta, &org, &key, body.connection.as_deref(), &body.label).await?;
    Ok(axum::Json(renamed))
}

/// Disconnect: revoke at the provider where possible, then forget the tokens.
#[utoipa::path(delete, path = "/v1/orgs/{org}/connections/{key}", tag = "connections",
    params(("org" = String, Path), ("key" = String, Path), Which),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "several connections and none named: `ambiguous_connection`")))]
async fn disconnect(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, key)): Path<(String, String)>,
    Query(which): Query<Which>,
) -> Result<StatusCode> {
    connections::disconnect_own(&state, &principal, &meta, &org, &key, which.connection.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
