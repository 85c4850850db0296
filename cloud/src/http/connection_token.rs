//! `POST /oauth/connection-token`, over `crate::connection_token`.

use crate::access::ClientMeta;
use crate::connection_token;
use crate::error::Result;
use crate::http::extract::RawBody;
use crate::http::NoStore;
use crate::state::AppState;
use axum::extract::State;
use axum::http::HeaderMap;
use latchkey_shared::wire::{ConnectionTokenRequest, ConnectionTokenResponse};
use latchkey_shared::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(connection_token))
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
    RawBody(body): RawBody,
) -> Result<NoStore<ConnectionTokenResponse>> {
    Ok(NoStore(connection_token::answer(&state, &meta, &headers, &body).await?))
}
