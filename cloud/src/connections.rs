//! Connections: a member's grant for one connector of one org. Owned by the member who
//! consented (`user_id`); tokens sealed and bound to the row. Listing shows a member only
//! their own; disconnecting revokes at the provider first, then forgets the tokens.

use crate::access::{authorize, ClientMeta, Need, Principal};
use crate::audit;
use crate::error::{Error, Result};
use crate::oauth::client::TokenSet;
use crate::revocation::{self, Grant, Superseded};
use crate::sealed;
use crate::state::AppState;
use crate::store::{new_id, now, rfc3339, unique_violation};
use crate::webhooks::{self, ConnectionData, EventType};
use latchkey_shared::{ErrorCode, Scope};
use serde::Serialize;
use utoipa::ToSchema;

/// A connection as its owner sees it: never a token.
#[derive(Debug, Serialize, ToSchema)]
pub struct Connection {
    pub id: String,
    pub org: String,
    pub connector_key: String,
    pub provider: String,
    /// `active`, `needs_reauth` or `revoked`.
    pub status: String,
    pub account_id: String,
    pub account_name: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub connected_at: String,
}

#[derive(sqlx::FromRow)]
struct ConnectionRow {
    id: String,
    slug: String,
    connector_key: String,
    provider: String,
    status: String,
    account_id: String,
    account_name: Option<String>,
    scopes: String,
    expires_at: Option<i64>,
    connected_at: i64,
}

impl From<ConnectionRow> for Connection {
    fn from(r: ConnectionRow) -> Self {
        Connection {
            id: r.id,
            org: r.slug,
            connector_key: r.connector_key,
            provider: r.provider,
            status: r.status,
            account_id: r.account_id,
            account_name: r.account_name,
            scopes: r.scopes.split_whitespace().map(str::to_owned).collect(),
            expires_at: r.expires_at.map(rfc3339),
            connected_at: rfc3339(r.connected_at),
        }
    }
}

const SELECT: &str = "select c.id, o.slug, c.connector_key, c.provider, c.status, c.account_id, c.account_name, \
                      c.scopes, c.expires_at, c.connected_at from connections c join orgs o on o.id = c.org_id";

/// The caller's connections, in every org (or one org); a PAT bound to an org sees only
/// that org's.
pub async fn list(state: &AppState, principal: &Principal, org_ref: Option<&str>) -> Result<Vec<Connection>> {
    principal.require(Scope::ConnectionsRead)?;
    let org_id = match org_ref {
        Some(org_ref) => Some(authorize(state, principal, org_ref, Need::Member).await?.id),
        None => principal.bound_org().map(str::to_owned),
    };
    let rows: Vec<ConnectionRow> = match org_id {
        Some(org_id) => {
            sqlx::query_as(&format!("{SELECT} where c.user_id = $1 and c.org_id = $2 order by c.connector_key"))
                .bind(&principal.user_id)
                .bind(&org_id)
                .fetch_all(state.store.pool())
                .await?
        }
        None => {
            sqlx::query_as(&format!("{SELECT} where c.user_id = $1 order by o.slug, c.connector_key"))
                .bind(&principal.user_id)
                .fetch_all(state.store.pool())
                .await?
        }
    };
    Ok(rows.into_iter().map(Connection::from).collect())
}

/// The caller's connection for one connector.
pub async fn get(state: &AppState, principal: &Principal, org_ref: &str, key: &str) -> Result<Connection> {
    principal.require(Scope::ConnectionsRead)?;
    let org = authorize(state, principal, org_ref, Need::Member).await?;
    let row: Option<ConnectionRow> =
        sqlx::query_as(&format!("{SELECT} where c.user_id = $1 and c.org_id = $2 and c.connector_key = $3"))
            .bind(&principal.user_id)
            .bind(&org.id)
            .bind(key)
            .fetch_optional(state.store.pool())
            .await?;
    row.map(Connection::from).ok_or_else(|| Error::not_found("you have no connection for this connector"))
}

/// What a new grant is stored with.
pub struct NewGrant<'a> {
    pub org_id: &'a str,
    pub connector_key: &'a str,
    pub user_id: &'a str,
    pub provider: &'a str,
    pub app_id: &'a str,
    pub account_id: &'a str,
    pub account_name: Option<&'a str>,
    pub scopes: &'a [String],
    pub consent_only: bool,
    pub tokens: &'a TokenSet,
}

/// Attempts at storing a grant; each lost race (another consent of the same member for
/// the same connector stored first) costs one.
const STORE_ATTEMPTS: usize = 10;

