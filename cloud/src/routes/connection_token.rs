//! `POST /oauth/connection-token`, and reading the audit log.

use crate::audit::{self, AuditEntry};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::http::extract::{too_large, ClientMeta, Path, Query};
use crate::http::NoStore;
use crate::orgs::{self, Need};
use crate::state::AppState;
use crate::token_endpoint::{self, Trace};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_shared::wire::{ConnectionTokenRequest, ConnectionTokenResponse};
use latchkey_shared::{ErrorBody, ErrorCode, Scope};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(connection_token)).routes(routes!(my_audit)).routes(routes!(org_audit))
}

/// A short-lived access token for the caller's own connection. PAT with
/// `connections:token` only.
#[utoipa::path(post, path = "/oauth/connection-token", tag = "connections", request_body = ConnectionTokenRequest,
    security(("pat" = [])),
    responses(
        (status = 200, body = ConnectionTokenResponse, description = "the access token; `Cache-Control: no-store`"),
        (status = 400, body = ErrorBody, description = "body not JSON, a field missing, of the wrong type or unknown"),
        (status = 401, body = ErrorBody, description = "no, malformed, unknown, expired or revoked PAT"),
        (status = 403, body = ErrorBody, description = "`insufficient_scope`, or `not_a_member` of a public org / PAT bound elsewhere"),
        (status = 404, body = ErrorBody, description = "no such org, or no active consent-only connection of the caller's"),
        (status = 409, body = ErrorBody, description = "`reauth_required`, with `connect_url`"),
        (status = 429, body = ErrorBody, description = "`rate_limited`, with `Retry-After`"),
        (status = 503, body = ErrorBody, description = "`provider_unavailable`, with `Retry-After`"),
    ))]
async fn connection_token(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return too_large().into_response(),
        Err(e) => return Error::bad_request(e.body_text()).into_response(),
    };
    let mut trace = Trace::default();
    let result = token_endpoint::answer(&state, &headers, &body, &mut trace).await;
    let outcome = match &result {
        Ok(_) => "issued",
        Err(Error::Client { code, .. }) => code.as_str(),
        Err(_) => "server_error",
    };
    crate::metrics::Metrics::count(&state.metrics.token_answers, outcome);
    // No answer without its audit event: a queue that stays full refuses the request.
    if state.audit.send(token_endpoint::event(trace, &meta, outcome)).await.is_err() {
        return Error::Client {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: ErrorCode::ServiceUnavailable,
            description: "the audit log is backed up; retry shortly".into(),
            retry_after: Some(1),
            connect_url: None,
        }
        .into_response();
    }
    match result {
        Ok(token) => NoStore(token).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// How many events, newest first (1–1000, default 100).
    limit: Option<i64>,
}

/// The caller's own audit events: logins, token fetches (with the PAT or device), changes.
#[utoipa::path(get, path = "/v1/me/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = Vec<AuditEntry>)))]
async fn my_audit(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<axum::Json<Vec<AuditEntry>>> {
    principal.require(Scope::AuditRead)?;
    Ok(axum::Json(audit::list(&state.store, Some(&principal.user_id), None, q.limit.unwrap_or(100)).await?))
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
    principal.require(Scope::AuditRead)?;
    let org = orgs::authorize(&state, &principal, &org, Need::Admin).await?;
    Ok(axum::Json(audit::list(&state.store, None, Some(&org.id), q.limit.unwrap_or(100)).await?))
}
