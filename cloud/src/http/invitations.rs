//! `/v1/orgs/{org}/invitations` and `/v1/invitations/{token}/accept`: over
//! `crate::invitations`.

use crate::access::{ClientMeta, Principal};
use crate::error::Result;
use crate::http::extract::{Json, Path};
use crate::http::NoStore;
use crate::invitations::{self, Accepted, CreateInvitation, Invitation, NewInvitation};
use crate::orgs::Org;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_shared::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_invitation, list_invitations))
        .routes(routes!(revoke_invitation))
        .routes(routes!(accept_invitation))
}

/// Invite someone by link (owners and admins; only owners may invite admins). The link
/// carries a single-use token and appears only in this answer.
#[utoipa::path(post, path = "/v1/orgs/{org}/invitations", tag = "orgs", params(("org" = String, Path)),
    request_body = CreateInvitation,
    responses((status = 201, body = NewInvitation), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
async fn create_invitation(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(org): Path<String>,
    Json(req): Json<CreateInvitation>,
) -> Result<(StatusCode, NoStore<NewInvitation>)> {
    Ok((StatusCode::CREATED, NoStore(invitations::create(&state, &principal, &org, req, &meta).await?)))
}

/// The org's invitations, newest first, with their status (owners and admins); never a token.
#[utoipa::path(get, path = "/v1/orgs/{org}/invitations", tag = "orgs", params(("org" = String, Path)),
    responses((status = 200, body = Vec<Invitation>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_invitations(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<axum::Json<Vec<Invitation>>> {
    Ok(axum::Json(invitations::list(&state, &principal, &org).await?))
}

/// Revoke a pending invitation (owners and admins).
#[utoipa::path(delete, path = "/v1/orgs/{org}/invitations/{id}", tag = "orgs", params(("org" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "already used or revoked", body = ErrorBody)))]
async fn revoke_invitation(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    invitations::revoke(&state, &principal, &org, &id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accept an invitation: join its org with its role. 200 also when already a member (the
/// invitation then stays unused).
#[utoipa::path(post, path = "/v1/invitations/{token}/accept", tag = "orgs", params(("token" = String, Path)),
    responses((status = 200, body = Org), (status = 403, description = "for another email address", body = ErrorBody),
              (status = 404, description = "no such invitation", body = ErrorBody),
              (status = 409, description = "used, revoked or expired", body = ErrorBody)))]
async fn accept_invitation(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(token): Path<String>,
) -> Result<axum::Json<Org>> {
    match invitations::accept(&state, &principal, &token, &meta).await? {
        Accepted::Joined(org) | Accepted::AlreadyMember(org) => Ok(axum::Json(org)),
    }
}
