//! Limits that hold under attack: the per-IP login limit behind a proxy, the account
//! lockout under parallel guesses, registration floods and the password-hash line, input
//! lengths, and the sweep of ended rate-limit windows.

use futures_util::future::join_all;
use latchkey_e2e::{backend_tests, json, Api, Backend, Browser, Cloud, CloudProcess, Proxy, Reply, TestDb};
use std::time::Duration;

backend_tests!(
    a_spoofed_x_forwarded_for_does_not_escape_the_per_ip_login_limit,
    parallel_wrong_passwords_never_exceed_the_lockout_limit,
    a_registration_flood_from_one_address_gets_429,
    password_hashes_beyond_the_line_get_503,
    an_overlong_email_gets_400_and_changes_nothing,
    ended_rate_limit_windows_are_swept,
);

const PASSWORD: &str = "a long unguessable phrase here";

fn register(api: &Api, name: &str) -> impl std::future::Future<Output = Reply> {
    let api = api.clone();
    let body = json!({"email": format!("{name}@example.test"), "username": name, "password": PASSWORD});
    async move { api.post("/v1/auth/register", None, body).await }
}

async fn login(api: &Api, email: &str, password: &str) -> Reply {
    api.post("/v1/auth/login", None, json!({"email": email, "password": password})).await
}

/// Behind one proxy, the client is the address the proxy appended; whatever the client
/// wrote to the left of it is not.
async fn a_spoofed_x_forwarded_for_does_not_escape_the_per_ip_login_limit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| {
        c.trusted_proxy_hops = 1;
        c.login_attempts_per_ip = 5;
    })
    .await;
    let proxy = Proxy::start(&cloud.base).await;
    let attacker = Api::new(&proxy.base);
    let guess = |spoofed: String| {
        let attacker = attacker.clone();
        async move {
            Api::read(
                attacker
                    .client
                    .post(format!("{}/v1/auth/login", attacker.base))
                    .header("x-forwarded-for", spoofed)
                    .json(&json!({"email": "victim@example.test", "password": "guess it is"})),
            )
            .await
        }
    };
    for i in 0..5 {
        guess(format!("203.0.113.{i}")).await.assert_error(401, "invalid_grant");
    }
    let limited = guess("198.51.100.7, 203.0.113.99".into()).await;
    limited.assert_error(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());

    // Another machine behind the same proxy is its own address, as the proxy saw it.
    let client =
        reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().expect("client");
    let neighbour = Api { base: proxy.base.clone(), client };
    register(&neighbour, "nina").await.ok(201);
    let session = login(&neighbour, "nina@example.test", PASSWORD).await.ok(200);
    let access = session["access_token"].as_str().expect("access");
    let sessions = neighbour.get("/v1/sessions", Some(access)).await.ok(200);
    assert_eq!(sessions[0]["ip"], "127.0.0.2", "{sessions}");
}

/// Twenty guesses at once: no more reach the password check than the limit allows.
async fn parallel_wrong_passwords_never_exceed_the_lockout_limit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let bob = api.user("bob").await;
    let limit = latchkey_cloud::config::Config::default().login_failures_per_account as usize;

    let answers = join_all((0..20).map(|i| {
        let api = api.clone();
        let email = bob.email.clone();
        async move { login(&api, &email, &format!("wrong guess number {i}")).await }
    }))
    .await;
    let checked = answers.iter().filter(|r| r.status == 401).count();
    let refused = answers.iter().filter(|r| r.status == 429).count();
    assert_eq!(checked + refused, 20, "{answers:?}");
    assert_eq!(checked, limit, "guesses checked: {checked}, limit {limit}");
    login(&api, &bob.email, &bob.password).await.assert_error(429, "rate_limited");
}

