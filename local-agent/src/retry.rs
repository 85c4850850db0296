//! Retrying HTTP requests politely: exponential backoff with jitter on timeouts, failed
//! connections and 5xx (and, where asked, 429), honouring `Retry-After` (seconds or an
//! HTTP date). Other answers are returned at once for the caller to map.
//!
//! This module never looks at a request's headers or body, so it never sees a secret.

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use std::time::{Duration, Instant, SystemTime};

/// How many tries and how long to wait between them.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_tries: u32,
    /// The first backoff; it doubles on each retry.
    pub base: Duration,
    /// The longest backoff.
    pub cap: Duration,
    /// A `Retry-After` longer than this is not waited for: the answer is returned.
    pub max_retry_after: Duration,
    /// Whether 429 is retried too (provider APIs) or returned (the cloud).
    pub retry_429: bool,
    /// No retry starts once this long has passed since the first try (a try in flight is
    /// not cut short: the client's timeout bounds it).
    pub budget: Option<Duration>,
}

impl RetryPolicy {
    /// The cloud, for a command someone waits on: 4 tries within 15 s, on timeouts,
    /// failed connections and 5xx only. Long enough to ride over a replica's restart or a
    /// balancer's failover, short enough that `latchkey sync` does not seem to hang.
    pub const CLOUD: RetryPolicy = RetryPolicy {
        max_tries: 4,
        base: Duration::from_millis(500),
        cap: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(10),
        retry_429: false,
        budget: Some(Duration::from_secs(15)),
    };

    /// The cloud, when a still-valid cached token can be used instead: one quick retry (a
    /// keep-alive connection the cloud closed as it drained), then the cache.
    pub const CLOUD_WITH_FALLBACK: RetryPolicy = RetryPolicy {
        max_tries: 2,
        base: Duration::from_millis(250),
        cap: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(2),
        retry_429: false,
        budget: Some(Duration::from_secs(3)),
    };

    /// The cloud, polled again soon anyway (`cloud_poll`): one try.
    pub const CLOUD_POLL: RetryPolicy = RetryPolicy { max_tries: 1, ..RetryPolicy::CLOUD };

    /// Provider APIs: 4 tries, on timeouts, 5xx and 429, with a `Retry-After` of up to a
    /// minute honoured (a provider's rate limit is worth waiting out).
    pub const PROVIDER: RetryPolicy = RetryPolicy {
        max_tries: 4,
        base: Duration::from_millis(500),
        cap: Duration::from_secs(8),
        max_retry_after: Duration::from_secs(60),
        retry_429: true,
        budget: None,
    };

    /// The cloud, for `latchkey run` when no valid token is cached: as many tries as fit
    /// in `budget` (backoff up to 30 s, `Retry-After` honoured within the budget). The
    /// daemon gives up at the budget and tries again at the connector's next run.
    pub fn within(budget: Duration) -> RetryPolicy {
        RetryPolicy {
            max_tries: u32::MAX,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_retry_after: budget,
            retry_429: false,
            budget: Some(budget),
        }
    }

    /// Backoff before retry number `retry` (1 for the first retry): `base * 2^(retry-1)`,
    /// capped, with "equal jitter" (a random half of it on top of the other half).
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX));
        let full = exp.min(self.cap);
        let half = full / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(if jitter_ms == 0 { 0 } else { rand::thread_rng().gen_range(0..=jitter_ms) })
    }

    fn retryable(&self, status: StatusCode) -> bool {
        status.is_server_error() || (self.retry_429 && status == StatusCode::TOO_MANY_REQUESTS)
    }
}

/// Sends the request `build` makes, retrying per `policy`. Returns the last response
/// (whatever its status) or the last transport error.
pub async fn send(
    policy: &RetryPolicy,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    let started = Instant::now();
    let mut tries: u32 = 0;
    loop {
        tries = tries.saturating_add(1);
        let result = build().send().await;
        let wait = match &result {
            Ok(resp) if policy.retryable(resp.status()) => match retry_after(resp.headers(), SystemTime::now()) {
                Some(wait) if wait > policy.max_retry_after => None,
                Some(wait) => Some(wait),
                None => Some(policy.backoff(tries)),
            },
            Err(e) if transient(e) => Some(policy.backoff(tries)),
            _ => None,
        };
        let again = |wait: Duration| {
            tries < policy.max_tries && policy.budget.is_none_or(|budget| started.elapsed() + wait <= budget)
        };
        match wait {
            Some(wait) if again(wait) => tokio::time::sleep(wait).await,
            _ => return result,
        }
    }
}

