//! Rate limits. The security limits (login attempts, registrations, device codes) are
//! fixed-window counters kept in the database, so every replica sees the same count.
//! Each row knows when its window ends; rows whose window has ended are swept now and
//! then by whichever request comes along, so keys seen once do not stay forever.
//!
//! The token endpoint's per-PAT limit is not a security boundary and sits on the hot
//! path: it is kept in memory, per replica (`per_replica`).

mod per_replica;

pub use per_replica::PerReplica;

use crate::error::Result;
use crate::store::{now, Store};
use std::sync::atomic::{AtomicI64, Ordering};

/// How often a process sweeps ended windows, at most.
const SWEEP_EVERY_SECS: i64 = 60;

/// When this process sweeps next (unix seconds); 0: at the first hit.
static NEXT_SWEEP: AtomicI64 = AtomicI64::new(0);

/// Adds one hit to `key` in the current window and returns the window's count and the
/// seconds until the window ends.
pub async fn hit(store: &Store, key: &str, window_secs: i64) -> Result<(i64, u64)> {
    let now = now();
    let window_start = now - now.rem_euclid(window_secs);
    let hits: i64 = sqlx::query_scalar(
        "insert into rate_limits (key, window_start, hits, expires_at, created_at, updated_at) \
         values ($1, $2, 1, $3, $4, $4) \
         on conflict (key) do update set \
           hits = case when rate_limits.window_start = excluded.window_start \
                       then rate_limits.hits + 1 else 1 end, \
           window_start = excluded.window_start, expires_at = excluded.expires_at, \
           updated_at = excluded.updated_at \
         returning hits",
    )
    .bind(key)
    .bind(window_start)
    .bind(window_start + window_secs)
    .bind(now)
    .fetch_one(store.pool())
    .await?;
    sweep_now_and_then(store, now).await;
    Ok((hits, retry_after(now, window_start, window_secs)))
}

/// The current window's count for `key`, without adding to it.
pub async fn peek(store: &Store, key: &str, window_secs: i64) -> Result<(i64, u64)> {
    let now = now();
    let window_start = now - now.rem_euclid(window_secs);
    let hits: Option<i64> = sqlx::query_scalar("select hits from rate_limits where key = $1 and window_start = $2")
        .bind(key)
        .bind(window_start)
        .fetch_optional(store.pool())
        .await?;
    Ok((hits.unwrap_or(0), retry_after(now, window_start, window_secs)))
}

/// Takes back one hit of the current window: for an attempt counted before it was
/// judged, that turned out not to count.
pub async fn undo(store: &Store, key: &str, window_secs: i64) -> Result<()> {
    let now = now();
    let window_start = now - now.rem_euclid(window_secs);
    sqlx::query("update rate_limits set hits = hits - 1 where key = $1 and window_start = $2 and hits > 0")
        .bind(key)
        .bind(window_start)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Deletes every row whose window has ended, at most once a minute per process. A
/// failure only delays the sweep; the request that triggered it goes on.
async fn sweep_now_and_then(store: &Store, now: i64) {
    let due = NEXT_SWEEP.load(Ordering::Relaxed);
    if now < due
        || NEXT_SWEEP.compare_exchange(due, now + SWEEP_EVERY_SECS, Ordering::Relaxed, Ordering::Relaxed).is_err()
    {
        return;
    }
    let swept = sqlx::query("delete from rate_limits where expires_at <= $1").bind(now).execute(store.pool()).await;
    if let Err(e) = swept {
        tracing::warn!(error = %e, "sweeping ended rate-limit windows failed");
    }
}

fn retry_after(now: i64, window_start: i64, window_secs: i64) -> u64 {
    u64::try_from(window_start + window_secs - now).unwrap_or(1).max(1)
}
