//! The served OpenAPI document is generated from the code and matches the committed
//! `docs/openapi.json`, so an API change shows up in review. Regenerate it with
//! `UPDATE_OPENAPI=1 cargo test -p latchkey-e2e openapi`.

use latchkey_e2e::{Backend, Cloud, TestDb};

#[tokio::test]
async fn served_openapi_matches_the_committed_document() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start(&db).await;
    let served = cloud.api().get("/openapi.json", None).await.ok(200);
    assert_eq!(served["openapi"], "3.1.0");

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json");
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == pretty,
        "docs/openapi.json is out of date with the code; run `UPDATE_OPENAPI=1 cargo test -p latchkey-e2e openapi` and review the diff"
    );

    // Every path the contract names so far is in the document.
    let paths = served["paths"].as_object().unwrap();
    for p in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/logout",
        "/v1/me",
        "/v1/sessions",
        "/v1/sessions/{id}",
        "/v1/orgs",
        "/v1/orgs/{org}",
        "/v1/orgs/{org}/join",
        "/v1/orgs/{org}/members",
        "/v1/orgs/{org}/members/{user_id}",
        "/v1/tokens",
        "/v1/tokens/{id}",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "{p} missing from /openapi.json");
    }
    // And every documented path is really routed (not the 404 fallback).
    let api = cloud.api();
    for p in paths.keys() {
        let concrete = p.replace('{', "x").replace('}', "");
        let r = api.get(&concrete, None).await;
        assert!(!(r.status == 404 && r.text.contains("no such endpoint")), "{p} is documented but not routed");
    }
}
