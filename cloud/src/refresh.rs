//! Keeping access tokens fresh: refresh on demand, single flight across tasks and
//! replicas, the failure policy, and the background refresher.
//!
//! Single flight has two layers: an async mutex per connection inside a process, and a
//! lease in the connection's row (`refresh_lock_owner`, `refresh_lock_until`) across
//! processes. The lease outlives the provider timeout, so a live holder always finishes
//! first; a dead holder blocks the connection for at most the lease. The lease is only
//! granted on the tokens the taker read (see `acquire_lease`), so nobody can spend a
//! refresh token that another replica has just rotated.
//!
//! The grant is only ever replaced by what a provider returned; failures other than
//! `invalid_grant` leave it untouched and back off with jitter.

use crate::apps;
use crate::audit;
use crate::connections::{aad, ACCESS_TOKEN, REFRESH_TOKEN};
use crate::error::{Error, Result};
use crate::oauth::client::TokenError;
use crate::state::AppState;
use crate::store::now;
use latchkey_shared::secret::SecretString;
use rand::Rng;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the endpoint serves: a usable access token, or why not.
#[derive(Debug)]
pub enum Fresh {
    Token {
        access_token: SecretString,
        token_type: String,
        expires_at: Option<i64>,
    },
    /// The grant is gone at the provider: the member must reconnect.
    Reauth,
    /// The provider is failing and the current token is no longer valid.
    Unavailable {
        retry_after: u64,
    },
}

/// The row fields refreshing needs.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TokenRow {
    pub id: String,
    pub org_id: String,
    pub provider: String,
    pub status: String,
    pub access_token_ct: Vec<u8>,
    pub refresh_token_ct: Option<Vec<u8>>,
    pub token_type: String,
    pub expires_at: Option<i64>,
    pub failure_count: i64,
    pub next_attempt_at: Option<i64>,
}

const TOKEN_ROW: &str =
    "select id, org_id, provider, status, access_token_ct, refresh_token_ct, token_type, expires_at, \
                         failure_count, next_attempt_at from connections where id = $1";

/// Per-process single flight: one refresh per connection at a time.
#[derive(Debug, Default)]
pub struct Flights(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Flights {
    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget idle entries now and then so the map stays small.
        if map.len() > 10_000 {
            map.retain(|_, m| Arc::strong_count(m) > 1);
        }
        Arc::clone(map.entry(id.to_owned()).or_default())
    }
}

impl TokenRow {
    fn needs_refresh(&self, window: i64, now: i64) -> bool {
        self.expires_at.is_some_and(|exp| exp - now <= window)
    }

    fn still_valid(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|exp| exp > now)
    }
}

/// The token to hand out for `row`, refreshing first if it expires within the window.
pub async fn fresh_token(state: &AppState, row: TokenRow) -> Result<Fresh> {
    let now = now();
    let window = state.config.refresh_window_secs;
    if row.status == "needs_reauth" {
        return Ok(Fresh::Reauth);
    }
    if !row.needs_refresh(window, now) || row.refresh_token_ct.is_none() {
        return serve(state, &row, now);
    }
    // In backoff: do not call the provider; serve what we have while it is valid.
    if let Some(next) = row.next_attempt_at.filter(|t| *t > now) {
        if row.still_valid(now) {
            return serve(state, &row, now);
        }
        return Ok(Fresh::Unavailable { retry_after: u64::try_from(next - now).unwrap_or(1).max(1) });
    }
    let row = refresh_single_flight(state, &row.id).await?;
    let now = crate::store::now();
    if row.status == "needs_reauth" {
        return Ok(Fresh::Reauth);
    }
    if row.still_valid(now) {
        return serve(state, &row, now);
    }
    let retry = row.next_attempt_at.map(|t| t - now).unwrap_or(1);
    Ok(Fresh::Unavailable { retry_after: u64::try_from(retry).unwrap_or(1).max(1) })
}

