//! Connections: a member's grants for one connector of one org, one per provider account,
//! each with a label (see `label`). Owned by the member who consented (`user_id`); tokens
//! sealed and bound to the row. Listing shows a member only their own; a request names
//! one by label or id when the member holds several; disconnecting revokes at the
//! provider first, then forgets the tokens.

pub mod label;

use crate::access::{authorize, ClientMeta, Need, Principal};
use crate::audit;
use crate::error::{Error, Result};
use crate::oauth::client::TokenSet;
use crate::revocation::{self, Grant, Superseded};
use crate::sealed;
use crate::state::AppState;
use crate::store::{new_id, now, rfc3339, unique_violation};
use crate::webhooks::{self, ConnectionData, EventType};
use label::Named;
use latchkey_shared::{ErrorCode, Scope};
use serde::Serialize;
use utoipa::ToSchema;

/// A connection as its owner sees it: never a token.
#[derive(Debug, Serialize, ToSchema)]
pub struct Connection {
    pub id: String,
    pub org: String,
    pub connector_key: String,
    /// Unique per member and connector; names this connection in requests.
    pub label: String,
    pub provider: String,
    /// `active`, `failing`, `needs_reauth`, `exhausted` or `revoked`.
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
    label: String,
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
            label: r.label,
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

const SELECT: &str = "select c.id, o.slug, c.connector_key, c.label, c.provider, c.status, c.account_id, \
                      c.account_name, c.scopes, c.expires_at, c.connected_at from connections c \
                      join orgs o on o.id = c.org_id";

impl Named for ConnectionRow {
    fn id(&self) -> &str {
        &self.id
    }
    fn label(&self) -> &str {
        &self.label
    }
}

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
            sqlx::query_as(&format!(
                "{SELECT} where c.user_id = $1 and c.org_id = $2 order by c.connector_key, c.label"
            ))
            .bind(&principal.user_id)
            .bind(&org_id)
            .fetch_all(state.store.pool())
            .await?
        }
        None => {
            sqlx::query_as(&format!("{SELECT} where c.user_id = $1 order by o.slug, c.connector_key, c.label"))
                .bind(&principal.user_id)
                .fetch_all(state.store.pool())
                .await?
        }
    };
    Ok(rows.into_iter().map(Connection::from).collect())
}

/// The caller's connection for one connector: the one `connection` (label or id) names,
/// or the only one (several and none named: `ambiguous_connection`).
pub async fn get(
    state: &AppState,
    principal: &Principal,
    org_ref: &str,
    key: &str,
    connection: Option<&str>,
) -> Result<Connection> {
    principal.require(Scope::ConnectionsRead)?;
    let org = authorize(state, principal, org_ref, Need::Member).await?;
    let mine = own_on_connector(state, principal, &org.id, key).await?;
    Ok(label::pick(mine, connection, no_connection)?.into())
}

/// The id and label of the member's connection on a connector that `name` (a label or id)
/// names, for a consent that reconnects it.
pub async fn id_and_label(
    state: &AppState,
    user_id: &str,
    org_id: &str,
    key: &str,
    name: &str,
) -> Result<(String, String)> {
    let row = label::pick(on_connector(state, user_id, org_id, key).await?, Some(name), no_connection)?;
    Ok((row.id, row.label))
}

fn no_connection() -> Error {
    Error::not_found("you have no such connection for this connector")
}

/// The caller's connections on one connector of org `org_id`.
async fn own_on_connector(
    state: &AppState,
    principal: &Principal,
    org_id: &str,
    key: &str,
) -> Result<Vec<ConnectionRow>> {
    on_connector(state, &principal.user_id, org_id, key).await
}

async fn on_connector(state: &AppState, user_id: &str, org_id: &str, key: &str) -> Result<Vec<ConnectionRow>> {
    Ok(sqlx::query_as(&format!("{SELECT} where c.user_id = $1 and c.org_id = $2 and c.connector_key = $3"))
        .bind(user_id)
        .bind(org_id)
        .bind(key)
        .fetch_all(state.store.pool())
        .await?)
}

/// `PATCH /v1/orgs/{org}/connections/{key}`: a new label for one of the caller's
/// connections (`connection`, a label or id, picks it as elsewhere).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Relabel {
    #[schema(min_length = 1)]
    pub connection: Option<String>,
    /// 1 to 64 characters after trimming, no control characters; unique per member and
    /// connector.
    #[schema(min_length = 1, max_length = 64)]
    pub label: String,
}

