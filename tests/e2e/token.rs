//! `POST /oauth/connection-token`: one test per row of the contract's table, on both
//! backends, plus the success shape, the audit trail and the sandbox's faults.

use latchkey_e2e::{backend_tests, consent, json, Api, Backend, Cloud, Reply, SandboxOrg, TestDb};
use serde_json::Value;

backend_tests!(every_row_of_the_contract, refresh_and_provider_faults, rate_limit_per_pat);

async fn fetch(api: &Api, pat: Option<&str>, body: Value) -> Reply {
    api.post("/oauth/connection-token", pat, body).await
}

fn ask() -> Value {
    json!({"org": "acme", "connector_key": "sandbox"})
}

async fn expire(db: &TestDb, in_secs: i64) {
    let raw = db.raw().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    sqlx::query("update connections set expires_at = $1").bind(now + in_secs).execute(&raw).await.unwrap();
    raw.close().await;
}

async fn every_row_of_the_contract(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;

    // Success: exactly the three fields, not cached, and the token works at the provider.
    let ok = fetch(&api, Some(&pat), ask()).await;
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    let body = ok.ok(200);
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["access_token", "expires_at", "token_type"]);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    let access = body["access_token"].as_str().unwrap();
    let items =
        Api::read(api.client.get(format!("{}/sandbox/api/items?limit=5", api.base)).bearer_auth(access)).await.ok(200);
    assert_eq!(items["items"].as_array().unwrap().len(), 5);
    assert!(!ok.text.contains(&org.client_secret) && !ok.text.contains("refresh"));
    // Counted in the metrics, by outcome and by route template (never a token or an id).
    let metrics = api.get("/metrics", None).await;
    assert!(metrics.text.contains("latchkey_connection_token_answers_total{outcome=\"issued\"} 1"), "{}", metrics.text);
    assert!(metrics.text.contains("route=\"/oauth/connection-token\""));
    assert!(!metrics.text.contains(access));
    // By org id too.
    let org_id = api.get("/v1/orgs/acme", Some(&org.member.access)).await.ok(200)["id"].as_str().unwrap().to_owned();
    fetch(&api, Some(&pat), json!({"org": org_id, "connector_key": "sandbox"})).await.ok(200);

    // 1. 401 invalid_token, with WWW-Authenticate.
    for (token, why) in [
        (None, "no Authorization"),
        (Some(org.member.access.as_str()), "a login JWT is not a PAT"),
        (Some("lk_pat_000000000000000000000000000000000000000"), "bad checksum"),
    ] {
        let r = fetch(&api, token, ask()).await;
        r.assert_error(401, "invalid_token");
        assert_eq!(r.header("www-authenticate"), Some("Bearer error=\"invalid_token\""), "{why}");
    }
    let basic = Api::read(
        api.client.post(format!("{}/oauth/connection-token", api.base)).basic_auth("x", Some("y")).json(&ask()),
    )
    .await;
    basic.assert_error(401, "invalid_token");
    let (gone_id, gone) = api.pat(&org.member, &["connections:token"]).await;
    api.delete(&format!("/v1/tokens/{gone_id}"), Some(&org.member.access)).await.ok(204);
    fetch(&api, Some(&gone), ask()).await.assert_error(401, "invalid_token");
    let (_, old) = api.pat(&org.member, &["connections:token"]).await;
    let raw = db.raw().await;
    sqlx::query("update pats set expires_at = 1 where token_hash = $1")
        .bind(latchkey_shared::Pat::parse(&old).unwrap().hash())
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    fetch(&api, Some(&old), ask()).await.assert_error(401, "invalid_token");

    // 2. 403 insufficient_scope, before anything else is looked at.
    let (_, no_scope) = api.pat(&org.member, &["connections:read", "orgs:read"]).await;
    fetch(&api, Some(&no_scope), ask()).await.assert_error(403, "insufficient_scope");
    fetch(&api, Some(&no_scope), json!({"org": "no-such-org", "connector_key": "x"}))
        .await
        .assert_error(403, "insufficient_scope");
    let r = Api::read(
        api.client.post(format!("{}/oauth/connection-token", api.base)).bearer_auth(&no_scope).body("not json"),
    )
    .await;
    r.assert_error(403, "insufficient_scope");

    // 3. 400 invalid_request.
    let r =
        Api::read(api.client.post(format!("{}/oauth/connection-token", api.base)).bearer_auth(&pat).body("{not json"))
            .await;
    r.assert_error(400, "invalid_request");
    fetch(&api, Some(&pat), json!({"org": "acme"})).await.assert_error(400, "invalid_request");
    fetch(&api, Some(&pat), json!({"org": "acme", "connector_key": 7})).await.assert_error(400, "invalid_request");
    fetch(&api, Some(&pat), json!({"org": "acme", "connector_key": "sandbox", "token_url": "https://evil.example"}))
        .await
        .assert_error(400, "invalid_request");

    // 4. 404: no such org; a private org the caller is not in.
    fetch(&api, Some(&pat), json!({"org": "nope", "connector_key": "sandbox"})).await.assert_error(404, "not_found");
    api.org(&org.admin, "secret", "private").await;
    fetch(&api, Some(&pat), json!({"org": "secret", "connector_key": "sandbox"})).await.assert_error(404, "not_found");

    // 5. 403 not_a_member: a public org the caller has not joined; a PAT bound elsewhere.
    let stranger = api.user("stranger").await;
    let (_, stranger_pat) = api.pat(&stranger, &["connections:token"]).await;
    fetch(&api, Some(&stranger_pat), ask()).await.assert_error(403, "not_a_member");
    api.org(&org.member, "elsewhere", "public").await;
    let bound = api
        .post(
            "/v1/tokens",
            Some(&org.member.access),
            json!({"name": "bound", "scopes": ["connections:token"], "org": "elsewhere"}),
        )
        .await
        .ok(201);
    fetch(&api, bound["token"].as_str(), ask()).await.assert_error(403, "not_a_member");

    // 6. 404 not_found: another member of the same org; an unknown connector; a
    // connection that is not consent-only; an org that is no longer public.
    let (_, admin_pat) = api.pat(&org.admin, &["connections:token"]).await;
    let other = fetch(&api, Some(&admin_pat), ask()).await;
    other.assert_error(404, "not_found");
    let unknown = fetch(&api, Some(&pat), json!({"org": "acme", "connector_key": "nothing"})).await;
    unknown.assert_error(404, "not_found");
    assert_eq!(other.text, unknown.text, "the same answer whatever the reason");
    api.send(reqwest::Method::PATCH, "/v1/orgs/acme", Some(&org.admin.access), Some(json!({"visibility": "private"})))
        .await
        .ok(200);
    assert_eq!(fetch(&api, Some(&pat), ask()).await.text, unknown.text);
    api.send(reqwest::Method::PATCH, "/v1/orgs/acme", Some(&org.admin.access), Some(json!({"visibility": "public"})))
        .await
        .ok(200);
    api.put(
        "/v1/orgs/acme/connectors/shared",
        Some(&org.admin.access),
        json!({"provider": "sandbox", "scopes": ["profile"], "consent_only": false}),
    )
    .await
    .ok(200);
    consent(&api, &org.member, "acme", "shared").await;
    assert_eq!(api.get("/v1/orgs/acme/connections/shared", Some(&org.member.access)).await.ok(200)["status"], "active");
    assert_eq!(fetch(&api, Some(&pat), json!({"org": "acme", "connector_key": "shared"})).await.text, unknown.text);

    // 7. 409 reauth_required, with the URL to reconnect.
    SandboxOrg::faults(&api, json!({"refresh_invalid_grant": true})).await;
    expire(&db, -5).await;
    let r = fetch(&api, Some(&pat), ask()).await;
    r.assert_error(409, "reauth_required");
    // The URL reconnects this very connection.
    let id = api.get("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.ok(200)["id"].clone();
    assert_eq!(
        r.json()["connect_url"],
        format!("{}/connect/acme/sandbox?connection={}", api.base, id.as_str().unwrap())
    );
    assert_eq!(
        api.get("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.ok(200)["status"],
        "needs_reauth"
    );
    SandboxOrg::faults(&api, json!({"refresh_invalid_grant": false})).await;
    fetch(&api, Some(&pat), ask()).await.assert_error(409, "reauth_required");
    // Reconnecting heals it.
    consent(&api, &org.member, "acme", "sandbox").await;
    fetch(&api, Some(&pat), ask()).await.ok(200);

    // Every answer left an audit event, with the PAT's name, never the token.
    let events = api.get("/v1/me/audit?limit=1000", Some(&org.member.access)).await;
    assert!(!events.text.contains(access));
    let events = events.ok(200);
    let tokens: Vec<&Value> = events.as_array().unwrap().iter().filter(|e| e["action"] == "connection.token").collect();
    assert!(tokens.iter().any(|e| e["outcome"] == "issued" && e["pat_name"] == "test" && e["ip"] == "127.0.0.1"));
    for outcome in ["insufficient_scope", "invalid_request", "not_found", "not_a_member", "reauth_required"] {
        assert!(tokens.iter().any(|e| e["outcome"] == outcome), "no audit event for {outcome}");
    }
    // Refusals before the caller is known are audited too, without an actor.
    let raw = db.raw().await;
    let anonymous: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where action = 'connection.token' and outcome = 'invalid_token'",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    assert!(anonymous >= 5, "{anonymous}");
    raw.close().await;
    let org_events = api.get("/v1/orgs/acme/audit", Some(&org.admin.access)).await.ok(200);
    assert!(org_events
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "connection.refresh" && e["outcome"] == "needs_reauth"));
    api.get("/v1/orgs/acme/audit", Some(&org.member.access)).await.assert_error(403, "forbidden");
}

