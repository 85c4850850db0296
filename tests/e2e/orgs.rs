//! Orgs: create, visibility, join, members, roles, leave.

use latchkey_e2e::{backend_tests, json, Backend, Cloud, TestDb};

backend_tests!(public_and_private_orgs, roles_and_leaving);

async fn public_and_private_orgs(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;

    let org = api.org(&alice, "acme", "public").await;
    assert_eq!(org["role"], "owner");
    assert_eq!(org["visibility"], "public");
    let org_id = org["id"].as_str().unwrap().to_owned();
    api.post("/v1/orgs", Some(&bob.access), json!({"slug": "acme", "name": "Other", "visibility": "public"}))
        .await
        .assert_error(409, "slug_taken");
    api.post("/v1/orgs", Some(&bob.access), json!({"slug": "Not A Slug", "name": "x", "visibility": "public"}))
        .await
        .assert_error(400, "invalid_request");
    api.post("/v1/orgs", Some(&bob.access), json!({"slug": "ok-slug", "name": "x", "visibility": "secret"}))
        .await
        .assert_error(400, "invalid_request");

    // A public org is visible to non-members, by slug or id, with no role.
    let seen = api.get("/v1/orgs/acme", Some(&bob.access)).await.ok(200);
    assert_eq!(seen["role"], serde_json::Value::Null);
    assert_eq!(api.get(&format!("/v1/orgs/{org_id}"), Some(&bob.access)).await.ok(200)["slug"], "acme");
    // Non-members cannot list members; members (not admins) neither.
    api.get("/v1/orgs/acme/members", Some(&bob.access)).await.assert_error(403, "not_a_member");
    let joined = api.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&bob.access), None).await.ok(200);
    assert_eq!(joined["role"], "member");
    // Joining twice changes nothing.
    api.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&bob.access), None).await.ok(200);
    api.get("/v1/orgs/acme/members", Some(&bob.access)).await.assert_error(403, "forbidden");

    // The admin lists the members.
    let members = api.get("/v1/orgs/acme/members", Some(&alice.access)).await.ok(200);
    let members = members.as_array().unwrap();
    assert_eq!(members.len(), 2);
    let roles: Vec<_> =
        members.iter().map(|m| (m["username"].as_str().unwrap(), m["role"].as_str().unwrap())).collect();
    assert!(roles.contains(&("alice", "owner")) && roles.contains(&("bob", "member")));

    // Only owners and admins change an org.
    api.send(reqwest::Method::PATCH, "/v1/orgs/acme", Some(&bob.access), Some(json!({"name": "Hijacked"})))
        .await
        .assert_error(403, "forbidden");
    let renamed = api
        .send(reqwest::Method::PATCH, "/v1/orgs/acme", Some(&alice.access), Some(json!({"name": "Acme Inc"})))
        .await
        .ok(200);
    assert_eq!(renamed["name"], "Acme Inc");

    // A private org does not exist for non-members.
    api.org(&alice, "secret-lab", "private").await;
    api.get("/v1/orgs/secret-lab", Some(&bob.access)).await.assert_error(404, "not_found");
    api.send(reqwest::Method::POST, "/v1/orgs/secret-lab/join", Some(&bob.access), None)
        .await
        .assert_error(404, "not_found");
    api.get("/v1/orgs/secret-lab/members", Some(&bob.access)).await.assert_error(404, "not_found");
    api.get("/v1/orgs/nope", Some(&bob.access)).await.assert_error(404, "not_found");

    // Listings: bob's orgs; with ?public=true every public org.
    let mine = api.get("/v1/orgs", Some(&bob.access)).await.ok(200);
    assert_eq!(mine.as_array().unwrap().len(), 1);
    let public = api.get("/v1/orgs?public=true", Some(&bob.access)).await.ok(200);
    let slugs: Vec<_> = public.as_array().unwrap().iter().map(|o| o["slug"].as_str().unwrap().to_owned()).collect();
    assert_eq!(slugs, vec!["acme"]);
    api.get("/v1/orgs?public=maybe", Some(&bob.access)).await.assert_error(400, "invalid_request");
}

async fn roles_and_leaving(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let carol = api.user("carol").await;
    api.org(&alice, "acme", "public").await;
    for u in [&bob, &carol] {
        api.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&u.access), None).await.ok(200);
    }

    // Only owners change roles.
    api.put(&format!("/v1/orgs/acme/members/{}", carol.id), Some(&bob.access), json!({"role": "admin"}))
        .await
        .assert_error(403, "forbidden");
    let promoted = api
        .put(&format!("/v1/orgs/acme/members/{}", bob.id), Some(&alice.access), json!({"role": "admin"}))
        .await
        .ok(200);
    assert_eq!(promoted["role"], "admin");

    // An admin lists members and removes a member, but not the owner.
    assert_eq!(api.get("/v1/orgs/acme/members", Some(&bob.access)).await.ok(200).as_array().unwrap().len(), 3);
    api.delete(&format!("/v1/orgs/acme/members/{}", alice.id), Some(&bob.access)).await.assert_error(403, "forbidden");
    api.delete(&format!("/v1/orgs/acme/members/{}", carol.id), Some(&bob.access)).await.ok(204);
    api.delete(&format!("/v1/orgs/acme/members/{}", carol.id), Some(&bob.access)).await.assert_error(404, "not_found");
    assert_eq!(api.get("/v1/orgs/acme", Some(&carol.access)).await.ok(200)["role"], serde_json::Value::Null);

    // The last owner cannot leave; a member can.
    api.delete(&format!("/v1/orgs/acme/members/{}", alice.id), Some(&alice.access)).await.assert_error(409, "conflict");
    api.delete(&format!("/v1/orgs/acme/members/{}", bob.id), Some(&bob.access)).await.ok(204);
    assert_eq!(api.get("/v1/orgs", Some(&bob.access)).await.ok(200).as_array().unwrap().len(), 0);
}
