//! Device pairing endpoints (RFC 8628) and the RFC 7009 revocation endpoint for PATs.

use crate::access::ClientMeta;
use crate::access::Principal;
use crate::devices::{self, Device, DeviceAuthorization, DeviceToken, TokenRequest, UserCode};
use crate::error::Result;
use crate::http::extract::{Json, MaybeForm, Path};
use crate::http::NoStore;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_shared::ErrorBody;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(device_authorization))
        .routes(routes!(token))
        .routes(routes!(revoke))
        .routes(routes!(approve))
        .routes(routes!(deny))
        .routes(routes!(list_devices))
        .routes(routes!(revoke_device))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct DeviceAuthorizationRequest {
    #[schema(required = true, min_length = 1)]
    client_id: Option<String>,
    #[allow(dead_code)]
    scope: Option<String>,
}

/// Start pairing a device: a device code for the agent, a user code for the member.
#[utoipa::path(post, path = "/oauth/device_authorization", tag = "devices",
    request_body(content = DeviceAuthorizationRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = DeviceAuthorization), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn device_authorization(
    State(state): State<AppState>,
    meta: ClientMeta,
    MaybeForm(form): MaybeForm<DeviceAuthorizationRequest>,
) -> Result<NoStore<DeviceAuthorization>> {
    let client_id = form.and_then(|f| f.client_id).unwrap_or_default();
    Ok(NoStore(devices::start(&state, &client_id, &meta).await?))
}

/// The token endpoint; only the device-code grant.
#[utoipa::path(post, path = "/oauth/token", tag = "devices",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = DeviceToken),
              (status = 400, body = ErrorBody, description = "authorization_pending, slow_down, access_denied, expired_token, invalid_grant")))]
async fn token(State(state): State<AppState>, MaybeForm(req): MaybeForm<TokenRequest>) -> Result<NoStore<DeviceToken>> {
    Ok(NoStore(devices::token(&state, req).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RevokeRequest {
    #[schema(required = true, min_length = 1)]
    token: Option<String>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// RFC 7009: revoke a PAT by presenting it (an agent logging out).
#[utoipa::path(post, path = "/oauth/revoke", tag = "devices",
    request_body(content = RevokeRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "revoked, or unknown (RFC 7009)"), (status = 400, body = ErrorBody, description = "`invalid_request`: no `token`")))]
async fn revoke(State(state): State<AppState>, MaybeForm(form): MaybeForm<RevokeRequest>) -> Result<StatusCode> {
    // RFC 7009 2.1: `token` is required; an unknown or already revoked one is still a 200.
    let Some(RevokeRequest { token: Some(token), .. }) =
        form.filter(|f| f.token.as_deref().is_some_and(|t| !t.is_empty()))
    else {
        return Err(devices::oauth_error("invalid_request", "the `token` parameter is required"));
    };
    devices::revoke_token(&state, &token).await?;
    Ok(StatusCode::OK)
}

/// Approve a device's user code (the `/device` page calls this).
#[utoipa::path(post, path = "/v1/devices/approve", tag = "devices", request_body = UserCode,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn approve(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Json(req): Json<UserCode>,
) -> Result<StatusCode> {
    devices::decide(&state, &principal, &meta, req, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deny a device's user code.
#[utoipa::path(post, path = "/v1/devices/deny", tag = "devices", request_body = UserCode,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn deny(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Json(req): Json<UserCode>,
) -> Result<StatusCode> {
    devices::decide(&state, &principal, &meta, req, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's paired devices.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", responses((status = 200, body = Vec<Device>)))]
async fn list_devices(State(state): State<AppState>, principal: Principal) -> Result<axum::Json<Vec<Device>>> {
    Ok(axum::Json(devices::list(&state, &principal).await?))
}

/// Unpair a device: its PAT is revoked at once.
#[utoipa::path(delete, path = "/v1/devices/{id}", tag = "devices", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_device(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    devices::revoke(&state, &principal, &id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
