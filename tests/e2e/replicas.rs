//! Several real `latchkey-cloud` processes on one PostgreSQL: a PAT revoked through one
//! is refused by the other on the next request; sessions too. Also: SIGTERM shuts down
//! cleanly.

use latchkey_e2e::{json, skip_postgres, Backend, CloudProcess, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_every_replica() {
    if skip_postgres() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    // Replicas behind one load balancer share the public URL (the JWT issuer).
    let shared = [("LATCHKEY_PUBLIC_URL", "http://latchkey.localhost")];
    let a = CloudProcess::spawn(&db, &shared).await;
    let b = CloudProcess::spawn(&db, &shared).await;
    let (api_a, api_b) = (a.api(), b.api());

    // Story across replicas: register on A, log in on B, refresh on A.
    let alice = api_a.user("alice").await;
    api_b.get("/v1/me", Some(&alice.access)).await.ok(200);
    let refreshed = api_b.post("/v1/auth/refresh", None, json!({"refresh_token": alice.refresh})).await.ok(200);
    // Replaying on the other replica is detected: the family is revoked everywhere.
    api_a
        .post("/v1/auth/refresh", None, json!({"refresh_token": alice.refresh}))
        .await
        .assert_error(400, "invalid_grant");
    api_b.get("/v1/me", Some(refreshed["access_token"].as_str().unwrap())).await.assert_error(401, "invalid_token");

    let alice = api_b.user("alice2").await;
    api_a.org(&alice, "acme", "public").await;
    let bob = api_b.user("bob").await;
    api_a.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&bob.access), None).await.ok(200);
    assert_eq!(api_b.get("/v1/orgs/acme/members", Some(&alice.access)).await.ok(200).as_array().unwrap().len(), 2);

    let (id, token) = api_a.pat(&bob, &["connections:token", "orgs:read"]).await;
    api_a.get("/v1/orgs/acme", Some(&token)).await.ok(200);
    api_b.get("/v1/orgs/acme", Some(&token)).await.ok(200);
    api_a.delete(&format!("/v1/tokens/{id}"), Some(&bob.access)).await.ok(204);
    api_b.get("/v1/orgs/acme", Some(&token)).await.assert_error(401, "invalid_token");
    api_a.get("/v1/orgs/acme", Some(&token)).await.assert_error(401, "invalid_token");

    // Graceful shutdown on SIGTERM.
    assert_eq!(a.terminate(), Some(0));
    assert_eq!(b.terminate(), Some(0));
}
