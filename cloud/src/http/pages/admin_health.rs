//! The admin's connection health page: every member's connection of every connector,
//! with its label, its status in words (failures, the last error's class, the next
//! attempt), the account, the last refresh and the last token fetch.
//! Never a token. Filters by status through the query string (plain links, no script).

use super::{Page, PageResult};
use crate::access::{self, Need};
use crate::connection_health::{self, ConnectionHealth, STATUSES};
use crate::error::{Error, Result};
use crate::http::extract::{Path, Query};
use crate::state::AppState;
use crate::store::now;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use minijinja::context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthPageQuery {
    status: Option<String>,
}

pub fn router() -> Router<AppState> {
    Router::new().route("/orgs/{org}/admin/health", get(health_page))
}

/// `GET /orgs/{org}/admin/health`
pub async fn health_page(
    State(state): State<AppState>,
    page: Page,
    Path(org_ref): Path<String>,
    query: Result<Query<HealthPageQuery>>,
) -> PageResult {
    let Query(query) = query?;
    let org = access::authorize(&state, &page.principal, &org_ref, Need::Admin).await?;
    let status = query.status.filter(|s| !s.is_empty());
    if let Some(s) = status.as_deref() {
        if !STATUSES.contains(&s) {
            return Err(Error::bad_request(format!("status: one of {}", STATUSES.join(", "))).into());
        }
    }
    let all = connection_health::list(&state, &page.principal, &org.id, None).await?;
    let now = now();
    let filters: Vec<Filter> = std::iter::once(None)
        .chain(STATUSES.iter().map(|s| Some(*s)))
        .map(|s| Filter {
            id: format!("filter-{}", s.unwrap_or("all")),
            label: s.map_or("All", status_label),
            href: s.map_or_else(|| "?".to_owned(), |s| format!("?status={s}")),
            count: all.iter().filter(|h| s.is_none_or(|s| h.status == s)).count(),
            current: s == status.as_deref(),
        })
        .collect();
    let rows: Vec<Row> =
        all.into_iter().filter(|h| status.as_deref().is_none_or(|s| h.status == s)).map(|h| Row::new(h, now)).collect();
    page.ok(
        "admin_health.html",
        context! { org => org, section => "health", rows => rows, filters => filters, status => status },
    )
}

#[derive(Serialize)]
struct Filter {
    id: String,
    label: &'static str,
    href: String,
    count: usize,
    current: bool,
}

/// One table row, with times in words beside their exact value.
#[derive(Serialize)]
struct Row {
    id: String,
    username: String,
    email: String,
    connector_key: String,
    label: String,
    account: String,
    status: String,
    last_error: Option<String>,
    status_label: &'static str,
    status_detail: String,
    last_refreshed_at: Option<String>,
    last_refreshed_words: String,
    last_token_at: Option<String>,
    last_token_words: String,
}

impl Row {
    fn new(h: ConnectionHealth, now: i64) -> Row {
        let next = h.next_attempt_at.as_deref().and_then(unix);
        let tries = if h.failure_count == 1 {
            "1 failed refresh".to_owned()
        } else {
            format!("{} failed refreshes", h.failure_count)
        };
        let status_detail = match h.status.as_str() {
            "failing" => match next {
                Some(t) if t > now => format!("{tries}; next attempt {}", relative(t, now)),
                _ => format!("{tries}; next attempt when a token is needed"),
            },
            "refreshing" => "a refresh is in progress".to_owned(),
            "exhausted" => format!("stopped retrying after {tries}; the member must reconnect"),
            "needs_reauth" => "the member must reconnect".to_owned(),
            "revoked" => "revoked; the member must reconnect".to_owned(),
            _ => String::new(),
        };
        Row {
            status_label: status_label(&h.status),
            status_detail,
            last_refreshed_words: words(h.last_refreshed_at.as_deref(), now, "never"),
            last_token_words: words(h.last_token_at.as_deref(), now, "never"),
            id: h.id,
            username: h.user.username,
            email: h.user.email,
            connector_key: h.connector_key,
            label: h.label,
            account: h.account_name.unwrap_or_default(),
            last_error: h.last_error.filter(|_| h.status != "active"),
            status: h.status,
            last_refreshed_at: h.last_refreshed_at,
            last_token_at: h.last_token_at,
        }
    }
}

fn status_label(status: &str) -> &'static str {
    match status {
        "active" => "Active",
        "refreshing" => "Refreshing",
        "failing" => "Failing",
        "needs_reauth" => "Needs reconnect",
        "exhausted" => "Gave up; needs reconnect",
        "revoked" => "Revoked",
        _ => "Unknown",
    }
}

fn unix(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

fn words(at: Option<&str>, now: i64, none: &str) -> String {
    at.and_then(unix).map_or_else(|| none.to_owned(), |t| relative(t, now))
}

/// "in 4 minutes", "2 hours ago", "just now".
pub fn relative(t: i64, now: i64) -> String {
    let d = t - now;
    let span = d.unsigned_abs();
    if span < 5 {
        return if d > 0 { "in a few seconds" } else { "just now" }.to_owned();
    }
    let (n, unit) = match span {
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s => (s / 86_400, "day"),
    };
    let amount = format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if d > 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn times_read_as_words() {
        assert_eq!(relative(100, 100), "just now");
        assert_eq!(relative(102, 100), "in a few seconds");
        assert_eq!(relative(130, 100), "in 30 seconds");
        assert_eq!(relative(100 + 240, 100), "in 4 minutes");
        assert_eq!(relative(100, 100 + 3600), "1 hour ago");
        assert_eq!(relative(100, 100 + 3 * 86_400), "3 days ago");
    }
}
