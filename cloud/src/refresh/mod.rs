//! Keeping access tokens fresh: refresh on demand, single flight across tasks and
//! replicas, the failure policy, and the background refresher.
//!
//! Single flight has two layers: an async mutex per connection inside a process, and a
//! lease in the connection's row (`refresh_lock_owner`, `refresh_lock_until`) across
//! processes. The lease is short (`refresh_lease_secs`) and a heartbeat renews it every
//! third of it for as long as the holder works (the provider call and the save), so a
//! live holder, however slow its provider, keeps it, and a dead one blocks the connection
//! for at most the lease. The lease is only granted on the tokens the taker read (see
//! `acquire_lease`), so nobody can spend a refresh token that another replica has just
//! rotated; and the holder's writes land only while it still owns the lease
//! (`LeaseHolder`), so a holder that lost it (cut off from the database for longer than
//! the lease) cannot overwrite what the next holder wrote.
//!
//! The grant is only ever replaced by what a provider returned; failures other than
//! `invalid_grant` leave it untouched and back off with jitter.
//!
//! States: `active` → (a transient failure) `failing` → (`refresh_exhaust_after_failures`
//! in a row, or `refresh_exhaust_after_secs` since `failing_since`) `exhausted`, which is
//! never refreshed again: its token is served while valid, then reconnect. A success from
//! `failing` is `active` again (recovered); `invalid_grant` is `needs_reauth` from either.
//! Every change is written by the lease holder alone, and told once (`transitions`).

use crate::audit;
use crate::error::{Error, Result};
use crate::oauth::client::TokenError;
use crate::oauth::credentials;
use crate::revocation;
use crate::sealed;
use crate::state::AppState;
use crate::store::now;
use latchkey_shared::secret::SecretString;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use transitions::Change;

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

impl TokenRow {
    fn needs_refresh(&self, window: i64, now: i64) -> bool {
        self.expires_at.is_some_and(|exp| exp - now <= window)
    }

    fn still_valid(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|exp| exp > now)
    }
}

/// Whether a connection in `status` is ever refreshed: `exhausted` and `needs_reauth`
/// wait for a reconnect, `revoked` for nothing.
pub fn refreshable(status: &str) -> bool {
    matches!(status, "active" | "failing")
}

