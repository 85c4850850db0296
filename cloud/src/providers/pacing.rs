//! Pacing refreshes per provider, so that ten thousand grants expiring together do not
//! stampede one provider: at most `refresh_provider_concurrency` refresh calls in flight
//! to each provider from this replica (on demand and background alike, in arrival order),
//! and none at all while the provider has asked us to wait (a 429 with `Retry-After`).
//!
//! The cap is per replica, like the refresher itself: N replicas put at most N × cap
//! calls in flight to one provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The longest pause a provider's `Retry-After` imposes on all its refreshes; a longer
/// one still backs off the connection that got it (its `next_attempt_at`).
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// One lane per provider, created on first use.
#[derive(Debug)]
pub struct ProviderPacing {
    cap: usize,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
}

#[derive(Debug)]
struct Lane {
    permits: Arc<Semaphore>,
    /// No call starts before this instant (a provider's 429).
    paused_until: Mutex<Option<Instant>>,
}

/// Held for the duration of one provider call.
#[derive(Debug)]
pub struct Turn {
    _permit: Option<OwnedSemaphorePermit>,
}

impl ProviderPacing {
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(1), lanes: Mutex::new(HashMap::new()) }
    }

    fn lane(&self, provider: &str) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(lanes.entry(provider.to_owned()).or_insert_with(|| {
            Arc::new(Lane { permits: Arc::new(Semaphore::new(self.cap)), paused_until: Mutex::new(None) })
        }))
    }

    /// Waits for a free slot to `provider` and for any pause it asked for to end.
    pub async fn turn(&self, provider: &str) -> Turn {
        let lane = self.lane(provider);
        loop {
            let permit = match Arc::clone(&lane.permits).acquire_owned().await {
                Ok(permit) => permit,
                // The semaphore is never closed; if it were, do not hold callers up.
                Err(_) => return Turn { _permit: None },
            };
            let pause = *lane.paused_until.lock().unwrap_or_else(PoisonError::into_inner);
            match pause {
                // Wait without the permit, so the slot is not held idle, then queue again.
                Some(until) if until > Instant::now() => {
                    drop(permit);
                    tokio::time::sleep_until(until).await;
                }
                _ => return Turn { _permit: Some(permit) },
            }
        }
    }

    /// `provider` answered 429 (or 503) with `Retry-After`: hold every call to it that long.
    pub fn pause(&self, provider: &str, retry_after: Duration) {
        let until = Instant::now() + retry_after.min(MAX_PAUSE);
        let lane = self.lane(provider);
        let mut paused = lane.paused_until.lock().unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    /// Calls in flight to `provider` now (for metrics and tests).
    pub fn in_flight(&self, provider: &str) -> usize {
        self.cap - self.lane(provider).permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn never_more_than_the_cap_in_flight() {
        let pacing = Arc::new(ProviderPacing::new(3));
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (pacing, now, peak) = (pacing.clone(), now.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = pacing.turn("sandbox").await;
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        // Another provider has its own lane.
        let _a = pacing.turn("sandbox").await;
        assert_eq!(pacing.in_flight("github"), 0);
    }

    #[tokio::test]
    async fn a_pause_holds_every_call_to_that_provider_only() {
        let pacing = ProviderPacing::new(2);
        pacing.pause("slow", Duration::from_millis(300));
        let started = Instant::now();
        drop(pacing.turn("other").await);
        assert!(started.elapsed() < Duration::from_millis(100), "other providers are not held");
        drop(pacing.turn("slow").await);
        assert!(started.elapsed() >= Duration::from_millis(300), "held for the Retry-After");
        // A shorter pause never shortens a longer one.
        pacing.pause("slow", Duration::from_millis(400));
        pacing.pause("slow", Duration::from_millis(10));
        let again = Instant::now();
        drop(pacing.turn("slow").await);
        assert!(again.elapsed() >= Duration::from_millis(400));
    }
}
