//! Cascades of a connector's end: deleting it, or moving it to another provider, ends the
//! connections made under it (revoked at the provider, as an app's deletion does), so the
//! token endpoint stops serving them.

use latchkey_e2e::{backend_tests, consent, json, Api, Backend, Browser, Cloud, SandboxOrg, TestDb, User};

backend_tests!(
    a_deleted_connector_stops_serving_tokens,
    a_connector_moved_to_another_provider_stops_serving_old_grants,
    a_consent_finished_after_its_connector_moved_serves_no_token,
    a_grant_left_under_a_moved_connector_is_not_served
);

fn ask() -> serde_json::Value {
    json!({"org": "acme", "connector_key": "sandbox"})
}

async fn revocations(api: &Api) -> u64 {
    SandboxOrg::stats(api).await["revocations"].as_u64().unwrap()
}

/// A member connected and fetching tokens with a PAT; returns the org and the PAT.
async fn connected(api: &Api) -> (SandboxOrg, String) {
    let org = SandboxOrg::with_member_connected(api).await;
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    api.post("/oauth/connection-token", Some(&pat), ask()).await.ok(200);
    (org, pat)
}

/// The admin gives the org a GitHub app and points the `sandbox` connector at it.
async fn move_to_github(api: &Api, admin: &User) {
    let github_app = json!({"client_id": "gh-client", "client_secret": "gh-secret"});
    api.put("/v1/orgs/acme/apps/github", Some(&admin.access), github_app).await.ok(200);
    let moved = json!({"provider": "github", "scopes": []});
    api.put("/v1/orgs/acme/connectors/sandbox", Some(&admin.access), moved).await.ok(200);
}

async fn connections_in_db(db: &TestDb) -> i64 {
    db.count("select count(*) from connections").await
}

async fn a_deleted_connector_stops_serving_tokens(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let (org, pat) = connected(&api).await;
    let before = revocations(&api).await;

    api.delete("/v1/orgs/acme/connectors/sandbox", Some(&org.admin.access)).await.ok(204);

    api.post("/oauth/connection-token", Some(&pat), ask()).await.assert_error(404, "not_found");
    assert_eq!(connections_in_db(&db).await, 0, "nothing left for the background refresher");
    assert_eq!(revocations(&api).await, before + 1, "the grant is revoked at the provider");
    assert!(SandboxOrg::stats(&api).await["grants"].as_array().unwrap().iter().all(|g| g["revoked"] == true));
}

async fn a_connector_moved_to_another_provider_stops_serving_old_grants(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let (org, pat) = connected(&api).await;
    let before = revocations(&api).await;

    // Same scopes and key, another provider: the old grant is for none of the org's connectors.
    move_to_github(&api, &org.admin).await;

    api.post("/oauth/connection-token", Some(&pat), ask()).await.assert_error(404, "not_found");
    assert_eq!(connections_in_db(&db).await, 0);
    assert_eq!(revocations(&api).await, before + 1, "revoked with the sandbox app, which still exists");

    // Changing only the scopes keeps connections made with the same provider.
    api.put("/v1/orgs/acme/connectors/sandbox", Some(&org.admin.access), json!({"provider": "sandbox", "scopes": []}))
        .await
        .ok(200);
    consent(&api, &org.member, "acme", "sandbox").await;
    api.put(
        "/v1/orgs/acme/connectors/sandbox",
        Some(&org.admin.access),
        json!({"provider": "sandbox", "scopes": ["profile"]}),
    )
    .await
    .ok(200);
    api.post("/oauth/connection-token", Some(&pat), ask()).await.ok(200);
}

/// The consent was started on the old provider and comes back after the connector moved:
/// its grant is for no connector of the org.
async fn a_consent_finished_after_its_connector_moved_serves_no_token(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    let browser = Browser::new();
    assert!(browser.login(&api.base, &org.member).await.status.is_redirection());
    SandboxOrg::faults(&api, json!({"auto_approve": true})).await;
    let start = browser.start_consent(&api.base, "acme", "sandbox").await;
    let back = browser.get(start.header("location").unwrap()).await;
    let callback = back.header("location").unwrap().to_owned();

    move_to_github(&api, &org.admin).await;
    browser.follow(&callback).await;

    api.post("/oauth/connection-token", Some(&pat), ask()).await.assert_error(404, "not_found");
    assert_eq!(connections_in_db(&db).await, 0, "nothing stored for the moved connector");
}

/// Whatever leaves a grant under a connector that no longer has its provider (a consent
/// storing its grant just after the move's cascade ran), the token endpoint serves it to
/// no one.
async fn a_grant_left_under_a_moved_connector_is_not_served(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let (_, pat) = connected(&api).await;
    // The move as the race leaves it: the connector changed, its connection stayed.
    let raw = db.raw().await;
    sqlx::query("update connectors set provider = 'github'").execute(&raw).await.unwrap();
    raw.close().await;
    api.post("/oauth/connection-token", Some(&pat), ask()).await.assert_error(404, "not_found");
}