/// The token to hand out for `row`, refreshing first if it expires within the window.
pub async fn fresh_token(state: &AppState, row: TokenRow) -> Result<Fresh> {
    let now = now();
    let window = state.config.refresh_window_secs;
    if row.status == "needs_reauth" {
        return Ok(Fresh::Reauth);
    }
    // Retrying was given up: the token while it lasts, then only a reconnect helps.
    if row.status == "exhausted" {
        return if row.still_valid(now) { serve(state, &row, now) } else { Ok(Fresh::Reauth) };
    }
    if row.refresh_token_ct.is_none() && !row.still_valid(now) {
        return expired_without_refresh_token(state, &row, now).await;
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
    if row.status == "exhausted" {
        return Ok(Fresh::Reauth);
    }
    let retry = row.next_attempt_at.map(|t| t - now).unwrap_or(1);
    Ok(Fresh::Unavailable { retry_after: u64::try_from(retry).unwrap_or(1).max(1) })
}

fn serve(state: &AppState, row: &TokenRow, now: i64) -> Result<Fresh> {
    if !row.still_valid(now) {
        return Ok(Fresh::Unavailable { retry_after: 1 });
    }
    let access_token = state.keys.open_str(sealed::access_token(&row.id), &row.access_token_ct)?;
    Ok(Fresh::Token { access_token, token_type: row.token_type.clone(), expires_at: row.expires_at })
}

/// The access token has expired and there is no refresh token: the grant is over, and only
/// a reconnect brings it back. Marks the connection for reauth (unless a reconnect has
/// just replaced the token) and audits it once.
async fn expired_without_refresh_token(state: &AppState, row: &TokenRow, now: i64) -> Result<Fresh> {
    let reason = "the access token expired and the provider gave no refresh token";
    let marked = sqlx::query(
        "update connections set status = 'needs_reauth', last_error = $1, updated_at = $2 \
         where id = $3 and status = 'active' and access_token_ct = $4 and refresh_token_ct is null",
    )
    .bind(reason)
    .bind(now)
    .bind(&row.id)
    .bind(&row.access_token_ct)
    .execute(state.store.pool())
    .await?;
    if marked.rows_affected() == 1 {
        record(state, row, "needs_reauth", Some(reason)).await;
        let change = Change::NeedsReauth { failure_count: row.failure_count, error: "no_refresh_token" };
        transitions::announce(state, row, &change).await;
        return Ok(Fresh::Reauth);
    }
    // Someone else marked it, or a reconnect replaced the grant: answer from the row as it is.
    let current = read(state, &row.id).await?;
    if current.status == "needs_reauth" {
        return Ok(Fresh::Reauth);
    }
    serve(state, &current, now)
}

/// Refreshes one connection unless another task or replica is already doing it, in
/// which case it waits (bounded) for that result. Returns the row as it then is.
pub async fn refresh_single_flight(state: &AppState, id: &str) -> Result<TokenRow> {
    let flight = state.flights.lock_for(id);
    // Another task of this process is refreshing this connection: wait for it.
    let mut waited = false;
    let _guard = match flight.try_lock() {
        Ok(guard) => guard,
        Err(_) => {
            waited = true;
            state.metrics.lease_waits.inc();
            flight.lock().await
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(state.config.refresh_wait_secs);
    let before = read(state, id).await?;
    let window = state.config.refresh_window_secs;
    loop {
        let row = read(state, id).await?;
        let now = now();
        // Someone else finished meanwhile (or the row changed under us): use it.
        if !refreshable(&row.status)
            || !row.needs_refresh(window, now)
            || row.refresh_token_ct != before.refresh_token_ct
        {
            return Ok(row);
        }
        if row.next_attempt_at.is_some_and(|t| t > now) || row.refresh_token_ct.is_none() {
            return Ok(row);
        }
        match acquire_lease(state, &row, now).await? {
            Lease::Taken => return refresh_holding_lease(state, row).await,
            Lease::Held if !waited => {
                // Another replica is refreshing it: wait for its result.
                waited = true;
                state.metrics.lease_waits.inc();
            }
            Lease::Held | Lease::Refused => {}
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
/// the row still holds the tokens, the status and the failure count `row` was read with,
/// outside any backoff.
///
/// The second condition is what makes the lease safe. Without it, a replica that read the
/// row a moment before another replica finished its refresh would find the lease just
/// released, take it, and spend the old refresh token, which the provider had already
/// rotated. A provider that detects reuse then revokes the whole grant. Tokens are
/// sealed with a fresh random nonce each time, so unchanged ciphertext means unchanged
/// tokens, and no version column is needed. The status and failure count make the
/// holder's read current too, so the state it moves the connection to (and tells the
/// audit log and webhooks about) follows from what really was, however replicas race.
///
/// A lease found still running is not even tried (waiters poll without writing). One found
/// run out but not released was a holder's that died or lost the database: taking it is a
/// takeover, counted and logged.
async fn acquire_lease(state: &AppState, row: &TokenRow, now: i64) -> Result<Lease> {
    let held_until: Option<i64> = sqlx::query_scalar("select refresh_lock_until from connections where id = $1")
        .bind(&row.id)
        .fetch_optional(state.store.pool())
        .await?
        .flatten();
    if held_until.is_some_and(|until| until >= now) {
        return Ok(Lease::Held);
    }
    if !try_lease(state.store.pool(), &state.instance_id, row, now, lease_secs(state)).await? {
        return Ok(Lease::Refused);
    }
    if held_until.is_some() {
        state.metrics.lease_takeovers.inc();
        tracing::warn!(connection = %row.id, "took over a refresh lease its holder let run out (a replica died or lost the database)");
    }
    Ok(Lease::Taken)
}

/// What asking for the lease gave.
enum Lease {
    /// Ours: refresh.
    Taken,
    /// Someone else is refreshing.
    Held,
    /// Free, but the row is no longer what we read (or someone was faster): read again.
    Refused,
}

/// How long a lease lasts before its heartbeat renews it.
fn lease_secs(state: &AppState) -> i64 {
    i64::try_from(state.config.refresh_lease_secs).unwrap_or(5).max(3)
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
         and status in ('active', 'failing') and status = $7 and failure_count = $8 \
         and access_token_ct = $5 and refresh_token_ct = $6 \
         and (next_attempt_at is null or next_attempt_at <= $4)",
    )
    .bind(owner)
    .bind(now + lease_secs)
    .bind(&row.id)
    .bind(now)
    .bind(&row.access_token_ct)
    .bind(&row.refresh_token_ct)
    .bind(&row.status)
    .bind(row.failure_count)
    .execute(pool)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Refreshes with the lease just taken, renewing it until the result is written (or
/// found superseded); then the row as it is.
async fn refresh_holding_lease(state: &AppState, row: TokenRow) -> Result<TokenRow> {
    let holder = LeaseHolder { pool: state.store.pool(), owner: &state.instance_id, id: &row.id };
    // The heartbeat ends with the write that releases the lease; telling comes after.
    let written = holding(&holder, lease_secs(state), refresh_and_write(state, &holder, &row)).await?;
    tell(state, &row, written).await;
    read(state, &row.id).await
}

/// What a refresh wrote, for `tell`.
struct Written {
    outcome: &'static str,
    reason: Option<String>,
    change: Option<Change>,
    /// False: the lease was no longer ours, nothing was written.
    saved: bool,
    /// What the provider sent, when it sent tokens.
    received: Option<crate::oauth::client::TokenSet>,
}

/// Runs `work` while a heartbeat renews `holder`'s lease every third of `lease_secs`.
async fn holding<F: std::future::Future>(holder: &LeaseHolder<'_>, lease_secs: i64, work: F) -> F::Output {
    tokio::select! {
        biased;
        done = work => done,
        never = heartbeat(holder, lease_secs) => match never {},
    }
}

/// The provider call and the write after it, while holding the lease.
async fn refresh_and_write(state: &AppState, holder: &LeaseHolder<'_>, row: &TokenRow) -> Result<Written> {
    let result = call_provider(state, row).await;
    let now = now();
    let mut received = None;
    let (outcome, reason, change, saved) = match result {
        Ok(tokens) => {
            // The provider has already consumed the old refresh token: save the new one
            // before anything else, in one statement with the new access token.
            let refreshed = Refreshed {
                access_token_ct: state.keys.seal_str(sealed::access_token(&row.id), &tokens.access_token)?,
                refresh_token_ct: match &tokens.refresh_token {
                    Some(rt) => Some(state.keys.seal_str(sealed::refresh_token(&row.id), rt)?),
                    None => row.refresh_token_ct.clone(),
                },
                token_type: tokens.token_type.clone(),
                expires_at: tokens.expires_in.map(|s| now + s),
                key_version: i64::from(state.keys.active_version()),
            };
            received = Some(tokens);
            let change = (row.status == "failing").then_some(Change::Recovered { failure_count: row.failure_count });
            ("success", None, change, save_until_stored(state, holder, row, &refreshed).await?)
        }
        Err(RefreshFailure::Grant(reason)) => {
            let saved = holder.mark_needs_reauth(GRANT_REFUSED, now).await?;
            let change = Change::NeedsReauth { failure_count: row.failure_count + 1, error: GRANT_REFUSED };
            ("needs_reauth", Some(reason), Some(change), saved)
        }
        Err(RefreshFailure::Transient { class, reason, retry_after }) => {
            let failures = row.failure_count + 1;
            // The first failure of a run starts its clock; later ones keep it. A connection
            // that was `active` may hold a stale `failing_since` from before a reconnect.
            let since = match row.status.as_str() {
                "failing" => holder.failing_since().await?.unwrap_or(now),
                _ => now,
            };
            let failed = if exhausted(&state.config, failures, since, now) {
                Failed { failures, error: class, status: "exhausted", next_attempt_at: None, failing_since: since }
            } else {
                let delay = backoff(failures).max(retry_after.unwrap_or_default());
                let next = now + i64::try_from(delay.as_secs()).unwrap_or(1).max(1);
                Failed { failures, error: class, status: "failing", next_attempt_at: Some(next), failing_since: since }
            };
            let saved = holder.fail(&failed, now).await?;
            let change = Change::Failed { to: failed.status, failure_count: failures, error: class };
            ("transient_failure", Some(reason), Some(change), saved)
        }
    };
    Ok(Written { outcome, reason, change, saved, received })
}

/// Audits, counts and announces what a refresh wrote; revokes what it received when the
/// write found the lease gone.
async fn tell(state: &AppState, row: &TokenRow, written: Written) {
    let Written { outcome, reason, change, saved, received } = written;
    if saved {
        record(state, row, outcome, reason.as_deref()).await;
        if let Some(change) = change {
            transitions::announce(state, row, &change).await;
        }
    } else {
        // A reconnect replaced the grant (or our lease ran out and another replica took
        // it): what this refresh learnt is about a grant the row no longer holds.
        tracing::warn!(connection = %row.id, outcome, "the connection changed during a refresh; its result was dropped");
        record(state, row, "superseded", reason.as_deref()).await;
        if let Some(tokens) = received {
            revoke_dropped(state, row, tokens).await;
        }
    }
}

/// Revokes what a dropped refresh received, which no row holds but which would stay live
/// at the provider: the new refresh token (with its grant), or only the new access token
/// when the provider kept the refresh token we sent, which may still be the row's.
async fn revoke_dropped(state: &AppState, row: &TokenRow, tokens: crate::oauth::client::TokenSet) {
    let sent = row.refresh_token_ct.as_deref().map(|ct| state.keys.open_str(sealed::refresh_token(&row.id), ct));
    let sent = sent.and_then(std::result::Result::ok);
    let rotated = tokens.refresh_token.filter(|new| sent.as_ref().is_none_or(|old| old.expose() != new.expose()));
    let dropped = revocation::Grant { access: tokens.access_token, refresh: rotated };
    let at = revocation::Superseded {
        connection_id: &row.id,
        org_id: &row.org_id,
        provider: &row.provider,
        why: "refresh_lost_lease",
    };
    revocation::revoke_superseded(state, &at, Ok(dropped)).await;
}

/// Saves what the provider returned, retrying while the database fails. The provider has
/// already spent the old refresh token, so until this lands the new one exists only in
/// this process's memory: dropped, the next refresh would present a dead token, and a
/// provider that detects reuse revokes the whole grant. It runs under the holder's
/// heartbeat (`holding`), so while it retries no other replica refreshes with the old
/// token.
async fn save_until_stored(
    state: &AppState,
    holder: &LeaseHolder<'_>,
    row: &TokenRow,
    refreshed: &Refreshed,
) -> Result<bool> {
    let budget = Duration::from_secs(state.config.refresh_save_retry_secs);
    let saved = retry_save(holder, refreshed, budget).await;
    saved.map_err(|e| {
        let rotated = refreshed.refresh_token_ct != row.refresh_token_ct;
        tracing::error!(
            connection = %row.id, org = %row.org_id, error = %e, retried_secs = budget.as_secs(), rotated,
            "LOST A REFRESH: the provider refreshed this connection but the database refused the new tokens; \
             when it rotated the refresh token (rotated=true), the next refresh presents the old one and the \
             member will likely have to reconnect"
        );
        // The audit log is in the same failing database: try, but do not wait for it.
        let (state, row, reason) = (state.clone(), row.clone(), format!("saving the refreshed tokens failed: {e}"));
        tokio::spawn(async move { record(&state, &row, "save_failed", Some(&reason)).await });
        Error::from(e)
    })
}

/// First pause between save attempts; it doubles up to `SAVE_PAUSE_MAX`.
const SAVE_PAUSE_FIRST: Duration = Duration::from_millis(100);
const SAVE_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Tries the save until it lands, the lease turns out lost (`false`), or `budget` is
/// spent; then the last error.
async fn retry_save(
    holder: &LeaseHolder<'_>,
    refreshed: &Refreshed,
    budget: Duration,
) -> std::result::Result<bool, sqlx::Error> {
    let started = tokio::time::Instant::now();
    let mut pause = SAVE_PAUSE_FIRST;
    loop {
        match holder.save_refreshed(refreshed, now()).await {
            Ok(saved) => return Ok(saved),
            Err(e) if started.elapsed() + pause > budget => return Err(e),
            Err(e) => {
                tracing::warn!(connection = %holder.id, error = %e, retry_in_ms = pause.as_millis(),
                    "saving a refreshed grant failed; retrying while holding its lease");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(SAVE_PAUSE_MAX);
            }
        }
    }
}

/// Renews the lease every third of its length, for as long as it is polled: two beats
/// may fail (a database blip) before anyone else may take it. Once the lease is no longer
/// ours it stops writing (the holder's writes will then find it lost too).
async fn heartbeat(holder: &LeaseHolder<'_>, lease_secs: i64) -> std::convert::Infallible {
    let period = Duration::from_millis(u64::try_from(lease_secs * 1000 / 3).unwrap_or(1000).max(1000));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beat.tick().await;
        match holder.extend(now() + lease_secs).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(connection = %holder.id, "lost a refresh lease while working (cut off from the database longer than the lease); its result will be dropped");
                return std::future::pending().await;
            }
            Err(e) => tracing::warn!(connection = %holder.id, error = %e, "could not renew a refresh lease"),
        }
    }
}

/// A provider's answer to a refresh, sealed for the row.
struct Refreshed {
    access_token_ct: Vec<u8>,
    refresh_token_ct: Option<Vec<u8>>,
    token_type: String,
    expires_at: Option<i64>,
    key_version: i64,
}

/// The writes after a provider call, which land only while `owner` still holds the
/// lease on connection `id`. A reconnect clears the lease when it stores the new grant,
/// so a refresh of the old grant that finishes later can neither overwrite the new tokens
/// nor mark them for reauth or backoff. Key rotation leaves the lease alone, so it never
/// makes a refresh lose the rotated refresh token the provider has just issued.
struct LeaseHolder<'a> {
    pool: &'a sqlx::AnyPool,
    owner: &'a str,
    id: &'a str,
}

type Update<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

impl<'a> LeaseHolder<'a> {
    /// Runs `update`, whose last two parameters are the row id and the lease owner;
    /// false when the lease was no longer ours.
    async fn apply(&self, update: Update<'a>) -> std::result::Result<bool, sqlx::Error> {
        let done = update.bind(self.id).bind(self.owner).execute(self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn save_refreshed(&self, t: &'a Refreshed, now: i64) -> std::result::Result<bool, sqlx::Error> {
        self.apply(
            sqlx::query(
                "update connections set access_token_ct = $1, refresh_token_ct = $2, token_type = $3, \
                 expires_at = $4, key_version = $5, status = 'active', failure_count = 0, last_error = null, \
                 next_attempt_at = null, failing_since = null, last_refreshed_at = $6, refresh_lock_owner = null, refresh_lock_until = null, updated_at = $6 \
                 where id = $7 and refresh_lock_owner = $8",
            )
            .bind(&t.access_token_ct)
            .bind(&t.refresh_token_ct)
            .bind(&t.token_type)
            .bind(t.expires_at)
            .bind(t.key_version)
            .bind(now),
        )
        .await
    }

    /// The heartbeat: pushes the lease's end to `until`.
    async fn extend(&self, until: i64) -> std::result::Result<bool, sqlx::Error> {
        self.apply(
            sqlx::query("update connections set refresh_lock_until = $1 where id = $2 and refresh_lock_owner = $3")
                .bind(until),
        )
        .await
    }

    async fn mark_needs_reauth(&self, reason: &'a str, now: i64) -> std::result::Result<bool, sqlx::Error> {
        self.apply(
            sqlx::query(
                "update connections set status = 'needs_reauth', last_error = $1, failure_count = failure_count + 1, \
                 next_attempt_at = null, refresh_lock_owner = null, refresh_lock_until = null, updated_at = $2 \
                 where id = $3 and refresh_lock_owner = $4",
            )
            .bind(reason)
            .bind(now),
        )
        .await
    }

    /// A failed refresh: `failing` with its backoff, or `exhausted` with none.
    async fn fail(&self, failed: &'a Failed, now: i64) -> std::result::Result<bool, sqlx::Error> {
        self.apply(
            sqlx::query(
                "update connections set status = $1, failure_count = $2, last_error = $3, next_attempt_at = $4, \
                 failing_since = $5, refresh_lock_owner = null, refresh_lock_until = null, updated_at = $6 \
                 where id = $7 and refresh_lock_owner = $8",
            )
            .bind(failed.status)
            .bind(failed.failures)
            .bind(failed.error)
            .bind(failed.next_attempt_at)
            .bind(failed.failing_since)
            .bind(now),
        )
        .await
    }

    /// When the current run of failures began (read while holding the lease).
    async fn failing_since(&self) -> std::result::Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("select failing_since from connections where id = $1")
            .bind(self.id)
            .fetch_optional(self.pool)
            .await
            .map(Option::flatten)
    }
}

/// What a failed refresh writes.
struct Failed {
    failures: i64,
    /// The error class (`error_class`), never the provider's words.
    error: &'static str,
    /// `failing` or `exhausted`.
    status: &'static str,
    next_attempt_at: Option<i64>,
    failing_since: i64,
}

/// Whether a run of `failures` failed refreshes that began at `failing_since` has gone on
/// long enough to stop retrying.
fn exhausted(config: &crate::config::Config, failures: i64, failing_since: i64, now: i64) -> bool {
    let by_count =
        config.refresh_exhaust_after_failures > 0 && failures >= i64::from(config.refresh_exhaust_after_failures);
    let by_time = config.refresh_exhaust_after_secs > 0
        && now - failing_since >= i64::try_from(config.refresh_exhaust_after_secs).unwrap_or(i64::MAX);
    by_count || by_time
}

/// What `last_error` says after `invalid_grant`.
const GRANT_REFUSED: &str = "invalid_grant";

enum RefreshFailure {
    /// The grant is dead: `invalid_grant`.
    Grant(String),
    /// Try again later; the grant is untouched (a timeout's outcome is unknown). `class`
    /// is what `last_error`, the audit log and webhooks say; `reason` (the audit event
    /// of the refresh only) may say more.
    Transient { class: &'static str, reason: String, retry_after: Option<Duration> },
}

async fn call_provider(
    state: &AppState,
    row: &TokenRow,
) -> std::result::Result<crate::oauth::client::TokenSet, RefreshFailure> {
    let ours = |reason: String| RefreshFailure::Transient { class: "configuration", reason, retry_after: None };
    let def = state.providers.get(&row.provider).ok_or_else(|| ours("provider no longer configured".into()))?;
    let creds = credentials::load(&state.store, &state.keys, &row.org_id, &row.provider)
        .await
        .map_err(|e| ours(format!("reading the managed app: {e}")))?
        .ok_or_else(|| ours("the managed app is gone".into()))?;
    let Some(refresh_ct) = &row.refresh_token_ct else { return Err(ours("no refresh token".into())) };
    let refresh_token =
        state.keys.open_str(sealed::refresh_token(&row.id), refresh_ct).map_err(|e| ours(e.to_string()))?;
    let turn = state.provider_pacing.turn(&row.provider).await;
    let started = std::time::Instant::now();
    let answer = state.provider_client.refresh(def, &creds, &refresh_token).await;
    state.metrics.observe_refresh(&row.provider, started.elapsed().as_secs_f64());
    drop(turn);
    if answer.is_ok() {
        state.provider_pacing.success(&row.provider);
    }
    answer.map_err(|e| match e {
        TokenError::InvalidGrant(_) => RefreshFailure::Grant(e.to_string()),
        TokenError::Unavailable { retry_after, .. } => {
            // The provider asked everyone to wait, not only this connection.
            if let Some(wait) = retry_after {
                state.provider_pacing.pause(&row.provider, wait);
            }
            RefreshFailure::Transient { class: error_class(&e), reason: e.to_string(), retry_after }
        }
        other => RefreshFailure::Transient { class: error_class(&other), reason: other.to_string(), retry_after: None },
    })
}

/// The class of a provider's failure: what an admin needs to tell them apart, and
/// nothing the provider wrote (which could echo a token back).
fn error_class(e: &TokenError) -> &'static str {
    match e {
        TokenError::Timeout => "timeout",
        TokenError::Unavailable { status: 429, .. } => "rate_limited",
        TokenError::Unavailable { .. } => "provider_5xx",
        TokenError::InvalidGrant(_) => GRANT_REFUSED,
        TokenError::Rejected { .. } => "provider_rejected",
        TokenError::Network(_) => "network",
        TokenError::Malformed(_) => "invalid_response",
    }
}

/// Exponential backoff with ±20 % jitter: 2 s, 4 s, 8 s … capped at 5 minutes.
pub fn backoff(failures: i64) -> Duration {
    let exp = u32::try_from(failures.clamp(1, 10) - 1).unwrap_or(0);
    let base = (2u64.saturating_pow(exp) * 2).min(300) as f64;
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    Duration::from_secs_f64(base * jitter)
}

async fn record(state: &AppState, row: &TokenRow, outcome: &str, reason: Option<&str>) {
    state.metrics.count_refresh(&row.provider, outcome);
    let event = audit::Event {
        org_id: Some(&row.org_id),
        action: "connection.refresh",
        target: Some(&row.id),
        outcome,
        detail: reason.map(|r| serde_json::json!({ "reason": r })),
        ..Default::default()
    };
    if let Err(e) = audit::record(&state.store, event).await {
        state.metrics.audit_dropped.inc();
        tracing::warn!(error = %e, "could not audit a refresh");
    }
}

/// Renews connections a few minutes before they expire, so the endpoint rarely waits
/// on a provider. Every replica runs one; leases keep them from duplicating work. Once a
/// round, it also counts connections by status for the metrics.
///
/// While more are due than one batch holds (ten thousand grants issued together expire
/// together), it takes the next batch at once instead of waiting an interval. Each batch
/// is shuffled, so replicas reading the same due rows mostly start on different ones and
/// seldom meet at a lease. How many run at once is bounded twice: `refresher_concurrency`
/// here, and `refresh_provider_concurrency` per provider in `providers::pacing`.
///
/// When `stop` turns true (the replica drains) it starts no new refresh, waits for the
/// ones under way (which so release their leases) and returns; the caller bounds that.
/// A database outage is logged and retried next round, never fatal.
pub async fn background_refresher(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let concurrency = state.config.refresher_concurrency.max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut more_due = false;
    'rounds: loop {
        let pause = if more_due {
            MORE_DUE_PAUSE
        } else {
            Duration::from_secs(state.config.refresher_interval_secs.max(1))
                .mul_f64(rand::thread_rng().gen_range(0.8..1.2))
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stopped| *stopped) => break 'rounds,
        }
        if !more_due {
            count_connections(&state).await;
        }
        let mut due = match due_for_refresh(&state).await {
            Ok(due) => due,
            Err(e) => {
                state.metrics.db_error(&e);
                tracing::warn!(error = %e, "the background refresher cannot read due connections; retrying next round");
                more_due = false;
                continue;
            }
        };
        more_due = due.len() == REFRESHER_BATCH;
        {
            use rand::seq::SliceRandom;
            due.shuffle(&mut rand::thread_rng());
        }
        for id in due {
            let permit = tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => break 'rounds,
                permit = Arc::clone(&slots).acquire_owned() => permit,
            };
            let Ok(permit) = permit else { break 'rounds };
            let (state, stop) = (state.clone(), stop.clone());
            // Detached, never aborted: a refresh cut off between the provider's answer and
            // the save would lose a rotated refresh token.
            tokio::spawn(async move {
                if !*stop.borrow() {
                    if let Err(e) = refresh_ahead(&state, &id).await {
                        tracing::warn!(connection = %id, error = %e, "background refresh failed");
                    }
                }
                drop(permit);
            });
        }
    }
    // Every slot free again: the refreshes under way have finished.
    let _ = slots.acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX)).await;
}