/// Renames one of the caller's connections (see `label::validate`); another of theirs on
/// the same connector with that label is a 409 `conflict`.
pub async fn relabel(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    key: &str,
    connection: Option<&str>,
    new_label: &str,
) -> Result<Connection> {
    principal.require(Scope::ConnectionsCreate)?;
    let new_label = label::validate(new_label)?;
    let org = authorize(state, principal, org_ref, Need::Member).await?;
    let mine = own_on_connector(state, principal, &org.id, key).await?;
    let mut row = label::pick(mine, connection, no_connection)?;
    if row.label == new_label {
        return Ok(row.into());
    }
    let renamed = sqlx::query("update connections set label = $1, updated_at = $2 where id = $3 and user_id = $4")
        .bind(&new_label)
        .bind(now())
        .bind(&row.id)
        .bind(&principal.user_id)
        .execute(state.store.pool())
        .await;
    match renamed {
        Err(e) if unique_violation(&e).is_some() => {
            return Err(Error::conflict(
                ErrorCode::Conflict,
                format!("you already have a connection labelled {new_label:?} on this connector"),
            ))
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    let event = audit::Event {
        target: Some(&row.id),
        detail: Some(serde_json::json!({ "connector": key, "from": row.label, "to": new_label })),
        ..principal.org_event(meta, &org.id, "connection.relabel")
    };
    audit::record(&state.store, event).await?;
    row.label = new_label;
    Ok(row.into())
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

/// Which connection a consent was for, as the member chose when starting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice<'a> {
    /// A plain connect: reconnects the member's only connection on the connector, or
    /// creates the first one.
    Plain,
    /// "Add another account": a new connection (unless the account is already connected).
    Add,
    /// Reconnect this connection (its id), whichever account the member consents with.
    Reconnect(&'a str),
}

/// Where a stored grant went.
#[derive(Debug)]
pub struct Stored {
    pub id: String,
    pub label: String,
    /// A new connection, rather than an existing one reconnected.
    pub created: bool,
}

/// Attempts at storing a grant; each lost race (another consent of the same member for
/// the same connector stored first) costs one.
const STORE_ATTEMPTS: usize = 10;

/// Stores a consented grant as a plain connect (see [`store`]); returns the connection's id.
pub async fn store_grant(state: &AppState, grant: NewGrant<'_>) -> Result<String> {
    Ok(store(state, &grant, Choice::Plain).await?.id)
}

/// Stores a consented grant. A provider account the member already has on this connector
/// updates that connection; otherwise `choice` decides (see [`Choice`]). Updating
/// replaces the tokens and then revokes the replaced grant at the provider, so it does not
/// stay live there. A new connection is published (`connection.created`).
pub async fn store(state: &AppState, grant: &NewGrant<'_>, choice: Choice<'_>) -> Result<Stored> {
    // Another round when another consent for the same member and connector wrote first
    // (two tabs): the later grant then replaces the earlier one, as a reconnect does.
    for _ in 0..STORE_ATTEMPTS {
        if let Some(old) = connection_to_update(state, grant, choice).await? {
            match update_grant(state, &old, grant).await {
                Ok(true) => {
                    revoke_replaced(state, &old, grant).await;
                    return Ok(Stored { id: old.id, label: old.label, created: false });
                }
                // Changed meanwhile, or (a named reconnect) its new account got a
                // connection of its own meanwhile: look again.
                Ok(false) => continue,
                Err(Error::Db(e)) if unique_violation(&e).is_some() => continue,
                Err(e) => return Err(e),
            }
        }
        let id = new_id();
        match insert_grant(state, &id, grant).await {
            Ok(label) => {
                let data = ConnectionData {
                    connection_id: &id,
                    connector_key: grant.connector_key,
                    label: &label,
                    provider: grant.provider,
                    status: "active",
                    user_id: grant.user_id,
                    failure_count: None,
                    error: None,
                };
                webhooks::publish(state, grant.org_id, EventType::ConnectionCreated, data).await;
                return Ok(Stored { id, label, created: true });
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
    label: String,
    account_id: String,
    access_token_ct: Vec<u8>,
    refresh_token_ct: Option<Vec<u8>>,
}

/// The member's connection this grant updates, if any: the one of the same provider
/// account first; else the named one; else, for a plain connect, the only one.
async fn connection_to_update(
    state: &AppState,
    grant: &NewGrant<'_>,
    choice: Choice<'_>,
) -> Result<Option<StoredGrant>> {
    let mine: Vec<StoredGrant> = sqlx::query_as(
        "select id, provider, label, account_id, access_token_ct, refresh_token_ct from connections \
         where org_id = $1 and connector_key = $2 and user_id = $3",
    )
    .bind(grant.org_id)
    .bind(grant.connector_key)
    .bind(grant.user_id)
    .fetch_all(state.store.pool())
    .await?;
    let same_account = |c: &StoredGrant| c.provider == grant.provider && c.account_id == grant.account_id;
    if mine.iter().any(same_account) {
        return Ok(mine.into_iter().find(same_account));
    }
    Ok(match choice {
        Choice::Reconnect(id) => mine.into_iter().find(|c| c.id == id),
        Choice::Add => None,
        Choice::Plain if mine.len() == 1 => mine.into_iter().next(),
        Choice::Plain => None,
    })
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
         failing_since = null, refresh_lock_owner = null, refresh_lock_until = null, last_refreshed_at = $16, connected_at = $16, \
         updated_at = $16 where id = $1 and org_id = $2 and connector_key = $3 and user_id = $4 \
         and access_token_ct = $17",
        &old.id,
        grant,
        Some(Extra::Guard(&old.access_token_ct)),
    )
    .await
}

/// Inserts a new connection with its default label (see `label::default_for`); returns
/// the label. A unique violation (the same account, or the label, taken meanwhile) is the
/// caller's to retry.
async fn insert_grant(state: &AppState, id: &str, grant: &NewGrant<'_>) -> Result<String> {
    let taken: Vec<String> =
        sqlx::query_scalar("select label from connections where org_id = $1 and connector_key = $2 and user_id = $3")
            .bind(grant.org_id)
            .bind(grant.connector_key)
            .bind(grant.user_id)
            .fetch_all(state.store.pool())
            .await?;
    let label = label::default_for(grant.account_name, grant.account_id, &taken);
    write_grant(
        state,
        "insert into connections (id, org_id, connector_key, user_id, provider, app_id, account_id, account_name, \
         scopes, status, consent_only, access_token_ct, refresh_token_ct, token_type, expires_at, \
         key_version, last_refreshed_at, connected_at, created_at, updated_at, label) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11, $12, $13, $14, $15, $16, $16, $16, $16, $17)",
        id,
        grant,
        Some(Extra::Label(&label)),
    )
    .await?;
    Ok(label)
}

/// The one parameter after a grant's sixteen: the token an update is guarded by, or the
/// label an insert gives.
enum Extra<'a> {
    Guard(&'a Vec<u8>),
    Label(&'a str),
}

/// Runs `sql` with the grant's fields as parameters $1 to $16, in the order of the
/// insert's columns, and `extra` as $17 when given; true when it wrote a row.
async fn write_grant(
    state: &AppState,
    sql: &str,
    id: &str,
    grant: &NewGrant<'_>,
    extra: Option<Extra<'_>>,
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
    match extra {
        Some(Extra::Guard(guard)) => query = query.bind(guard.clone()),
        Some(Extra::Label(label)) => query = query.bind(label.to_owned()),
        None => {}
    }
    Ok(query.execute(state.store.pool()).await?.rows_affected() == 1)
}

/// Disconnects one of the caller's own connections: the one `connection` (label or id)
/// names, or the only one (several and none named: `ambiguous_connection`).
pub async fn disconnect_own(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    key: &str,
    connection: Option<&str>,
) -> Result<()> {
    principal.require(Scope::ConnectionsDelete)?;
    let org = authorize(state, principal, org_ref, Need::Member).await?;
    let mine = own_on_connector(state, principal, &org.id, key).await?;
    let chosen = label::pick(mine, connection, no_connection)?;
    let by = By { actor: Some(&principal.user_id), pat_id: principal.pat_id(), meta };
    disconnect(state, &chosen.id, &by, "connection.disconnect").await
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
    label: String,
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
        "select org_id, provider, connector_key, label, user_id, access_token_ct, refresh_token_ct from connections \
         where id = $1",
    )
    .bind(id)
    .fetch_optional(state.store.pool())
    .await?;
    let Some(DisconnectRow {
        org_id,
        provider,
        connector_key,
        label,
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
    let deleted = sqlx::query("delete from connections where id = $1").bind(id).execute(state.store.pool()).await?;
    // Another disconnect of the same connection (two tabs, a cascade) may have won: the
    // event is published once, by the one that deleted the row.
    if deleted.rows_affected() == 1 {
        let data = ConnectionData {
            connection_id: id,
            connector_key: &connector_key,
            label: &label,
            provider: &provider,
            status: "revoked",
            user_id: &owner,
            failure_count: None,
            error: None,
        };
        webhooks::publish(state, &org_id, EventType::ConnectionDisconnected, data).await;
    }
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
