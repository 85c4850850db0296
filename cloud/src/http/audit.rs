//! The audit log: a member's own events and an org's (admins), filtered, paged, and
//! exported as CSV or JSON.

use crate::access::Principal;
use crate::accounts;
use crate::audit::{self, AuditEntry, Filter};
use crate::error::{Error, Result};
use crate::http::extract::{Path, Query};
use crate::orgs;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use latchkey_shared::ErrorBody;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(my_audit)).routes(routes!(org_audit))
}

/// Which events, and in what form. Empty values do not filter (a form sends them).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// How many events, newest first (1–1000; default 100, or 1000 for an export).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Only this actor's events: a user id or a username.
    pub actor: Option<String>,
    /// Only this action (`org.join`), or every action under a prefix ending in `.`
    /// (`connection.`).
    pub action: Option<String>,
    /// Only events at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only events at or before this time (RFC 3339).
    pub until: Option<String>,
    /// The next (older) page: events older than this event id (the last one listed).
    pub before: Option<String>,
    /// The previous (newer) page: events newer than this event id (the first one listed).
    pub after: Option<String>,
    /// `json` or `csv`: download the events as a file (`Content-Disposition: attachment`).
    #[param(pattern = "^\\s*(json|csv)?\\s*$")]
    pub format: Option<String>,
}

/// How the answer is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A plain JSON array.
    List,
    Json,
    Csv,
}

fn given(value: Option<&String>) -> Option<String> {
    value.map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_owned)
}

impl AuditQuery {
    /// The filter the query asks for, and the answer's format; a bad value is a 400.
    pub fn filter(&self) -> Result<(Filter, Format)> {
        let format = match given(self.format.as_ref()).as_deref() {
            None => Format::List,
            Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            Some(_) => return Err(Error::bad_request("format: json or csv")),
        };
        let default_limit = if format == Format::List { 100 } else { audit::LIST_MAX };
        let limit = self.limit.unwrap_or(default_limit);
        if !(1..=audit::LIST_MAX).contains(&limit) {
            return Err(Error::bad_request(format!("limit: 1 to {}", audit::LIST_MAX)));
        }
        let time = |field: &str, value: Option<&String>| given(value).map(|v| audit::parse_time(field, &v)).transpose();
        let filter = Filter {
            actor: given(self.actor.as_ref()),
            action: given(self.action.as_ref()),
            since: time("since", self.since.as_ref())?,
            until: time("until", self.until.as_ref())?,
            before: given(self.before.as_ref()),
            after: given(self.after.as_ref()),
            limit,
        };
        Ok((filter, format))
    }
}

/// The caller's own audit events: logins, token fetches (with the PAT or device), changes.
#[utoipa::path(get, path = "/v1/me/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, content((Vec<AuditEntry> = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody)))]
async fn my_audit(
    State(state): State<AppState>,
    principal: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Response> {
    let (filter, format) = q.filter()?;
    let page = accounts::audit(&state, &principal, &filter).await?;
    Ok(answer(page.entries, format, "my-audit"))
}

/// An org's audit events (owners and admins), newest first, with names beside the ids.
/// Page with `before` (older) or `after` (newer), the id of the last or first event seen.
#[utoipa::path(get, path = "/v1/orgs/{org}/audit", tag = "audit", params(("org" = String, Path), AuditQuery),
    responses((status = 200, content((Vec<AuditEntry> = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn org_audit(
    State(state): State<AppState>,
    principal: Principal,
    Path(org): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<Response> {
    let (filter, format) = q.filter()?;
    let (org, page) = orgs::audit(&state, &principal, &org, &filter).await?;
    Ok(answer(page.entries, format, &format!("{}-audit", org.slug)))
}

fn answer(entries: Vec<AuditEntry>, format: Format, name: &str) -> Response {
    let (mut response, ext) = match format {
        Format::List => return axum::Json(entries).into_response(),
        Format::Json => (axum::Json(entries).into_response(), "json"),
        Format::Csv => (
            ([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], csv(&entries))
                .into_response(),
            "csv",
        ),
    };
    // `name` is a slug (a-z, 0-9, -) and a fixed suffix: nothing to escape.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.{ext}\"")) {
        response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The events as CSV (RFC 4180): a header row, every cell quoted, and a cell a
/// spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, carriage return first)
/// prefixed with `'`, so an exported user agent or name cannot run in the reader's sheet.
pub fn csv(entries: &[AuditEntry]) -> String {
    const HEADER: [&str; 14] = [
        "id",
        "created_at",
        "org_id",
        "actor_id",
        "actor_username",
        "pat_id",
        "pat_name",
        "action",
        "target",
        "target_name",
        "outcome",
        "ip",
        "user_agent",
        "detail",
    ];
    let mut out = String::new();
    push_row(&mut out, HEADER.iter().map(|h| Some((*h).to_owned())));
    for e in entries {
        push_row(
            &mut out,
            [
                Some(e.id.clone()),
                Some(e.created_at.clone()),
                e.org_id.clone(),
                e.actor_id.clone(),
                e.actor_username.clone(),
                e.pat_id.clone(),
                e.pat_name.clone(),
                Some(e.action.clone()),
                e.target.clone(),
                e.target_name.clone(),
                Some(e.outcome.clone()),
                e.ip.clone(),
                e.user_agent.clone(),
                e.detail.as_ref().map(serde_json::Value::to_string),
            ],
        );
    }
    out
}

fn push_row(out: &mut String, cells: impl IntoIterator<Item = Option<String>>) {
    for (n, cell) in cells.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let cell = cell.unwrap_or_default();
        out.push('"');
        if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            out.push('\'');
        }
        out.push_str(&cell.replace('"', "\"\""));
        out.push('"');
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user_agent: &str) -> AuditEntry {
        AuditEntry {
            id: "e1".into(),
            org_id: None,
            org_slug: None,
            actor_id: None,
            actor_username: Some("ann".into()),
            pat_id: None,
            pat_name: None,
            pat_kind: None,
            action: "org.join".into(),
            target: None,
            target_name: None,
            outcome: "success".into(),
            ip: Some("::1".into()),
            user_agent: Some(user_agent.into()),
            detail: None,
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn csv_quotes_every_cell_and_neutralises_formulas() {
        let out = csv(&[entry("=HYPERLINK(\"x\"), \"quoted\"\nline"), entry("-1+1"), entry("@SUM(A1)")]);
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert!(lines[0].starts_with("\"id\",\"created_at\""));
        assert!(out.contains("\"'=HYPERLINK(\"\"x\"\"), \"\"quoted\"\"\nline\""), "{out}");
        assert!(out.contains("\"'-1+1\""));
        assert!(out.contains("\"'@SUM(A1)\""));
        assert!(out.contains("\"::1\""));
    }
}
