//! What a connection's state on the cloud asks of the member, in words and with the exact
//! command or URL: one place, so that `status`, `sync`, `connect` and `run` say the same.
//!
//! Never fetches anything; the caller has the connection (or the error) at hand.

use crate::cloud::Connection;
use crate::config::ConnectorConfig;
use url::Url;

/// A connection that needs the member: what is wrong and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attention {
    /// The state as the cloud names it (`needs_reauth`, …).
    pub status: String,
    /// One line: what is wrong and the command or URL that fixes it.
    pub advice: String,
}

/// What `conn` (the connection of connector `c`) needs, or `None` when it is active.
/// `connect_url` is the cloud's page to reconnect it.
pub fn of(c: &ConnectorConfig, conn: &Connection, connect_url: &Url) -> Option<Attention> {
    let name = &c.name;
    let reconnect = format!("run `latchkey connect {name}` (or open {connect_url})");
    let advice = match conn.status.as_str() {
        "active" => return None,
        "failing" => format!(
            "the cloud's refreshes of this grant are failing at the provider; it still serves a valid token and \
             keeps retrying. If it does not recover, {reconnect}"
        ),
        "needs_reauth" => {
            format!("the provider no longer accepts this grant (revoked or expired there); to reconnect, {reconnect}")
        }
        "exhausted" => format!(
            "the cloud gave up refreshing this grant after repeated failures and will not retry; to reconnect, \
             {reconnect}"
        ),
        "revoked" => format!("this connection was disconnected; to connect again, {reconnect}"),
        other => format!("the cloud reports it as `{other}`; to reconnect, {reconnect}"),
    };
    Some(Attention { status: conn.status.clone(), advice })
}

/// Whether a connection in `status` still hands out tokens (a sync may work).
pub fn usable(status: &str) -> bool {
    matches!(status, "active" | "failing")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(status: &str) -> Connection {
        Connection {
            id: "c1".into(),
            org: "acme".into(),
            connector_key: "gh".into(),
            label: Some("work".into()),
            status: status.into(),
            account_name: None,
            account_id: None,
            expires_at: None,
            connected_at: None,
        }
    }

    #[test]
    fn every_state_that_needs_the_member_names_the_command_and_the_url() {
        let c = ConnectorConfig {
            name: "github".into(),
            kind: crate::config::Kind::Github,
            org: "acme".into(),
            connector_key: "gh".into(),
            connection: Some("work".into()),
            schedule: crate::schedule::DEFAULT,
            base_url: None,
            http_json: None,
        };
        let url = Url::parse("https://cloud.example/connect/acme/gh?connection=work").unwrap();
        assert_eq!(of(&c, &conn("active"), &url), None);
        for status in ["failing", "needs_reauth", "exhausted", "revoked", "weird"] {
            let a = of(&c, &conn(status), &url).unwrap();
            assert!(a.advice.contains("`latchkey connect github`"), "{status}: {}", a.advice);
            assert!(a.advice.contains(url.as_str()), "{status}: {}", a.advice);
        }
        assert!(usable("failing") && !usable("exhausted"));
    }
}