async fn refresh_and_provider_faults(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| {
        c.sandbox = true;
        c.provider_timeout_secs = 1;
    })
    .await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    consent(&api, &org.member, "acme", "sandbox").await;
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    let first = fetch(&api, Some(&pat), ask()).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    let refreshes = |stats: &Value| stats["grants"][0]["token_requests"]["refresh_token"].as_u64().unwrap_or(0);

    // A token inside the refresh window is refreshed before it is handed out.
    expire(&db, 30).await;
    let second = fetch(&api, Some(&pat), ask()).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(refreshes(&SandboxOrg::stats(&api).await), 1);

    // Faults while the current token is still valid: it is served, the grant untouched.
    for fault in [json!({"token_status": 503}), json!({"token_429_retry_after": 7}), json!({"token_delay_ms": 2500})] {
        SandboxOrg::faults(&api, json!({"token_status": null, "token_429_retry_after": null, "token_delay_ms": 0}))
            .await;
        SandboxOrg::faults(&api, fault.clone()).await;
        let raw = db.raw().await;
        sqlx::query("update connections set next_attempt_at = null, failure_count = 0").execute(&raw).await.unwrap();
        raw.close().await;
        expire(&db, 20).await;
        let r = fetch(&api, Some(&pat), ask()).await.ok(200);
        assert_eq!(r["access_token"], second.as_str(), "{fault}");
        // Expired: 503 with Retry-After, still not a reason to re-consent.
        expire(&db, -1).await;
        let r = fetch(&api, Some(&pat), ask()).await;
        r.assert_error(503, "provider_unavailable");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(retry >= 1);
        if fault.get("token_429_retry_after").is_some() {
            assert!(retry >= 5, "Retry-After of the provider honoured: {retry}");
        }
        // `failing`: retried on its own, not `needs_reauth`.
        assert_eq!(
            api.get("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.ok(200)["status"],
            "failing"
        );
    }
    // Once the provider recovers (and the backoff has passed), the stored grant still works.
    SandboxOrg::faults(&api, json!({"token_status": null, "token_429_retry_after": null, "token_delay_ms": 0})).await;
    let raw = db.raw().await;
    sqlx::query("update connections set next_attempt_at = null").execute(&raw).await.unwrap();
    let (failures, last_error): (i64, Option<String>) =
        sqlx::query_as("select failure_count, last_error from connections").fetch_one(&raw).await.unwrap();
    assert!(failures >= 1 && last_error.is_some());
    raw.close().await;
    let third = fetch(&api, Some(&pat), ask()).await.ok(200);
    assert_ne!(third["access_token"], second.as_str());

    // invalid_grant inside an HTTP 200, as GitHub sends it: needs_reauth.
    SandboxOrg::faults(&api, json!({"refresh_invalid_grant_in_200": true})).await;
    expire(&db, -1).await;
    fetch(&api, Some(&pat), ask()).await.assert_error(409, "reauth_required");
}

async fn rate_limit_per_pat(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| {
        c.sandbox = true;
        c.token_rate_limit = 3;
    })
    .await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    consent(&api, &org.member, "acme", "sandbox").await;
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    let (_, other) = api.pat(&org.member, &["connections:token"]).await;
    for _ in 0..3 {
        fetch(&api, Some(&pat), ask()).await.ok(200);
    }
    let r = fetch(&api, Some(&pat), ask()).await;
    r.assert_error(429, "rate_limited");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // Per PAT: another PAT of the same member is not limited.
    fetch(&api, Some(&other), ask()).await.ok(200);
    // Counted in memory: the token endpoint writes no rate-limit row per request.
    assert_eq!(db.count("select count(*) from rate_limits where key like 'token:%'").await, 0);
    // Per replica (documented): another replica on the same database counts on its own.
    let replica = Cloud::start_with(&db, |c| {
        c.sandbox = true;
        c.token_rate_limit = 3;
    })
    .await;
    fetch(&replica.api(), Some(&pat), ask()).await.ok(200);
    fetch(&api, Some(&pat), ask()).await.assert_error(429, "rate_limited");
}
