//! Accounts and logins: registration with Argon2id, login with a JWT and a rotating
//! refresh token (one family per login, revoked whole on reuse), browser session cookies,
//! and listing or revoking one's logins.
//!
//! Passwords and tokens stay in `Secret`s; only hashes reach the database.

use crate::access::session::{issue_access_jwt, ACCESS_TTL_SECS};
use crate::access::ClientMeta;
use crate::access::Principal;
use crate::audit;
use crate::error::{Error, Result};
use crate::invitations;
use crate::ratelimit;
use crate::state::AppState;
use crate::store::{new_id, now, rfc3339, unique_violation};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::StatusCode;
use base64::Engine;
use latchkey_shared::pat::sha256_hex;
use latchkey_shared::secret::SecretString;
use latchkey_shared::ErrorCode;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use utoipa::ToSchema;

const LOGIN_WINDOW_SECS: i64 = 15 * 60;
const REGISTER_WINDOW_SECS: i64 = 60 * 60;
const MAX_EMAIL_LEN: usize = 254;
pub const MIN_PASSWORD_LEN: usize = 10;
const MAX_PASSWORD_LEN: usize = 256;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 3 to 32 characters of a-z, 0-9, `_` and `-`.
    #[schema(min_length = 3, max_length = 32, pattern = "^[A-Za-z0-9_-]{3,32}$")]
    pub username: String,
    /// At least 10 characters, and not easy to guess (zxcvbn score 3 or more).
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 256)]
    pub password: SecretString,
    /// An invitation token (the last part of an invite link): registering with a pending
    /// invitation is allowed even where open registration is off.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub invitation: Option<SecretString>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    /// The same rules as at registration.
    #[schema(value_type = String, format = Password, min_length = 10, max_length = 256)]
    pub new_password: SecretString,
}

/// Answer of a password change.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordChanged {
    /// The user's other logins, now signed out.
    pub sessions_revoked: u64,
}

/// Answer of signing out everywhere.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsRevoked {
    pub sessions_revoked: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub email: String,
    pub username: String,
    pub created_at: String,
}

/// Answer of login and refresh. Carries tokens, so it is sent with `no-store`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    #[schema(value_type = String)]
    pub access_token: SecretString,
    #[schema(value_type = String)]
    pub refresh_token: SecretString,
    pub token_type: &'static str,
    /// Seconds until `access_token` expires.
    pub expires_in: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub id: String,
    /// The browser or client, read from its user agent: "Chrome on Linux".
    pub device: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub created_at: String,
    pub last_used_at: String,
    pub expires_at: String,
    /// The login this request was made with.
    pub current: bool,
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    token_id: String,
    session_id: String,
    used_at: Option<i64>,
    expires_at: i64,
    user_id: String,
    session_revoked_at: Option<i64>,
    session_expires_at: i64,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    user_agent: Option<String>,
    ip: Option<String>,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
}

/// A fresh login: its tokens, and the secret of its browser cookie.
pub struct Login {
    pub tokens: TokenPair,
    pub cookie_secret: SecretString,
    pub max_age_secs: i64,
}

/// Whether an account may be created now. Open registration allows anyone; otherwise
/// (an invite-only deployment) only someone holding a pending invitation, for their email
/// when the invitation names one.
pub async fn registration_allowed(state: &AppState, invitation: Option<&str>, email: &str) -> Result<bool> {
    if registration_open(state) {
        return Ok(true);
    }
    match invitation {
        Some(token) => invitations::is_pending(state, token, Some(email)).await,
        None => Ok(false),
    }
}

/// Whether the sign-in page should offer sign-up to anyone (invitations always may).
pub fn registration_open(state: &AppState) -> bool {
    state.config.open_registration
}

/// The password rules, as the sign-up and password pages show them before typing.
pub fn password_rules() -> Vec<String> {
    vec![
        format!("At least {MIN_PASSWORD_LEN} characters (at most {MAX_PASSWORD_LEN})."),
        "Not easy to guess: no common passwords, keyboard patterns, dates or repeats.".to_owned(),
        "Not built from your email or username.".to_owned(),
        "A phrase of four or more unrelated words works well.".to_owned(),
    ]
}

