//! Bad input gets a 4xx in the contract's shape and changes nothing.

use latchkey_e2e::{backend_tests, json, Api, Backend, Cloud, TestDb};

backend_tests!(bad_input_is_refused_cleanly);

async fn bad_input_is_refused_cleanly(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let alice = api.user("alice").await;
    let url = |p: &str| format!("{}{}", api.base, p);

    // Malformed JSON.
    let r = Api::read(
        api.client
            .post(url("/v1/orgs"))
            .bearer_auth(&alice.access)
            .header("content-type", "application/json")
            .body("{\"slug\": "),
    )
    .await;
    assert!(r.assert_error(400, "invalid_request").contains("JSON"));
    // Unknown field.
    let r = api
        .post(
            "/v1/orgs",
            Some(&alice.access),
            json!({"slug": "a1", "name": "a", "visibility": "public", "admin": true}),
        )
        .await;
    assert!(r.assert_error(400, "invalid_request").contains("unknown field `admin`"));
    // Wrong type.
    let r = api.post("/v1/orgs", Some(&alice.access), json!({"slug": 7, "name": "a", "visibility": "public"})).await;
    assert!(r.assert_error(400, "invalid_request").contains("slug"));
    // Missing field.
    let r = api.post("/v1/orgs", Some(&alice.access), json!({"slug": "a1", "visibility": "public"})).await;
    assert!(r.assert_error(400, "invalid_request").contains("name"));
    // Not JSON at all.
    let r = Api::read(
        api.client
            .post(url("/v1/orgs"))
            .bearer_auth(&alice.access)
            .header("content-type", "text/plain")
            .body("slug=a1"),
    )
    .await;
    r.assert_error(415, "unsupported_media_type");
    // Oversized body: 413, with and without a Content-Length.
    let big = format!("{{\"slug\": \"a1\", \"name\": \"{}\", \"visibility\": \"public\"}}", "x".repeat(70 * 1024));
    let r = Api::read(
        api.client
            .post(url("/v1/orgs"))
            .bearer_auth(&alice.access)
            .header("content-type", "application/json")
            .body(big.clone()),
    )
    .await;
    r.assert_error(413, "payload_too_large");
    // Chunked, with no Content-Length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big.as_bytes().chunks(8192).map(|c| Ok(c.to_vec())).collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = Api::read(
        api.client
            .post(url("/v1/orgs"))
            .bearer_auth(&alice.access)
            .header("content-type", "application/json")
            .body(stream),
    )
    .await;
    r.assert_error(413, "payload_too_large");
    // Unknown route and wrong method.
    api.get("/v1/nothing-here", None).await.assert_error(404, "not_found");
    api.send(reqwest::Method::PUT, "/v1/me", Some(&alice.access), None).await.assert_error(405, "method_not_allowed");
    // Odd bytes in a path parameter.
    api.get("/v1/orgs/%FF%FE", Some(&alice.access)).await.assert_error(400, "invalid_request");
    // A huge string in a field is a clean 400, not a 500.
    let r = api
        .post("/v1/orgs", Some(&alice.access), json!({"slug": "a1", "name": "n".repeat(5000), "visibility": "public"}))
        .await;
    r.assert_error(400, "invalid_request");
    // Control characters.
    let r = api
        .post(
            "/v1/auth/register",
            None,
            json!({"email": "x\u{0}@example.test", "username": "nul", "password": "a long unguessable phrase here"}),
        )
        .await;
    r.assert_error(400, "invalid_request");

    // None of that created anything.
    assert_eq!(api.get("/v1/orgs", Some(&alice.access)).await.ok(200), json!([]));
}
