//! Pacing refreshes per provider, so that ten thousand grants expiring together do not
//! stampede one provider: at most `refresh_provider_concurrency` refresh calls in flight
//! to each provider from this replica (on demand and background alike, in arrival order),
//! and none at all while the provider has asked us to wait (a 429 with `Retry-After`).
//! After such a pause fewer run at once, growing back with successes, so a provider whose
//! own limit is below the cap is not refused again after every pause.
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

/// A provider's lane. Its semaphore holds `limit + debt` permits in all (free and held):
/// a 429 halves `limit` at once, and the permits in use beyond it are forgotten as their
/// calls end (`debt`); successes grow it back by one per `limit` of them, up to the cap
/// (additive increase, multiplicative decrease: the provider's own limit is found instead
/// of hit again by every replica after each `Retry-After`).
#[derive(Debug)]
struct Lane {
    permits: Arc<Semaphore>,
    state: Mutex<LaneState>,
}

#[derive(Debug)]
struct LaneState {
    /// No call starts before this instant (a provider's 429).
    paused_until: Option<Instant>,
    limit: usize,
    debt: usize,
    successes: usize,
}

impl Lane {
    fn state(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Held for the duration of one provider call.
#[derive(Debug)]
pub struct Turn {
    lane: Arc<Lane>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else { return };
        let mut state = self.lane.state();
        if state.debt > 0 {
            state.debt -= 1;
            permit.forget();
        }
    }
}

impl ProviderPacing {
    pub fn new(cap: usize) -> Self {
        Self { cap: cap.max(1), lanes: Mutex::new(HashMap::new()) }
    }

    fn lane(&self, provider: &str) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(lanes.entry(provider.to_owned()).or_insert_with(|| {
            Arc::new(Lane {
                permits: Arc::new(Semaphore::new(self.cap)),
                state: Mutex::new(LaneState { paused_until: None, limit: self.cap, debt: 0, successes: 0 }),
            })
        }))
    }

    /// Waits for a free slot to `provider` and for any pause it asked for to end.
    pub async fn turn(&self, provider: &str) -> Turn {
        let lane = self.lane(provider);
        loop {
            let permit = match Arc::clone(&lane.permits).acquire_owned().await {
                Ok(permit) => permit,
                // The semaphore is never closed; if it were, do not hold callers up.
                Err(_) => return Turn { lane, permit: None },
            };
            let pause = lane.state().paused_until;
            match pause {
                // Wait without the permit, so the slot is not held idle, then queue again.
                Some(until) if until > Instant::now() => {
                    drop(permit);
                    tokio::time::sleep_until(until).await;
                }
                _ => return Turn { lane, permit: Some(permit) },
            }
        }
    }

    /// `provider` answered 429 (or 503) with `Retry-After`: hold every call to it that long,
    /// and halve how many may run at once (once per pause: the other calls of the same
    /// burst that are refused too do not halve it again).
    pub fn pause(&self, provider: &str, retry_after: Duration) {
        let now = Instant::now();
        let until = now + retry_after.min(MAX_PAUSE);
        let lane = self.lane(provider);
        let mut state = lane.state();
        let was_paused = state.paused_until.is_some_and(|p| p > now);
        if state.paused_until.is_none_or(|p| p < until) {
            state.paused_until = Some(until);
        }
        if !was_paused && state.limit > 1 {
            let halved = state.limit / 2;
            state.debt += state.limit - halved;
            state.limit = halved;
            state.successes = 0;
            // Free permits are taken out now; those in use, as their calls end.
            while state.debt > 0 {
                match Arc::clone(&lane.permits).try_acquire_owned() {
                    Ok(permit) => {
                        permit.forget();
                        state.debt -= 1;
                    }
                    Err(_) => break,
                }
            }
        }
    }

    /// `provider` answered a call: after as many successes as the lane allows at once, it
    /// allows one more, up to the cap.
    pub fn success(&self, provider: &str) {
        let lane = self.lane(provider);
        let mut state = lane.state();
        if state.limit >= self.cap {
            return;
        }
        state.successes += 1;
        if state.successes >= state.limit {
            state.successes = 0;
            state.limit += 1;
            if state.debt > 0 {
                state.debt -= 1;
            } else {
                lane.permits.add_permits(1);
            }
        }
    }

    /// Calls in flight to `provider` now (for metrics and tests).
    pub fn in_flight(&self, provider: &str) -> usize {
        let lane = self.lane(provider);
        let state = lane.state();
        (state.limit + state.debt).saturating_sub(lane.permits.available_permits())
    }

    /// How many calls to `provider` may run at once now.
    pub fn limit(&self, provider: &str) -> usize {
        self.lane(provider).state().limit
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

    #[tokio::test]
    async fn a_429_halves_the_lane_and_successes_grow_it_back() {
        let pacing = Arc::new(ProviderPacing::new(8));
        // Eight calls in flight when the provider refuses one of them.
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(pacing.turn("p").await);
        }
        pacing.pause("p", Duration::from_millis(50));
        pacing.pause("p", Duration::from_millis(50));
        assert_eq!(pacing.limit("p"), 4, "halved once for one burst");
        drop(held);
        assert_eq!(pacing.in_flight("p"), 0);
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (pacing, now, peak) = (pacing.clone(), now.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let turn = pacing.turn("p").await;
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                drop(turn);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 4, "at most the halved limit at once");
        // 4 + 5 + 6 + 7 successes bring it back to the cap, and no further.
        for _ in 0..(4 + 5 + 6 + 7 + 20) {
            drop(pacing.turn("p").await);
            pacing.success("p");
        }
        assert_eq!(pacing.limit("p"), 8);
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(pacing.turn("p").await);
        }
        assert_eq!(pacing.in_flight("p"), 8);
        assert!(tokio::time::timeout(Duration::from_millis(50), pacing.turn("p")).await.is_err(), "a ninth waits");
    }
}