pub async fn register(state: &AppState, req: RegisterRequest, meta: &ClientMeta) -> Result<User> {
    let email = normalize_email(&req.email)?;
    let username = validate_username(&req.username)?;
    let invitation = req.invitation.as_ref().map(|t| t.expose().to_owned());
    if !registration_allowed(state, invitation.as_deref(), &email).await? {
        return Err(Error::forbidden(
            "registration here is by invitation only: open the invite link you were sent, for this email address",
        ));
    }
    let (hits, retry) = ratelimit::hit(&state.store, &format!("register-ip:{}", meta.ip), REGISTER_WINDOW_SECS).await?;
    if hits > i64::from(state.config.registrations_per_ip) {
        return Err(Error::rate_limited(retry));
    }
    let password_hash = hash_password(state, req.password, [email.clone(), username.clone()]).await?;
    let id = new_id();
    let now = now();
    let inserted = sqlx::query(
        "insert into users (id, email, username, password_hash, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $5)",
    )
    .bind(&id)
    .bind(&email)
    .bind(&username)
    .bind(&password_hash)
    .bind(now)
    .execute(state.store.pool())
    .await;
    if let Err(err) = inserted {
        return Err(match unique_violation(&err) {
            Some(c) if c.contains("email") => Error::client(
                StatusCode::BAD_REQUEST,
                ErrorCode::EmailTaken,
                "an account with this email already exists",
            ),
            Some(c) if c.contains("username") => {
                Error::client(StatusCode::BAD_REQUEST, ErrorCode::UsernameTaken, "this username is taken")
            }
            _ => err.into(),
        });
    }
    audit::record(
        &state.store,
        audit::Event {
            actor_id: Some(&id),
            action: "account.register",
            target: Some(&id),
            outcome: "success",
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
            ..Default::default()
        },
    )
    .await?;
    Ok(User { id, email, username, created_at: rfc3339(now) })
}

pub async fn login(state: &AppState, req: LoginRequest, meta: &ClientMeta) -> Result<Login> {
    let limits = &state.config;
    let email = req.email.trim().to_lowercase();
    // The email is part of a rate-limit key: no account has a longer one.
    if email.len() > MAX_EMAIL_LEN {
        return Err(Error::bad_request(format!("email: at most {MAX_EMAIL_LEN} characters")));
    }
    let (ip_hits, retry) = ratelimit::hit(&state.store, &format!("login-ip:{}", meta.ip), LOGIN_WINDOW_SECS).await?;
    if ip_hits > i64::from(limits.login_attempts_per_ip) {
        return Err(Error::rate_limited(retry));
    }
    // Every attempt counts before its password is checked, in one atomic step, so
    // parallel guesses cannot all pass a check that none of them has counted yet. A
    // success is taken back off below.
    let fail_key = format!("login-fail:{email}");
    let (attempts, retry) = ratelimit::hit(&state.store, &fail_key, LOGIN_WINDOW_SECS).await?;
    if attempts > i64::from(limits.login_failures_per_account) {
        return Err(Error::rate_limited(retry));
    }
    let user: Option<(String, String)> = sqlx::query_as("select id, password_hash from users where email = $1")
        .bind(&email)
        .fetch_optional(state.store.pool())
        .await?;
    let (user_id, hash) = user.unzip();
    let verified = match verify_password(state, req.password, hash).await {
        Ok(verified) => verified,
        // No password was checked (the line was full, or the task failed): not a guess.
        Err(busy) => {
            ratelimit::undo(&state.store, &fail_key, LOGIN_WINDOW_SECS).await?;
            return Err(busy);
        }
    };
    let user_id = match (user_id, verified) {
        (Some(id), true) => id,
        (user_id, _) => {
            audit::record(
                &state.store,
                audit::Event {
                    actor_id: user_id.as_deref(),
                    action: "account.login",
                    outcome: "failure",
                    ip: Some(&meta.ip),
                    user_agent: meta.user_agent.as_deref(),
                    ..Default::default()
                },
            )
            .await?;
            return Err(Error::client(StatusCode::UNAUTHORIZED, ErrorCode::InvalidGrant, "invalid email or password"));
        }
    };
    ratelimit::undo(&state.store, &fail_key, LOGIN_WINDOW_SECS).await?;
    open_session(state, &user_id, meta).await
}

