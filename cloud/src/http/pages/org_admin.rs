//! An org's admin area, Settings and Members: name, description and visibility; deleting
//! the org (owners, typing its slug); members and their roles; invitations. Who may do
//! what is decided by the domain functions (`crate::orgs`, `crate::invitations`), as for
//! the API; the pages only hide what the viewer could not do anyway.

use super::{notice, Page, PagePost, PageResult};
use crate::access::{self, ClientMeta, Need, Org, Role};
use crate::error::Error;
use crate::http::extract::Path;
use crate::invitations::{self, CreateInvitation, NewInvitation};
use crate::orgs::{self, SetRole, UpdateOrg, Visibility};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs/{org}/admin", get(settings_page).post(save_settings))
        .route("/orgs/{org}/admin/delete", post(delete_org))
        .route("/orgs/{org}/admin/members", get(members_page))
        .route("/orgs/{org}/admin/members/{user_id}/role", post(set_role))
        .route("/orgs/{org}/admin/members/{user_id}/remove", post(remove_member))
        .route("/orgs/{org}/admin/invitations", post(create_invitation))
        .route("/orgs/{org}/admin/invitations/{id}/revoke", post(revoke_invitation))
}

/// The org, for an owner or admin.
async fn admin_org(state: &AppState, page: &Page, org_ref: &str) -> Result<Org, Error> {
    access::authorize(state, &page.principal, org_ref, Need::Admin).await
}

async fn settings_page(State(state): State<AppState>, page: Page, Path(org_ref): Path<String>) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    let owner = org.role == Some(Role::Owner);
    page.ok("org_settings.html", context! { org => org, section => "settings", owner => owner })
}

#[derive(Deserialize)]
struct SettingsForm {
    name: String,
    #[serde(default)]
    description: String,
    /// Absent for admins, whose visibility field is disabled.
    visibility: Option<Visibility>,
}

async fn save_settings(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path(org_ref): Path<String>,
    post: PagePost<SettingsForm>,
) -> PageResult {
    let PagePost { page, form } = post;
    let req = UpdateOrg { name: Some(form.name), description: Some(form.description), visibility: form.visibility };
    let org = orgs::update(&state, &page.principal, &meta, &org_ref, req).await?;
    Ok(notice(&format!("/orgs/{}/admin", org.slug), "Settings saved."))
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

async fn delete_org(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path(org_ref): Path<String>,
    post: PagePost<DeleteForm>,
) -> PageResult {
    let PagePost { page, form } = post;
    let org = access::authorize(&state, &page.principal, &org_ref, Need::Owner).await?;
    if form.confirm.trim() != org.slug {
        return Err(Error::bad_request(format!(
            "to delete this org, type its slug `{}` exactly; nothing was deleted",
            org.slug
        ))
        .into());
    }
    orgs::delete(&state, &page.principal, &meta, &org.id).await?;
    Ok(notice("/orgs", &format!("Deleted {}.", org.name)))
}

async fn members_page(State(state): State<AppState>, page: Page, Path(org_ref): Path<String>) -> PageResult {
    render_members(&state, &page, &org_ref, None).await
}

/// The members page; `created` is an invitation just made, whose link shows this once.
async fn render_members(state: &AppState, page: &Page, org_ref: &str, created: Option<NewInvitation>) -> PageResult {
    let org = admin_org(state, page, org_ref).await?;
    let members = orgs::members(state, &page.principal, &org.id).await?;
    let invitations = invitations::list(state, &page.principal, &org.id).await?;
    let owner = org.role == Some(Role::Owner);
    page.ok(
        "org_members.html",
        context! {
            org => org,
            section => "members",
            owner => owner,
            me => &page.principal.user_id,
            members => members,
            invitations => invitations,
            created => created,
        },
    )
}

#[derive(Deserialize)]
struct RoleForm {
    role: Role,
}

async fn set_role(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path((org_ref, user_id)): Path<(String, String)>,
    post: PagePost<RoleForm>,
) -> PageResult {
    let PagePost { page, form } = post;
    let member =
        orgs::set_role(&state, &page.principal, &meta, &org_ref, &user_id, SetRole { role: form.role }).await?;
    let org = admin_org(&state, &page, &org_ref).await;
    let back = org.map_or_else(|_| "/orgs".to_owned(), |o| format!("/orgs/{}/admin/members", o.slug));
    Ok(notice(&back, &format!("{} is now {}.", member.username, member.role.as_str())))
}

async fn remove_member(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path((org_ref, user_id)): Path<(String, String)>,
    post: PagePost<super::layout::NoFields>,
) -> PageResult {
    let page = post.page;
    let org = admin_org(&state, &page, &org_ref).await?;
    let name = orgs::members(&state, &page.principal, &org.id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user_id)
        .map(|m| m.username)
        .ok_or_else(|| Error::not_found("no such member"))?;
    orgs::remove_member(&state, &page.principal, &meta, &org.id, &user_id).await?;
    // Removing yourself leaves the admin area too.
    let back = if user_id == page.principal.user_id {
        "/orgs".to_owned()
    } else {
        format!("/orgs/{}/admin/members", org.slug)
    };
    Ok(notice(&back, &format!("Removed {name}; their connections in this org were revoked.")))
}

#[derive(Deserialize)]
struct InviteForm {
    #[serde(default)]
    email: String,
    role: Role,
    expires_in_days: u32,
}

/// Creates an invitation and shows its link once, on the members page itself (no
/// redirect: the link must not travel in a cookie or URL).
async fn create_invitation(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path(org_ref): Path<String>,
    post: PagePost<InviteForm>,
) -> PageResult {
    let PagePost { page, form } = post;
    let email = Some(form.email).filter(|e| !e.trim().is_empty());
    let req = CreateInvitation { email, role: Some(form.role), expires_in_days: Some(form.expires_in_days) };
    let created = invitations::create(&state, &page.principal, &org_ref, req, &meta).await?;
    render_members(&state, &page, &org_ref, Some(created)).await
}

async fn revoke_invitation(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path((org_ref, id)): Path<(String, String)>,
    post: PagePost<super::layout::NoFields>,
) -> PageResult {
    let page = post.page;
    let org = admin_org(&state, &page, &org_ref).await?;
    invitations::revoke(&state, &page.principal, &org.id, &id, &meta).await?;
    Ok(notice(&format!("/orgs/{}/admin/members", org.slug), "Invitation revoked; its link no longer works."))
}
