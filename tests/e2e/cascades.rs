//! Cascades of a connector's end: deleting it, or moving it to another provider, ends the
//! connections made under it (revoked at the provider, as an app's deletion does), so the
//! token endpoint stops serving them.

use latchkey_e2e::{backend_tests, consent, json, Api, Backend, Cloud, SandboxOrg, TestDb};

backend_tests!(
    a_deleted_connector_stops_serving_tokens,
    a_connector_moved_to_another_provider_stops_serving_old_grants
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
    api.put(
        "/v1/orgs/acme/apps/github",
        Some(&org.admin.access),
        json!({"client_id": "gh-client", "client_secret": "gh-secret"}),
    )
    .await
    .ok(200);
    api.put("/v1/orgs/acme/connectors/sandbox", Some(&org.admin.access), json!({"provider": "github", "scopes": []}))
        .await
        .ok(200);

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
