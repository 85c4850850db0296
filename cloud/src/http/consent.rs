//! The consent routes, over `crate::consent`: starting a consent from the API or from a
//! browser (`GET /connect/{org}/{key}` shows what will be connected and for whom; its
//! form's `POST` starts it), and the provider's redirect back (`/oauth/callback`), whose
//! page tells the org page the result.

use super::pages::layout::{NoFields, OptionalSession};
use super::pages::{render, Page, PagePost, PageResult};
use crate::access::{ClientMeta, Principal};
use crate::consent::{self, CallbackParams, ConsentChoice, Outcome};
use crate::error::{Error, Result};
use crate::http::extract::{OptionalJson, Path, Query};
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

/// Start a consent for a connector; the state is bound to this login. The body (optional)
/// names the connection to reconnect, or asks to add another account.
#[utoipa::path(post, path = "/v1/orgs/{org}/connectors/{key}/authorize", tag = "connections",
    params(("org" = String, Path), ("key" = String, Path)), request_body(content = Option<ConsentChoice>),
    responses((status = 200, body = AuthorizeUrl), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
async fn authorize(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path((org, key)): Path<(String, String)>,
    OptionalJson(choice): OptionalJson<ConsentChoice>,
) -> Result<axum::Json<AuthorizeUrl>> {
    let authorize_url = consent::start(&state, &principal, &meta, &org, &key, &choice).await?;
    Ok(axum::Json(AuthorizeUrl { authorize_url }))
}

/// The browser's choice, in the confirm page's query (its form posts back to the same URL).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceQuery {
    connection: Option<String>,
    add: Option<String>,
}

impl ChoiceQuery {
    fn choice(self) -> Result<ConsentChoice> {
        let add = match self.add.as_deref() {
            None | Some("0" | "false") => false,
            Some("1" | "true") => true,
            Some(_) => return Err(Error::bad_request("add: 1 or 0")),
        };
        let connection = self.connection.filter(|c| !c.is_empty());
        Ok(ConsentChoice { connection, add })
    }
}

/// Browser entry to a consent: a page that names the org, connector, provider and the
/// account that will own the grant. A link from anywhere may open it; only its button
/// starts anything, so another site cannot start a consent in the member's name.
async fn confirm(
    State(state): State<AppState>,
    page: Page,
    Path((org, key)): Path<(String, String)>,
    Query(choice): Query<ChoiceQuery>,
) -> PageResult {
    let preview = consent::preview(&state, &page.principal, &org, &key, &choice.choice()?).await?;
    page.ok("connect.html", context! { c => preview })
}

/// The confirm page's button: starts the consent and sends the browser to the provider.
async fn connect(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path((org, key)): Path<(String, String)>,
    Query(choice): Query<ChoiceQuery>,
    post: PagePost<NoFields>,
) -> PageResult {
    let url = consent::start(&state, &post.page.principal, &meta, &org, &key, &choice.choice()?).await?;
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
