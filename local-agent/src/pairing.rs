//! `latchkey login`: the device authorization grant (RFC 8628). The agent shows a short
//! code and the cloud's URL, the member approves it there, and the agent's polls receive a
//! device PAT, which [`crate::pat_store`] keeps.
//!
//! Polling is polite: it waits `interval` seconds between polls and 5 s more after each
//! `slow_down`, and it stops on `access_denied`, `expired_token` or the code's expiry.

use crate::browser;
use crate::cloud::{CloudClient, DeviceAuthorization, DevicePoll};
use crate::error::{Error, Result};
use latchkey_shared::Pat;
use std::io::Write;
use std::time::{Duration, Instant};

/// The poll interval when the cloud names none (RFC 8628 3.2).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// What `slow_down` adds to the interval (RFC 8628 3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// Pairs with the cloud: prints the code and URLs to `out`, opens the browser when
/// `open_browser`, and polls until approved. Returns the device PAT.
pub async fn login(cloud: &CloudClient, out: &mut dyn Write, open_browser: bool) -> Result<Pat> {
    let auth = cloud.device_authorization().await?;
    show(cloud, &auth, out, open_browser);
    let interval = auth.interval.map_or(DEFAULT_INTERVAL, Duration::from_secs).max(Duration::from_secs(1));
    poll(cloud, &auth, interval).await
}

