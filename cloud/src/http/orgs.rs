//! `/v1/orgs/*`: thin handlers over `crate::orgs`.

use crate::access::{ClientMeta, Principal};
use crate::error::Result;
use crate::http::extract::{Json, Path, Query};
use crate::orgs::{self, CreateOrg, Member, Org, OrgEntry, SetRole, UpdateOrg};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_shared::ErrorBody;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_org, list_orgs))
        .routes(routes!(get_org, update_org, delete_org))
        .routes(routes!(join_org))
        .routes(routes!(list_members))
        .routes(routes!(remove_member, set_role))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Also list every public org, joined or not.
    #[serde(default)]
    public: bool,
}

/// Create an org; the caller becomes its owner.
#[utoipa::path(post, path = "/v1/orgs", tag = "orgs", request_body = CreateOrg,
    responses((status = 201, body = Org), (status = 400, body = ErrorBody), (status = 409, description = "slug taken", body = ErrorBody)))]
async fn create_org(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Json(req): Json<CreateOrg>,
) -> Result<(StatusCode, axum::Json<Org>)> {
    Ok((StatusCode::CREATED, axum::Json(orgs::create(&state, &principal, &meta, req).await?)))
}

/// The caller's orgs (`?public=true`: and every public org), each with its description
/// and the providers it offers.
#[utoipa::path(get, path = "/v1/orgs", tag = "orgs", params(ListQuery), responses((status = 200, body = Vec<OrgEntry>)))]
async fn list_orgs(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Vec<OrgEntry>>> {
    Ok(axum::Json(orgs::list(&state, &principal, query.public).await?))
}

/// One org by slug or id. A private org is 404 to non-members.
#[utoipa::path(get, path = "/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path, description = "slug or id")),
    responses((status = 200, body = Org), (status = 404, body = ErrorBody)))]
async fn get_org(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<axum::Json<Org>> {
    Ok(axum::Json(orgs::get(&state, &principal, &org).await?))
}

/// Rename or describe an org (owners and admins), or change its visibility (owners).
#[utoipa::path(patch, path = "/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path)), request_body = UpdateOrg,
    responses((status = 200, body = Org), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn update_org(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(org): Path<String>,
    Json(req): Json<UpdateOrg>,
) -> Result<axum::Json<Org>> {
    Ok(axum::Json(orgs::update(&state, &principal, &meta, &org, req).await?))
}

/// Delete an org (owners): its members' connections are revoked at the provider, then
/// its apps, connectors, memberships and invitations go with it.
#[utoipa::path(delete, path = "/v1/orgs/{org}", tag = "orgs", params(("org" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_org(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(org): Path<String>,
) -> Result<StatusCode> {
    orgs::delete(&state, &principal, &meta, &org).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Join a public org as a member.
#[utoipa::path(post, path = "/v1/orgs/{org}/join", tag = "orgs", params(("org" = String, Path)),
    responses((status = 200, body = Org), (status = 404, description = "no such org, or private", body = ErrorBody)))]
async fn join_org(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(org): Path<String>,
) -> Result<axum::Json<Org>> {
    Ok(axum::Json(orgs::join(&state, &principal, &meta, &org).await?))
}

/// The org's members (owners and admins).
#[utoipa::path(get, path = "/v1/orgs/{org}/members", tag = "orgs", params(("org" = String, Path)),
    responses((status = 200, body = Vec<Member>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list_members(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
) -> Result<axum::Json<Vec<Member>>> {
    Ok(axum::Json(orgs::members(&state, &principal, &org).await?))
}

/// Remove a member (owners and admins) or leave (your own id).
#[utoipa::path(delete, path = "/v1/orgs/{org}/members/{user_id}", tag = "orgs", params(("org" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "last owner", body = ErrorBody)))]
async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, user_id)): Path<(String, String)>,
) -> Result<StatusCode> {
    orgs::remove_member(&state, &principal, &meta, &org, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a member's role (owners).
#[utoipa::path(put, path = "/v1/orgs/{org}/members/{user_id}", tag = "orgs", params(("org" = String, Path), ("user_id" = String, Path)),
    request_body = SetRole, responses((status = 200, body = Member), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the org would be left without an owner", body = ErrorBody)))]
async fn set_role(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, user_id)): Path<(String, String)>,
    Json(req): Json<SetRole>,
) -> Result<axum::Json<Member>> {
    Ok(axum::Json(orgs::set_role(&state, &principal, &meta, &org, &user_id, req).await?))
}
