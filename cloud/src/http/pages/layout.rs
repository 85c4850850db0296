//! What every signed-in page shares, and how a page answers when something goes wrong.
//!
//! - [`Page`] is the signed-in browser: its login, plus what the layout shows (the user,
//!   navigation to their orgs and the admin areas they may open, the form token, a notice
//!   carried over a redirect). A missing, expired or revoked session never reaches a
//!   handler: the browser is sent to sign in and brought back to where it was going.
//! - [`PagePost`] is a signed-in form post: same-origin and carrying this login's CSRF
//!   token, or refused before the handler runs.
//! - [`PageError`] turns the crate's one error type into a page with the reason and a way
//!   forward: browsers never see the API's JSON errors.
//! - [`notice`] redirects after a successful post (post/redirect/get) with a one-line
//!   notice the next page shows once.

use super::{render, to_login};
use crate::access::credentials::{require_same_origin, session_cookie};
use crate::access::{csrf, session, Principal, Role};
use crate::accounts;
use crate::error::Error;
use crate::orgs;
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use base64::Engine;
use minijinja::context;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The cookie that carries a notice across one redirect.
const NOTICE_COOKIE: &str = "latchkey_notice";

/// An org in the navigation.
#[derive(Clone, Debug, Serialize)]
pub struct NavOrg {
    pub slug: String,
    pub name: String,
    pub admin: bool,
}

/// What the shared layout shows around every signed-in page.
#[derive(Clone, Debug, Serialize)]
pub struct Layout {
    pub username: String,
    pub email: String,
    pub csrf: String,
    pub orgs: Vec<NavOrg>,
    /// A notice from the post that redirected here, shown once.
    pub notice: Option<String>,
}

impl Layout {
    pub fn admin_of(&self, slug: &str) -> bool {
        self.orgs.iter().any(|o| o.admin && o.slug == slug)
    }
}

/// A signed-in browser.
pub struct Page {
    pub principal: Principal,
    pub layout: Layout,
}

impl Page {
    /// Renders `name` inside the layout. The notice, if one was carried here, is spent.
    pub fn render(&self, status: StatusCode, name: &str, ctx: minijinja::Value) -> PageResult {
        let mut response = render(
            status,
            name,
            context! { layout => &self.layout, csrf => &self.layout.csrf, username => &self.layout.username, ..ctx },
        )?;
        if self.layout.notice.is_some() {
            if let Ok(v) =
                Cookie::build((NOTICE_COOKIE, "")).path("/").max_age(time::Duration::ZERO).build().to_string().parse()
            {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        Ok(response)
    }

    pub fn ok(&self, name: &str, ctx: minijinja::Value) -> PageResult {
        self.render(StatusCode::OK, name, ctx)
    }
}

impl FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let back = back_to(parts);
        let Some(cookie) = session_cookie(&parts.headers) else { return Err(to_login(&back)) };
        let principal = match session::from_cookie(state, &cookie).await {
            Ok(principal) => principal,
            // Expired, signed out or revoked elsewhere: sign in again, then come back.
            Err(Error::Client { status: StatusCode::UNAUTHORIZED, .. }) => return Err(signed_out(&back)),
            Err(e) => return Err(PageError(e).into_response()),
        };
        let layout = layout(state, &principal, &parts.headers).await.map_err(|e| PageError(e).into_response())?;
        Ok(Page { principal, layout })
    }
}

impl Page {
    /// The page of a login found some other way (a route that also answers signed-out
    /// browsers reads it with [`OptionalSession`]).
    pub async fn for_principal(
        state: &AppState,
        principal: Principal,
        headers: &header::HeaderMap,
    ) -> crate::error::Result<Page> {
        let layout = layout(state, &principal, headers).await?;
        Ok(Page { principal, layout })
    }
}

async fn layout(state: &AppState, principal: &Principal, headers: &header::HeaderMap) -> crate::error::Result<Layout> {
    let me = accounts::me(state, &principal.user_id).await?;
    let orgs = orgs::list(state, principal, false)
        .await?
        .into_iter()
        .map(|o| NavOrg { admin: matches!(o.role, Some(Role::Owner | Role::Admin)), slug: o.slug, name: o.name })
        .collect();
    let notice = axum_extra::extract::CookieJar::from_headers(headers)
        .get(NOTICE_COOKIE)
        .and_then(|c| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c.value()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map(|n| n.chars().take(300).collect::<String>())
        .filter(|n| !n.is_empty());
    Ok(Layout {
        username: me.username,
        email: me.email,
        csrf: csrf::session_token(&state.keys, principal).unwrap_or_default(),
        orgs,
        notice,
    })
}

/// Where sign-in should return to: this page for a GET; for a form post, the page the
/// form was on (its same-origin `Referer`), else home.
fn back_to(parts: &Parts) -> String {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        return parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    }
    parts
        .headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok())
        .map(|u| match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        })
        .unwrap_or_else(|| "/".to_owned())
}

