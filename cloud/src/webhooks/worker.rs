//! The delivery worker, one per replica (started by `server::serve`): claims due
//! deliveries from the outbox, POSTs them signed, and records each attempt.
//!
//! It wakes when this replica publishes an event and otherwise looks every
//! `webhook_poll_interval_ms` (or sooner, when a retry falls due), so events published by
//! another replica are sent too. Everything it knows is in the database, so a restart
//! loses nothing: a lease left by a killed process runs out and the delivery is retried.

use super::outbox::{self, Claimed, Next, Outcome};
use super::signature;
use super::target::{is_forbidden_address, TargetPolicy, VettedResolver};
use crate::metrics::Metrics;
use crate::sealed;
use crate::state::AppState;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A receiver must answer within this (the contract's 10 s).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// A claimed attempt's lease: the timeout plus room for resolving the name, recording
/// the outcome and a slow database. Another replica takes the delivery over only after.
const LEASE_MS: i64 = 30_000;
/// Deliveries sent at once by one replica.
const CONCURRENCY: usize = 8;
/// Attempts before a delivery may be given up, however short the configured day.
pub const MIN_ATTEMPTS: i64 = 5;
/// The longest wait between two attempts.
const MAX_DELAY_MS: i64 = 6 * 3600 * 1000;

/// The HTTP client deliveries go out with: no redirects followed (a 3xx is a failure), no
/// proxy from the environment (it would connect to addresses we never checked), names
/// resolved by the [`VettedResolver`].
pub fn client(policy: TargetPolicy) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(TIMEOUT)
        .user_agent(concat!("Latchkey-Webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(VettedResolver { policy }))
        .build()
}

/// Runs until `stop` turns true (the replica drains): then it claims nothing more, waits
/// for the attempts under way (each bounded by [`TIMEOUT`]; the caller bounds the wait)
/// and returns. A database outage is logged and retried at the next poll, never fatal.
pub async fn run(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let policy = TargetPolicy::of(&state.config);
    let client = match client(policy) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhook deliveries are off: the HTTP client could not be built");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let poll = Duration::from_millis(state.config.webhook_poll_interval_ms.max(1));
    'polls: loop {
        match outbox::due(&state, 100).await {
            Ok(due) => {
                for id in due {
                    let slot = tokio::select! {
                        biased;
                        _ = stop.wait_for(|stopped| *stopped) => break 'polls,
                        slot = Arc::clone(&slots).acquire_owned() => slot,
                    };
                    let Ok(slot) = slot else { break 'polls };
                    match outbox::claim(&state, &id, LEASE_MS).await {
                        Ok(Some(claimed)) => {
                            let (state, client) = (state.clone(), client.clone());
                            tokio::spawn(async move {
                                attempt(&state, &client, policy, claimed).await;
                                drop(slot);
                            });
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "claiming a webhook delivery failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading due webhook deliveries failed"),
        }
        let mut wait = poll;
        if let Ok(Some(next)) = outbox::next_due_ms(&state).await {
            let until = u64::try_from(next - outbox::now_ms()).unwrap_or(0);
            wait = wait.min(Duration::from_millis(until.max(5)));
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = state.webhook_wake.notified() => {}
            _ = stop.wait_for(|stopped| *stopped) => break 'polls,
        }
    }
    // Every slot free again: the attempts under way have finished and been recorded.
    let _ = slots.acquire_many(u32::try_from(CONCURRENCY).unwrap_or(u32::MAX)).await;
}

/// One attempt of a claimed delivery, start to end.
async fn attempt(state: &AppState, client: &reqwest::Client, policy: TargetPolicy, claimed: Claimed) {
    let outcome = send(state, client, policy, &claimed).await;
    let next = if outcome.error_class.is_none() { Next::Delivered } else { after_failure(state, &claimed) };
    let label = match next {
        Next::Delivered => "delivered",
        Next::RetryAt(_) => "retry",
        Next::Failed => "failed",
    };
    Metrics::count(&state.metrics.webhooks, label);
    match outbox::finish(state, &claimed, &outcome, next).await {
        Ok(true) => tracing::debug!(
            delivery = %claimed.id, event = %claimed.event_id, attempt = claimed.attempts,
            status = ?outcome.status_code, error = ?outcome.error_class, "webhook attempt"
        ),
        Ok(false) => {
            tracing::warn!(delivery = %claimed.id, "webhook attempt outlived its lease; its outcome is dropped")
        }
        Err(e) => tracing::warn!(delivery = %claimed.id, error = %e, "recording a webhook attempt failed"),
    }
}

/// POSTs the delivery; never follows a redirect.
async fn send(state: &AppState, client: &reqwest::Client, policy: TargetPolicy, claimed: &Claimed) -> Outcome {
    let started = Instant::now();
    let failed = |class: &'static str, status: Option<u16>| Outcome {
        status_code: status,
        latency_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        error_class: Some(class),
    };
    // Checked again at every attempt: the operator's rules may have changed, and a
    // literal address never reaches the resolver.
    let Ok(url) = policy.check_url(&claimed.url) else {
        return failed("forbidden_address", None);
    };
    let secret = match state.keys.open(sealed::webhook_secret(&claimed.endpoint_id), &claimed.secret_ct) {
        Ok(secret) => secret,
        Err(e) => {
            tracing::error!(endpoint = %claimed.endpoint_id, error = %e, "a webhook secret cannot be opened");
            return failed("request", None);
        }
    };
    let t = crate::store::now();
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Latchkey-Signature", signature::header(&secret, t, &claimed.body))
        .header("Latchkey-Event-Id", &claimed.event_id)
        .header("Latchkey-Attempt", claimed.attempts.to_string())
        .body(claimed.body.clone());
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Outcome {
                    status_code: Some(status.as_u16()),
                    latency_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
                    error_class: None,
                }
            } else if status.is_redirection() {
                failed("redirect", Some(status.as_u16()))
            } else {
                failed("http_status", Some(status.as_u16()))
            }
        }
        Err(e) if is_forbidden_address(&e) => failed("forbidden_address", None),
        Err(e) if e.is_timeout() => failed("timeout", None),
        Err(e) if e.is_connect() => failed("connect", None),
        Err(e) if e.is_builder() => failed("invalid_url", None),
        Err(_) => failed("request", None),
    }
}

/// After a failed attempt: retry with exponential backoff and jitter, until the delivery
/// is `webhook_retry_max_age_secs` old and at least [`MIN_ATTEMPTS`] were made.
fn after_failure(state: &AppState, claimed: &Claimed) -> Next {
    let at = outbox::now_ms() + backoff_ms(state.config.webhook_retry_base_ms, claimed.attempts);
    let max_age_ms = i64::try_from(state.config.webhook_retry_max_age_secs).unwrap_or(i64::MAX / 2000) * 1000;
    if claimed.attempts >= MIN_ATTEMPTS && at > claimed.retry_from_ms.saturating_add(max_age_ms) {
        Next::Failed
    } else {
        Next::RetryAt(at)
    }
}

/// `base · 2^(attempts−1)`, at most six hours, times a jitter in [0.8, 1.2).
pub fn backoff_ms(base_ms: u64, attempts: i64) -> i64 {
    let base = i64::try_from(base_ms).unwrap_or(MAX_DELAY_MS);
    let exponent = u32::try_from((attempts - 1).clamp(0, 30)).unwrap_or(30);
    let delay = base.saturating_mul(1_i64 << exponent).min(MAX_DELAY_MS);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    // Jittered delays stay far below the range where f64 loses whole milliseconds.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let jittered = (delay as f64 * jitter) as i64;
    jittered.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let first = backoff_ms(30_000, 1);
        assert!((24_000..36_000).contains(&first), "{first}");
        let fourth = backoff_ms(30_000, 4);
        assert!((192_000..288_000).contains(&fourth), "{fourth}");
        assert!(backoff_ms(30_000, 40) <= MAX_DELAY_MS * 12 / 10);
        // With the defaults a day holds well over five attempts.
        let total: i64 = (1..=5).map(|n| backoff_ms(30_000, n)).sum();
        assert!(total < 86_400_000);
    }
}
