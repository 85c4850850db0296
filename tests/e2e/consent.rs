//! Consent end to end against the sandbox provider over real HTTP: connect, the refusals
//! that must store nothing, disconnect with revocation, and the cascades.

use latchkey_e2e::{backend_tests, consent, json, Backend, Browser, Cloud, SandboxOrg, TestDb};

backend_tests!(
    connect_stores_an_encrypted_grant_owned_by_the_member,
    refused_callbacks_store_nothing,
    disconnect_and_cascades
);

async fn sandbox_cloud(db: &TestDb) -> Cloud {
    Cloud::start_with(db, |c| c.sandbox = true).await
}

async fn connection_count(db: &TestDb) -> i64 {
    let raw = db.raw().await;
    let n: i64 = sqlx::query_scalar("select count(*) from connections").fetch_one(&raw).await.unwrap();
    raw.close().await;
    n
}

async fn connect_stores_an_encrypted_grant_owned_by_the_member(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = sandbox_cloud(&db).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;

    // Not connected yet.
    api.get("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.assert_error(404, "not_found");

    // The API start gives the provider URL with state, PKCE S256 and the fixed redirect URI.
    let started = api
        .send(reqwest::Method::POST, "/v1/orgs/acme/connectors/sandbox/authorize", Some(&org.member.access), None)
        .await
        .ok(200);
    let authorize = url::Url::parse(started["authorize_url"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert!(authorize.as_str().starts_with(&format!("{}/sandbox/authorize", api.base)));
    assert_eq!(q["redirect_uri"], format!("{}/oauth/callback", api.base));
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], org.client_id);
    assert!(q["state"].len() >= 43);
    assert!(!authorize.as_str().contains(&org.client_secret));

    // Browser: sign in, /connect → provider → callback.
    let (browser, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("BroadcastChannel(\"latchkey-oauth\")"));
    assert!(page.text.contains("\"result\":\"success\""));
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'nonce-") && !csp.contains("unsafe-inline'; connect"), "{csp}");

    // Active, owned by the member, with the provider account read from userinfo.
    let conn = api.get("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.ok(200);
    assert_eq!(conn["status"], "active");
    assert_eq!(conn["account_name"], "sandbox-user");
    assert!(conn["expires_at"].is_string());
    assert!(conn.get("access_token").is_none() && conn.get("refresh_token").is_none());
    // The admin has no connection of their own; the member's is not theirs to see.
    api.get("/v1/orgs/acme/connections/sandbox", Some(&org.admin.access)).await.assert_error(404, "not_found");
    assert_eq!(api.get("/v1/connections", Some(&org.admin.access)).await.ok(200), json!([]));
    assert_eq!(api.get("/v1/connections", Some(&org.member.access)).await.ok(200).as_array().unwrap().len(), 1);

    // In the database: owned by the member, consent-only, tokens sealed under key 1.
    let raw = db.raw().await;
    let (user_id, consent_only, access_ct, refresh_ct): (String, i64, Vec<u8>, Option<Vec<u8>>) =
        sqlx::query_as("select user_id, consent_only, access_token_ct, refresh_token_ct from connections")
            .fetch_one(&raw)
            .await
            .unwrap();
    assert_eq!(user_id, org.member.id);
    assert_eq!(consent_only, 1);
    for ct in [Some(access_ct), refresh_ct] {
        let ct = ct.expect("a refresh token is stored");
        assert_eq!(&ct[..4], &[0, 0, 0, 1], "sealed under key version 1");
        assert!(!String::from_utf8_lossy(&ct).contains("sbx_"), "a token in plain text");
    }
    raw.close().await;
    let verify = latchkey_e2e::cloud_command(&db, &[]).args(["keys", "verify"]).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));

    // Reconnecting replaces the tokens of the same connection.
    let (_, again) = browser.connect(&api.base, "acme", "sandbox").await;
    assert_eq!(again.status, 200, "{}", again.text);
    let conn2 = api.get("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.ok(200);
    assert_eq!(conn2["id"], conn["id"]);
    assert_eq!(connection_count(&db).await, 1);
}

async fn refused_callbacks_store_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = sandbox_cloud(&db).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    SandboxOrg::faults(&api, json!({"auto_approve": true})).await;
    let browser = Browser::new();
    assert!(browser.login(&api.base, &org.member).await.status.is_redirection());

    // Walks to the provider's redirect back to us, without following it.
    let to_callback = |browser: Browser| {
        let base = api.base.clone();
        async move {
            let (hops, last) = browser.connect(&base, "acme", "sandbox").await;
            assert!(last.status.is_success() || last.status.is_client_error());
            hops.into_iter().find(|h| h.contains("/oauth/callback")).expect("the provider redirected to the callback")
        }
    };

    // A replayed state: the first use connects, the second is refused.
    let cb = to_callback(browser.clone()).await;
    // (the follow above already used it once)
    let replay = browser.get(&cb).await;
    assert_eq!(replay.status, 400);
    assert!(replay.text.contains("already used"), "{}", replay.text);
    assert!(replay.text.contains("\"result\":\"error\""));
    api.delete("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.ok(204);
    assert_eq!(connection_count(&db).await, 0);

    // For the remaining cases, stop at the provider's redirect and tamper before landing.
    let provider_redirect = |browser: Browser| {
        let base = api.base.clone();
        async move {
            let start = browser.start_consent(&base, "acme", "sandbox").await;
            let authorize = start.header("location").unwrap().to_owned();
            let back = browser.get(&authorize).await;
            assert!(back.status.is_redirection(), "{}", back.text);
            back.header("location").unwrap().to_owned()
        }
    };

    // A forged state.
    let cb = provider_redirect(browser.clone()).await;
    let mut forged = url::Url::parse(&cb).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .into_owned()
        .map(|(k, v)| if k == "state" { (k, "forged".repeat(8)) } else { (k, v) })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let r = browser.get(forged.as_str()).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("not valid"), "{}", r.text);

    // A state from another session: another login of the same member.
    let other = Browser::new();
    assert!(other.login(&api.base, &org.member).await.status.is_redirection());
    let r = other.get(&cb).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("another browser session"), "{}", r.text);
    // …and another member's browser.
    let stranger = api.user("stranger").await;
    let stranger_browser = Browser::new();
    stranger_browser.login(&api.base, &stranger).await;
    assert_eq!(stranger_browser.get(&cb).await.status, 400);

    // The mix-up defence: an `iss` naming another issuer.
    let mut mixed = url::Url::parse(&cb).unwrap();
    let pairs: Vec<(String, String)> = mixed
        .query_pairs()
        .into_owned()
        .map(|(k, v)| if k == "iss" { (k, "https://evil.example".into()) } else { (k, v) })
        .collect();
    mixed.query_pairs_mut().clear().extend_pairs(pairs);
    let r = browser.get(mixed.as_str()).await;
    assert!(r.text.contains("issuer mismatch"), "{}", r.text);
    assert_eq!(connection_count(&db).await, 0);

    // An expired state.
    let cb = provider_redirect(browser.clone()).await;
    let raw = db.raw().await;
    sqlx::query("update consent_states set expires_at = 0 where consumed_at is null").execute(&raw).await.unwrap();
    let r = browser.get(&cb).await;
    assert!(r.text.contains("expired"), "{}", r.text);

    // PKCE at the provider: the code of a real authorization with a missing or wrong
    // verifier is refused by the sandbox.
    let cb = provider_redirect(browser.clone()).await;
    let code: String = url::Url::parse(&cb).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let token_url = format!("{}/sandbox/token", api.base);
    let redirect_uri = format!("{}/oauth/callback", api.base);
    for verifier in [None, Some("wrong-verifier-wrong-verifier-wrong-verifier-00")] {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v));
        }
        let r = latchkey_e2e::Api::read(
            api.client.post(&token_url).basic_auth(&org.client_id, Some(&org.client_secret)).form(&form),
        )
        .await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.json()["error"], "invalid_grant");
    }
    // The cloud, landing with that code afterwards, connects nothing either.
    let r = browser.get(&cb).await;
    assert_eq!(r.status, 400, "{}", r.text);

    // access_denied at the provider.
    SandboxOrg::faults(&api, json!({"auto_approve": false})).await;
    let start = browser.start_consent(&api.base, "acme", "sandbox").await;
    let authorize = url::Url::parse(start.header("location").unwrap()).unwrap();
    let mut form: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    form.push(("decision".into(), "deny".into()));
    let denied =
        latchkey_e2e::Api::read(browser.client.post(format!("{}/sandbox/authorize", api.base)).form(&form)).await;
    let back = denied.header("location").unwrap().to_owned();
    assert!(back.contains("error=access_denied"));
    let r = browser.get(&back).await;
    assert!(r.text.contains("declined"), "{}", r.text);

    // A callback for an org the member has left meanwhile.
    SandboxOrg::faults(&api, json!({"auto_approve": true})).await;
    let cb = provider_redirect(browser.clone()).await;
    api.delete(&format!("/v1/orgs/acme/members/{}", org.member.id), Some(&org.member.access)).await.ok(204);
    let r = browser.get(&cb).await;
    assert!(r.text.contains("no longer a member"), "{}", r.text);

    assert_eq!(connection_count(&db).await, 0);
    raw.close().await;
}

