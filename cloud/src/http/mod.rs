//! The HTTP layer: every route and page, one file per resource, over the domain
//! services. The router, its middleware (once, here), the OpenAPI document and the
//! contract-shaped answers for unknown routes, wrong methods and panics are in this file.
//!
//! # Adding an endpoint
//!
//! 1. **Domain first.** The rule goes in the domain module that owns the resource
//!    (`crate::orgs`, `crate::apps`, `crate::connections`, …) as one `pub async fn` that
//!    takes `&AppState`, the `&Principal` and the parsed request, checks the PAT scope
//!    (`principal.require(Scope::…)`) and org access (`crate::access::authorize`), and
//!    returns `crate::error::Result<T>`. Request and answer types derive `Deserialize`
//!    (with `deny_unknown_fields`) / `Serialize` and `utoipa::ToSchema` there.
//! 2. **Handler here**, in the resource's file: extract (`Principal` or
//!    `MaybePrincipal`, `ClientMeta`, and `extract::{Json, Path, Query}`, whose
//!    rejections already speak the contract's error shape), call the one domain function,
//!    map the answer (`axum::Json`, `StatusCode::NO_CONTENT`, `NoStore` for anything that
//!    carries a token or secret). Three to ten lines; no SQL, no rules.
//! 3. **OpenAPI.** Annotate the handler with `#[utoipa::path(…)]` (tag, params, request
//!    body, every status it can answer) and add it to the file's `router()` with
//!    `routes!(…)`. The document at `/openapi.json` is generated from that list; refresh
//!    the snapshot with `UPDATE_OPENAPI=1 cargo test -p latchkey-e2e openapi` and review
//!    the diff in `docs/openapi.json`.
//! 4. **Test** over real HTTP in `tests/e2e/` (both backends where storage is involved):
//!    what a user would check, including the error rows.
//!
//! A page is the same recipe in `pages/`: a handler that renders a template with
//! `pages::render`, and sends a signed-out browser to sign in.

pub mod accounts;
pub mod apps;
pub mod audit;
pub mod connection_health;
pub mod connection_token;
pub mod connections;
pub mod consent;
pub mod cookies;
pub mod devices;
pub mod extract;
pub mod invitations;
pub mod openapi;
pub mod ops;
pub mod orgs;
pub mod pages;
pub mod pats;
pub mod response;
pub mod webhooks;

pub use response::NoStore;

use crate::error::Error;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use latchkey_shared::ErrorCode;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Latchkey", description = "Managed OAuth token broker: the cloud's HTTP API."),
    tags(
        (name = "accounts", description = "Accounts, logins and sessions"),
        (name = "orgs", description = "Orgs and memberships"),
        (name = "tokens", description = "Personal access tokens"),
        (name = "apps", description = "Providers, managed apps and connectors"),
        (name = "connections", description = "Consent and the caller's own connections"),
        (name = "audit", description = "The audit log"),
        (name = "devices", description = "Device pairing (RFC 8628) and PAT revocation (RFC 7009)"),
        (name = "webhooks", description = "Webhook endpoints and their deliveries"),
        (name = "operations", description = "Health and readiness"),
    ),
    components(schemas(latchkey_shared::ErrorBody, latchkey_shared::ErrorCode, latchkey_shared::Scope))
)]
struct ApiDoc;

/// Every documented route, and the OpenAPI document generated from the same list.
fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(ops::router())
        .merge(accounts::router())
        .merge(orgs::router())
        .merge(invitations::router())
        .merge(pats::router())
        .merge(apps::router())
        .merge(consent::router())
        .merge(connections::router())
        .merge(connection_health::router())
        .merge(connection_token::router())
        .merge(audit::router())
        .merge(devices::router())
        .merge(webhooks::router())
        .split_for_parts();
    openapi::complete(&mut spec);
    (router, spec)
}

/// A request path as it may be logged: an invitation token in it is masked.
fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    for prefix in ["/invite/", "/v1/invitations/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            let tail = rest.find('/').map_or("", |i| &rest[i..]);
            return format!("{prefix}…{tail}").into();
        }
    }
    path.into()
}

/// The OpenAPI 3.1 document of the API, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().1
}

/// The whole application.
pub fn app(state: AppState) -> Router {
    let (router, spec) = api();
    let sandbox = state.sandbox.as_ref().map(crate::sandbox::Sandbox::router);
    let metrics = Arc::clone(&state.metrics);
    let drain = state.drain.clone();
    let spec = Arc::new(spec);
    let request_id = HeaderName::from_static("x-request-id");
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let spec = Arc::clone(&spec);
                async move { axum::Json(spec.as_ref().clone()) }
            }),
        )
        .merge(pages::router())
        .merge(consent::page_router())
        .route("/metrics", axum::routing::get(ops::metrics))
        .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&metrics), crate::metrics::track))
        .fallback(|headers: axum::http::HeaderMap| async move {
            if pages::wants_html(&headers) {
                pages::layout::error_page(StatusCode::NOT_FOUND, "Not found", "There is no page at this address.")
            } else {
                Error::not_found("no such endpoint").into_response()
            }
        })
        .method_not_allowed_fallback(|| async {
            Error::client(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed, "method not allowed here")
        })
        .with_state(state)
        .merge(sandbox.unwrap_or_default())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http()
                // Method and path only: query strings can carry OAuth codes and states,
                // and an invite link's path its token.
                .make_span_with(|req: &axum::http::Request<_>| {
                    tracing::info_span!("request", method = %req.method(), path = %loggable_path(req.uri().path()))
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked");
            Error::client(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::ServerError, "internal error").into_response()
        }))
        // Outermost, so every answer of a draining replica closes its connection.
        .layer(axum::middleware::from_fn_with_state(drain, crate::drain::close_connections))
}