/// Rows read per batch by the background refresher.
const REFRESHER_BATCH: usize = 200;
/// Between full batches: enough that a batch whose rows cannot be refreshed yet never
/// makes the loop spin.
const MORE_DUE_PAUSE: Duration = Duration::from_millis(20);

/// Connections that expire within the lead time, are not in backoff and have no live lease.
async fn due_for_refresh(state: &AppState) -> std::result::Result<Vec<String>, sqlx::Error> {
    let now = now();
    sqlx::query_scalar(
        "select id from connections where status in ('active', 'failing') and refresh_token_ct is not null \
         and expires_at is not null and expires_at < $1 and (next_attempt_at is null or next_attempt_at <= $2) \
         and (refresh_lock_until is null or refresh_lock_until < $2) order by expires_at limit $3",
    )
    .bind(now + state.config.refresher_lead_secs)
    .bind(now)
    .bind(i64::try_from(REFRESHER_BATCH).unwrap_or(200))
    .fetch_all(state.store.pool())
    .await
}

/// Sets `latchkey_connections{status}` from the database.
async fn count_connections(state: &AppState) {
    let counts: std::result::Result<Vec<(String, i64)>, sqlx::Error> =
        sqlx::query_as("select status, count(*) from connections group by status").fetch_all(state.store.pool()).await;
    match counts {
        Ok(counts) => state.metrics.set_connections(&counts),
        Err(e) => state.metrics.db_error(&e),
    }
}

/// A refresh from the background: like on demand, with the refresher's own lead time.
async fn refresh_ahead(state: &AppState, id: &str) -> Result<()> {
    let flight = state.flights.lock_for(id);
    let _guard = flight.lock().await;
    let row = read(state, id).await?;
    let now = now();
    let due = refreshable(&row.status)
        && row.expires_at.is_some_and(|e| e < now + state.config.refresher_lead_secs)
        && row.next_attempt_at.is_none_or(|t| t <= now);
    if due && matches!(acquire_lease(state, &row, now).await?, Lease::Taken) {
        refresh_holding_lease(state, row).await?;
    }
    Ok(())
}

mod transitions;

#[cfg(test)]
mod tests;
