//! OpenID Connect in the consent flow, against the sandbox acting as an OpenID provider
//! over real HTTP: with `openid`, the callback verifies the ID token (signature by the
//! provider's JWKS, `iss`, `aud`, `exp`, `nonce`) and RFC 9207's `iss` on the redirect;
//! each spoiled answer is refused on the callback page, audited, and stores nothing.

use latchkey_e2e::{backend_tests, consent, json, Api, Backend, CloudProcess, Reply, SandboxOrg, TestDb};

backend_tests!(
    an_openid_consent_verifies_the_id_token_and_connects,
    a_spoiled_id_token_connects_nothing,
    the_redirect_must_name_the_issuer_when_the_provider_says_it_does,
    a_missing_iss_is_accepted_when_the_provider_does_not_advertise_it
);

const CONNECTIONS: &str = "select count(*) from connections";
const FAILED_CONNECTS: &str =
    "select count(*) from audit_events where action = 'connection.connect' and outcome = 'failure'";

/// A sandbox cloud process (logging at debug level, to search) with the `acme` org.
async fn setup(db: &TestDb) -> (CloudProcess, Api, SandboxOrg) {
    let cloud = CloudProcess::spawn(db, &[("LATCHKEY_SANDBOX", "1"), ("RUST_LOG", "debug")]).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    // The app may ask for `openid` too (connectors stay within their app's scopes)…
    api.put(
        "/v1/orgs/acme/apps/sandbox",
        Some(&org.admin.access),
        json!({"scopes": ["openid", "profile", "items:read"]}),
    )
    .await
    .ok(200);
    // …and a second connector of the same managed app asks for it.
    api.put(
        "/v1/orgs/acme/connectors/sandbox-oidc",
        Some(&org.admin.access),
        json!({"provider": "sandbox", "scopes": ["openid", "profile", "items:read"], "description": "Sandbox with OpenID"}),
    )
    .await
    .ok(200);
    (cloud, api, org)
}

/// A consent of the member to `key` through the pages, the sandbox approving at once.
async fn connect(api: &Api, org: &SandboxOrg, key: &str) -> Reply {
    consent(api, &org.member, "acme", key).await.1
}

/// The callback page refused the consent with `reason`, showing no token or secret.
fn assert_refused(page: &Reply, reason: &str, org: &SandboxOrg) {
    assert_eq!(page.status, 400, "{}", page.text);
    assert!(page.text.contains("\"result\":\"error\""), "{}", page.text);
    let text = page.text.replace("&#x27;", "'").replace("&#39;", "'").replace("&quot;", "\"").replace("&amp;", "&");
    assert!(text.contains(reason), "expected {reason:?} in:\n{text}");
    assert!(text.contains("Nothing was connected") || text.contains("nothing was connected"), "{text}");
    for secret in ["eyJ", "sbx_", org.client_secret.as_str()] {
        assert!(!page.text.contains(secret), "{secret:?} on the callback page:\n{}", page.text);
    }
}

fn assert_connected(page: &Reply) {
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("\"result\":\"success\""), "{}", page.text);
}

async fn an_openid_consent_verifies_the_id_token_and_connects(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, org) = setup(&db).await;

    // The sandbox is an OpenID provider: discovery names its JWKS and RFC 9207 support.
    let discovery = api.get("/sandbox/.well-known/openid-configuration", None).await.ok(200);
    let issuer = format!("{}/sandbox", api.base);
    assert_eq!(discovery["issuer"], issuer.as_str());
    assert_eq!(discovery["jwks_uri"], format!("{issuer}/.well-known/jwks.json").as_str());
    assert_eq!(discovery["authorization_response_iss_parameter_supported"], true);
    let jwks = api.get("/sandbox/.well-known/jwks.json", None).await.ok(200);
    assert_eq!(jwks["keys"][0]["kty"], "EC");

    // The authorization request carries a nonce, stored with the state.
    let started = api
        .send(reqwest::Method::POST, "/v1/orgs/acme/connectors/sandbox-oidc/authorize", Some(&org.member.access), None)
        .await
        .ok(200);
    let authorize = url::Url::parse(started["authorize_url"].as_str().unwrap()).unwrap();
    let q: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert!(q["scope"].split(' ').any(|s| s == "openid"), "{authorize}");
    assert!(q["nonce"].len() >= 43, "{authorize}");
    assert_eq!(db.count("select count(*) from consent_states where nonce is not null").await, 1);

    // With `openid`: an ID token comes back, verifies, and the connection is stored.
    assert_connected(&connect(&api, &org, "sandbox-oidc").await);
    assert_eq!(db.count(CONNECTIONS).await, 1);
    let conn = api.get("/v1/orgs/acme/connections/sandbox-oidc", Some(&org.member.access)).await.ok(200);
    assert_eq!(conn["status"], "active");

    // The provider rotates its signing key: the cached JWKS lacks the new `kid`, so it is
    // fetched again (once) and the next consent still verifies.
    api.post("/sandbox/admin/rotate_key", None, json!({})).await.ok(200);
    assert_connected(&connect(&api, &org, "sandbox-oidc").await);
    assert_eq!(db.count(CONNECTIONS).await, 1);

    // Without `openid` nothing changes, whatever the ID tokens would look like: none is
    // issued, none is asked for.
    SandboxOrg::faults(&api, json!({"id_token_fault": "bad_signature"})).await;
    assert_connected(&connect(&api, &org, "sandbox").await);
    assert_eq!(db.count(CONNECTIONS).await, 2);
    assert_eq!(db.count(FAILED_CONNECTS).await, 0);
}

