//! The admin's audit log page: the org's events with names, IP and user agent; a filter
//! form (actor, action, from, to) that is a plain GET; Older/Newer links; and export
//! links to the API's CSV and JSON with the same filters.

use super::{Page, PageResult};
use crate::access::{self, Need};
use crate::error::Result;
use crate::http::audit::AuditQuery;
use crate::http::extract::{Path, Query};
use crate::orgs;
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use minijinja::context;
use serde::{Deserialize, Serialize};

/// Events per page.
const PER_PAGE: i64 = 50;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPageQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    /// From (a `datetime-local` value, read as UTC, or RFC 3339).
    #[serde(default)]
    since: String,
    /// To, likewise.
    #[serde(default)]
    until: String,
    before: Option<String>,
    after: Option<String>,
}

/// A `datetime-local` value (`2026-11-23T20:15`, seconds optional) as RFC 3339 UTC;
/// anything else is passed on as typed, for the API's check to judge.
fn as_rfc3339(value: &str) -> String {
    let v = value.trim();
    let has_zone = v.ends_with('Z') || v.ends_with('z') || v.get(19..).is_some_and(|rest| rest.contains(['+', '-']));
    match (v.len(), has_zone) {
        (16, false) => format!("{v}:00Z"),
        (19, false) => format!("{v}Z"),
        _ => v.to_owned(),
    }
}

impl AuditPageQuery {
    /// The API's query for these filters (and a cursor, for this page's listing).
    fn api(&self, with_cursor: bool) -> AuditQuery {
        let some = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        AuditQuery {
            actor: some(&self.actor),
            action: some(&self.action),
            since: some(&self.since).map(|v| as_rfc3339(&v)),
            until: some(&self.until).map(|v| as_rfc3339(&v)),
            before: if with_cursor { self.before.clone() } else { None },
            after: if with_cursor { self.after.clone() } else { None },
            ..AuditQuery::default()
        }
    }

    /// A query string with the filters and `extra` (a cursor or a format).
    fn href(&self, base: &str, extra: &[(&str, &str)]) -> String {
        let api = self.api(false);
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("actor", &api.actor), ("action", &api.action), ("since", &api.since), ("until", &api.until)] {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        let q = q.finish();
        if q.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{q}")
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/orgs/{org}/admin/audit", get(audit_page))
}

/// `GET /orgs/{org}/admin/audit`
pub async fn audit_page(
    State(state): State<AppState>,
    page: Page,
    Path(org_ref): Path<String>,
    query: Result<Query<AuditPageQuery>>,
) -> PageResult {
    let Query(query) = query?;
    let org = access::authorize(&state, &page.principal, &org_ref, Need::Admin).await?;
    let (mut filter, _) = query.api(true).filter()?;
    filter.limit = PER_PAGE;
    let (org, listed) = orgs::audit(&state, &page.principal, &org.id, &filter).await?;
    let here = format!("/orgs/{}/admin/audit", org.slug);
    let (first, last) = (listed.entries.first().map(|e| e.id.clone()), listed.entries.last().map(|e| e.id.clone()));
    let reading_newer = filter.before.is_none() && filter.after.is_some();
    let older = match (&last, reading_newer || listed.more) {
        (Some(last), true) => Some(query.href(&here, &[("before", last)])),
        _ => None,
    };
    let newer = match (&first, filter.before.is_some() || (reading_newer && listed.more)) {
        (Some(first), true) => Some(query.href(&here, &[("after", first)])),
        _ => None,
    };
    let api = format!("/v1/orgs/{}/audit", org.slug);
    let rows: Vec<Row> = listed.entries.into_iter().map(Row::from).collect();
    page.ok(
        "admin_audit.html",
        context! {
            org => org,
            section => "audit",
            rows => rows,
            q => &query,
            older => older,
            newer => newer,
            newest => (filter.before.is_some() || filter.after.is_some()).then(|| query.href(&here, &[])),
            export_csv => query.href(&api, &[("format", "csv")]),
            export_json => query.href(&api, &[("format", "json")]),
        },
    )
}

/// One event as the table shows it.
#[derive(Serialize)]
struct Row {
    id: String,
    created_at: String,
    actor: String,
    via: Option<String>,
    action: String,
    target: String,
    outcome: String,
    ip: String,
    user_agent: String,
}

impl From<crate::audit::AuditEntry> for Row {
    fn from(e: crate::audit::AuditEntry) -> Row {
        Row {
            actor: e.actor_username.or(e.actor_id).unwrap_or_else(|| "—".to_owned()),
            via: e.pat_name,
            target: e.target_name.or(e.target).unwrap_or_default(),
            id: e.id,
            created_at: e.created_at,
            action: e.action,
            outcome: e.outcome,
            ip: e.ip.unwrap_or_default(),
            user_agent: e.user_agent.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::as_rfc3339;

    #[test]
    fn form_times_are_read_as_utc() {
        assert_eq!(as_rfc3339("2026-11-23T20:15"), "2026-11-23T20:15:00Z");
        assert_eq!(as_rfc3339("2026-11-23T20:15:07"), "2026-11-23T20:15:07Z");
        assert_eq!(as_rfc3339("2026-11-23T20:15:07+01:00"), "2026-11-23T20:15:07+01:00");
        assert_eq!(as_rfc3339("2026-11-23T20:15:07Z"), "2026-11-23T20:15:07Z");
    }
}
