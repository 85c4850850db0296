//! `/v1/auth/*`, `/v1/me`, `/v1/sessions`: over `crate::accounts`.

use crate::access::ClientMeta;
use crate::access::Principal;
use crate::accounts::{
    self, ChangePassword, LoginRequest, PasswordChanged, RefreshRequest, RegisterRequest, Session, SessionsRevoked,
    TokenPair, User,
};
use crate::error::Result;
use crate::http::cookies;
use crate::http::extract::{Json, Path};
use crate::http::NoStore;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum_extra::extract::cookie::CookieJar;
use latchkey_shared::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
        .routes(routes!(list_sessions, revoke_all_sessions))
        .routes(routes!(revoke_session))
}

/// Create an account.
#[utoipa::path(post, path = "/v1/auth/register", tag = "accounts", request_body = RegisterRequest,
    responses((status = 201, body = User), (status = 400, description = "invalid input, weak password, email or username taken", body = ErrorBody),
              (status = 403, description = "registration is closed (`open_registration = false`): by invitation only", body = ErrorBody),
              (status = 429, description = "too many registrations from this address", body = ErrorBody),
              (status = 503, description = "too many passwords being hashed; see Retry-After", body = ErrorBody)))]
async fn register(
    State(state): State<AppState>,
    meta: ClientMeta,
    Json(req): Json<RegisterRequest>,
) -> Result<(StatusCode, axum::Json<User>)> {
    Ok((StatusCode::CREATED, axum::Json(accounts::register(&state, req, &meta).await?)))
}

/// Log in: an access JWT (15 minutes) and a rotating refresh token; browsers also get the
/// `latchkey_session` cookie.
#[utoipa::path(post, path = "/v1/auth/login", tag = "accounts", request_body = LoginRequest,
    responses((status = 200, body = TokenPair), (status = 400, description = "invalid input, e.g. an email over 254 characters", body = ErrorBody),
              (status = 401, description = "wrong email or password", body = ErrorBody),
              (status = 429, description = "too many attempts", body = ErrorBody),
              (status = 503, description = "too many passwords being hashed; see Retry-After", body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    meta: ClientMeta,
    Json(req): Json<LoginRequest>,
) -> Result<(CookieJar, NoStore<TokenPair>)> {
    let login = accounts::login(&state, req, &meta).await?;
    Ok((jar.add(cookies::session(&state, &login)), NoStore(login.tokens)))
}

/// Trade a refresh token for a new pair. Replaying a used one revokes the whole login.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "accounts", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair), (status = 400, description = "invalid, used or revoked refresh token", body = ErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    meta: ClientMeta,
    Json(req): Json<RefreshRequest>,
) -> Result<NoStore<TokenPair>> {
    Ok(NoStore(accounts::refresh(&state, req, &meta).await?))
}

/// End the current login (its refresh tokens, JWTs and cookie).
#[utoipa::path(post, path = "/v1/auth/logout", tag = "accounts", responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    principal: Principal,
) -> Result<(CookieJar, StatusCode)> {
    let session_id = principal.require_login()?;
    accounts::logout(&state, session_id).await?;
    Ok((jar.remove(cookies::cleared()), StatusCode::NO_CONTENT))
}

/// The calling user.
#[utoipa::path(get, path = "/v1/me", tag = "accounts", responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
async fn me(State(state): State<AppState>, principal: Principal) -> Result<axum::Json<User>> {
    Ok(axum::Json(accounts::me(&state, &principal.user_id).await?))
}

/// Change the caller's password (a login, not a PAT). Every other login of the caller is
/// signed out; this one stays.
#[utoipa::path(post, path = "/v1/me/password", tag = "accounts", request_body = ChangePassword,
    responses((status = 200, body = PasswordChanged),
              (status = 400, description = "wrong current password (`invalid_grant`), or a weak new one (`weak_password`)", body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, description = "needs a login, not a PAT", body = ErrorBody),
              (status = 429, description = "too many wrong current passwords", body = ErrorBody),
              (status = 503, description = "too many passwords being hashed; see Retry-After", body = ErrorBody)))]
async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Json(req): Json<ChangePassword>,
) -> Result<axum::Json<PasswordChanged>> {
    Ok(axum::Json(accounts::change_password(&state, &principal, req, &meta).await?))
}

/// The caller's active logins.
#[utoipa::path(get, path = "/v1/sessions", tag = "accounts", responses((status = 200, body = Vec<Session>), (status = 401, body = ErrorBody)))]
async fn list_sessions(State(state): State<AppState>, principal: Principal) -> Result<axum::Json<Vec<Session>>> {
    let current = principal.require_login()?;
    Ok(axum::Json(accounts::sessions(&state, &principal.user_id, Some(current)).await?))
}

/// Sign out everywhere: every login of the caller, this one included (its cookie is
/// cleared; its refresh tokens and JWTs stop working).
#[utoipa::path(delete, path = "/v1/sessions", tag = "accounts",
    responses((status = 200, body = SessionsRevoked), (status = 401, body = ErrorBody),
              (status = 403, description = "needs a login, not a PAT", body = ErrorBody)))]
async fn revoke_all_sessions(
    State(state): State<AppState>,
    jar: CookieJar,
    principal: Principal,
    meta: ClientMeta,
) -> Result<(CookieJar, axum::Json<SessionsRevoked>)> {
    let revoked = accounts::revoke_all_sessions(&state, &principal, &meta).await?;
    Ok((jar.remove(cookies::cleared()), axum::Json(revoked)))
}

/// Revoke one of the caller's logins.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "accounts", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn revoke_session(
    State(state): State<AppState>,
    principal: Principal,
    meta: ClientMeta,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    accounts::revoke_session(&state, &principal, &id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}
