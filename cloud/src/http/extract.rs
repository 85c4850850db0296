//! Extractors whose rejections speak the contract's error shape, and the caller's
//! network facts (client IP, user agent) for audit and rate limits.

use crate::error::Error;
use crate::state::AppState;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use latchkey_shared::ErrorCode;
use serde::de::DeserializeOwned;
use std::net::SocketAddr;

/// JSON body; malformed, mistyped or unknown fields answer 400, too large 413,
/// wrong content type 415 — all in the contract's shape.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> Error {
    match rejection {
        JsonRejection::JsonDataError(e) => Error::bad_request(serde_reason(&e.body_text())),
        JsonRejection::JsonSyntaxError(e) => {
            Error::bad_request(format!("body is not valid JSON: {}", serde_reason(&e.body_text())))
        }
        JsonRejection::MissingJsonContentType(_) => Error::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "expected a JSON body with `Content-Type: application/json`",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        other => Error::bad_request(other.body_text()),
    }
}

pub fn too_large() -> Error {
    Error::client(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge, "request body is larger than 64 KiB")
}

/// axum prefixes serde's message with its own words; keep the part that names the field.
fn serde_reason(text: &str) -> String {
    let reason = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .or_else(|| text.strip_prefix("Failed to parse the request body as JSON: "))
        .unwrap_or(text);
    reason.to_owned()
}

/// Path parameters with a contract-shaped rejection.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(Error::bad_request(e.body_text())),
            Err(other) => Err(Error::bad_request(other.body_text())),
        }
    }
}

/// Where a request came from, for audit events and per-IP limits.
#[derive(Clone, Debug)]
pub struct ClientMeta {
    pub ip: String,
    pub user_agent: Option<String>,
}

impl FromRequestParts<AppState> for ClientMeta {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".to_owned());
        let forwarded = state
            .config
            .trust_forwarded_for
            .then(|| {
                parts.headers.get("x-forwarded-for")?.to_str().ok()?.split(',').next().map(str::trim).map(str::to_owned)
            })
            .flatten()
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok());
        let user_agent = parts
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect());
        Ok(ClientMeta { ip: forwarded.unwrap_or(peer), user_agent })
    }
}

/// Query parameters with a contract-shaped rejection.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| Error::bad_request(rejection.body_text()))
    }
}
