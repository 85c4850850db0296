//! Extractors whose rejections speak the contract's error shape. (Who is calling, and
//! from where, is `crate::access`.)

use crate::error::Error;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use latchkey_shared::ErrorCode;
use serde::de::DeserializeOwned;

/// JSON body; malformed, mistyped or unknown fields answer 400, too large 413,
/// wrong content type 415 — all in the contract's shape.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        if !json_content_type(req.headers()) {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(Default::default())));
        }
        let body = match Bytes::from_request(req, state).await {
            Ok(body) => body,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => return Err(Error::bad_request(e.body_text())),
        };
        // Every body of this API is an object; serde would also take an array for a
        // struct (its fields in order), which the contract does not allow.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(Error::bad_request("body: expected a JSON object"));
        }
        match axum::Json::<T>::from_bytes(&body) {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// A JSON body that may be left out: no body at all reads as `T::default()`; anything
/// sent is judged as [`Json`] judges it.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let no_body = req.headers().get(axum::http::header::CONTENT_TYPE).is_none()
            && req
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() == "0");
        if no_body {
            return Ok(OptionalJson(T::default()));
        }
        Json::<T>::from_request(req, state).await.map(|Json(value)| OptionalJson(value))
    }
}

/// `Content-Type: application/json`, or a `+json` type, as axum's own extractor accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
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

/// The raw body, for an endpoint that judges it after the credential (the token
/// endpoint); too large answers 413.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(Error::bad_request(e.body_text())),
        }
    }
}

/// A form body, or `None` when it is missing or malformed: OAuth endpoints answer that
/// in their own words.
pub struct MaybeForm<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for MaybeForm<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        Ok(MaybeForm(axum::Form::<T>::from_request(req, state).await.ok().map(|axum::Form(value)| value)))
    }
}
