//! Banners for a member's connections that need them (the home page): what is wrong in
//! words, and where to reconnect. The error is shown as its class in words, never the
//! provider's own text.

use super::admin_health::relative;
use crate::access::Principal;
use crate::connection_health::{self, Attention};
use crate::error::Result;
use crate::state::AppState;
use crate::store::now;
use serde::Serialize;

/// One banner.
#[derive(Debug, Serialize)]
pub struct Banner {
    pub id: String,
    pub status: String,
    /// "acme · sandbox (work)".
    pub title: String,
    pub message: String,
    pub reconnect_path: String,
}

/// The caller's banners, by org then connector.
pub async fn banners(state: &AppState, principal: &Principal) -> Result<Vec<Banner>> {
    let now = now();
    Ok(connection_health::needing_attention(state, principal).await?.into_iter().map(|a| banner(a, now)).collect())
}

fn banner(a: Attention, now: i64) -> Banner {
    let why = a.last_error.as_deref().map(error_words);
    let tries = if a.failure_count == 1 {
        "1 failed refresh".to_owned()
    } else {
        format!("{} failed refreshes", a.failure_count)
    };
    let message = match a.status.as_str() {
        "failing" => {
            let next = match a.next_attempt_at {
                Some(t) if t > now => format!("the next attempt is {}", relative(t, now)),
                _ => "it is retried when a token is needed".to_owned(),
            };
            format!(
                "Refreshing this connection is failing ({}; {tries}). Latchkey keeps retrying and your current \
                 token works until it expires; {next}. Reconnect if it does not recover.",
                why.unwrap_or("an error")
            )
        }
        "exhausted" => format!(
            "Latchkey stopped retrying this connection after {tries} ({}). Reconnect to keep syncing.",
            why.unwrap_or("an error")
        ),
        _ => format!(
            "The provider no longer accepts this connection ({}). Reconnect to keep syncing.",
            why.unwrap_or("the grant was revoked or expired")
        ),
    };
    Banner {
        id: a.id,
        title: format!("{} · {} ({})", a.org_name, a.connector_key, a.label),
        status: a.status,
        message,
        reconnect_path: a.reconnect_path,
    }
}

/// An error class in words.
pub fn error_words(class: &str) -> &'static str {
    match class {
        "timeout" => "the provider did not answer in time",
        "provider_5xx" => "the provider answered with server errors",
        "rate_limited" => "the provider is limiting requests",
        "invalid_response" => "the provider's answer could not be read",
        "network" => "the provider could not be reached",
        "provider_rejected" => "the provider refused the refresh",
        "configuration" => "the org's app for this provider is missing or misconfigured",
        "invalid_grant" => "the grant was revoked or expired at the provider",
        "no_refresh_token" => "the token expired and the provider gave no way to renew it",
        _ => "an error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attention(status: &str, error: Option<&str>, failures: i64, next: Option<i64>) -> Attention {
        Attention {
            id: "c1".into(),
            org_slug: "acme".into(),
            org_name: "Acme".into(),
            connector_key: "sandbox".into(),
            label: "work".into(),
            status: status.into(),
            failure_count: failures,
            last_error: error.map(str::to_owned),
            next_attempt_at: next,
            reconnect_path: "/connect/acme/sandbox?connection=work".into(),
        }
    }

    #[test]
    fn banners_say_what_is_wrong_in_words() {
        let b = banner(attention("failing", Some("provider_5xx"), 2, Some(130)), 100);
        assert_eq!(b.title, "Acme · sandbox (work)");
        assert!(b.message.contains("server errors; 2 failed refreshes"), "{}", b.message);
        assert!(b.message.contains("the next attempt is in 30 seconds"), "{}", b.message);
        let b = banner(attention("exhausted", Some("timeout"), 10, None), 100);
        assert!(b.message.contains("stopped retrying this connection after 10 failed refreshes"), "{}", b.message);
        let b = banner(attention("needs_reauth", Some("invalid_grant"), 1, None), 100);
        assert!(b.message.contains("revoked or expired at the provider"), "{}", b.message);
        assert_eq!(error_words("HTTP 503 <html>"), "an error", "never the provider's own words");
    }
}
