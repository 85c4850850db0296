//! The one error body of the HTTP contract: `{"error", "error_description"}`.

use serde::{Deserialize, Serialize};

/// Stable machine codes. People read `error_description`; programs match on these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidToken,
    InvalidGrant,
    InsufficientScope,
    Unauthorized,
    Forbidden,
    NotFound,
    NotAMember,
    Conflict,
    WeakPassword,
    EmailTaken,
    UsernameTaken,
    SlugTaken,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    RateLimited,
    ReauthRequired,
    AmbiguousConnection,
    ProviderUnavailable,
    ServiceUnavailable,
    ServerError,
    // OAuth token-endpoint codes (RFC 6749 5.2, RFC 8628 3.5).
    AuthorizationPending,
    SlowDown,
    AccessDenied,
    ExpiredToken,
    UnsupportedGrantType,
    InvalidClient,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InvalidGrant => "invalid_grant",
            Self::InsufficientScope => "insufficient_scope",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::NotAMember => "not_a_member",
            Self::Conflict => "conflict",
            Self::WeakPassword => "weak_password",
            Self::EmailTaken => "email_taken",
            Self::UsernameTaken => "username_taken",
            Self::SlugTaken => "slug_taken",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RateLimited => "rate_limited",
            Self::ReauthRequired => "reauth_required",
            Self::AmbiguousConnection => "ambiguous_connection",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::ServiceUnavailable => "service_unavailable",
            Self::ServerError => "server_error",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::AccessDenied => "access_denied",
            Self::ExpiredToken => "expired_token",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidClient => "invalid_client",
        }
    }
}

/// The error body every endpoint answers with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub error_description: String,
    /// Only on `reauth_required`: where the member reconnects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_url: Option<String>,
    /// Only on `ambiguous_connection`: the labels of the caller's connections to choose from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Vec<String>>,
}
