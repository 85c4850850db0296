//! Request and response bodies of `POST /oauth/connection-token`, shared by the cloud
//! (which answers) and the agent (which asks).

use crate::secret::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionTokenRequest {
    /// Org slug or id.
    #[schema(min_length = 1)]
    pub org: String,
    #[schema(min_length = 1)]
    pub connector_key: String,
    /// The connection's label or id; needed only when the member holds several
    /// connections on this connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1)]
    pub connection: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionTokenResponse {
    #[schema(value_type = String)]
    pub access_token: SecretString,
    pub token_type: String,
    /// RFC 3339 UTC, or null when the provider gave no expiry.
    pub expires_at: Option<String>,
}
