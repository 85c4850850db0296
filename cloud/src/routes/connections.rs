//! Consent start over the API, and the caller's own connections.

use crate::auth::Principal;
use crate::connections::{self, Connection};
use crate::error::Result;
use crate::http::extract::Path;
use crate::oauth::consent;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_shared::ErrorBody;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(authorize))
        .routes(routes!(list_all))
        .routes(routes!(list_in_org))
        .routes(routes!(get_one, disconnect))
}

#[derive(Serialize, ToSchema)]
struct AuthorizeUrl {
    /// Open in the member's browser (a new tab); the provider returns to `/oauth/callback`.
    authorize_url: String,
}

/// Start a consent for a connector; the state is bound to this login.
#[utoipa::path(post, path = "/v1/orgs/{org}/connectors/{key}/authorize", tag = "connections",
    params(("org" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = AuthorizeUrl), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn authorize(
    State(state): State<AppState>,
    principal: Principal,
    Path((org, key)): Path<(String, String)>,
) -> Result<axum::Json<AuthorizeUrl>> {
    Ok(axum::Json(AuthorizeUrl { authorize_url: consent::start(&state, &principal, &org, &key).await? }))
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
    Path((org, key)): Path<(String, String)>,
) -> Result<StatusCode> {
    connections::disconnect_own(&state, &principal, &org, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