/// A new login for `user_id`: its session row, refresh token, JWT and cookie secret.
pub async fn open_session(state: &AppState, user_id: &str, meta: &ClientMeta) -> Result<Login> {
    let user_id = user_id.to_owned();
    let now = now();
    let max_age_secs = state.config.session_lifetime_secs();
    let session_id = new_id();
    let cookie_secret = random_token("");
    sqlx::query(
        "insert into sessions (id, user_id, cookie_hash, user_agent, ip, expires_at, last_used_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $7, $7)",
    )
    .bind(&session_id)
    .bind(&user_id)
    .bind(sha256_hex(cookie_secret.expose()))
    .bind(meta.user_agent.as_deref())
    .bind(&meta.ip)
    .bind(now + max_age_secs)
    .bind(now)
    .execute(state.store.pool())
    .await?;
    let refresh_token = insert_refresh_token(state.store.pool(), &session_id, now + max_age_secs).await?;
    audit::record(
        &state.store,
        audit::Event {
            actor_id: Some(&user_id),
            action: "account.login",
            target: Some(&session_id),
            outcome: "success",
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
            ..Default::default()
        },
    )
    .await?;
    let access_token = SecretString::new(issue_access_jwt(state, &user_id, &session_id)?);
    Ok(Login {
        tokens: TokenPair { access_token, refresh_token, token_type: "Bearer", expires_in: ACCESS_TTL_SECS },
        cookie_secret,
        max_age_secs,
    })
}

/// Trades a refresh token for a new pair. A refresh token works once: presenting a used
/// one means it was copied, so the whole login is revoked.
pub async fn refresh(state: &AppState, req: RefreshRequest, meta: &ClientMeta) -> Result<TokenPair> {
    let invalid = || {
        Error::client(StatusCode::BAD_REQUEST, ErrorCode::InvalidGrant, "refresh token is invalid, expired or revoked")
    };
    let row: Option<RefreshRow> = sqlx::query_as(
        "select r.id as token_id, r.session_id, r.used_at, r.expires_at, s.user_id, \
         s.revoked_at as session_revoked_at, s.expires_at as session_expires_at \
         from refresh_tokens r join sessions s on s.id = r.session_id where r.token_hash = $1",
    )
    .bind(sha256_hex(req.refresh_token.expose()))
    .fetch_optional(state.store.pool())
    .await?;
    let RefreshRow {
        token_id,
        session_id,
        used_at,
        expires_at,
        user_id,
        session_revoked_at,
        session_expires_at: session_expires,
    } = row.ok_or_else(invalid)?;
    let now = now();
    if session_revoked_at.is_some() || session_expires <= now || expires_at <= now {
        return Err(invalid());
    }
    if used_at.is_some() {
        return Err(reuse_detected(state, &session_id, &user_id, meta).await);
    }
    let mut tx = state.store.pool().begin().await?;
    // Write first, so SQLite takes its write lock at once and concurrent refreshes queue.
    let claimed =
        sqlx::query("update refresh_tokens set used_at = $1, updated_at = $1 where id = $2 and used_at is null")
            .bind(now)
            .bind(&token_id)
            .execute(&mut *tx)
            .await?;
    if claimed.rows_affected() == 0 {
        tx.rollback().await?;
        return Err(reuse_detected(state, &session_id, &user_id, meta).await);
    }
    let refresh_token = insert_refresh_token(&mut *tx, &session_id, session_expires).await?;
    tx.commit().await?;
    let access_token = SecretString::new(issue_access_jwt(state, &user_id, &session_id)?);
    Ok(TokenPair { access_token, refresh_token, token_type: "Bearer", expires_in: ACCESS_TTL_SECS })
}

async fn reuse_detected(state: &AppState, session_id: &str, user_id: &str, meta: &ClientMeta) -> Error {
    let revoked = revoke_session_row(state, session_id).await;
    let audited = audit::record(
        &state.store,
        audit::Event {
            actor_id: Some(user_id),
            action: "account.refresh_reuse",
            target: Some(session_id),
            outcome: "session_revoked",
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
            ..Default::default()
        },
    )
    .await;
    match revoked.and(audited) {
        Ok(()) => Error::client(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidGrant,
            "refresh token was already used; this login has been revoked, log in again",
        ),
        Err(e) => e,
    }
}

pub async fn logout(state: &AppState, session_id: &str) -> Result<()> {
    revoke_session_row(state, session_id).await
}

pub async fn me(state: &AppState, user_id: &str) -> Result<User> {
    let (id, email, username, created_at): (String, String, String, i64) =
        sqlx::query_as("select id, email, username, created_at from users where id = $1")
            .bind(user_id)
            .fetch_optional(state.store.pool())
            .await?
            .ok_or_else(|| Error::unauthenticated("account no longer exists"))?;
    Ok(User { id, email, username, created_at: rfc3339(created_at) })
}

