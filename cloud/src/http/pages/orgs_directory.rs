//! Orgs for members: the directory (your orgs, then every public org with what it
//! offers), creating an org, joining and leaving, and invite links (`/invite/{token}`),
//! which a signed-out visitor can open to sign in or sign up and come back.

use super::layout::{NoFields, OptionalSession};
use super::{notice, render, Page, PagePost, PageResult};
use crate::access::ClientMeta;
use crate::http::extract::Path;
use crate::invitations::{self, Accepted};
use crate::orgs::{self, CreateOrg, Visibility};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs", get(directory))
        .route("/orgs/new", get(new_org_page).post(create_org))
        .route("/orgs/{org}/join", post(join))
        .route("/orgs/{org}/leave", post(leave))
        .route("/invite/{token}", get(invite_page).post(accept_invite))
}

async fn directory(State(state): State<AppState>, page: Page) -> PageResult {
    let all = orgs::list(&state, &page.principal, true).await?;
    let (mine, others): (Vec<_>, Vec<_>) = all.into_iter().partition(|o| o.role.is_some());
    page.ok("orgs.html", context! { mine => mine, others => others })
}

async fn new_org_page(page: Page) -> PageResult {
    page.ok("org_new.html", context! {})
}

#[derive(Deserialize)]
struct NewOrgForm {
    slug: String,
    name: String,
    #[serde(default)]
    description: String,
    visibility: Visibility,
}

async fn create_org(State(state): State<AppState>, meta: ClientMeta, post: PagePost<NewOrgForm>) -> PageResult {
    let PagePost { page, form } = post;
    let req = CreateOrg {
        slug: form.slug,
        name: form.name,
        description: Some(form.description),
        visibility: form.visibility,
    };
    let org = orgs::create(&state, &page.principal, &meta, req).await?;
    Ok(notice(&format!("/orgs/{}", org.slug), &format!("Created {}. You are its owner.", org.name)))
}

async fn join(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path(org): Path<String>,
    post: PagePost<NoFields>,
) -> PageResult {
    let org = orgs::join(&state, &post.page.principal, &meta, &org).await?;
    Ok(notice(&format!("/orgs/{}", org.slug), &format!("You joined {}.", org.name)))
}

async fn leave(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path(org): Path<String>,
    post: PagePost<NoFields>,
) -> PageResult {
    let principal = &post.page.principal;
    let found = orgs::get(&state, principal, &org).await?;
    orgs::remove_member(&state, principal, &meta, &found.id, &principal.user_id).await?;
    Ok(notice("/orgs", &format!("You left {}.", found.name)))
}

/// An invite link: who invites you where, as what, until when. Signed in, a button
/// accepts it; signed out, links to sign in or create an account come back here.
async fn invite_page(
    State(state): State<AppState>,
    OptionalSession(session): OptionalSession,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> PageResult {
    let invitation = invitations::view(&state, &token).await?;
    let here = format!("/invite/{token}");
    let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
    let invitation_q: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    match session {
        Some(principal) => {
            let page = Page::for_principal(&state, principal, &headers).await?;
            page.ok("invite.html", context! { invitation => invitation, action => here })
        }
        None => Ok(render(
            StatusCode::OK,
            "invite.html",
            context! {
                invitation => invitation,
                sign_in => format!("/login?next={next}"),
                sign_up => format!("/signup?next={next}&invitation={invitation_q}"),
            },
        )?),
    }
}

async fn accept_invite(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path(token): Path<String>,
    post: PagePost<NoFields>,
) -> PageResult {
    Ok(match invitations::accept(&state, &post.page.principal, &token, &meta).await? {
        Accepted::Joined(org) => notice(&format!("/orgs/{}", org.slug), &format!("You joined {}.", org.name)),
        Accepted::AlreadyMember(org) => {
            notice(&format!("/orgs/{}", org.slug), &format!("You are already a member of {}.", org.name))
        }
    })
}
