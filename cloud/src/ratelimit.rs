//! Fixed-window counters kept in the database, so every replica sees the same count.

use crate::error::Result;
use crate::store::{now, Store};

/// Adds one hit to `key` in the current window and returns the window's count and the
/// seconds until the window ends.
pub async fn hit(store: &Store, key: &str, window_secs: i64) -> Result<(i64, u64)> {
    let now = now();
    let window_start = now - now.rem_euclid(window_secs);
    let hits: i64 = sqlx::query_scalar(
        "insert into rate_limits (key, window_start, hits, created_at, updated_at) \
         values ($1, $2, 1, $3, $3) \
         on conflict (key) do update set \
           hits = case when rate_limits.window_start = excluded.window_start \
                       then rate_limits.hits + 1 else 1 end, \
           window_start = excluded.window_start, updated_at = excluded.updated_at \
         returning hits",
    )
    .bind(key)
    .bind(window_start)
    .bind(now)
    .fetch_one(store.pool())
    .await?;
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

fn retry_after(now: i64, window_start: i64, window_secs: i64) -> u64 {
    u64::try_from(window_start + window_secs - now).unwrap_or(1).max(1)
}