/// The caller's own audit events (logins, token fetches with the PAT or device, changes),
/// newest first.
pub async fn audit(state: &AppState, principal: &Principal, filter: &audit::Filter) -> Result<audit::AuditPage> {
    principal.require(latchkey_shared::Scope::AuditRead)?;
    audit::list(&state.store, Some(&principal.user_id), principal.bound_org(), filter).await
}

pub async fn sessions(state: &AppState, user_id: &str, current: Option<&str>) -> Result<Vec<Session>> {
    let rows: Vec<SessionRow> = sqlx::query_as(
        "select id, user_agent, ip, created_at, last_used_at, expires_at from sessions \
         where user_id = $1 and revoked_at is null and expires_at > $2 order by created_at desc",
    )
    .bind(user_id)
    .bind(now())
    .fetch_all(state.store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|SessionRow { id, user_agent, ip, created_at: created, last_used_at: last_used, expires_at: expires }| {
            Session {
                current: current == Some(id.as_str()),
                id,
                device: describe_user_agent(user_agent.as_deref()),
                user_agent,
                ip,
                created_at: rfc3339(created),
                last_used_at: rfc3339(last_used),
                expires_at: rfc3339(expires),
            }
        })
        .collect())
}

/// Revokes one of the user's own logins; someone else's answers 404.
pub async fn revoke_session(
    state: &AppState,
    principal: &Principal,
    session_id: &str,
    meta: &ClientMeta,
) -> Result<()> {
    principal.require_login()?;
    let now = now();
    let done = sqlx::query(
        "update sessions set revoked_at = $1, updated_at = $1 where id = $2 and user_id = $3 and revoked_at is null",
    )
    .bind(now)
    .bind(session_id)
    .bind(&principal.user_id)
    .execute(state.store.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("no such session"));
    }
    record(state, &principal.user_id, "session.revoke", Some(session_id), meta, None).await
}

/// Signs the user out everywhere: every login of theirs, the caller's own included.
pub async fn revoke_all_sessions(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
) -> Result<SessionsRevoked> {
    principal.require_login()?;
    let revoked = revoke_sessions_except(state, &principal.user_id, None).await?;
    record(
        state,
        &principal.user_id,
        "session.revoke_all",
        None,
        meta,
        Some(serde_json::json!({ "sessions_revoked": revoked })),
    )
    .await?;
    Ok(SessionsRevoked { sessions_revoked: revoked })
}

async fn revoke_sessions_except(state: &AppState, user_id: &str, keep: Option<&str>) -> Result<u64> {
    let now = now();
    let done = sqlx::query(
        "update sessions set revoked_at = $1, updated_at = $1 \
         where user_id = $2 and revoked_at is null and id <> $3",
    )
    .bind(now)
    .bind(user_id)
    .bind(keep.unwrap_or(""))
    .execute(state.store.pool())
    .await?;
    Ok(done.rows_affected())
}