fn show(cloud: &CloudClient, auth: &DeviceAuthorization, out: &mut dyn Write, open_browser: bool) {
    let minutes = auth.expires_in.div_ceil(60);
    let complete = auth.verification_uri_complete.as_deref();
    let mut text = format!(
        "To pair this machine with the Latchkey cloud at {}, open\n\n    {}\n\nand enter the code\n\n    {}\n\n",
        cloud.base_display(),
        auth.verification_uri,
        auth.user_code
    );
    if let Some(complete) = complete {
        text.push_str(&format!("(or open {complete}, which fills the code in for you)\n"));
    }
    let elsewhere: Vec<&str> = [Some(auth.verification_uri.as_str()), complete]
        .into_iter()
        .flatten()
        .filter(|page| !browser::is_cloud_page(cloud.base(), page))
        .collect();
    if !elsewhere.is_empty() {
        text.push_str(&format!(
            "\nwarning: the cloud's answer sends you to {}, which is not on the cloud's own address ({}); \
             it was not opened. Enter the code only on a page of {}.\n\n",
            elsewhere.join(" and "),
            cloud.base().origin().ascii_serialization(),
            cloud.base_display()
        ));
    } else if open_browser && browser::open(cloud.base(), complete.unwrap_or(&auth.verification_uri)) {
        text.push_str("Your browser should have opened that page.\n");
    }
    text.push_str(&format!(
        "The code expires in {minutes} minute{}. Waiting for approval…\n",
        if minutes == 1 { "" } else { "s" }
    ));
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

async fn poll(cloud: &CloudClient, auth: &DeviceAuthorization, mut interval: Duration) -> Result<Pat> {
    let deadline = Instant::now() + Duration::from_secs(auth.expires_in);
    loop {
        if Instant::now() + interval > deadline {
            return Err(expired());
        }
        tokio::time::sleep(interval).await;
        match cloud.poll_device(&auth.device_code).await? {
            DevicePoll::Granted(pat) => return Ok(pat),
            DevicePoll::Pending => {}
            DevicePoll::SlowDown => interval += SLOW_DOWN_STEP,
            DevicePoll::Denied => {
                return Err(Error::Pairing(
                    "the pairing request was denied on the cloud; run `latchkey login` again to start over".into(),
                ))
            }
            DevicePoll::Expired => return Err(expired()),
        }
    }
}

fn expired() -> Error {
    Error::Pairing("the code expired before it was approved; run `latchkey login` again for a new one".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::RetryPolicy;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use std::sync::{Arc, Mutex};
    use url::Url;

    #[derive(Clone, Default)]
    struct Script {
        /// Answers of /oauth/token, in turn: an error code, or "" for success.
        answers: Arc<Mutex<Vec<&'static str>>>,
        polls: Arc<Mutex<Vec<(Instant, String)>>>,
        pat: Arc<Mutex<String>>,
        interval: u64,
    }

    async fn start(State(s): State<Script>, body: String) -> axum::response::Response {
        assert_eq!(body, "client_id=latchkey-agent");
        axum::Json(serde_json::json!({
            "device_code": "dev-code-1", "user_code": "CDFG-HJKM",
            "verification_uri": "http://cloud.test/device",
            "verification_uri_complete": "http://cloud.test/device?user_code=CDFG-HJKM",
            "expires_in": 600, "interval": s.interval,
        }))
        .into_response()
    }

    async fn token(State(s): State<Script>, body: String) -> axum::response::Response {
        s.polls.lock().map(|mut p| p.push((Instant::now(), body))).unwrap_or_default();
        let next = s.answers.lock().ok().and_then(|mut a| (!a.is_empty()).then(|| a.remove(0))).unwrap_or("");
        if next.is_empty() {
            let pat = s.pat.lock().map(|p| p.clone()).unwrap_or_default();
            return axum::Json(serde_json::json!({"access_token": pat, "token_type": "Bearer", "scope": "connections:token", "expires_in": 7_776_000})).into_response();
        }
        (StatusCode::BAD_REQUEST, axum::Json(serde_json::json!({"error": next, "error_description": "x"})))
            .into_response()
    }

    async fn cloud(answers: Vec<&'static str>, interval: u64) -> (CloudClient, Script) {
        let script = Script { answers: Arc::new(Mutex::new(answers)), interval, ..Default::default() };
        if let Ok(mut p) = script.pat.lock() {
            *p = Pat::generate().secret().expose().clone();
        }
        let app = axum::Router::new()
            .route("/oauth/device_authorization", axum::routing::post(start))
            .route("/oauth/token", axum::routing::post(token))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = Url::parse(&format!("http://{addr}")).unwrap_or_else(|e| panic!("{e}"));
        let client = CloudClient::new(base, None).unwrap_or_else(|e| panic!("{e}"));
        (client.with_policy(RetryPolicy { base: Duration::from_millis(5), ..RetryPolicy::CLOUD }), script)
    }

    #[tokio::test]
    async fn waits_while_pending_and_returns_the_pat() {
        let (cloud, script) = cloud(vec!["authorization_pending", "authorization_pending"], 1).await;
        let mut out = Vec::new();
        let pat = login(&cloud, &mut out, false).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Some(pat.secret().expose().clone()), script.pat.lock().ok().map(|p| p.clone()));
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.contains("CDFG-HJKM")
                && out.contains("http://cloud.test/device")
                && out.contains("?user_code=CDFG-HJKM"),
            "{out}"
        );
        let polls = script.polls.lock().map(|p| p.clone()).unwrap_or_default();
        assert_eq!(polls.len(), 3);
        assert_eq!(polls[0].1, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=dev-code-1&client_id=latchkey-agent");
        for pair in polls.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= Duration::from_millis(990), "the interval is honoured");
        }
    }

    #[tokio::test]
    async fn slow_down_adds_five_seconds() {
        let (cloud, script) = cloud(vec!["slow_down"], 1).await;
        let started = Instant::now();
        let auth = cloud.device_authorization().await.unwrap_or_else(|e| panic!("{e}"));
        poll(&cloud, &auth, Duration::from_millis(200)).await.unwrap_or_else(|e| panic!("{e}"));
        let polls = script.polls.lock().map(|p| p.clone()).unwrap_or_default();
        assert_eq!(polls.len(), 2);
        assert!(polls[1].0 - polls[0].0 >= Duration::from_millis(5190), "{:?}", polls[1].0 - polls[0].0);
        assert!(started.elapsed() < Duration::from_secs(8));
    }

    #[tokio::test]
    async fn denial_and_expiry_stop_with_a_clear_message() {
        for (answer, wanted) in [("access_denied", "denied"), ("expired_token", "expired")] {
            let (cloud, _) = cloud(vec![answer], 1).await;
            let auth = cloud.device_authorization().await.unwrap_or_else(|e| panic!("{e}"));
            let e =
                poll(&cloud, &auth, Duration::from_millis(10)).await.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(wanted) && e.contains("latchkey login"), "{e}");
        }
        let (cloud, _) = cloud(vec!["invalid_grant"], 1).await;
        let auth = cloud.device_authorization().await.unwrap_or_else(|e| panic!("{e}"));
        let e = poll(&cloud, &auth, Duration::from_millis(10)).await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("invalid_grant"), "{e}");
    }
}
