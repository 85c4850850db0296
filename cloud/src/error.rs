//! The crate's one error type and its single mapping to HTTP.
//!
//! Client errors carry a stable `ErrorCode` and a description for people; server errors
//! are logged here with their cause and answered with a bare 500, never their details.
//! A database that cannot be reached (`db_unavailable`) is not a server bug: it answers
//! 503 `service_unavailable` with `Retry-After`, logs one warning a second at most, and
//! marks the response for the metrics (`metrics::DbUnavailable`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_shared::{ErrorBody, ErrorCode, Scope};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the caller can fix; answered as is.
    #[error("{description}")]
    Client {
        status: StatusCode,
        code: ErrorCode,
        description: String,
        retry_after: Option<u64>,
        connect_url: Option<String>,
        /// Only on `ambiguous_connection`: the labels to choose from.
        connections: Option<Vec<String>>,
    },
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("crypto error: {0}")]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn client(status: StatusCode, code: ErrorCode, description: impl Into<String>) -> Self {
        Error::Client {
            status,
            code,
            description: description.into(),
            retry_after: None,
            connect_url: None,
            connections: None,
        }
    }

    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, description)
    }

    pub fn unauthenticated(description: impl Into<String>) -> Self {
        Self::client(StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken, description)
    }

    pub fn insufficient_scope(scope: Scope) -> Self {
        Self::client(
            StatusCode::FORBIDDEN,
            ErrorCode::InsufficientScope,
            format!("this token lacks the `{scope}` scope"),
        )
    }

    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::client(StatusCode::FORBIDDEN, ErrorCode::Forbidden, description)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::client(StatusCode::NOT_FOUND, ErrorCode::NotFound, what)
    }

    pub fn conflict(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::client(StatusCode::CONFLICT, code, description)
    }

    /// 409 `ambiguous_connection`: the caller holds several connections on a connector and
    /// named none; `labels` are theirs to choose from.
    pub fn ambiguous_connection(labels: Vec<String>) -> Self {
        Error::Client {
            status: StatusCode::CONFLICT,
            code: ErrorCode::AmbiguousConnection,
            description: format!(
                "you have {} connections on this connector; name one with `connection` (a label or id)",
                labels.len()
            ),
            retry_after: None,
            connect_url: None,
            connections: Some(labels),
        }
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        Error::Client {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: ErrorCode::RateLimited,
            description: format!("too many requests; retry in {retry_after} s"),
            retry_after: Some(retry_after),
            connect_url: None,
            connections: None,
        }
    }

    /// 503 `service_unavailable`: we are too busy now, and the caller may retry.
    pub fn busy(description: impl Into<String>, retry_after: u64) -> Self {
        Error::Client {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: ErrorCode::ServiceUnavailable,
            description: description.into(),
            retry_after: Some(retry_after),
            connect_url: None,
            connections: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Client { status, .. } => *status,
            _ if self.db_unavailable().is_some() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The database error behind this one, when it means the database cannot be reached
    /// or cannot take work now (see [`db_unavailable`]).
    pub fn db_unavailable(&self) -> Option<&sqlx::Error> {
        let cause = match self {
            Error::Db(e) => Some(e),
            Error::Internal(e) => e.downcast_ref::<sqlx::Error>(),
            _ => None,
        };
        cause.filter(|e| db_unavailable(e))
    }
}

/// Seconds a caller is told to wait when the database is unavailable.
pub const DB_RETRY_AFTER: u64 = 1;

/// Whether `e` says the database is unreachable or unavailable for now, rather than that
/// the query or the data is wrong: the pool waited in vain or is closed, the connection
/// broke, or the server refused work (PostgreSQL: connection exceptions `08…`, admin or
/// crash shutdown and "cannot connect now" `57P01`–`57P03`, insufficient resources `53…`,
/// a read-only standby `25006`; SQLite: busy, locked, read-only, I/O error, disk full,
/// cannot open). Such a request may succeed when retried, so it is a 503, not a 500.
pub fn db_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                let code = pg.code();
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
            } else if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // The extended result code; its low byte is the primary one.
                let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or_default() & 0xff;
                // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN.
                matches!(code, 5 | 6 | 8 | 10 | 13 | 14)
            } else {
                false
            }
        }
        _ => false,
    }
}

/// Logs and marks (for the metrics) an answer that failed because the database is
/// unavailable, as `Error::into_response` does; for answers built elsewhere (pages).
pub fn mark_db_unavailable(response: &mut Response, e: &sqlx::Error) {
    warn_db_unavailable(&e.to_string());
    let pool_timed_out = matches!(e, sqlx::Error::PoolTimedOut);
    response.extensions_mut().insert(crate::metrics::DbUnavailable { pool_timed_out });
}

/// Logs an unavailable database at most once a second: during an outage every request
/// fails the same way, and one line a second says so without flooding the log.
fn warn_db_unavailable(e: &str) {
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    static SINCE: AtomicU64 = AtomicU64::new(0);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let last = LAST.load(Ordering::Relaxed);
    if last != now && LAST.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        let more = SINCE.swap(0, Ordering::Relaxed);
        tracing::warn!(error = %e, also_in_the_last_second = more, "the database is unavailable; answering 503");
    } else {
        SINCE.fetch_add(1, Ordering::Relaxed);
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        // Taken before `self` is consumed below; marked on the response at the end.
        let unavailable = self.db_unavailable().map(|e| (e.to_string(), matches!(e, sqlx::Error::PoolTimedOut)));
        let (code, description, retry_after, connect_url, connections) = match self {
            Error::Client { code, description, retry_after, connect_url, connections, .. } => {
                (code, description, retry_after, connect_url, connections)
            }
            _ if unavailable.is_some() => (
                ErrorCode::ServiceUnavailable,
                "the database is unavailable; retry shortly".to_owned(),
                Some(DB_RETRY_AFTER),
                None,
                None,
            ),
            other => {
                // Our own error types carry no secret values (they are `Secret` inside),
                // so the cause can be logged whole.
                tracing::error!(error = %other, "request failed");
                (ErrorCode::ServerError, "internal error".to_owned(), None, None, None)
            }
        };
        let mut response =
            (status, axum::Json(ErrorBody { error: code, error_description: description, connect_url, connections }))
                .into_response();
        let headers = response.headers_mut();
        if let Some(secs) = retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED && code == ErrorCode::InvalidToken {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some((cause, pool_timed_out)) = unavailable {
            warn_db_unavailable(&cause);
            response.extensions_mut().insert(crate::metrics::DbUnavailable { pool_timed_out });
        }
        response
    }
}
