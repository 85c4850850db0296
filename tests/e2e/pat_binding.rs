//! A PAT bound to one org sees nothing of its user's other orgs, in the listings that span
//! orgs as in the org routes.

use latchkey_e2e::{backend_tests, consent, json, publish_sandbox, Api, Backend, Cloud, SandboxOrg, TestDb, User};

backend_tests!(an_org_bound_pat_sees_nothing_of_other_orgs);

/// A second public org `beta`, with its own sandbox app and connector, where `member`
/// connects too.
async fn second_org(api: &Api, admin: &User, member: &User) {
    api.org(admin, "beta", "public").await;
    api.send(reqwest::Method::POST, "/v1/orgs/beta/join", Some(&member.access), None).await.ok(200);
    publish_sandbox(api, api, &api.base, admin, "beta").await;
    let (_, page) = consent(api, member, "beta", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
}

async fn an_org_bound_pat_sees_nothing_of_other_orgs(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::with_member_connected(&api).await;
    second_org(&api, &org.admin, &org.member).await;
    let acme_id = api.get("/v1/orgs/acme", Some(&org.member.access)).await.ok(200)["id"].as_str().unwrap().to_owned();

    // The member's login sees both orgs; the listings below are not empty by accident.
    let all = api.get("/v1/connections", Some(&org.member.access)).await.ok(200);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let all_audit = api.get("/v1/me/audit", Some(&org.member.access)).await.ok(200);
    assert!(all_audit.as_array().unwrap().iter().any(|e| e["org_id"].is_string() && e["org_id"] != acme_id.as_str()));

    let bound = api
        .post(
            "/v1/tokens",
            Some(&org.member.access),
            json!({"name": "acme only", "scopes": ["orgs:read", "connections:read", "audit:read"], "org": "acme"}),
        )
        .await
        .ok(201);
    let bound = bound["token"].as_str().unwrap();

    let connections = api.get("/v1/connections", Some(bound)).await.ok(200);
    let orgs: Vec<&str> = connections.as_array().unwrap().iter().map(|c| c["org"].as_str().unwrap()).collect();
    assert_eq!(orgs, ["acme"], "{connections}");

    let audit = api.get("/v1/me/audit", Some(bound)).await.ok(200);
    let events = audit.as_array().unwrap();
    assert!(!events.is_empty(), "the member's acme events are listed");
    assert!(events.iter().all(|e| e["org_id"] == acme_id.as_str()), "{audit}");

    for path in ["/v1/orgs", "/v1/orgs?public=true"] {
        let listed = api.get(path, Some(bound)).await.ok(200);
        let slugs: Vec<&str> = listed.as_array().unwrap().iter().map(|o| o["slug"].as_str().unwrap()).collect();
        assert_eq!(slugs, ["acme"], "{path}: {listed}");
    }
}