/// Changes the caller's password (a login only, not a PAT), after checking the current
/// one; every other login of theirs is then signed out.
pub async fn change_password(
    state: &AppState,
    principal: &Principal,
    req: ChangePassword,
    meta: &ClientMeta,
) -> Result<PasswordChanged> {
    let session_id = principal.require_login()?.to_owned();
    let user_id = principal.user_id.clone();
    // Wrong current passwords count like failed logins of this account.
    let fail_key = format!("password-fail:{user_id}");
    let (attempts, retry) = ratelimit::hit(&state.store, &fail_key, LOGIN_WINDOW_SECS).await?;
    if attempts > i64::from(state.config.login_failures_per_account) {
        return Err(Error::rate_limited(retry));
    }
    let row: Option<(String, String, String)> =
        sqlx::query_as("select email, username, password_hash from users where id = $1")
            .bind(&user_id)
            .fetch_optional(state.store.pool())
            .await?;
    let (email, username, hash) = row.ok_or_else(|| Error::unauthenticated("account no longer exists"))?;
    let verified = match verify_password(state, req.current_password, Some(hash.clone())).await {
        Ok(verified) => verified,
        Err(busy) => {
            ratelimit::undo(&state.store, &fail_key, LOGIN_WINDOW_SECS).await?;
            return Err(busy);
        }
    };
    if !verified {
        audit::record(
            &state.store,
            audit::Event {
                actor_id: Some(&user_id),
                action: "account.password_change",
                target: Some(&user_id),
                outcome: "failure",
                ip: Some(&meta.ip),
                user_agent: meta.user_agent.as_deref(),
                ..Default::default()
            },
        )
        .await?;
        return Err(Error::client(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidGrant,
            "current_password: that is not your current password",
        ));
    }
    ratelimit::undo(&state.store, &fail_key, LOGIN_WINDOW_SECS).await?;
    let new_hash = hash_password(state, req.new_password, [email, username]).await?;
    let now = now();
    // Only if the password is still the one checked above: two changes at once cannot
    // both pass on the old password.
    let done = sqlx::query("update users set password_hash = $1, updated_at = $2 where id = $3 and password_hash = $4")
        .bind(&new_hash)
        .bind(now)
        .bind(&user_id)
        .bind(&hash)
        .execute(state.store.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::conflict(ErrorCode::Conflict, "the password was changed at the same time; try again"));
    }
    let revoked = revoke_sessions_except(state, &user_id, Some(&session_id)).await?;
    record(
        state,
        &user_id,
        "account.password_change",
        Some(&user_id),
        meta,
        Some(serde_json::json!({ "sessions_revoked": revoked })),
    )
    .await?;
    Ok(PasswordChanged { sessions_revoked: revoked })
}

/// A successful account action in the audit log, with where it came from.
async fn record(
    state: &AppState,
    user_id: &str,
    action: &str,
    target: Option<&str>,
    meta: &ClientMeta,
    detail: Option<serde_json::Value>,
) -> Result<()> {
    audit::record(
        &state.store,
        audit::Event {
            actor_id: Some(user_id),
            action,
            target,
            outcome: "success",
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
            detail,
            ..Default::default()
        },
    )
    .await
}

/// A person's reading of a user agent: "Chrome on Linux", "Firefox on Windows",
/// "latchkey-agent 0.3", "curl 8.5". Good enough to recognise one's own devices; the raw
/// string is listed beside it.
pub fn describe_user_agent(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.map(str::trim).filter(|u| !u.is_empty()) else {
        return "Unknown client".to_owned();
    };
    let has = |needle: &str| ua.contains(needle);
    let browser = if has("Edg/") {
        Some("Edge")
    } else if has("OPR/") || has("Opera") {
        Some("Opera")
    } else if has("Firefox/") {
        Some("Firefox")
    } else if has("HeadlessChrome") {
        Some("Headless Chrome")
    } else if has("Chromium/") {
        Some("Chromium")
    } else if has("Chrome/") || has("CriOS/") {
        Some("Chrome")
    } else if has("Safari/") && has("Version/") {
        Some("Safari")
    } else {
        None
    };
    let os = if has("Android") {
        Some("Android")
    } else if has("iPhone") || has("iPad") || has("iOS") {
        Some("iOS")
    } else if has("Windows") {
        Some("Windows")
    } else if has("Mac OS X") || has("Macintosh") {
        Some("macOS")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Linux") || has("X11") {
        Some("Linux")
    } else {
        None
    };
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_owned(),
        (None, Some(o)) => format!("A browser on {o}"),
        // A program: its first product token, "name/version" read as "name version".
        (None, None) => {
            let first = ua.split_whitespace().next().unwrap_or(ua);
            let shown: String = first.replacen('/', " ", 1).chars().filter(|c| !c.is_control()).take(40).collect();
            shown
        }
    }
}

async fn revoke_session_row(state: &AppState, session_id: &str) -> Result<()> {
    let now = now();
    sqlx::query("update sessions set revoked_at = $1, updated_at = $1 where id = $2 and revoked_at is null")
        .bind(now)
        .bind(session_id)
        .execute(state.store.pool())
        .await?;
    Ok(())
}

async fn insert_refresh_token<'e, E>(executor: E, session_id: &str, expires_at: i64) -> Result<SecretString>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let token = random_token("lk_rt_");
    let now = now();
    sqlx::query(
        "insert into refresh_tokens (id, session_id, token_hash, expires_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $5)",
    )
    .bind(new_id())
    .bind(session_id)
    .bind(sha256_hex(token.expose()))
    .bind(expires_at)
    .bind(now)
    .execute(executor)
    .await?;
    Ok(token)
}

