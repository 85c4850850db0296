//! Accounts: register, login, refresh rotation with reuse detection, sessions, logout.

use latchkey_e2e::{backend_tests, json, Api, Backend, Cloud, TestDb};

backend_tests!(register_login_refresh_and_logout, login_is_uniform_and_rate_limited, sessions_are_listed_and_revocable);

async fn register_login_refresh_and_logout(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let alice = api.user("alice").await;

    // Taken email and username, weak password: clear 400s that change nothing.
    api.post(
        "/v1/auth/register",
        None,
        json!({"email": "ALICE@example.test", "username": "alice2", "password": "a long unguessable phrase here"}),
    )
    .await
    .assert_error(400, "email_taken");
    api.post(
        "/v1/auth/register",
        None,
        json!({"email": "other@example.test", "username": "alice", "password": "a long unguessable phrase here"}),
    )
    .await
    .assert_error(400, "username_taken");
    let weak = api
        .post(
            "/v1/auth/register",
            None,
            json!({"email": "w@example.test", "username": "weak", "password": "password123"}),
        )
        .await;
    assert!(weak.assert_error(400, "weak_password").starts_with("password:"));
    api.post(
        "/v1/auth/register",
        None,
        json!({"email": "not-an-email", "username": "bad", "password": "a long unguessable phrase here"}),
    )
    .await
    .assert_error(400, "invalid_request");
    let login = api.post("/v1/auth/login", None, json!({"email": "w@example.test", "password": "password123"})).await;
    login.assert_error(401, "invalid_grant");

    // The access JWT works.
    let me = api.get("/v1/me", Some(&alice.access)).await.ok(200);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["email"], "alice@example.test");
    assert!(me.get("password_hash").is_none());

    // Refresh rotates: a new pair, both different.
    let first = api.post("/v1/auth/refresh", None, json!({"refresh_token": alice.refresh})).await;
    assert_eq!(first.header("cache-control"), Some("no-store"));
    let first = first.ok(200);
    let rotated_refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let rotated_access = first["access_token"].as_str().unwrap().to_owned();
    assert_ne!(rotated_refresh, alice.refresh);
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 900);
    api.get("/v1/me", Some(&rotated_access)).await.ok(200);

    // Replaying the used refresh token revokes the whole family: the rotated refresh
    // token and every access token of this login stop working.
    let replay = api.post("/v1/auth/refresh", None, json!({"refresh_token": alice.refresh})).await;
    assert!(replay.assert_error(400, "invalid_grant").contains("revoked"));
    api.post("/v1/auth/refresh", None, json!({"refresh_token": rotated_refresh}))
        .await
        .assert_error(400, "invalid_grant");
    let dead = api.get("/v1/me", Some(&rotated_access)).await;
    dead.assert_error(401, "invalid_token");
    assert_eq!(dead.header("www-authenticate"), Some("Bearer error=\"invalid_token\""));

    // A fresh login works, and logout ends it.
    let again = api.post("/v1/auth/login", None, json!({"email": alice.email, "password": alice.password})).await;
    let cookie = again.header("set-cookie").unwrap().to_owned();
    assert!(cookie.starts_with("latchkey_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    let again = again.ok(200);
    let access = again["access_token"].as_str().unwrap();

    // The cookie alone authenticates a browser.
    let cookie_pair = cookie.split(';').next().unwrap().to_owned();
    let by_cookie = Api::read(api.client.get(format!("{}/v1/me", api.base)).header("cookie", &cookie_pair)).await;
    assert_eq!(by_cookie.ok(200)["id"], alice.id);
    // …but not for a state-changing request from another origin.
    let csrf = Api::read(
        api.client
            .post(format!("{}/v1/orgs", api.base))
            .header("cookie", &cookie_pair)
            .header("origin", "https://evil.example")
            .json(&json!({"slug": "evil", "name": "evil", "visibility": "public"})),
    )
    .await;
    csrf.assert_error(403, "forbidden");

    api.send(reqwest::Method::POST, "/v1/auth/logout", Some(access), None).await.ok(204);
    api.get("/v1/me", Some(access)).await.assert_error(401, "invalid_token");
    let by_cookie = Api::read(api.client.get(format!("{}/v1/me", api.base)).header("cookie", &cookie_pair)).await;
    by_cookie.assert_error(401, "invalid_token");
    api.post("/v1/auth/refresh", None, json!({"refresh_token": again["refresh_token"]}))
        .await
        .assert_error(400, "invalid_grant");
}

async fn login_is_uniform_and_rate_limited(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.login_failures_per_account = 3).await;
    let api = cloud.api();
    let bob = api.user("bob").await;

    // Unknown email and wrong password answer identically.
    let unknown =
        api.post("/v1/auth/login", None, json!({"email": "nobody@example.test", "password": "whatever it is"})).await;
    let wrong = api.post("/v1/auth/login", None, json!({"email": bob.email, "password": "whatever it is"})).await;
    assert_eq!(unknown.status, wrong.status);
    assert_eq!(unknown.text, wrong.text);
    unknown.assert_error(401, "invalid_grant");

    // Two more failures for bob reach the per-account limit; even the right password is
    // then refused, with Retry-After.
    for _ in 0..2 {
        api.post("/v1/auth/login", None, json!({"email": bob.email, "password": "still wrong"}))
            .await
            .assert_error(401, "invalid_grant");
    }
    let limited = api.post("/v1/auth/login", None, json!({"email": bob.email, "password": bob.password})).await;
    limited.assert_error(429, "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry));

    // Another account from the same IP is not locked out by bob's failures.
    let carol = api.user("carol").await;
    api.get("/v1/me", Some(&carol.access)).await.ok(200);
}

async fn sessions_are_listed_and_revocable(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let dave = api.user("dave").await;
    let second =
        api.post("/v1/auth/login", None, json!({"email": dave.email, "password": dave.password})).await.ok(200);
    let second_access = second["access_token"].as_str().unwrap();

    let sessions = api.get("/v1/sessions", Some(&dave.access)).await.ok(200);
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let other = sessions.iter().find(|s| s["current"] == false).unwrap()["id"].as_str().unwrap().to_owned();

    // Someone else cannot revoke dave's session.
    let erin = api.user("erin").await;
    api.delete(&format!("/v1/sessions/{other}"), Some(&erin.access)).await.assert_error(404, "not_found");
    api.get("/v1/me", Some(second_access)).await.ok(200);

    api.delete(&format!("/v1/sessions/{other}"), Some(&dave.access)).await.ok(204);
    api.get("/v1/me", Some(second_access)).await.assert_error(401, "invalid_token");
    assert_eq!(api.get("/v1/sessions", Some(&dave.access)).await.ok(200).as_array().unwrap().len(), 1);
}