async fn a_spoiled_id_token_connects_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (cloud, api, org) = setup(&db).await;
    // A good consent first, so that the keys are cached and a forged signature under the
    // known `kid` is caught by the signature check itself.
    assert_connected(&connect(&api, &org, "sandbox-oidc").await);
    api.delete("/v1/orgs/acme/connections/sandbox-oidc", Some(&org.member.access)).await.ok(204);
    assert_eq!(db.count(CONNECTIONS).await, 0);

    let cases = [
        ("wrong_nonce", "its nonce is not the one this sign-in sent"),
        ("wrong_aud", "it was issued to another client (aud)"),
        ("wrong_iss", "it was issued by another issuer (iss)"),
        ("expired", "it has expired"),
        ("bad_signature", "its signature does not verify with the provider's key"),
    ];
    for (n, (fault, reason)) in cases.into_iter().enumerate() {
        SandboxOrg::faults(&api, json!({"id_token_fault": fault})).await;
        let page = connect(&api, &org, "sandbox-oidc").await;
        assert_refused(&page, &format!("The provider's ID token was refused: {reason}."), &org);
        assert_eq!(db.count(CONNECTIONS).await, 0, "{fault}: a connection was stored");
        assert_eq!(db.count(FAILED_CONNECTS).await, n as i64 + 1, "{fault}: no audit event");
    }
    // The tokens of a refused consent are revoked at the provider.
    let stats = SandboxOrg::stats(&api).await;
    let grants = stats["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1 + cases.len());
    assert!(grants[1..].iter().all(|g| g["revoked"] == true), "{stats}");

    // The audit events say why; neither they nor the logs hold a token or the secret.
    let reasons: Vec<String> = {
        let raw = db.raw().await;
        let rows: Vec<(String,)> = sqlx::query_as(
            "select detail from audit_events where action = 'connection.connect' and outcome = 'failure'",
        )
        .fetch_all(&raw)
        .await
        .unwrap();
        raw.close().await;
        rows.into_iter().map(|(d,)| d).collect()
    };
    for (fault, reason) in cases {
        assert!(reasons.iter().any(|d| d.contains(reason)), "{fault}: {reasons:?}");
    }
    let log = cloud.log_text();
    assert!(log.contains("ID token was refused"), "the refusals are logged");
    for (place, text) in [("audit", reasons.join("\n")), ("log", log)] {
        for secret in ["eyJ", "sbx_at_", "sbx_rt_", "sbx_code_", org.client_secret.as_str()] {
            assert!(!text.contains(secret), "{secret:?} in the {place}");
        }
    }

    // The sandbox behaving again: the same connector connects.
    SandboxOrg::faults(&api, json!({"id_token_fault": null})).await;
    assert_connected(&connect(&api, &org, "sandbox-oidc").await);
    assert_eq!(db.count(CONNECTIONS).await, 1);
}

async fn the_redirect_must_name_the_issuer_when_the_provider_says_it_does(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, org) = setup(&db).await;

    // The provider advertises `authorization_response_iss_parameter_supported`: an answer
    // without `iss` is refused, with or without `openid`.
    SandboxOrg::faults(&api, json!({"omit_redirect_iss": true})).await;
    for key in ["sandbox-oidc", "sandbox"] {
        let page = connect(&api, &org, key).await;
        assert_refused(&page, "does not name its issuer (iss), which this provider always does", &org);
        assert_eq!(db.count(CONNECTIONS).await, 0, "{key}");
    }

    // Mix-up: an `iss` naming another issuer is always refused.
    SandboxOrg::faults(&api, json!({"omit_redirect_iss": false, "redirect_iss": "https://evil.example"})).await;
    for key in ["sandbox-oidc", "sandbox"] {
        let page = connect(&api, &org, key).await;
        assert_refused(&page, "issuer mismatch", &org);
        assert_eq!(db.count(CONNECTIONS).await, 0, "{key}");
    }
    assert_eq!(db.count(FAILED_CONNECTS).await, 4);

    SandboxOrg::faults(&api, json!({"redirect_iss": null})).await;
    assert_connected(&connect(&api, &org, "sandbox-oidc").await);
    assert_eq!(db.count(CONNECTIONS).await, 1);
}

async fn a_missing_iss_is_accepted_when_the_provider_does_not_advertise_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, org) = setup(&db).await;
    // Before the cloud first reads (and caches) the provider's metadata.
    SandboxOrg::faults(&api, json!({"omit_redirect_iss": true, "advertise_redirect_iss": false})).await;
    let discovery = api.get("/sandbox/.well-known/openid-configuration", None).await.ok(200);
    assert_eq!(discovery["authorization_response_iss_parameter_supported"], false);

    // The ID token still names the issuer and is verified.
    assert_connected(&connect(&api, &org, "sandbox-oidc").await);
    assert_eq!(db.count(CONNECTIONS).await, 1);
    // …and a spoiled one is still refused.
    SandboxOrg::faults(&api, json!({"id_token_fault": "wrong_iss"})).await;
    let page = connect(&api, &org, "sandbox-oidc").await;
    assert_refused(&page, "it was issued by another issuer (iss)", &org);
    // An `iss` naming another issuer is refused even so.
    SandboxOrg::faults(
        &api,
        json!({"id_token_fault": null, "omit_redirect_iss": false, "redirect_iss": "https://evil.example"}),
    )
    .await;
    assert_refused(&connect(&api, &org, "sandbox").await, "issuer mismatch", &org);
    assert_eq!(db.count(CONNECTIONS).await, 1);
}
