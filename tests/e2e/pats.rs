//! Personal access tokens: format, scopes, listing, revocation, expiry, org binding.

use latchkey_e2e::{backend_tests, json, Backend, Cloud, TestDb};

backend_tests!(pat_lifecycle, pat_scopes_and_binding, pat_expiry);

async fn pat_lifecycle(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let alice = api.user("alice").await;

    let created = api
        .post(
            "/v1/tokens",
            Some(&alice.access),
            json!({"name": "laptop agent", "scopes": ["connections:token", "connections:read"], "expires_in_days": 30}),
        )
        .await;
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let created = created.ok(201);
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("lk_pat_") && token.len() == 45, "{token}");
    assert_eq!(created["scopes"], json!(["connections:read", "connections:token"]));
    assert!(created["expires_at"].as_str().unwrap().ends_with('Z'));

    // Listed with prefix and scopes, never the token.
    let list = api.get("/v1/tokens", Some(&alice.access)).await;
    assert!(!list.text.contains(&token));
    assert!(!list.text.contains(&token[12..]));
    let list = list.ok(200);
    let entry = &list.as_array().unwrap()[0];
    assert_eq!(entry["id"], id);
    assert!(token.starts_with(entry["prefix"].as_str().unwrap()));
    assert_eq!(entry["last_used_at"], serde_json::Value::Null);
    assert!(entry.get("token").is_none());

    // The PAT authenticates, and its use is recorded.
    assert_eq!(api.get("/v1/me", Some(&token)).await.ok(200)["id"], alice.id);
    let list = api.get("/v1/tokens", Some(&alice.access)).await.ok(200);
    assert!(list[0]["last_used_at"].is_string());

    // Only the hash is stored.
    let raw = db.raw().await;
    let stored: Vec<(String, String)> =
        sqlx::query_as("select token_hash, prefix from pats").fetch_all(&raw).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].0, token);
    assert_eq!(stored[0].0.len(), 64);
    raw.close().await;

    // A PAT cannot mint PATs or list them.
    api.post("/v1/tokens", Some(&token), json!({"name": "escalate", "scopes": ["apps:write"]}))
        .await
        .assert_error(403, "forbidden");

    // Revoked: refused on the next request.
    let bob = api.user("bob").await;
    api.delete(&format!("/v1/tokens/{id}"), Some(&bob.access)).await.assert_error(404, "not_found");
    api.delete(&format!("/v1/tokens/{id}"), Some(&alice.access)).await.ok(204);
    let refused = api.get("/v1/me", Some(&token)).await;
    assert!(refused.assert_error(401, "invalid_token").contains("revoked"));
    assert_eq!(refused.header("www-authenticate"), Some("Bearer error=\"invalid_token\""));
    assert_eq!(api.get("/v1/tokens", Some(&alice.access)).await.ok(200).as_array().unwrap().len(), 0);

    // Malformed and tampered tokens are refused without a look-up.
    let mut tampered = token.clone().into_bytes();
    tampered[20] = if tampered[20] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(api.get("/v1/me", Some(&tampered)).await.assert_error(401, "invalid_token").contains("checksum"));
    api.get("/v1/me", Some("lk_pat_tooshort")).await.assert_error(401, "invalid_token");
    api.get("/v1/me", None).await.assert_error(401, "invalid_token");
    let basic = latchkey_e2e::Api::read(api.client.get(format!("{}/v1/me", api.base)).basic_auth("a", Some("b"))).await;
    basic.assert_error(401, "invalid_token");
}

async fn pat_scopes_and_binding(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let alice = api.user("alice").await;
    api.org(&alice, "acme", "public").await;
    api.org(&alice, "other", "public").await;

    // Defaults: connections:read only; connections:token is never a default.
    let default = api.post("/v1/tokens", Some(&alice.access), json!({"name": "default"})).await.ok(201);
    assert_eq!(default["scopes"], json!(["connections:read"]));
    let default_token = default["token"].as_str().unwrap();
    // Without orgs:read it cannot read orgs.
    let denied = api.get("/v1/orgs", Some(default_token)).await;
    assert!(denied.assert_error(403, "insufficient_scope").contains("orgs:read"));

    // Unknown scopes and empty lists are refused.
    api.post("/v1/tokens", Some(&alice.access), json!({"name": "x", "scopes": ["everything"]}))
        .await
        .assert_error(400, "invalid_request");
    api.post("/v1/tokens", Some(&alice.access), json!({"name": "x", "scopes": []}))
        .await
        .assert_error(400, "invalid_request");
    api.post("/v1/tokens", Some(&alice.access), json!({"name": "x", "expires_in_days": 0}))
        .await
        .assert_error(400, "invalid_request");

    // Bound to acme: acts there, not in `other`.
    let bound = api
        .post("/v1/tokens", Some(&alice.access), json!({"name": "bound", "scopes": ["orgs:read"], "org": "acme"}))
        .await
        .ok(201);
    let bound_token = bound["token"].as_str().unwrap();
    assert_eq!(api.get("/v1/orgs/acme", Some(bound_token)).await.ok(200)["role"], "owner");
    api.get("/v1/orgs/other", Some(bound_token)).await.assert_error(403, "not_a_member");
    let listed = api.get("/v1/orgs", Some(bound_token)).await.ok(200);
    assert_eq!(listed.as_array().unwrap().len(), 1);

    // A PAT never acts beyond its user's rights: bob's PAT with orgs:write cannot change
    // alice's org.
    let bob = api.user("bob").await;
    let (_, bob_pat) = api.pat(&bob, &["orgs:read", "orgs:write"]).await;
    api.send(reqwest::Method::PATCH, "/v1/orgs/acme", Some(&bob_pat), Some(json!({"name": "mine"})))
        .await
        .assert_error(403, "not_a_member");
    // Binding to an org one is not in is refused.
    api.post("/v1/tokens", Some(&bob.access), json!({"name": "x", "org": "acme"}))
        .await
        .assert_error(403, "not_a_member");
}

async fn pat_expiry(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let alice = api.user("alice").await;
    let created =
        api.post("/v1/tokens", Some(&alice.access), json!({"name": "short", "expires_in_days": 1})).await.ok(201);
    let token = created["token"].as_str().unwrap();
    api.get("/v1/me", Some(token)).await.ok(200);

    // Let a day pass for this token: move its expiry into the past.
    let raw = db.raw().await;
    sqlx::query("update pats set expires_at = expires_at - 86401").execute(&raw).await.unwrap();
    raw.close().await;
    assert!(api.get("/v1/me", Some(token)).await.assert_error(401, "invalid_token").contains("expired"));
}
