//! `/v1/tokens`: personal access tokens, over `crate::pats`.

use crate::access::{ClientMeta, Principal};
use crate::error::Result;
use crate::http::extract::{Json, Path};
use crate::http::NoStore;
use crate::pats::{self, CreatePat, CreatedPat, PatInfo};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_shared::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_token, list_tokens)).routes(routes!(revoke_token))
}

/// Create a PAT. The token appears in this answer only.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreatePat,
    responses((status = 201, body = CreatedPat), (status = 400, body = ErrorBody), (status = 403, description = "needs a login, not a PAT", body = ErrorBody),
        (status = 404, description = "`org` names no org the caller may see", body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Json(req): Json<CreatePat>,
) -> Result<(StatusCode, NoStore<CreatedPat>)> {
    Ok((StatusCode::CREATED, NoStore(pats::create(&state, &principal, req, &meta).await?)))
}

/// The caller's PATs: prefix and scopes, never the token.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", responses((status = 200, body = Vec<PatInfo>)))]
async fn list_tokens(State(state): State<AppState>, principal: Principal) -> Result<axum::Json<Vec<PatInfo>>> {
    Ok(axum::Json(pats::list(&state, &principal).await?))
}

/// Revoke a PAT; it stops working on the next request, on every replica.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    pats::revoke(&state, &principal, &id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