async fn a_registration_flood_from_one_address_gets_429(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.registrations_per_ip = 3).await;
    let api = cloud.api();

    let answers = join_all((0..10).map(|i| register(&api, &format!("flood{i}")))).await;
    let created = answers.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 3, "{answers:?}");
    for refused in answers.iter().filter(|r| r.status != 201) {
        refused.assert_error(429, "rate_limited");
        let retry: u64 = refused.header("retry-after").expect("Retry-After").parse().expect("seconds");
        assert!((1..=3600).contains(&retry));
    }
    // Only the three exist.
    let mut existing = 0;
    for i in 0..10 {
        if login(&api, &format!("flood{i}@example.test"), PASSWORD).await.status == 200 {
            existing += 1;
        }
    }
    assert_eq!(existing, 3);
}

/// One hash at a time and one waiting: the rest of a burst is refused with 503 at once
/// instead of piling up hashes, and the line drains.
async fn password_hashes_beyond_the_line_get_503(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| {
        c.password_hash_concurrency = 1;
        c.password_hash_queue = 1;
    })
    .await;
    let api = cloud.api();

    let answers = join_all((0..8).map(|i| register(&api, &format!("burst{i}")))).await;
    let created: Vec<usize> = (0..8).filter(|&i| answers[i].status == 201).collect();
    let busy: Vec<usize> = (0..8).filter(|&i| answers[i].status == 503).collect();
    assert_eq!(created.len() + busy.len(), 8, "{answers:?}");
    assert!(!created.is_empty() && !busy.is_empty(), "created {created:?}, refused {busy:?}");
    for &i in &busy {
        answers[i].assert_error(503, "service_unavailable");
        assert_eq!(answers[i].header("retry-after"), Some("1"));
        login(&api, &format!("burst{i}@example.test"), PASSWORD).await.assert_error(401, "invalid_grant");
    }
    register(&api, "afterwards").await.ok(201);
}

async fn an_overlong_email_gets_400_and_changes_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let long = format!("{}@example.test", "a".repeat(300));

    let r =
        api.post("/v1/auth/register", None, json!({"email": long, "username": "longy", "password": PASSWORD})).await;
    r.assert_error(400, "invalid_request");
    let r = login(&api, &long, PASSWORD).await;
    assert!(r.assert_error(400, "invalid_request").contains("254"));
    assert_eq!(Browser::new().login_as(&cloud.base, &long, PASSWORD, "/").await.status.as_u16(), 400);
    let raw = db.raw().await;
    let users: i64 = sqlx::query_scalar("select count(*) from users").fetch_one(&raw).await.expect("count");
    let limits: i64 = sqlx::query_scalar("select count(*) from rate_limits").fetch_one(&raw).await.expect("count");
    assert_eq!((users, limits), (0, 0));

    // The connection-token body's names go into the audit log: bounded too.
    let alice = api.user("alice").await;
    let (_, pat) = api.pat(&alice, &["connections:token"]).await;
    let r = api
        .post("/oauth/connection-token", Some(&pat), json!({"org": "acme", "connector_key": "k".repeat(10_000)}))
        .await;
    r.assert_error(400, "invalid_request");
}

/// Windows that have ended are deleted by a later request; a live one stays. A real
/// process, because the sweep clock is per process.
async fn ended_rate_limit_windows_are_swept(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = CloudProcess::spawn(&db, &[]).await;
    let raw = db.raw().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    // As a writer that knew no expiry left them: windows from two days ago.
    for i in 0..50 {
        sqlx::query(
            "insert into rate_limits (key, window_start, hits, created_at, updated_at) values ($1, $2, 1, $2, $2)",
        )
        .bind(format!("login-fail:gone{i}@example.test"))
        .bind(now - 2 * 86_400)
        .execute(&raw)
        .await
        .expect("insert");
    }
    let api = cloud.api();
    login(&api, "someone@example.test", "whatever it is").await.assert_error(401, "invalid_grant");

    let mut keys: Vec<String> = Vec::new();
    for _ in 0..50 {
        keys = sqlx::query_scalar("select key from rate_limits order by key").fetch_all(&raw).await.expect("keys");
        if !keys.iter().any(|k| k.contains("gone")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(keys, ["login-fail:someone@example.test", "login-ip:127.0.0.1"]);
}