/// Stores a consented grant; reconnecting replaces the tokens of the same connection and
/// then revokes the replaced grant at the provider, so it does not stay live there.
pub async fn store_grant(state: &AppState, grant: NewGrant<'_>) -> Result<String> {
    // Another round when another consent for the same member and connector wrote the row
    // first (two tabs): the later grant then replaces the earlier one, as a reconnect does.
    for _ in 0..STORE_ATTEMPTS {
        if let Some(old) = existing_connection(state, &grant).await? {
            if update_grant(state, &old, &grant).await? {
                revoke_replaced(state, &old, &grant).await;
                return Ok(old.id);
            }
            continue;
        }
        let id = new_id();
        match insert_grant(state, &id, &grant).await {
            Ok(()) => {
                publish_connection(state, EventType::ConnectionCreated, &id, grant.org_id, "active").await;
                return Ok(id);
            }
            Err(Error::Db(e)) if unique_violation(&e).is_some() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::conflict(ErrorCode::Conflict, "the connection changed while it was being stored; connect again"))
}

/// The grant a connection holds before a reconnect replaces it.
#[derive(sqlx::FromRow)]
struct StoredGrant {
    id: String,
    provider: String,
    access_token_ct: Vec<u8>,
    refresh_token_ct: Option<Vec<u8>>,
}

async fn existing_connection(state: &AppState, grant: &NewGrant<'_>) -> Result<Option<StoredGrant>> {
    Ok(sqlx::query_as(
        "select id, provider, access_token_ct, refresh_token_ct from connections \
         where org_id = $1 and connector_key = $2 and user_id = $3",
    )
    .bind(grant.org_id)
    .bind(grant.connector_key)
    .bind(grant.user_id)
    .fetch_optional(state.store.pool())
    .await?)
}

/// Revokes the grant a reconnect replaced, unless the provider handed back the same grant
/// (a shared token), which the connection still holds.
async fn revoke_replaced(state: &AppState, old: &StoredGrant, new: &NewGrant<'_>) {
    let replaced = Grant::open(state, &old.id, &old.access_token_ct, old.refresh_token_ct.as_deref());
    let current = Grant { access: new.tokens.access_token.clone(), refresh: new.tokens.refresh_token.clone() };
    if replaced.as_ref().is_ok_and(|r| r.shares_a_token_with(&current)) {
        return;
    }
    let at = Superseded { connection_id: &old.id, org_id: new.org_id, provider: &old.provider, why: "reconnect" };
    revocation::revoke_superseded(state, &at, replaced).await;
}

/// The grant's tokens sealed for connection `id` (the row id is in the associated data).
struct SealedTokens {
    access: Vec<u8>,
    refresh: Option<Vec<u8>>,
}

fn seal_tokens(state: &AppState, id: &str, tokens: &TokenSet) -> Result<SealedTokens> {
    Ok(SealedTokens {
        access: state.keys.seal_str(sealed::access_token(id), &tokens.access_token)?,
        refresh: match &tokens.refresh_token {
            Some(rt) => Some(state.keys.seal_str(sealed::refresh_token(id), rt)?),
            None => None,
        },
    })
}

/// Replaces the tokens (and account) of connection `old`, only while it still holds the
/// grant `old` was read with (so the replaced grant is the one revoked), and clears its
/// lease so an in-flight refresh of the old grant cannot write over the new one. False
/// when the row changed meanwhile.
async fn update_grant(state: &AppState, old: &StoredGrant, grant: &NewGrant<'_>) -> Result<bool> {
    write_grant(
        state,
        "update connections set provider = $5, app_id = $6, account_id = $7, account_name = $8, scopes = $9, \
         status = 'active', consent_only = $10, access_token_ct = $11, refresh_token_ct = $12, token_type = $13, \
         expires_at = $14, key_version = $15, failure_count = 0, last_error = null, next_attempt_at = null, \
         refresh_lock_owner = null, refresh_lock_until = null, last_refreshed_at = $16, connected_at = $16, \
         updated_at = $16 where id = $1 and org_id = $2 and connector_key = $3 and user_id = $4 \
         and access_token_ct = $17",
        &old.id,
        grant,
        Some(&old.access_token_ct),
    )
    .await
}

async fn insert_grant(state: &AppState, id: &str, grant: &NewGrant<'_>) -> Result<()> {
    write_grant(
        state,
        "insert into connections (id, org_id, connector_key, user_id, provider, app_id, account_id, account_name, \
         label, scopes, status, consent_only, access_token_ct, refresh_token_ct, token_type, expires_at, \
         key_version, last_refreshed_at, connected_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, substr(coalesce(nullif($8, ''), $7), 1, 64), $9, 'active', $10, \
         $11, $12, $13, $14, $15, $16, $16, $16, $16)",
        id,
        grant,
        None,
    )
    .await?;
    Ok(())
}

/// Runs `sql` with the grant's fields as parameters $1 to $16, in the order of the
/// insert's columns, and `guard` as $17 when given; true when it wrote a row.
async fn write_grant(
    state: &AppState,
    sql: &str,
    id: &str,
    grant: &NewGrant<'_>,
    guard: Option<&Vec<u8>>,
) -> Result<bool> {
    let now = now();
    let sealed = seal_tokens(state, id, grant.tokens)?;
    let mut query = sqlx::query(sql)
        .bind(id)
        .bind(grant.org_id)
        .bind(grant.connector_key)
        .bind(grant.user_id)
        .bind(grant.provider)
        .bind(grant.app_id)
        .bind(grant.account_id)
        .bind(grant.account_name)
        .bind(grant.scopes.join(" "))
        .bind(i64::from(grant.consent_only))
        .bind(sealed.access)
        .bind(sealed.refresh)
        .bind(&grant.tokens.token_type)
        .bind(grant.tokens.expires_in.map(|s| now + s))
        .bind(i64::from(state.keys.active_version()))
        .bind(now);
    if let Some(guard) = guard {
        query = query.bind(guard.clone());
    }
    Ok(query.execute(state.store.pool()).await?.rows_affected() == 1)
}

/// Disconnects the caller's own connection.
pub async fn disconnect_own(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    key: &str,
) -> Result<()> {
    principal.require(Scope::ConnectionsDelete)?;
    let org = authorize(state, principal, org_ref, Need::Member).await?;
    let ids: Vec<String> =
        sqlx::query_scalar("select id from connections where user_id = $1 and org_id = $2 and connector_key = $3")
            .bind(&principal.user_id)
            .bind(&org.id)
            .bind(key)
            .fetch_all(state.store.pool())
            .await?;
    if ids.is_empty() {
        return Err(Error::not_found("you have no connection for this connector"));
    }
    for id in ids {
        let by = By { actor: Some(&principal.user_id), pat_id: principal.pat_id(), meta };
        disconnect(state, &id, &by, "connection.disconnect").await?;
    }
    Ok(())
}

/// Which connections to disconnect in bulk.
pub enum Which<'a> {
    /// Every connection in an org (it is being deleted).
    Org(&'a str),
    /// Every connection made with a managed app (the app is being deleted).
    App(&'a str),
    /// A member's connections in an org (they left or were removed).
    Member { org_id: &'a str, user_id: &'a str },
    /// Every connection of a connector (it is being deleted).
    Connector { org_id: &'a str, key: &'a str },
    /// A connector's connections made with another provider than `provider` (the
    /// connector now points at `provider`, so those grants belong to no connector).
    ConnectorNotOn { org_id: &'a str, key: &'a str, provider: &'a str },
}

/// Disconnects every connection `which` selects (see `crate::cascade` for when).
pub async fn disconnect_all(state: &AppState, which: Which<'_>, actor: &str, meta: &ClientMeta) -> Result<()> {
    let ids: Vec<String> = match which {
        Which::Org(org_id) => {
            sqlx::query_scalar("select id from connections where org_id = $1")
                .bind(org_id)
                .fetch_all(state.store.pool())
                .await?
        }
        Which::App(app_id) => {
            sqlx::query_scalar("select id from connections where app_id = $1")
                .bind(app_id)
                .fetch_all(state.store.pool())
                .await?
        }
        Which::Member { org_id, user_id } => {
            sqlx::query_scalar("select id from connections where org_id = $1 and user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .fetch_all(state.store.pool())
                .await?
        }
        Which::Connector { org_id, key } => {
            sqlx::query_scalar("select id from connections where org_id = $1 and connector_key = $2")
                .bind(org_id)
                .bind(key)
                .fetch_all(state.store.pool())
                .await?
        }
        Which::ConnectorNotOn { org_id, key, provider } => {
            sqlx::query_scalar("select id from connections where org_id = $1 and connector_key = $2 and provider <> $3")
                .bind(org_id)
                .bind(key)
                .bind(provider)
                .fetch_all(state.store.pool())
                .await?
        }
    };
    for id in ids {
        let by = By { actor: Some(actor), pat_id: None, meta };
        disconnect(state, &id, &by, "connection.disconnect_cascade").await?;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct DisconnectRow {
    org_id: String,
    provider: String,
    connector_key: String,
    user_id: String,
    access_token_ct: Vec<u8>,
    refresh_token_ct: Option<Vec<u8>>,
}

/// Who disconnects, and from where (for the audit event).
struct By<'a> {
    actor: Option<&'a str>,
    pat_id: Option<&'a str>,
    meta: &'a ClientMeta,
}

/// Revokes at the provider where it can (a failure is recorded, not fatal), then deletes
/// the connection and its tokens.
async fn disconnect(state: &AppState, id: &str, by: &By<'_>, action: &str) -> Result<()> {
    let row: Option<DisconnectRow> = sqlx::query_as(
        "select org_id, provider, connector_key, user_id, access_token_ct, refresh_token_ct from connections where id = $1",
    )
    .bind(id)
    .fetch_optional(state.store.pool())
    .await?;
    let Some(DisconnectRow {
        org_id,
        provider,
        connector_key,
        user_id: owner,
        access_token_ct: access_ct,
        refresh_token_ct: refresh_ct,
    }) = row
    else {
        return Ok(());
    };
    let outcome = match Grant::open(state, id, &access_ct, refresh_ct.as_deref()) {
        Ok(grant) => revocation::revoke(state, &org_id, &provider, &grant).await,
        Err(e) => Err(e),
    };
    publish_connection(state, EventType::ConnectionDisconnected, id, &org_id, "revoked").await;
    sqlx::query("delete from connections where id = $1").bind(id).execute(state.store.pool()).await?;
    let (result, detail) = match &outcome {
        Ok(true) => ("success", serde_json::json!({ "connector": connector_key, "revoked_at_provider": true })),
        Ok(false) => (
            "success",
            serde_json::json!({ "connector": connector_key, "revoked_at_provider": false, "reason": "provider has no revocation endpoint" }),
        ),
        Err(e) => (
            "revocation_failed",
            serde_json::json!({ "connector": connector_key, "revoked_at_provider": false, "error": e }),
        ),
    };
    if let Err(e) = &outcome {
        tracing::warn!(connection = %id, error = %e, "revocation at the provider failed; disconnected locally");
    }
    audit::record(
        &state.store,
        audit::Event {
            org_id: Some(&org_id),
            actor_id: by.actor.or(Some(&owner)),
            pat_id: by.pat_id,
            action,
            target: Some(id),
            outcome: result,
            ip: Some(&by.meta.ip),
            user_agent: by.meta.user_agent.as_deref(),
            detail: Some(detail),
        },
    )
    .await
}

/// A `connection.*` event for the org's webhooks, with the connection's facts as stored
/// (never its tokens).
async fn publish_connection(state: &AppState, event: EventType, id: &str, org_id: &str, status: &str) {
    let row: Option<(String, String, String, String)> =
        sqlx::query_as("select connector_key, label, provider, user_id from connections where id = $1")
            .bind(id)
            .fetch_optional(state.store.pool())
            .await
            .unwrap_or_default();
    let Some((connector_key, label, provider, user_id)) = row else { return };
    let data = ConnectionData {
        connection_id: id,
        connector_key: &connector_key,
        label: &label,
        provider: &provider,
        status,
        user_id: &user_id,
        failure_count: None,
        error: None,
    };
    webhooks::publish(state, org_id, event, data).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_db::{grant, tokens, TempSqlite};

    /// The same member finishes two consents for one connector at once (two tabs): both
    /// succeed, on one connection, which holds one of the two grants whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simultaneous_consents_for_one_connector_end_in_one_connection() {
        let db = TempSqlite::new().await;
        db.seed_member_and_app().await;
        let state = db.state();
        let mut consents = tokio::task::JoinSet::new();
        for n in 0..8 {
            let state = state.clone();
            consents.spawn(async move {
                let t = tokens(&format!("access-{n}"), &format!("refresh-{n}"));
                store_grant(&state, grant(&t)).await
            });
        }
        let ids: Vec<String> =
            consents.join_all().await.into_iter().map(|r| r.expect("every consent is stored")).collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");

        let (access_ct, refresh_ct): (Vec<u8>, Vec<u8>) =
            sqlx::query_as("select access_token_ct, refresh_token_ct from connections")
                .fetch_one(state.store.pool())
                .await
                .unwrap();
        let access = state.keys.open_str(sealed::access_token(&ids[0]), &access_ct).unwrap();
        let refresh = state.keys.open_str(sealed::refresh_token(&ids[0]), &refresh_ct).unwrap();
        let n = access.expose().strip_prefix("access-").unwrap();
        assert_eq!(refresh.expose(), &format!("refresh-{n}"), "access and refresh token from one grant");
    }

    /// The insert's unique violation is recognised through the `Any` driver, so the loser
    /// of the race above takes the update path instead of failing with a 500.
    #[tokio::test]
    async fn a_second_insert_for_the_same_member_and_connector_is_a_unique_violation() {
        let db = TempSqlite::new().await;
        db.seed_connection(b"\xa1", b"\xb1", 1).await;
        let state = db.state();
        let t = tokens("a", "r");
        let err = insert_grant(&state, "c2", &grant(&t)).await.expect_err("the connection exists");
        assert!(matches!(&err, Error::Db(e) if unique_violation(e).is_some()), "{err:?}");
    }
}
