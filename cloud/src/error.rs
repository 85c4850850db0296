//! The crate's one error type and its single mapping to HTTP.
//!
//! Client errors carry a stable `ErrorCode` and a description for people; server errors
//! are logged here with their cause and answered with a bare 500, never their details.

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
        Error::Client { status, code, description: description.into(), retry_after: None, connect_url: None }
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

    pub fn rate_limited(retry_after: u64) -> Self {
        Error::Client {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: ErrorCode::RateLimited,
            description: format!("too many requests; retry in {retry_after} s"),
            retry_after: Some(retry_after),
            connect_url: None,
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
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Client { status, .. } => *status,
            Error::Db(sqlx::Error::PoolTimedOut) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let (code, description, retry_after, connect_url) = match self {
            Error::Client { code, description, retry_after, connect_url, .. } => {
                (code, description, retry_after, connect_url)
            }
            Error::Db(sqlx::Error::PoolTimedOut) => {
                tracing::warn!("database pool exhausted");
                (ErrorCode::ServiceUnavailable, "the service is busy; retry shortly".to_owned(), Some(1), None)
            }
            other => {
                // Our own error types carry no secret values (they are `Secret` inside),
                // so the cause can be logged whole.
                tracing::error!(error = %other, "request failed");
                (ErrorCode::ServerError, "internal error".to_owned(), None, None)
            }
        };
        let mut response = (status, axum::Json(ErrorBody { error: code, error_description: description, connect_url, connections: None }))
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
        response
    }
}
