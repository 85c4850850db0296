//! Providers, managed apps (admins) and connectors (admins write, members read).

use crate::access::{ClientMeta, Principal};
use crate::apps::{self, Connector, ManagedApp, Provider, PutApp, PutConnector};
use crate::error::Result;
use crate::http::extract::{Json, Path};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_shared::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_providers))
        .routes(routes!(list_apps))
        .routes(routes!(put_app, delete_app))
        .routes(routes!(list_connectors))
        .routes(routes!(put_connector, delete_connector))
}

/// Every provider: the built-in registry plus the operator's config-file providers.
#[utoipa::path(get, path = "/v1/providers", tag = "apps", responses((status = 200, body = Vec<Provider>), (status = 401, body = ErrorBody)))]
async fn list_providers(State(state): State<AppState>, _principal: Principal) -> axum::Json<Vec<Provider>> {
    axum::Json(apps::providers(&state))
}

/// The org's managed apps (admins): client id hint only, never the secret.
#[utoipa::path(get, path = "/v1/orgs/{org}/apps", tag = "apps", params(("org" = String, Path)),
    responses((status = 200, body = Vec<ManagedApp>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_apps(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<axum::Json<Vec<ManagedApp>>> {
    Ok(axum::Json(apps::list_apps(&state, &principal, &org).await?))
}

/// Create or replace the org's managed app for a provider (admins).
#[utoipa::path(put, path = "/v1/orgs/{org}/apps/{provider}", tag = "apps", params(("org" = String, Path), ("provider" = String, Path)),
    request_body = PutApp,
    responses((status = 200, body = ManagedApp), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn put_app(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, provider)): Path<(String, String)>,
    Json(req): Json<PutApp>,
) -> Result<axum::Json<ManagedApp>> {
    Ok(axum::Json(apps::put_app(&state, &principal, &meta, &org, &provider, req).await?))
}

/// Delete the org's managed app for a provider (admins).
#[utoipa::path(delete, path = "/v1/orgs/{org}/apps/{provider}", tag = "apps", params(("org" = String, Path), ("provider" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_app(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, provider)): Path<(String, String)>,
) -> Result<StatusCode> {
    apps::delete_app(&state, &principal, &meta, &org, &provider).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The org's connectors (members).
#[utoipa::path(get, path = "/v1/orgs/{org}/connectors", tag = "apps", params(("org" = String, Path)),
    responses((status = 200, body = Vec<Connector>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_connectors(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<axum::Json<Vec<Connector>>> {
    Ok(axum::Json(apps::list_connectors(&state, &principal, &org).await?))
}

/// Create or replace a connector (admins). Its provider needs a managed app in the org.
#[utoipa::path(put, path = "/v1/orgs/{org}/connectors/{key}", tag = "apps", params(("org" = String, Path), ("key" = String, Path)),
    request_body = PutConnector,
    responses((status = 200, body = Connector), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn put_connector(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, key)): Path<(String, String)>,
    Json(req): Json<PutConnector>,
) -> Result<axum::Json<Connector>> {
    Ok(axum::Json(apps::put_connector(&state, &principal, &meta, &org, &key, req).await?))
}

/// Delete a connector (admins).
#[utoipa::path(delete, path = "/v1/orgs/{org}/connectors/{key}", tag = "apps", params(("org" = String, Path), ("key" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_connector(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, key)): Path<(String, String)>,
) -> Result<StatusCode> {
    apps::delete_connector(&state, &principal, &meta, &org, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