async fn disconnect_and_cascades(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = sandbox_cloud(&db).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let revocations = |stats: &serde_json::Value| stats["revocations"].as_u64().unwrap();

    // Disconnect revokes at the sandbox, then the connection is gone.
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let before = revocations(&SandboxOrg::stats(&api).await);
    let (_, del_pat) = api.pat(&org.member, &["connections:read"]).await;
    api.delete("/v1/orgs/acme/connections/sandbox", Some(&del_pat)).await.assert_error(403, "insufficient_scope");
    api.delete("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.ok(204);
    assert_eq!(revocations(&SandboxOrg::stats(&api).await), before + 1);
    api.get("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.assert_error(404, "not_found");
    assert!(SandboxOrg::stats(&api).await["grants"].as_array().unwrap().iter().all(|g| g["revoked"] == true));

    // Removing a member disconnects them.
    consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(connection_count(&db).await, 1);
    api.delete(&format!("/v1/orgs/acme/members/{}", org.member.id), Some(&org.admin.access)).await.ok(204);
    assert_eq!(connection_count(&db).await, 0);
    assert_eq!(revocations(&SandboxOrg::stats(&api).await), before + 2);

    // Deleting the managed app disconnects everyone who used it.
    api.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&org.member.access), None).await.ok(200);
    consent(&api, &org.member, "acme", "sandbox").await;
    consent(&api, &org.admin, "acme", "sandbox").await;
    assert_eq!(connection_count(&db).await, 2);
    api.delete("/v1/orgs/acme/apps/sandbox", Some(&org.admin.access)).await.ok(204);
    assert_eq!(connection_count(&db).await, 0);
    assert_eq!(revocations(&SandboxOrg::stats(&api).await), before + 4);

    // A revocation that fails still disconnects locally, and the failure is recorded.
    api.put(
        "/v1/orgs/acme/apps/sandbox",
        Some(&org.admin.access),
        json!({"client_id": org.client_id, "client_secret": org.client_secret}),
    )
    .await
    .ok(200);
    consent(&api, &org.member, "acme", "sandbox").await;
    // The provider stops recognising the app (a rotated secret, say): revocation fails.
    api.put(
        "/v1/orgs/acme/apps/sandbox",
        Some(&org.admin.access),
        json!({"client_id": org.client_id, "client_secret": "not-the-secret"}),
    )
    .await
    .ok(200);
    api.delete("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.ok(204);
    assert_eq!(connection_count(&db).await, 0);
    let raw = db.raw().await;
    let outcome: String = sqlx::query_scalar("select outcome from audit_events where action = 'connection.disconnect' order by created_at desc, id desc limit 1")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(outcome, "revocation_failed");
    raw.close().await;
}