/// Timeouts and failed connections are worth another try; a bad URL or a body that
/// cannot be built is not.
pub fn transient(e: &reqwest::Error) -> bool {
    e.is_timeout() || e.is_connect() || e.is_request() && !e.is_builder()
}

/// The `Retry-After` of a response, if it has a usable one.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?, now)
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT` (RFC 9110 10.2.3).
/// A date in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:20:00 GMT", now), Some(Duration::ZERO), "the past is now");
        // The obsolete formats RFC 9110 still asks recipients to accept.
        assert_eq!(parse_retry_after("Wednesday, 21-Oct-15 07:28:10 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Wed Oct 21 07:28:05 2015", now), Some(Duration::from_secs(5)));
        for bad in ["", "-5", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p =
            RetryPolicy { base: Duration::from_millis(100), cap: Duration::from_millis(1000), ..RetryPolicy::CLOUD };
        for _ in 0..50 {
            let b1 = p.backoff(1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100), "{b1:?}");
            let b3 = p.backoff(3);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400), "{b3:?}");
            let b30 = p.backoff(30);
            assert!(b30 >= Duration::from_millis(500) && b30 <= Duration::from_millis(1000), "{b30:?}");
        }
    }

    /// A server answering the statuses in `script` in turn (then 200), counting requests.
    async fn scripted(script: Vec<(u16, Option<&'static str>)>) -> (String, Arc<AtomicU32>) {
        use axum::http::{HeaderValue, StatusCode as S};
        use axum::response::IntoResponse;
        let hits = Arc::new(AtomicU32::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst) as usize;
                let (status, retry_after) = script.get(n).copied().unwrap_or((200, None));
                async move {
                    let mut resp = (S::from_u16(status).unwrap_or(S::OK), format!("answer {n}")).into_response();
                    if let Some(v) = retry_after {
                        resp.headers_mut().insert("retry-after", HeaderValue::from_static(v));
                    }
                    resp
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/"), hits)
    }

    const FAST: RetryPolicy = RetryPolicy {
        max_tries: 4,
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(2),
        retry_429: false,
        budget: None,
    };

    #[tokio::test]
    async fn retries_5xx_then_succeeds() {
        let (url, hits) = scripted(vec![(500, None), (503, Some("1")), (502, None)]).await;
        let client = reqwest::Client::new();
        let started = std::time::Instant::now();
        let resp = send(&FAST, || client.get(&url)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), 200);
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was honoured");
    }

    #[tokio::test]
    async fn gives_up_after_four_tries_and_returns_the_last_answer() {
        let (url, hits) = scripted(vec![(500, None); 10]).await;
        let client = reqwest::Client::new();
        let resp = send(&FAST, || client.get(&url)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), 500);
        assert_eq!(hits.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn client_errors_and_429_are_not_retried_for_the_cloud() {
        for status in [400, 401, 404, 409, 429] {
            let (url, hits) = scripted(vec![(status, Some("0")); 3]).await;
            let client = reqwest::Client::new();
            let resp = send(&FAST, || client.get(&url)).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(hits.load(Ordering::SeqCst), 1, "{status} is not retried");
        }
        let (url, hits) = scripted(vec![(429, Some("0"))]).await;
        let client = reqwest::Client::new();
        let resp =
            send(&RetryPolicy { retry_429: true, ..FAST }, || client.get(&url)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((resp.status().as_u16(), hits.load(Ordering::SeqCst)), (200, 2), "providers' 429 is retried");
    }

    #[tokio::test]
    async fn a_long_retry_after_is_not_waited_for() {
        let (url, hits) = scripted(vec![(503, Some("3600"))]).await;
        let client = reqwest::Client::new();
        let resp = send(&FAST, || client.get(&url)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((resp.status().as_u16(), hits.load(Ordering::SeqCst)), (503, 1));
    }

    #[tokio::test]
    async fn timeouts_and_refused_connections_are_retried() {
        // A listener that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let accepted = Arc::new(AtomicU32::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(sock);
            }
        });
        let client =
            reqwest::Client::builder().timeout(Duration::from_millis(100)).build().unwrap_or_else(|e| panic!("{e}"));
        let err =
            send(&FAST, || client.get(format!("http://{addr}/"))).await.err().unwrap_or_else(|| panic!("no answer"));
        assert!(err.is_timeout());
        assert_eq!(accepted.load(Ordering::SeqCst), 4);

        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
            l.local_addr().unwrap_or_else(|e| panic!("{e}")).port()
        };
        let err = send(&FAST, || client.get(format!("http://127.0.0.1:{port}/"))).await.err();
        assert!(err.is_some_and(|e| e.is_connect()));
    }

    #[tokio::test]
    async fn retries_stop_at_the_budget() {
        let (url, hits) = scripted(vec![(503, None); 1000]).await;
        let client = reqwest::Client::new();
        let policy = RetryPolicy {
            max_tries: u32::MAX,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(80),
            budget: Some(Duration::from_millis(500)),
            ..FAST
        };
        let started = std::time::Instant::now();
        let resp = send(&policy, || client.get(&url)).await.unwrap_or_else(|e| panic!("{e}"));
        let took = started.elapsed();
        assert_eq!(resp.status(), 503, "the last answer");
        assert!(took <= Duration::from_millis(700), "stopped at the budget, took {took:?}");
        let n = hits.load(Ordering::SeqCst);
        assert!((4..=30).contains(&n), "backed off, neither one try nor a spin: {n} tries");

        // A `Retry-After` beyond what is left of the budget is not waited for.
        let (url, hits) = scripted(vec![(503, Some("1")); 3]).await;
        let policy = RetryPolicy { budget: Some(Duration::from_millis(300)), ..policy };
        let started = std::time::Instant::now();
        let resp = send(&policy, || client.get(&url)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((resp.status().as_u16(), hits.load(Ordering::SeqCst)), (503, 1));
        assert!(started.elapsed() < Duration::from_millis(300));
    }

    /// A raw HTTP/1.1 server: answers each request on a connection with `ok`, adding
    /// `Connection: close` and closing when `close` is set, or keeping the connection open
    /// and closing it `idle_close` after the answer (as a draining cloud closes idle
    /// keep-alive connections). Counts the connections it accepts.
    async fn raw_server(close: bool, idle_close: Duration) -> (String, Arc<AtomicU32>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU32::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let n = match tokio::time::timeout(idle_close, sock.read(&mut chunk)).await {
                            Ok(Ok(n)) if n > 0 => n,
                            _ => return, // EOF, error, or idle too long: close.
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let head = if close { "Connection: close\r\n" } else { "" };
                            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{head}\r\nok");
                            if sock.write_all(answer.as_bytes()).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/"), accepted)
    }

    /// reqwest (hyper) does not send a request on a connection the server said it closes
    /// (`Connection: close`, as a draining cloud answers) or has closed since: each of these
    /// requests succeeds at the first try, on a new connection.
    #[tokio::test]
    async fn connections_the_cloud_closes_are_not_reused() {
        let once = RetryPolicy { max_tries: 1, ..FAST };
        let client = reqwest::Client::new();
        let (url, accepted) = raw_server(true, Duration::from_secs(5)).await;
        for i in 0..5 {
            let resp = send(&once, || client.get(&url)).await.unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(resp.text().await.unwrap(), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5, "one connection per answer with `Connection: close`");

        let (url, accepted) = raw_server(false, Duration::from_millis(100)).await;
        for i in 0..3 {
            let resp = send(&once, || client.get(&url)).await.unwrap_or_else(|e| panic!("request {i}: {e}"));
            assert_eq!(resp.text().await.unwrap(), "ok");
            // The server closes the idle connection meanwhile.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3, "a closed keep-alive connection is not reused");

        // Without the pause, the kept-alive connection is reused: the counting is right.
        let (url, accepted) = raw_server(false, Duration::from_secs(5)).await;
        for _ in 0..3 {
            let resp = send(&once, || client.get(&url)).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(resp.text().await.unwrap(), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }
}
