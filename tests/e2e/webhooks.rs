//! Webhooks: a receiver on loopback (an axum server in this test, checking each
//! signature with its own HMAC code) gets every event once, signed; a receiver that fails
//! gets the event again with the same id; a cloud killed mid-retry delivers after a
//! restart; two replicas never send one attempt twice; no token or secret is ever in a
//! payload; redirects are not followed; internal addresses are refused at registration
//! and at delivery. The admin page in Chromium.

use fantoccini::Locator;
use latchkey_e2e::chrome::{self, chromedriver};
use latchkey_e2e::{
    backend_tests, consent, json, skip_postgres, Api, Backend, Cloud, CloudProcess, SandboxOrg, TestDb, User,
};
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

backend_tests!(
    every_event_is_delivered_once_signed_and_without_secrets,
    a_failing_receiver_gets_the_same_event_again,
    a_killed_cloud_delivers_after_a_restart,
    redirects_are_not_followed,
    internal_addresses_are_refused,
    the_admin_page_adds_lists_resends_and_deletes,
);

/// HMAC-SHA256 written out (RFC 2104), independent of the cloud's implementation.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner_hash = Sha256::new().chain_update(&inner).chain_update(message).finalize();
    Sha256::new().chain_update(&outer).chain_update(inner_hash).finalize().into()
}