/// To sign-in, dropping the dead cookie.
fn signed_out(back: &str) -> Response {
    let mut response = to_login(back);
    if let Ok(v) = super::super::cookies::cleared().to_string().parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// A signed-in form post: from our own pages, with this login's token, and a body that
/// reads as `T` (which ignores the `csrf` field it does not name).
pub struct PagePost<T> {
    pub page: Page,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for PagePost<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let page = Page::from_request_parts(&mut parts, state).await?;
        require_same_origin(&parts.headers, &state.public_url).map_err(|e| PageError(e).into_response())?;
        let bytes = axum::body::to_bytes(body, crate::http::BODY_LIMIT)
            .await
            .map_err(|_| PageError(Error::bad_request("the form is too large")).into_response())?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let token = pairs.iter().find(|(k, _)| k == csrf::FIELD).map(|(_, v)| v.as_str());
        csrf::check_session_token(&state.keys, &page.principal, token).map_err(|e| PageError(e).into_response())?;
        let form = serde_urlencoded::from_bytes::<T>(&bytes)
            .map_err(|e| PageError(Error::bad_request(format!("the form is incomplete: {e}"))).into_response())?;
        Ok(PagePost { page, form })
    }
}

/// After a successful post: back to a page, which shows `message` once.
pub fn notice(to: &str, message: &str) -> Response {
    // Encoded: a message names orgs and people, whose names may hold `;` or non-ASCII,
    // which a cookie value cannot carry as they are.
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(message);
    let cookie = Cookie::build((NOTICE_COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(time::Duration::seconds(60))
        .build();
    let mut response = Redirect::to(to).into_response();
    if let Ok(v) = cookie.to_string().parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

pub type PageResult = Result<Response, PageError>;

/// An error on an HTML route: a page with the reason and a way forward.
#[derive(Debug)]
pub struct PageError(pub Error);

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError(e)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let (title, reason) = match self.0 {
            Error::Client { status: StatusCode::UNAUTHORIZED, .. } => return signed_out("/"),
            Error::Client { status, description, .. } => (title_for(status), description),
            ref e if e.db_unavailable().is_some() => {
                let mut page =
                    error_page(status, "Busy", "The service cannot reach its database. Try again in a moment.");
                if let Some(cause) = e.db_unavailable() {
                    crate::error::mark_db_unavailable(&mut page, cause);
                }
                return page;
            }
            other => {
                tracing::error!(error = %other, "page failed");
                (
                    "Something went wrong",
                    "Something went wrong on our side. Try again; if it keeps happening, tell your administrator."
                        .to_owned(),
                )
            }
        };
        error_page(status, title, &reason)
    }
}

/// The error page, outside any login (it must render even when the layout cannot load).
pub fn error_page(status: StatusCode, title: &str, reason: &str) -> Response {
    match render(status, "error.html", context! { title, reason, status => status.as_u16() }) {
        Ok(r) => r,
        Err(_) => (status, reason.to_owned()).into_response(),
    }
}

fn title_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::CONFLICT => "That clashes with something",
        StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
        StatusCode::PAYLOAD_TOO_LARGE => "Too large",
        _ => "That did not work",
    }
}

/// The browser's login if its cookie still names one; `None` when there is no cookie or
/// a dead one. For routes that must answer either way (the OAuth callback, sign-out).
pub struct OptionalSession(pub Option<Principal>);

impl FromRequestParts<AppState> for OptionalSession {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(cookie) = session_cookie(&parts.headers) else { return Ok(OptionalSession(None)) };
        match session::from_cookie(state, &cookie).await {
            Ok(principal) => Ok(OptionalSession(Some(principal))),
            Err(Error::Client { .. }) => Ok(OptionalSession(None)),
            Err(e) => Err(PageError(e).into_response()),
        }
    }
}

/// A form with nothing but its token.
#[derive(Debug, serde::Deserialize)]
pub struct NoFields {}
