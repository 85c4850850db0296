//! The provider scopes each of the local agent's built-in connectors needs, so the cloud
//! can suggest them when an admin configures a managed app or publishes a connector
//! (the cloud does not depend on the agent crate; both read this list).
//!
//! Keep in step with `local-agent/src/connectors/`: a connector that calls another
//! endpoint of its provider adds the scope that endpoint needs here.

/// `(provider, scopes the agent's connector for it needs)`.
pub const SCOPES: &[(&str, &[&str])] = &[
    // `GET /user/starred` and `GET /notifications` (classic OAuth-app scopes).
    ("github", &["read:user", "notifications"]),
    // The cloud's own sandbox: `GET /sandbox/api/items` and the account name.
    ("sandbox", &["profile", "items:read"]),
    // `GET /v1/me/player/recently-played`.
    ("spotify", &["user-read-recently-played"]),
];

/// The scopes the agent's connector for `provider` needs; empty when it has none.
#[must_use]
pub fn scopes_for(provider: &str) -> Vec<String> {
    SCOPES
        .iter()
        .find(|(p, _)| *p == provider)
        .map(|(_, s)| s.iter().map(|x| (*x).to_owned()).collect())
        .unwrap_or_default()
}