fn serve(state: &AppState, row: &TokenRow, now: i64) -> Result<Fresh> {
    if !row.still_valid(now) {
        return Ok(Fresh::Unavailable { retry_after: 1 });
    }
    let access_token = state.keys.open_str(aad(ACCESS_TOKEN, &row.id), &row.access_token_ct)?;
    Ok(Fresh::Token { access_token, token_type: row.token_type.clone(), expires_at: row.expires_at })
}

/// Refreshes one connection unless another task or replica is already doing it, in
/// which case it waits (bounded) for that result. Returns the row as it then is.
pub async fn refresh_single_flight(state: &AppState, id: &str) -> Result<TokenRow> {
    let flight = state.flights.lock_for(id);
    let _guard = flight.lock().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(state.config.refresh_wait_secs);
    let before = read(state, id).await?;
    let window = state.config.refresh_window_secs;
    loop {
        let row = read(state, id).await?;
        let now = now();
        // Someone else finished meanwhile (or the row changed under us): use it.
        if row.status != "active" || !row.needs_refresh(window, now) || row.refresh_token_ct != before.refresh_token_ct
        {
            return Ok(row);
        }
        if row.next_attempt_at.is_some_and(|t| t > now) || row.refresh_token_ct.is_none() {
            return Ok(row);
        }
        if acquire_lease(state, &row, now).await? {
            return refresh_holding_lease(state, row).await;
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(row);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn read(state: &AppState, id: &str) -> Result<TokenRow> {
    sqlx::query_as(TOKEN_ROW)
        .bind(id)
        .fetch_optional(state.store.pool())
        .await?
        .ok_or_else(|| Error::not_found("no active connection for this connector"))
}

/// Takes the cross-replica lease on `row`'s connection: only while the lease is free *and*
/// the row still holds the tokens `row` was read with, outside any backoff.
///
/// The second condition is what makes the lease safe. Without it, a replica that read the
/// row a moment before another replica finished its refresh would find the lease just
/// released, take it, and spend the old refresh token, which the provider had already
/// rotated. A provider that detects reuse then revokes the whole grant. Tokens are
/// sealed with a fresh random nonce each time, so unchanged ciphertext means unchanged
/// tokens, and no version column is needed.
async fn acquire_lease(state: &AppState, row: &TokenRow, now: i64) -> Result<bool> {
    let lease = i64::try_from(state.config.provider_timeout_secs).unwrap_or(10) * 2 + 5;
    Ok(try_lease(state.store.pool(), &state.instance_id, row, now, lease).await?)
}

async fn try_lease(
    pool: &sqlx::AnyPool,
    owner: &str,
    row: &TokenRow,
    now: i64,
    lease_secs: i64,
) -> std::result::Result<bool, sqlx::Error> {
    let taken = sqlx::query(
        "update connections set refresh_lock_owner = $1, refresh_lock_until = $2 \
         where id = $3 and (refresh_lock_until is null or refresh_lock_until < $4) \
         and status = 'active' and access_token_ct = $5 and refresh_token_ct = $6 \
         and (next_attempt_at is null or next_attempt_at <= $4)",
    )
    .bind(owner)
    .bind(now + lease_secs)
    .bind(&row.id)
    .bind(now)
    .bind(&row.access_token_ct)
    .bind(&row.refresh_token_ct)
    .execute(pool)
    .await?;
    Ok(taken.rows_affected() == 1)
}

async fn release_lease(state: &AppState, id: &str) -> Result<()> {
    sqlx::query("update connections set refresh_lock_owner = null, refresh_lock_until = null where id = $1 and refresh_lock_owner = $2")
        .bind(id)
        .bind(&state.instance_id)
        .execute(state.store.pool())
        .await?;
    Ok(())
}

async fn refresh_holding_lease(state: &AppState, row: TokenRow) -> Result<TokenRow> {
    let result = call_provider(state, &row).await;
    let now = now();
    match result {
        Ok(tokens) => {
            // The provider has already consumed the old refresh token: save the new one
            // before anything else, in one statement with the new access token.
            let access_ct = state.keys.seal_str(aad(ACCESS_TOKEN, &row.id), &tokens.access_token)?;
            let refresh_ct = match &tokens.refresh_token {
                Some(rt) => Some(state.keys.seal_str(aad(REFRESH_TOKEN, &row.id), rt)?),
                None => row.refresh_token_ct.clone(),
            };
            let expires_at = tokens.expires_in.map(|s| now + s);
            sqlx::query(
                "update connections set access_token_ct = $1, refresh_token_ct = $2, token_type = $3, expires_at = $4, \
                 key_version = $5, failure_count = 0, last_error = null, next_attempt_at = null, last_refreshed_at = $6, \
                 refresh_lock_owner = null, refresh_lock_until = null, updated_at = $6 where id = $7",
            )
            .bind(access_ct)
            .bind(refresh_ct)
            .bind(&tokens.token_type)
            .bind(expires_at)
            .bind(i64::from(state.keys.active_version()))
            .bind(now)
            .bind(&row.id)
            .execute(state.store.pool())
            .await?;
            record(state, &row, "success", None).await;
        }
        Err(RefreshFailure::Grant(reason)) => {
            // Another replica may have rotated the grant meanwhile: then its result stands.
            let current = read(state, &row.id).await?;
            if current.refresh_token_ct != row.refresh_token_ct {
                release_lease(state, &row.id).await?;
                return Ok(current);
            }
            sqlx::query(
                "update connections set status = 'needs_reauth', last_error = $1, failure_count = failure_count + 1, \
                 refresh_lock_owner = null, refresh_lock_until = null, updated_at = $2 where id = $3",
            )
            .bind(&reason)
            .bind(now)
            .bind(&row.id)
            .execute(state.store.pool())
            .await?;
            record(state, &row, "needs_reauth", Some(&reason)).await;
        }
        Err(RefreshFailure::Transient { reason, retry_after }) => {
            let failures = row.failure_count + 1;
            let delay = backoff(failures).max(retry_after.unwrap_or_default());
            let next = now + i64::try_from(delay.as_secs()).unwrap_or(1).max(1);
            sqlx::query(
                "update connections set failure_count = $1, last_error = $2, next_attempt_at = $3, \
                 refresh_lock_owner = null, refresh_lock_until = null, updated_at = $4 where id = $5",
            )
            .bind(failures)
            .bind(&reason)
            .bind(next)
            .bind(now)
            .bind(&row.id)
            .execute(state.store.pool())
            .await?;
            record(state, &row, "transient_failure", Some(&reason)).await;
        }
    }
    read(state, &row.id).await
}

enum RefreshFailure {
    /// The grant is dead: `invalid_grant`.
    Grant(String),
    /// Try again later; the grant is untouched (a timeout's outcome is unknown).
    Transient { reason: String, retry_after: Option<Duration> },
}

async fn call_provider(
    state: &AppState,
    row: &TokenRow,
) -> std::result::Result<crate::oauth::client::TokenSet, RefreshFailure> {
    let transient = |reason: String| RefreshFailure::Transient { reason, retry_after: None };
    let def = state.providers.get(&row.provider).ok_or_else(|| transient("provider no longer configured".into()))?;
    let creds = apps::credentials(state, &row.org_id, &row.provider)
        .await
        .map_err(|e| transient(format!("reading the managed app: {e}")))?
        .ok_or_else(|| transient("the managed app is gone".into()))?;
    let Some(refresh_ct) = &row.refresh_token_ct else { return Err(transient("no refresh token".into())) };
    let refresh_token =
        state.keys.open_str(aad(REFRESH_TOKEN, &row.id), refresh_ct).map_err(|e| transient(e.to_string()))?;
    state.provider_client.refresh(def, &creds, &refresh_token).await.map_err(|e| match e {
        TokenError::InvalidGrant(_) => RefreshFailure::Grant(e.to_string()),
        TokenError::Unavailable { retry_after, .. } => RefreshFailure::Transient { reason: e.to_string(), retry_after },
        other => transient(other.to_string()),
    })
}

/// Exponential backoff with ±20 % jitter: 2 s, 4 s, 8 s … capped at 5 minutes.
pub fn backoff(failures: i64) -> Duration {
    let exp = u32::try_from(failures.clamp(1, 10) - 1).unwrap_or(0);
    let base = (2u64.saturating_pow(exp) * 2).min(300) as f64;
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    Duration::from_secs_f64(base * jitter)
}

async fn record(state: &AppState, row: &TokenRow, outcome: &str, reason: Option<&str>) {
    crate::metrics::Metrics::count(&state.metrics.refreshes, outcome);
    let event = audit::Event {
        org_id: Some(&row.org_id),
        action: "connection.refresh",
        target: Some(&row.id),
        outcome,
        detail: reason.map(|r| serde_json::json!({ "reason": r })),
        ..Default::default()
    };
    if let Err(e) = audit::record(&state.store, event).await {
        tracing::warn!(error = %e, "could not audit a refresh");
    }
}

/// Renews connections a few minutes before they expire, so the endpoint rarely waits
/// on a provider. Every replica runs one; leases keep them from duplicating work.
pub async fn background_refresher(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(state.config.refresher_concurrency.max(1)));
    loop {
        let pause = Duration::from_secs(state.config.refresher_interval_secs.max(1))
            .mul_f64(rand::thread_rng().gen_range(0.8..1.2));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        let now = now();
        let due: std::result::Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
            "select id from connections where status = 'active' and refresh_token_ct is not null \
             and expires_at is not null and expires_at < $1 and (next_attempt_at is null or next_attempt_at <= $2) \
             and (refresh_lock_until is null or refresh_lock_until < $2) order by expires_at limit 100",
        )
        .bind(now + state.config.refresher_lead_secs)
        .bind(now)
        .fetch_all(state.store.pool())
        .await;
        let Ok(due) = due else { continue };
        for id in due {
            let Ok(permit) = Arc::clone(&semaphore).acquire_owned().await else { return };
            let state = state.clone();
            // Spread replicas' attempts a little.
            let spread = Duration::from_millis(rand::thread_rng().gen_range(0..250));
            tokio::spawn(async move {
                tokio::time::sleep(spread).await;
                if let Err(e) = refresh_ahead(&state, &id).await {
                    tracing::warn!(connection = %id, error = %e, "background refresh failed");
                }
                drop(permit);
            });
        }
    }
}

/// A refresh from the background: like on demand, with the refresher's own lead time.
async fn refresh_ahead(state: &AppState, id: &str) -> Result<()> {
    let flight = state.flights.lock_for(id);
    let _guard = flight.lock().await;
    let row = read(state, id).await?;
    let now = now();
    let due = row.status == "active"
        && row.expires_at.is_some_and(|e| e < now + state.config.refresher_lead_secs)
        && row.next_attempt_at.is_none_or(|t| t <= now);
    if due && acquire_lease(state, &row, now).await? {
        refresh_holding_lease(state, row).await?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::store::Store;

    const LEASE: i64 = 11;

    /// A real SQLite with one expired connection whose tokens are `access`/`refresh`.
    async fn store_with_connection() -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("latchkey-lease-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("lease.db").display());
        let store = Store::connect(&url, 4).await.unwrap();
        store.migrate().await.unwrap();
        for sql in [
            "insert into users (id, email, username, password_hash, created_at, updated_at) \
             values ('u1', 'm@example.test', 'm', 'x', 0, 0)",
            "insert into orgs (id, slug, name, visibility, created_at, updated_at) \
             values ('o1', 'acme', 'Acme', 'public', 0, 0)",
            "insert into managed_apps (id, org_id, provider, client_id_ct, client_secret_ct, client_id_hint, scopes, \
             key_version, created_at, updated_at) values ('a1', 'o1', 'sandbox', x'00', x'00', 'c…', '', 1, 0, 0)",
            "insert into connections (id, org_id, connector_key, user_id, provider, app_id, account_id, scopes, status, \
             consent_only, access_token_ct, refresh_token_ct, token_type, expires_at, key_version, connected_at, \
             created_at, updated_at) values ('c1', 'o1', 'sandbox', 'u1', 'sandbox', 'a1', 'acct', '', 'active', 0, \
             x'a1', x'b1', 'bearer', 1, 1, 0, 0, 0)",
        ] {
            sqlx::query(sql).execute(store.pool()).await.unwrap();
        }
        (store, dir)
    }

    async fn row(store: &Store) -> TokenRow {
        sqlx::query_as(TOKEN_ROW).bind("c1").fetch_one(store.pool()).await.unwrap()
    }

    /// What a replica's successful refresh leaves behind: new tokens, lease released.
    async fn finish_refresh(store: &Store, access: &[u8], refresh: &[u8], now: i64) {
        sqlx::query(
            "update connections set access_token_ct = $1, refresh_token_ct = $2, expires_at = $3, \
             refresh_lock_owner = null, refresh_lock_until = null where id = 'c1'",
        )
        .bind(access.to_vec())
        .bind(refresh.to_vec())
        .bind(now + 3600)
        .execute(store.pool())
        .await
        .unwrap();
    }

    /// The race CI caught across three replicas: X reads the row, Y refreshes and releases
    /// the lease, then X tries the lease with what it read. X must not get it, or it would
    /// spend the refresh token Y already rotated.
    #[tokio::test]
    async fn a_replica_holding_a_stale_read_cannot_take_the_lease_after_another_refreshed() {
        let (store, dir) = store_with_connection().await;
        let now = crate::store::now();
        let stale = row(&store).await;

        assert!(try_lease(store.pool(), "y", &stale, now, LEASE).await.unwrap(), "Y takes the free lease");
        assert!(!try_lease(store.pool(), "x", &stale, now, LEASE).await.unwrap(), "X waits while Y holds it");
        finish_refresh(&store, b"\xa2", b"\xb2", now).await;
        assert!(
            !try_lease(store.pool(), "x", &stale, now, LEASE).await.unwrap(),
            "the lease is free again, but X's tokens are stale"
        );

        let fresh = row(&store).await;
        assert_eq!(fresh.refresh_token_ct.as_deref(), Some(&b"\xb2"[..]));
        assert!(try_lease(store.pool(), "x", &fresh, now, LEASE).await.unwrap(), "with a fresh read X may refresh");
        store.pool().close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A dead holder's lease runs out; a connection in backoff is not refreshed early.
    #[tokio::test]
    async fn an_expired_lease_is_taken_over_but_backoff_is_respected() {
        let (store, dir) = store_with_connection().await;
        let now = crate::store::now();
        let current = row(&store).await;
        assert!(try_lease(store.pool(), "dead", &current, now - 2 * LEASE, LEASE).await.unwrap());
        assert!(try_lease(store.pool(), "x", &current, now, LEASE).await.unwrap(), "the dead holder's lease expired");

        sqlx::query("update connections set refresh_lock_until = null, next_attempt_at = $1 where id = 'c1'")
            .bind(now + 30)
            .execute(store.pool())
            .await
            .unwrap();
        let backing_off = row(&store).await;
        assert!(!try_lease(store.pool(), "y", &backing_off, now, LEASE).await.unwrap(), "in backoff");
        assert!(try_lease(store.pool(), "y", &backing_off, now + 31, LEASE).await.unwrap(), "after backoff");
        store.pool().close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