/// 256 random bits, base64url, with an optional recognisable prefix.
pub fn random_token(prefix: &str) -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString::new(format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

fn normalize_email(raw: &str) -> Result<String> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= MAX_EMAIL_LEN
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.matches('@').count() == 1;
    if valid {
        Ok(email)
    } else {
        Err(Error::bad_request("email: not a valid email address"))
    }
}

fn validate_username(raw: &str) -> Result<String> {
    let username = raw.trim().to_lowercase();
    let valid = (3..=32).contains(&username.len())
        && username.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(username)
    } else {
        Err(Error::bad_request("username: 3 to 32 characters of a-z, 0-9, _ and -"))
    }
}

fn check_password(password: &SecretString, context: &[&str]) -> Result<()> {
    let pw = password.expose();
    let weak = |why: &str| Error::client(StatusCode::BAD_REQUEST, ErrorCode::WeakPassword, format!("password: {why}"));
    let len = pw.chars().count();
    if len < MIN_PASSWORD_LEN {
        return Err(weak(&format!("use at least {MIN_PASSWORD_LEN} characters")));
    }
    if len > MAX_PASSWORD_LEN {
        return Err(weak(&format!("use at most {MAX_PASSWORD_LEN} characters")));
    }
    let estimate = zxcvbn::zxcvbn(pw, context);
    if (estimate.score() as u8) < 3 {
        let hint = estimate
            .feedback()
            .and_then(|f| f.warning().map(|w| w.to_string()))
            .unwrap_or_else(|| "too easy to guess".to_owned());
        return Err(weak(&format!("{hint}; try a longer phrase of unrelated words")));
    }
    Ok(())
}

/// Checks the password's strength, then hashes it with Argon2id (the crate's defaults:
/// 19 MiB, 2 passes); both are password work.
async fn hash_password(state: &AppState, password: SecretString, context: [String; 2]) -> Result<String> {
    password_work(state, move || {
        check_password(&password, &[&context[0], &context[1]])?;
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(anyhow::anyhow!("hashing a password: {e}")))
    })
    .await
}

/// Whether `password` matches `hash`. Without a hash (an unknown email) it checks against
/// a dummy one, so unknown accounts cost the same time and answer the same.
async fn verify_password(state: &AppState, password: SecretString, hash: Option<String>) -> Result<bool> {
    password_work(state, move || {
        let hash = hash.as_deref().unwrap_or_else(|| dummy_hash());
        Ok(PasswordHash::new(hash)
            .map(|parsed| Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok())
            .unwrap_or(false))
    })
    .await
}

/// Runs password work on a blocking thread through `password_gate`: at most
/// `password_hash_concurrency` at once, `password_hash_queue` more waiting, and 503 for
/// the rest. The pass moves into the blocking task, so a caller that hangs up does not
/// free a slot while its hash still runs.
async fn password_work<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let pass = state
        .password_gate
        .enter()
        .await
        .ok_or_else(|| Error::busy("too many sign-ins and registrations at once; retry shortly", 1))?;
    tokio::task::spawn_blocking(move || {
        let _pass = pass;
        work()
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("password task: {e}")))?
}

/// A real Argon2id hash of nothing anyone knows, so unknown accounts cost the same time.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let secret = random_token("");
        Argon2::default().hash_password(secret.expose().as_bytes(), &salt).map(|h| h.to_string()).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::describe_user_agent;

    #[test]
    fn user_agents_read_as_a_person_would_say_them() {
        let ua = |s| describe_user_agent(Some(s));
        assert_eq!(
            ua("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"),
            "Chrome on Linux"
        );
        assert_eq!(
            ua("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"),
            "Firefox on Windows"
        );
        assert_eq!(
            ua("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"),
            "Safari on macOS"
        );
        assert_eq!(
            ua("Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"),
            "Chrome on Android"
        );
        assert_eq!(
            ua("Mozilla/5.0 (Windows NT 10.0) AppleWebKit/537.36 Chrome/120.0 Safari/537.36 Edg/120.0"),
            "Edge on Windows"
        );
        assert_eq!(ua("curl/8.5.0"), "curl 8.5.0");
        assert_eq!(ua("latchkey/0.3.0 (build-box)"), "latchkey 0.3.0");
        assert_eq!(describe_user_agent(None), "Unknown client");
        assert_eq!(describe_user_agent(Some("  ")), "Unknown client");
    }
}
