//! Webhook endpoints (org admins): register, list, delete; each one's delivery log and
//! resends.

use crate::access::{ClientMeta, Principal};
use crate::error::Result;
use crate::http::extract::{Json, Path};
use crate::http::NoStore;
use crate::state::AppState;
use crate::webhook_endpoints::{self, CreateWebhook, CreatedWebhook, WebhookEndpoint};
use crate::webhooks::outbox::Delivery;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_shared::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(delete_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(resend_delivery))
}

/// Register a webhook endpoint (admins). The answer carries its signing secret, shown only
/// this once.
#[utoipa::path(post, path = "/v1/orgs/{org}/webhooks", tag = "webhooks", params(("org" = String, Path)),
    request_body = CreateWebhook,
    responses((status = 201, body = CreatedWebhook), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_webhook(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(org): Path<String>,
    Json(req): Json<CreateWebhook>,
) -> Result<(StatusCode, NoStore<CreatedWebhook>)> {
    Ok((StatusCode::CREATED, NoStore(webhook_endpoints::create(&state, &principal, &meta, &org, req).await?)))
}

/// The org's webhook endpoints (admins); never a secret.
#[utoipa::path(get, path = "/v1/orgs/{org}/webhooks", tag = "webhooks", params(("org" = String, Path)),
    responses((status = 200, body = Vec<WebhookEndpoint>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_webhooks(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<axum::Json<Vec<WebhookEndpoint>>> {
    Ok(axum::Json(webhook_endpoints::list(&state, &principal, &org).await?))
}

/// Delete a webhook endpoint and its deliveries (admins).
#[utoipa::path(delete, path = "/v1/orgs/{org}/webhooks/{id}", tag = "webhooks", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_webhook(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    webhook_endpoints::delete(&state, &principal, &meta, &org, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoint's latest deliveries (admins), newest first: state, attempts, and the last
/// attempt's status code, latency and error class.
#[utoipa::path(get, path = "/v1/orgs/{org}/webhooks/{id}/deliveries", tag = "webhooks", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Vec<Delivery>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path((org, id)): Path<(String, String)>,
) -> Result<axum::Json<Vec<Delivery>>> {
    Ok(axum::Json(webhook_endpoints::deliveries(&state, &principal, &org, &id).await?))
}

/// Send a delivery again now, with the same event id (admins). 409 while it is in flight.
#[utoipa::path(post, path = "/v1/orgs/{org}/webhooks/{id}/deliveries/{delivery_id}/resend", tag = "webhooks",
    params(("org" = String, Path), ("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = Delivery), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resend_delivery(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, id, delivery_id)): Path<(String, String, String)>,
) -> Result<axum::Json<Delivery>> {
    Ok(axum::Json(webhook_endpoints::resend(&state, &principal, &meta, &org, &id, &delivery_id).await?))
}
