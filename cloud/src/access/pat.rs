//! The one PAT verifier. A presented PAT is parsed (format and checksum, so a mistyped
//! token costs no database look-up), looked up by its SHA-256 hash, and judged: unknown,
//! revoked or expired answer 401. `last_used_at` is kept at minute granularity.
//!
//! The token endpoint reads the org, the membership and the connection in the PAT's own
//! round trip: it builds its query once with `select_sql` and gets its row back beside the
//! verified principal. Every other caller uses `verify`.

use super::{Principal, Via, LAST_USED_GRANULARITY_SECS};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::now;
use latchkey_shared::{Pat, ScopeSet};
use sqlx::any::AnyRow;
use sqlx::FromRow;
use std::sync::LazyLock;

/// The PAT's columns, under names no joined table uses; `p` is the PAT's alias.
const PAT_COLUMNS: &str = "p.id as pat_id, p.user_id as pat_user_id, p.scopes as pat_scopes, \
                           p.org_id as pat_org_id, p.expires_at as pat_expires_at, \
                           p.revoked_at as pat_revoked_at, p.last_used_at as pat_last_used_at";

/// The columns that decide whether a presented PAT is good.
#[derive(Debug, sqlx::FromRow)]
struct PatRow {
    pat_id: String,
    pat_user_id: String,
    pat_scopes: String,
    pat_org_id: Option<String>,
    pat_expires_at: Option<i64>,
    pat_revoked_at: Option<i64>,
    pat_last_used_at: Option<i64>,
}

/// What a caller reads in the PAT's own query: its SQL, made once by `select_sql`, and
/// the values of `$2`, `$3`, … in order (`$1` is the PAT's hash).
pub struct Joined<'a> {
    pub sql: &'a str,
    pub binds: &'a [&'a str],
}

/// The PAT's query with a caller's extra `columns` and the `joins` that supply them (the
/// PAT is `p`). Build it once (e.g. in a `LazyLock`): the request path then only binds.
pub fn select_sql(columns: &str, joins: &str) -> String {
    let separator = if columns.is_empty() { "" } else { ", " };
    format!("select {PAT_COLUMNS}{separator}{columns} from pats p {joins} where p.token_hash = $1")
}

/// The principal behind a PAT presented from `ip` (kept with `last_used_at`).
pub async fn verify(state: &AppState, token: &str, ip: &str) -> Result<Principal> {
    static SQL: LazyLock<String> = LazyLock::new(|| select_sql("", ""));
    let joined = Joined { sql: &SQL, binds: &[] };
    verify_joined::<Nothing>(state, token, ip, &joined).await.map(|(principal, Nothing)| principal)
}

/// The principal behind a PAT, and the caller's `joined` row read with it.
pub async fn verify_joined<X>(state: &AppState, token: &str, ip: &str, joined: &Joined<'_>) -> Result<(Principal, X)>
where
    X: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
{
    let pat = Pat::parse(token).map_err(|e| Error::unauthenticated(e.to_string()))?;
    let mut query = sqlx::query_as::<_, WithPat<X>>(joined.sql).bind(pat.hash());
    for value in joined.binds {
        query = query.bind(*value);
    }
    let row = query.fetch_optional(state.store.pool()).await?;
    let WithPat { pat, joined } = row.ok_or_else(|| Error::unauthenticated("unknown personal access token"))?;
    Ok((judge(state, pat, ip).await?, joined))
}

/// [`verify_joined`] for joins that may match several rows (a member's connections on
/// one connector): every joined row, in the same single round trip.
pub async fn verify_joined_all<X>(
    state: &AppState,
    token: &str,
    ip: &str,
    joined: &Joined<'_>,
) -> Result<(Principal, Vec<X>)>
where
    X: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
{
    let pat = Pat::parse(token).map_err(|e| Error::unauthenticated(e.to_string()))?;
    let mut query = sqlx::query_as::<_, WithPat<X>>(joined.sql).bind(pat.hash());
    for value in joined.binds {
        query = query.bind(*value);
    }
    let mut rows = query.fetch_all(state.store.pool()).await?.into_iter();
    let WithPat { pat, joined: first } =
        rows.next().ok_or_else(|| Error::unauthenticated("unknown personal access token"))?;
    let principal = judge(state, pat, ip).await?;
    Ok((principal, std::iter::once(first).chain(rows.map(|r| r.joined)).collect()))
}

/// Revoked or expired → 401; otherwise the principal, after keeping `last_used_at`.
async fn judge(state: &AppState, row: PatRow, ip: &str) -> Result<Principal> {
    let now = now();
    if row.pat_revoked_at.is_some() {
        return Err(Error::unauthenticated("personal access token was revoked"));
    }
    if row.pat_expires_at.is_some_and(|t| t <= now) {
        return Err(Error::unauthenticated("personal access token has expired"));
    }
    if row.pat_last_used_at.is_none_or(|t| now - t >= LAST_USED_GRANULARITY_SECS) {
        sqlx::query("update pats set last_used_at = $1, last_used_ip = $2 where id = $3")
            .bind(now)
            .bind(ip)
            .bind(&row.pat_id)
            .execute(state.store.pool())
            .await?;
    }
    let scopes = ScopeSet::from_db(&row.pat_scopes).map_err(|e| anyhow::anyhow!("stored scopes: {e}"))?;
    Ok(Principal { user_id: row.pat_user_id, via: Via::Pat { pat_id: row.pat_id, scopes, org_id: row.pat_org_id } })
}

/// A PAT row with a caller's joined columns beside it.
struct WithPat<X> {
    pat: PatRow,
    joined: X,
}

impl<'r, X: FromRow<'r, AnyRow>> FromRow<'r, AnyRow> for WithPat<X> {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Self> {
        Ok(WithPat { pat: PatRow::from_row(row)?, joined: X::from_row(row)? })
    }
}

/// No joined columns.
struct Nothing;

impl FromRow<'_, AnyRow> for Nothing {
    fn from_row(_: &AnyRow) -> sqlx::Result<Self> {
        Ok(Nothing)
    }
}
