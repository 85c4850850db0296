//! The consent routes, over `crate::consent`: starting a consent from the API or from a
//! browser (`GET /connect/{org}/{key}` shows what will be connected and for whom; its
//! form's `POST` starts it), and the provider's redirect back (`/oauth/callback`), whose
//! page tells the org page the result.

use super::pages::layout::{NoFields, OptionalSession};
use super::pages::{render, Page, PagePost, PageResult};
use crate::access::{ClientMeta, Principal};
use crate::consent::{self, CallbackParams, Outcome};
use crate::error::Result;
use crate::http::extract::{Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use latchkey_shared::ErrorBody;
use minijinja::context;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(authorize))
}

/// The browser routes, outside the API document.
pub fn page_router() -> Router<AppState> {
    Router::new().route("/connect/{org}/{key}", get(confirm).post(connect)).route("/oauth/callback", get(callback))
}

#[derive(Serialize, ToSchema)]
struct AuthorizeUrl {
    /// Open in the member's browser (a new tab); the provider returns to `/oauth/callback`.
    authorize_url: String,
}

/// Start a consent for a connector; the state is bound to this login.
#[utoipa::path(post, path = "/v1/orgs/{org}/connectors/{key}/authorize", tag = "connections",
    params(("org" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = AuthorizeUrl), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn authorize(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, key)): Path<(String, String)>,
) -> Result<axum::Json<AuthorizeUrl>> {
    Ok(axum::Json(AuthorizeUrl { authorize_url: consent::start(&state, &principal, &meta, &org, &key).await? }))
}

/// Browser entry to a consent: a page that names the org, connector, provider and the
/// account that will own the grant. A link from anywhere may open it; only its button
/// starts anything, so another site cannot start a consent in the member's name.
async fn confirm(State(state): State<AppState>, page: Page, Path((org, key)): Path<(String, String)>) -> PageResult {
    let preview = consent::preview(&state, &page.principal, &org, &key).await?;
    page.ok("connect.html", context! { c => preview })
}

/// The confirm page's button: starts the consent and sends the browser to the provider.
async fn connect(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path((org, key)): Path<(String, String)>,
    post: PagePost<NoFields>,
) -> PageResult {
    let url = consent::start(&state, &post.page.principal, &meta, &org, &key).await?;
    Ok(Redirect::to(&url).into_response())
}

/// The provider's redirect. A stale or foreign cookie is not an error here: the page
/// says what went wrong.
async fn callback(
    State(state): State<AppState>,
    OptionalSession(principal): OptionalSession,
    meta: ClientMeta,
    Query(params): Query<CallbackParams>,
) -> Result<Response> {
    let outcome = consent::callback(&state, principal.as_ref(), &meta, params).await?;
    let status = if outcome.ok { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    render(status, "callback.html", callback_page(outcome))
}

/// The callback page's context: the message, and the signal it sends the opener (never
/// a token).
fn callback_page(outcome: Outcome) -> minijinja::Value {
    let signal = serde_json::json!({
        "result": if outcome.ok { "success" } else { "error" },
        "connection_id": outcome.connection_id,
        "message": outcome.message,
    });
    context! { ok => outcome.ok, message => outcome.message, org_slug => outcome.org_slug, signal => signal }
}
