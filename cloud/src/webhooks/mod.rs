//! Org events for webhooks: what happened to a connection or a membership, published by
//! the code that made it happen and delivered to the org's endpoints from a durable
//! outbox in the database.
//!
//! Publishing never fails its caller: the change it reports has already happened, so a
//! failure to record the event is logged and counted, not answered with an error.

pub mod outbox;
pub mod signature;
pub mod target;
pub mod worker;

use crate::metrics::Metrics;
use crate::state::AppState;
use latchkey_shared::secret::SecretString;
use rand::Rng;
use serde::Serialize;

/// The events an endpoint can subscribe to (the contract's names, docs/webhooks.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub enum EventType {
    #[serde(rename = "connection.created")]
    ConnectionCreated,
    #[serde(rename = "connection.refresh_failed")]
    ConnectionRefreshFailed,
    #[serde(rename = "connection.needs_reauth")]
    ConnectionNeedsReauth,
    #[serde(rename = "connection.exhausted")]
    ConnectionExhausted,
    #[serde(rename = "connection.recovered")]
    ConnectionRecovered,
    #[serde(rename = "connection.disconnected")]
    ConnectionDisconnected,
    #[serde(rename = "member.joined")]
    MemberJoined,
    #[serde(rename = "member.removed")]
    MemberRemoved,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::ConnectionCreated,
        EventType::ConnectionRefreshFailed,
        EventType::ConnectionNeedsReauth,
        EventType::ConnectionExhausted,
        EventType::ConnectionRecovered,
        EventType::ConnectionDisconnected,
        EventType::MemberJoined,
        EventType::MemberRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::ConnectionCreated => "connection.created",
            EventType::ConnectionRefreshFailed => "connection.refresh_failed",
            EventType::ConnectionNeedsReauth => "connection.needs_reauth",
            EventType::ConnectionExhausted => "connection.exhausted",
            EventType::ConnectionRecovered => "connection.recovered",
            EventType::ConnectionDisconnected => "connection.disconnected",
            EventType::MemberJoined => "member.joined",
            EventType::MemberRemoved => "member.removed",
        }
    }

    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == name)
    }
}

/// `data` of a `connection.*` event: ids and names, never a token.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionData<'a> {
    pub connection_id: &'a str,
    pub connector_key: &'a str,
    pub label: &'a str,
    pub provider: &'a str,
    /// The connection's status after the change (`revoked` once disconnected).
    pub status: &'a str,
    pub user_id: &'a str,
    /// `refresh_failed`: how many refreshes in a row failed, and the error class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

/// `data` of a `member.*` event.
#[derive(Clone, Debug, Serialize)]
pub struct MemberData<'a> {
    pub user_id: &'a str,
    pub username: &'a str,
    pub role: &'a str,
}

/// Records `event` for every endpoint of org `org_id` subscribed to it, to be delivered
/// by the outbox worker. Never fails the caller (see the module comment).
pub async fn publish(state: &AppState, org_id: &str, event: EventType, data: impl Serialize) {
    match outbox::record(state, org_id, event, data).await {
        Ok(0) => {}
        Ok(_) => {
            Metrics::count(&state.metrics.webhooks, "published");
            state.webhook_wake.notify_one();
        }
        Err(e) => {
            Metrics::count(&state.metrics.webhooks, "publish_error");
            tracing::error!(org = %org_id, event = event.as_str(), error = %e, "a webhook event could not be recorded");
        }
    }
}

/// Publishes `member.joined` or `member.removed` for `user_id` (with their username).
pub async fn publish_member(state: &AppState, org_id: &str, event: EventType, user_id: &str, role: &str) {
    let username: Option<String> = match sqlx::query_scalar("select username from users where id = $1")
        .bind(user_id)
        .fetch_optional(state.store.pool())
        .await
    {
        Ok(name) => name,
        Err(e) => {
            tracing::warn!(error = %e, "reading a member's username for a webhook event failed");
            None
        }
    };
    let username = username.unwrap_or_default();
    publish(state, org_id, event, MemberData { user_id, username: &username, role }).await;
}

/// A new endpoint's signing secret: `whsec_` and 32 random base62 characters.
pub fn generate_secret() -> SecretString {
    const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    let random: String = (0..32).map(|_| char::from(BASE62[rng.gen_range(0..BASE62.len())])).collect();
    SecretString::new(format!("whsec_{random}"))
}
