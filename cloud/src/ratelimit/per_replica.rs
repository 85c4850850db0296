//! The token endpoint's per-PAT limit, kept in this process's memory: a GCRA (the
//! `governor` crate's keyed limiter) per replica, so the hot path writes nothing to the
//! database for it.
//!
//! Per replica means N replicas let a PAT through up to N times the configured rate. That
//! is fine for this limit: it protects the providers and the service from a runaway agent
//! (a loop fetching a token per item), not a secret from a guesser, and a load balancer
//! that spreads one agent's requests still caps it at a small multiple. The limits that
//! are security boundaries (login attempts, registrations, device codes) stay in the
//! database, shared by every replica (`ratelimit::hit`).
//!
//! Memory stays bounded: a key whose state has returned to "never seen" (idle for a
//! full period) is dropped by a sweep once a minute.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often idle keys are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Requests per minute per key, in this process. Cheap to clone.
#[derive(Clone)]
pub struct PerReplica {
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for PerReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerReplica").field("keys", &self.limiter.len()).finish()
    }
}

impl PerReplica {
    /// `per_minute` requests a minute per key, in bursts of up to `per_minute`: a key
    /// idle for a minute may send its whole minute at once, then one every
    /// `60 / per_minute` seconds. `None` when the limit is off (0). Starts the sweep of
    /// idle keys, so it must run inside a Tokio runtime; the sweep ends with the limiter.
    pub fn per_minute(per_minute: u32) -> Option<Self> {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute)?);
        let limiter = Arc::new(RateLimiter::keyed(quota));
        tokio::spawn(sweep(Arc::downgrade(&limiter)));
        Some(Self { limiter, clock: DefaultClock::default() })
    }

    /// Counts one request of `key`: `Err(seconds)` to wait (at least 1) when it is over
    /// the limit. A refused request does not use up the allowance.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        // The key is owned by the map; a PAT id is short and this is one small allocation.
        let key = key.to_owned();
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }

    /// Keys held now (for tests and the benchmark's memory figure).
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }

    /// Drops the keys that are idle now, as the periodic sweep does.
    pub fn sweep_now(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

async fn sweep(limiter: Weak<DefaultKeyedRateLimiter<String>>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        let Some(limiter) = limiter.upgrade() else { return };
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_the_minute_then_refused_with_a_wait() {
        let limit = PerReplica::per_minute(3).unwrap();
        for _ in 0..3 {
            assert_eq!(limit.check("pat-a"), Ok(()));
        }
        let wait = limit.check("pat-a").unwrap_err();
        // One request every 20 s is the sustained rate: the next one is at most 20 s away.
        assert!((1..=20).contains(&wait), "wait {wait}");
        // Per key: another PAT has its own allowance.
        assert_eq!(limit.check("pat-b"), Ok(()));
        assert_eq!(limit.keys(), 2);
    }

    #[tokio::test]
    async fn off_when_zero() {
        assert!(PerReplica::per_minute(0).is_none());
    }

    #[tokio::test]
    async fn idle_keys_are_swept() {
        // 60 000 a minute: a key is back to idle a millisecond after its one request.
        let limit = PerReplica::per_minute(60_000).unwrap();
        for i in 0..1000 {
            assert_eq!(limit.check(&format!("pat-{i}")), Ok(()));
        }
        assert_eq!(limit.keys(), 1000);
        tokio::time::sleep(Duration::from_millis(20)).await;
        limit.sweep_now();
        assert_eq!(limit.keys(), 0);
    }
}