/// Whether `header` (`t=…,v1=…`) signs `body` with `secret`.
fn signature_valid(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    let expected = hmac_sha256(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    hex::encode(expected) == v1
}

#[derive(Clone, Debug)]
struct Received {
    body: String,
    event_id: String,
    attempt: String,
    signed: bool,
    answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    secret: Mutex<Option<String>>,
    received: Mutex<Vec<Received>>,
    /// Answer 500 to this many more requests.
    fail: Mutex<usize>,
    /// Answer 302 to every request.
    redirect: Mutex<bool>,
    /// Hold each request this long before answering.
    delay_ms: Mutex<u64>,
    in_flight: Mutex<HashMap<String, usize>>,
    max_in_flight: Mutex<usize>,
    /// Requests to the redirect's target (there must be none).
    followed: Mutex<usize>,
}

/// A webhook receiver on a loopback port.
#[derive(Clone)]
struct Receiver {
    state: Arc<ReceiverState>,
    port: u16,
}

impl Receiver {
    async fn start() -> Receiver {
        use axum::routing::post;
        let state = Arc::new(ReceiverState::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::clone(&state);
        let followed = Arc::clone(&state);
        let app = axum::Router::new()
            .route(
                "/hook",
                post(move |headers: axum::http::HeaderMap, body: String| {
                    let state = Arc::clone(&shared);
                    async move { state.receive(headers, body).await }
                }),
            )
            .route(
                "/elsewhere",
                axum::routing::any(move || {
                    let state = Arc::clone(&followed);
                    async move {
                        *state.followed.lock().unwrap() += 1;
                        axum::http::StatusCode::OK
                    }
                }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { state, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn set_secret(&self, secret: &str) {
        *self.state.secret.lock().unwrap() = Some(secret.to_owned());
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Bodies answered 2xx, as JSON.
    fn delivered(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .map(|r| serde_json::from_str(&r.body).unwrap())
            .collect()
    }

    /// Waits until `done` holds of what arrived.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) {
        for _ in 0..300 {
            if done(&self.received()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}; received: {:#?}", self.received());
    }
}

impl ReceiverState {
    async fn receive(&self, headers: axum::http::HeaderMap, body: String) -> axum::response::Response {
        use axum::response::IntoResponse;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let event_id = serde_json::from_str::<Value>(&body).ok().and_then(|v| v["id"].as_str().map(str::to_owned));
        let event_id = event_id.unwrap_or_default();
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            let n = in_flight.entry(event_id.clone()).or_default();
            *n += 1;
            let mut max = self.max_in_flight.lock().unwrap();
            *max = (*max).max(*n);
        }
        let delay = *self.delay_ms.lock().unwrap();
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let secret = self.secret.lock().unwrap().clone().unwrap_or_default();
        let signed = signature_valid(&secret, &header("latchkey-signature"), &body)
            && header("content-type") == "application/json";
        let answer = if *self.redirect.lock().unwrap() {
            axum::http::StatusCode::FOUND
        } else {
            let mut fail = self.fail.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            } else if signed {
                axum::http::StatusCode::NO_CONTENT
            } else {
                axum::http::StatusCode::UNAUTHORIZED
            }
        };
        self.received.lock().unwrap().push(Received {
            body,
            event_id: event_id.clone(),
            attempt: header("latchkey-attempt"),
            signed,
            answered: answer.as_u16(),
        });
        *self.in_flight.lock().unwrap().entry(event_id).or_default() -= 1;
        if answer == axum::http::StatusCode::FOUND {
            return (answer, [(axum::http::header::LOCATION, "/elsewhere")]).into_response();
        }
        answer.into_response()
    }
}

/// Short retries and quick polls for tests; loopback receivers allowed.
fn tune(c: &mut latchkey_cloud::config::Config) {
    c.sandbox = true;
    c.webhook_allow_private_targets = true;
    c.webhook_retry_base_ms = 200;
    c.webhook_poll_interval_ms = 100;
}

const TUNED_ENV: [(&str, &str); 4] = [
    ("LATCHKEY_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
    ("LATCHKEY_WEBHOOK_RETRY_BASE_MS", "1500"),
    ("LATCHKEY_WEBHOOK_POLL_INTERVAL_MS", "100"),
    // Both processes are one cloud to its users: a login made on the first works on the second.
    ("LATCHKEY_PUBLIC_URL", "http://latchkey.localhost"),
];

/// Registers the receiver for `events` in `acme`; returns the webhook id.
async fn register(api: &Api, admin: &User, receiver: &Receiver, events: &[&str]) -> String {
    let r =
        api.post("/v1/orgs/acme/webhooks", Some(&admin.access), json!({"url": receiver.url(), "events": events})).await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let created = r.ok(201);
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_") && secret.len() == 38, "{secret}");
    receiver.set_secret(secret);
    created["id"].as_str().unwrap().to_owned()
}

async fn deliveries(api: &Api, admin: &User, webhook: &str) -> Vec<Value> {
    api.get(&format!("/v1/orgs/acme/webhooks/{webhook}/deliveries"), Some(&admin.access))
        .await
        .ok(200)
        .as_array()
        .unwrap()
        .clone()
}

async fn join(api: &Api, user: &User) {
    api.send(Method::POST, "/v1/orgs/acme/join", Some(&user.access), None).await.ok(200);
}

async fn every_event_is_delivered_once_signed_and_without_secrets(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, tune).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let receiver = Receiver::start().await;
    let all = [
        "connection.created",
        "connection.refresh_failed",
        "connection.needs_reauth",
        "connection.exhausted",
        "connection.recovered",
        "connection.disconnected",
        "member.joined",
        "member.removed",
    ];
    let webhook = register(&api, &org.admin, &receiver, &all).await;
    // A second endpoint for member events only, never answering: its failures do not
    // hold up the first.
    let silent = api
        .post(
            "/v1/orgs/acme/webhooks",
            Some(&org.admin.access),
            json!({"url": "http://127.0.0.1:9/never", "events": ["member.joined"], "description": "nobody home"}),
        )
        .await
        .ok(201);

    // The listing never shows a secret; members and weak PATs may not see it.
    let listed = api.get("/v1/orgs/acme/webhooks", Some(&org.admin.access)).await;
    assert!(!listed.text.contains("whsec_"), "{}", listed.text);
    let listed = listed.ok(200);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["url"], receiver.url().as_str());
    assert_eq!(listed[0]["events"].as_array().unwrap().len(), 8);
    assert_eq!(listed[1]["description"], "nobody home");
    api.get("/v1/orgs/acme/webhooks", Some(&org.member.access)).await.assert_error(403, "forbidden");
    let (_, weak) = api.pat(&org.admin, &["connections:read"]).await;
    api.get("/v1/orgs/acme/webhooks", Some(&weak)).await.assert_error(403, "insufficient_scope");
    let (_, reader) = api.pat(&org.admin, &["orgs:read"]).await;
    api.get("/v1/orgs/acme/webhooks", Some(&reader)).await.ok(200);
    api.post("/v1/orgs/acme/webhooks", Some(&reader), json!({"url": receiver.url(), "events": ["member.joined"]}))
        .await
        .assert_error(403, "insufficient_scope");
    api.post("/v1/orgs/acme/webhooks", Some(&org.admin.access), json!({"url": receiver.url(), "events": []}))
        .await
        .assert_error(400, "invalid_request");
    api.post("/v1/orgs/acme/webhooks", Some(&org.admin.access), json!({"url": receiver.url(), "events": ["x.y"]}))
        .await
        .assert_error(400, "invalid_request");

    // member.joined, connection.created, a token fetched, connection.disconnected,
    // member.removed.
    let newcomer = api.user("newcomer").await;
    join(&api, &newcomer).await;
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    let token = api
        .post("/oauth/connection-token", Some(&pat), json!({"org": "acme", "connector_key": "sandbox"}))
        .await
        .ok(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    api.delete("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.ok(204);
    api.delete(&format!("/v1/orgs/acme/members/{}", newcomer.id), Some(&org.admin.access)).await.ok(204);

    receiver.wait_for("four events", |r| r.iter().filter(|r| r.answered == 204).count() >= 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    assert!(received.iter().all(|r| r.signed), "a delivery had a bad signature: {received:#?}");
    let bodies = receiver.delivered();
    let mut types: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    types.sort_unstable();
    assert_eq!(types, ["connection.created", "connection.disconnected", "member.joined", "member.removed"]);
    let mut ids: Vec<&str> = bodies.iter().map(|b| b["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each event once");
    for b in &bodies {
        assert_eq!(b["org"], "acme");
        let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 5, "{b}");
        assert!(b["created_at"].as_str().unwrap().ends_with('Z'), "{b}");
    }
    let of = |t: &str| bodies.iter().find(|b| b["type"] == t).unwrap().clone();
    let joined = of("member.joined");
    assert_eq!(joined["data"]["user_id"], newcomer.id.as_str());
    assert_eq!(joined["data"]["username"], "newcomer");
    assert_eq!(joined["data"]["role"], "member");
    let created = of("connection.created")["data"].clone();
    assert_eq!(created["connector_key"], "sandbox");
    assert_eq!(created["provider"], "sandbox");
    assert_eq!(created["status"], "active");
    assert_eq!(created["user_id"], org.member.id.as_str());
    assert!(created["label"].is_string() && created["connection_id"].is_string(), "{created}");
    let disconnected = of("connection.disconnected")["data"].clone();
    assert_eq!(disconnected["status"], "revoked");
    assert_eq!(disconnected["connection_id"], created["connection_id"]);
    assert_eq!(of("member.removed")["data"]["user_id"], newcomer.id.as_str());

    // Nothing secret in any payload.
    for r in &received {
        for secret in [token.as_str(), org.client_secret.as_str(), pat.as_str(), "whsec_"] {
            assert!(!r.body.contains(secret), "a payload carries `{secret}`: {}", r.body);
        }
    }

    // The log: delivered, with the receiver's answer and latency.
    let log = deliveries(&api, &org.admin, &webhook).await;
    assert_eq!(log.len(), 4, "{log:#?}");
    for d in &log {
        assert_eq!(d["state"], "delivered", "{d}");
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["last_status_code"], 204);
        assert!(d["last_latency_ms"].is_i64());
    }
    // The silent endpoint got only its event, and keeps retrying it.
    let silent_id = silent["id"].as_str().unwrap();
    let silent_log = deliveries(&api, &org.admin, silent_id).await;
    assert_eq!(silent_log.len(), 1);
    assert_eq!(silent_log[0]["type"], "member.joined");
    assert_eq!(silent_log[0]["event_id"], joined["id"]);

    // Another org's admin cannot see or touch it.
    let stranger = api.user("stranger").await;
    api.get(&format!("/v1/orgs/acme/webhooks/{webhook}/deliveries"), Some(&stranger.access))
        .await
        .assert_error(403, "not_a_member");
    api.delete(&format!("/v1/orgs/acme/webhooks/{webhook}"), Some(&org.member.access))
        .await
        .assert_error(403, "forbidden");

    // Deleted: gone with its log; no more deliveries.
    api.delete(&format!("/v1/orgs/acme/webhooks/{silent_id}"), Some(&org.admin.access)).await.ok(204);
    api.delete(&format!("/v1/orgs/acme/webhooks/{silent_id}"), Some(&org.admin.access))
        .await
        .assert_error(404, "not_found");
    api.delete(&format!("/v1/orgs/acme/webhooks/{webhook}"), Some(&org.admin.access)).await.ok(204);
    join(&api, &stranger).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.delivered().len(), 4, "a deleted webhook still got an event");
    assert_eq!(db.count("select count(*) from webhook_deliveries").await, 0);

    // Audited.
    let audit = api.get("/v1/orgs/acme/audit", Some(&org.admin.access)).await;
    assert!(audit.text.contains("webhook.create") && audit.text.contains("webhook.delete"), "{}", audit.text);
    assert!(!audit.text.contains("whsec_"));
    cloud.stop().await;
}

async fn a_failing_receiver_gets_the_same_event_again(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, tune).await;
    let api = cloud.api();
    let admin = api.user("admin").await;
    api.org(&admin, "acme", "public").await;
    let receiver = Receiver::start().await;
    let webhook = register(&api, &admin, &receiver, &["member.joined"]).await;
    *receiver.state.fail.lock().unwrap() = 3;
    join(&api, &api.user("bob").await).await;
    receiver.wait_for("the fourth attempt", |r| r.iter().any(|r| r.answered == 204)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 4, "{received:#?}");
    assert!(received.iter().all(|r| r.event_id == received[0].event_id && r.signed));
    let attempts: Vec<&str> = received.iter().map(|r| r.attempt.as_str()).collect();
    assert_eq!(attempts, ["1", "2", "3", "4"]);
    assert_eq!(received.iter().map(|r| r.answered).collect::<Vec<_>>(), [500, 500, 500, 204]);
    // Same body each time (so the same id and created_at).
    assert!(received.iter().all(|r| r.body == received[0].body));

    let log = deliveries(&api, &admin, &webhook).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["state"], "delivered");
    assert_eq!(log[0]["attempts"], 4);
    assert_eq!(log[0]["last_status_code"], 204);
    assert!(log[0]["last_error"].is_null());
    assert_eq!(
        db.count("select count(*) from webhook_attempts where error_class = 'http_status' and status_code = 500").await,
        3
    );

    // Resend: once more, same event id.
    let delivery = log[0]["id"].as_str().unwrap();
    let resent = api
        .post(&format!("/v1/orgs/acme/webhooks/{webhook}/deliveries/{delivery}/resend"), Some(&admin.access), json!({}))
        .await;
    assert_eq!(resent.status, 200, "{}", resent.text);
    receiver.wait_for("the resend", |r| r.len() == 5).await;
    assert_eq!(receiver.received()[4].event_id, received[0].event_id);
    api.post(&format!("/v1/orgs/acme/webhooks/{webhook}/deliveries/nope/resend"), Some(&admin.access), json!({}))
        .await
        .assert_error(404, "not_found");
    let audit = api.get("/v1/orgs/acme/audit", Some(&admin.access)).await;
    assert!(audit.text.contains("webhook.resend"), "{}", audit.text);
    cloud.stop().await;
}

async fn a_killed_cloud_delivers_after_a_restart(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut first = CloudProcess::spawn(&db, &TUNED_ENV).await;
    let api = first.api();
    let admin = api.user("admin").await;
    api.org(&admin, "acme", "public").await;
    let receiver = Receiver::start().await;
    let webhook = register(&api, &admin, &receiver, &["member.joined"]).await;
    *receiver.state.fail.lock().unwrap() = 2;
    join(&api, &api.user("bob").await).await;
    // The first attempt failed and is recorded; the retry is pending when the cloud dies.
    for _ in 0..100 {
        let log = deliveries(&api, &admin, &webhook).await;
        if log.first().is_some_and(|d| d["attempts"] == 1 && d["state"] == "pending") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let attempts_before = receiver.received().len();
    assert!(attempts_before <= 2, "{:#?}", receiver.received());
    assert!(receiver.delivered().is_empty());

    let second = CloudProcess::spawn(&db, &TUNED_ENV).await;
    receiver.wait_for("delivery after the restart", |r| r.iter().any(|r| r.answered == 204)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 3, "{received:#?}");
    assert!(received.iter().all(|r| r.event_id == received[0].event_id && r.signed));
    let log = deliveries(&second.api(), &admin, &webhook).await;
    assert_eq!(log[0]["state"], "delivered");
    assert_eq!(log[0]["attempts"], 3);
}

async fn redirects_are_not_followed(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, tune).await;
    let api = cloud.api();
    let admin = api.user("admin").await;
    api.org(&admin, "acme", "public").await;
    let receiver = Receiver::start().await;
    *receiver.state.redirect.lock().unwrap() = true;
    let webhook = register(&api, &admin, &receiver, &["member.joined"]).await;
    join(&api, &api.user("bob").await).await;
    receiver.wait_for("two attempts", |r| r.len() >= 2).await;
    assert_eq!(*receiver.state.followed.lock().unwrap(), 0, "a redirect was followed");
    let log = deliveries(&api, &admin, &webhook).await;
    assert_eq!(log[0]["last_status_code"], 302, "{log:#?}");
    assert_eq!(log[0]["last_error"], "redirect");
    assert_ne!(log[0]["state"], "delivered");
    cloud.stop().await;
}

async fn internal_addresses_are_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    // The defaults: public https targets only.
    let cloud = Cloud::start_with(&db, |c| {
        c.webhook_retry_base_ms = 200;
        c.webhook_poll_interval_ms = 100;
    })
    .await;
    let api = cloud.api();
    let admin = api.user("admin").await;
    api.org(&admin, "acme", "public").await;
    let receiver = Receiver::start().await;
    let port = receiver.port;
    for url in [
        receiver.url(),
        format!("https://127.0.0.1:{port}/hook"),
        "https://10.0.0.7/hook".into(),
        "https://192.168.1.1/hook".into(),
        "https://172.16.0.1/hook".into(),
        "https://169.254.169.254/latest/meta-data".into(),
        "https://100.64.0.1/hook".into(),
        "https://[::1]/hook".into(),
        "https://[fd00::1]/hook".into(),
        "https://[fe80::1]/hook".into(),
        "https://[::ffff:10.0.0.1]/hook".into(),
        "https://0.0.0.0/hook".into(),
        "https://224.0.0.1/hook".into(),
        "http://hooks.example.com/hook".into(),
        "ftp://hooks.example.com/hook".into(),
        "file:///etc/passwd".into(),
        "https://user:pass@hooks.example.com/hook".into(),
        "not a url".into(),
    ] {
        let r = api
            .post("/v1/orgs/acme/webhooks", Some(&admin.access), json!({"url": url, "events": ["member.joined"]}))
            .await;
        r.assert_error(400, "invalid_request");
    }
    // A name is checked where it matters: at delivery, on the addresses it resolves to.
    let r = api
        .post(
            "/v1/orgs/acme/webhooks",
            Some(&admin.access),
            json!({"url": format!("https://localhost:{port}/hook"), "events": ["member.joined"]}),
        )
        .await;
    let webhook = r.ok(201)["id"].as_str().unwrap().to_owned();
    join(&api, &api.user("bob").await).await;
    // Two attempts are 200 ms of backoff apart; a loaded CI machine gets a generous bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut log = Vec::new();
    while std::time::Instant::now() < deadline {
        log = deliveries(&api, &admin, &webhook).await;
        if log.first().is_some_and(|d| d["attempts"].as_i64() >= Some(2)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(log.first().is_some_and(|d| d["attempts"].as_i64() >= Some(2)), "two attempts: {log:#?}");
    assert_eq!(log[0]["last_error"], "forbidden_address", "{log:#?}");
    assert!(log[0]["last_status_code"].is_null());
    // Still to be retried (the worker may be on its next attempt right now), never sent.
    assert!(["pending", "delivering"].contains(&log[0]["state"].as_str().unwrap_or_default()), "{log:#?}");
    assert!(receiver.received().is_empty(), "a loopback receiver was reached");
    cloud.stop().await;
}

async fn the_admin_page_adds_lists_resends_and_deletes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, tune).await;
    let api = cloud.api();
    let admin = api.user("admin").await;
    api.org(&admin, "acme", "public").await;
    let receiver = Receiver::start().await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;
    chrome::sign_in(&browser, &api.base, &admin.email, &admin.password, "/orgs/acme/admin/webhooks", "add-webhook")
        .await;
    driver.check_page(&browser, "admin-webhooks-empty").await;
    browser.find(Locator::Id("no-webhooks")).await.expect("the empty state");

    // Add one for member events only.
    browser.find(Locator::Id("url")).await.unwrap().send_keys(&receiver.url()).await.unwrap();
    browser.find(Locator::Id("description")).await.unwrap().send_keys("ops alerts").await.unwrap();
    for event in [
        "connection-created",
        "connection-refresh_failed",
        "connection-needs_reauth",
        "connection-exhausted",
        "connection-recovered",
        "connection-disconnected",
    ] {
        browser.find(Locator::Id(&format!("event-{event}"))).await.unwrap().click().await.unwrap();
    }
    browser.find(Locator::Id("add-webhook")).await.unwrap().click().await.unwrap();
    let secret = browser.wait().for_element(Locator::Id("created-secret")).await.unwrap().text().await.unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    receiver.set_secret(&secret);
    driver.check_page(&browser, "admin-webhooks-created").await;
    let listed = api.get("/v1/orgs/acme/webhooks", Some(&admin.access)).await.ok(200);
    assert_eq!(listed[0]["events"], json!(["member.joined", "member.removed"]));
    assert_eq!(listed[0]["description"], "ops alerts");
    let webhook = listed[0]["id"].as_str().unwrap().to_owned();

    // An event arrives; the log shows it; Resend sends it again.
    join(&api, &api.user("bob").await).await;
    receiver.wait_for("the event", |r| r.iter().any(|r| r.answered == 204)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    browser.goto(&format!("{}/orgs/acme/admin/webhooks", api.base)).await.unwrap();
    let row = browser.wait().for_element(Locator::Css("tr[data-state=\"delivered\"]")).await.unwrap();
    let text = row.text().await.unwrap();
    assert!(text.contains("member.joined") && text.contains("204") && text.contains("ms"), "{text}");
    let html = browser.source().await.unwrap();
    assert!(!html.contains(&secret), "the secret is shown again");
    driver.check_page(&browser, "admin-webhooks-log").await;
    browser.find(Locator::Css("button[id^=\"resend-\"]")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("notice-flash")).await.unwrap();
    receiver.wait_for("the resend", |r| r.iter().filter(|r| r.answered == 204).count() == 2).await;

    // Delete.
    browser.find(Locator::Id(&format!("delete-{webhook}"))).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("no-webhooks")).await.unwrap();
    assert!(api.get("/v1/orgs/acme/webhooks", Some(&admin.access)).await.ok(200).as_array().unwrap().is_empty());

    // A cross-site post is refused.
    let r = api
        .client
        .post(format!("{}/orgs/acme/admin/webhooks", api.base))
        .header("origin", "https://evil.example")
        .form(&[("url", receiver.url().as_str()), ("events", "member.joined")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error() || r.status().is_redirection(), "{}", r.status());
    assert!(api.get("/v1/orgs/acme/webhooks", Some(&admin.access)).await.ok(200).as_array().unwrap().is_empty());
    let _ = browser.close().await;
    cloud.stop().await;
}

/// Two `latchkey-cloud` processes on one PostgreSQL: every attempt of every event is sent
/// once, never two at a time, and every event is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_send_one_attempt_twice() {
    if skip_postgres() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    let env = [
        ("LATCHKEY_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("LATCHKEY_WEBHOOK_RETRY_BASE_MS", "100"),
        ("LATCHKEY_WEBHOOK_POLL_INTERVAL_MS", "20"),
        ("LATCHKEY_PUBLIC_URL", "http://latchkey.localhost"),
    ];
    let a = CloudProcess::spawn(&db, &env).await;
    let b = CloudProcess::spawn(&db, &env).await;
    let (api_a, api_b) = (a.api(), b.api());
    let admin = api_a.user("admin").await;
    api_a.org(&admin, "acme", "public").await;
    let receiver = Receiver::start().await;
    register(&api_a, &admin, &receiver, &["member.joined"]).await;
    // Slow answers and failures keep attempts in flight while both replicas look.
    *receiver.state.delay_ms.lock().unwrap() = 150;
    *receiver.state.fail.lock().unwrap() = 10;
    let events = 12;
    for n in 0..events {
        let api = if n % 2 == 0 { &api_a } else { &api_b };
        join(api, &api.user(&format!("user{n}")).await).await;
    }
    receiver
        .wait_for("every event delivered", |r| {
            let mut ok: Vec<&str> = r.iter().filter(|r| r.answered == 204).map(|r| r.event_id.as_str()).collect();
            ok.sort_unstable();
            ok.dedup();
            ok.len() == events
        })
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let received = receiver.received();
    let mut per_attempt: HashMap<(String, String), usize> = HashMap::new();
    for r in &received {
        *per_attempt.entry((r.event_id.clone(), r.attempt.clone())).or_default() += 1;
    }
    let twice: Vec<_> = per_attempt.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "attempts sent more than once: {twice:?}");
    assert_eq!(*receiver.state.max_in_flight.lock().unwrap(), 1, "two attempts of one event were in flight at once");
    let delivered = received.iter().filter(|r| r.answered == 204).count();
    assert_eq!(delivered, events, "an event was delivered twice");
    assert!(received.len() >= events + 10);
}
