//! The test hooks under `/sandbox/admin` (the injected faults) and the metadata document.

use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use serde_json::json;

use super::*;

#[tokio::test]
async fn faults() {
    let (_sb, app) = sandbox();
    let (verifier, challenge) = pkce();
    let code = consent(&app, &challenge, "nora").await;

    // Defaults, then a status fault that also hits the code exchange (without using the code).
    let defaults = get(&app, "/sandbox/admin/faults").await.json();
    assert_eq!(defaults, serde_json::to_value(Faults::default()).unwrap());
    assert_eq!(defaults["access_token_ttl_secs"], 3600);
    let set = put_faults(&app, json!({"token_status": 503})).await.json();
    assert_eq!(set["token_status"], 503);
    assert_eq!(set["rotate_refresh_tokens"], true, "missing fields keep their value");
    let reply = exchange(&app, &code, &verifier).await;
    assert_eq!(
        (reply.status, reply.oauth_error().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
    );
    put_faults(&app, json!({"token_status": 500})).await;
    let reply = exchange(&app, &code, &verifier).await;
    assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::INTERNAL_SERVER_ERROR, "server_error"));
    put_faults(&app, json!({"token_status": null})).await;
    let tokens = exchange(&app, &code, &verifier).await;
    assert_eq!(tokens.status, StatusCode::OK, "the code survived the faults");
    let rt = tokens.json()["refresh_token"].as_str().unwrap().to_owned();

    // 502 on a refresh, counted against the grant.
    put_faults(&app, json!({"token_status": 502})).await;
    assert_eq!(refresh(&app, &rt).await.status, StatusCode::BAD_GATEWAY);
    put_faults(&app, json!({"token_status": null, "token_429_retry_after": 7})).await;
    let reply = refresh(&app, &rt).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.header(header::RETRY_AFTER), Some("7"));
    put_faults(&app, json!({"token_429_retry_after": null, "refresh_invalid_grant": true})).await;
    let reply = refresh(&app, &rt).await;
    assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    put_faults(&app, json!({"refresh_invalid_grant": false, "refresh_invalid_grant_in_200": true})).await;
    let reply = refresh(&app, &rt).await;
    assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::OK, "invalid_grant"));
    assert!(reply.json().get("access_token").is_none());

    // Refresh-only faults leave code exchanges alone.
    put_faults(&app, json!({"refresh_invalid_grant": true, "token_429_retry_after": 3})).await;
    let (v2, c2) = pkce();
    let code2 = consent(&app, &c2, "nora").await;
    assert_eq!(exchange(&app, &code2, &v2).await.status, StatusCode::OK);

    // Reset clears them; the grant was never revoked by the injected faults.
    let reset = send(&app, Request::post("/sandbox/admin/reset").body(Body::empty()).unwrap()).await;
    assert_eq!(reset.json(), defaults);
    let reply = refresh(&app, &rt).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let grant = &stats(&app).await["grants"][0];
    assert_eq!(grant["token_requests"], json!({"authorization_code": 1, "refresh_token": 5}));
    assert_eq!(grant["failed_token_requests"], 4);
    assert_eq!(grant["revoked"], false);

    // Delay.
    put_faults(&app, json!({"token_delay_ms": 150})).await;
    let rt = reply.json()["refresh_token"].as_str().unwrap().to_owned();
    let started = Instant::now();
    assert_eq!(refresh(&app, &rt).await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
    put_faults(&app, json!({"token_delay_ms": 0})).await;

    // Auto-approve skips the page and uses login_hint.
    put_faults(&app, json!({"auto_approve": true})).await;
    let (v3, c3) = pkce();
    let (_, params) = get(&app, &authorize_uri(&c3, &[("login_hint", "otto")])).await.location();
    let tokens = exchange(&app, &params["code"], &v3).await.json();
    let me = get_bearer(&app, "/sandbox/userinfo", tokens["access_token"].as_str().unwrap()).await.json();
    assert_eq!(me["name"], "otto");
    let (_, params) = get(&app, &authorize_uri(&c3, &[])).await.location();
    assert!(params.contains_key("code"));
    assert_eq!(stats(&app).await["grants"].as_array().unwrap().len(), 3);

    // Invalid fault bodies are refused and change nothing.
    for bad in [
        json!({"token_status": 200}),
        json!({"token_status": 5000}),
        json!({"no_such_fault": true}),
        json!({"token_delay_ms": "slow"}),
        json!({"access_token_ttl_secs": u64::MAX}),
    ] {
        let reply = put_faults(&app, bad.clone()).await;
        assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::BAD_REQUEST, "invalid_request"), "{bad}");
    }
    let raw = send(
        &app,
        Request::builder().method(Method::PUT).uri("/sandbox/admin/faults").body(Body::from("{not json")).unwrap(),
    )
    .await;
    assert_eq!(raw.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, "/sandbox/admin/faults").await.json()["auto_approve"], true);
}

#[tokio::test]
async fn metadata_document() {
    let (_sb, app) = sandbox();
    let meta = get(&app, "/sandbox/.well-known/oauth-authorization-server").await.json();
    assert_eq!(meta["issuer"], BASE);
    assert_eq!(meta["token_endpoint"], format!("{BASE}/token"));
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
}

/// Every hook refuses a caller without the admin secret, or with another one.
#[tokio::test]
async fn admin_hooks_refuse_a_caller_without_the_secret() {
    let (_sb, app) = sandbox();
    for (method, uri) in [
        (Method::GET, "/sandbox/admin/stats"),
        (Method::GET, "/sandbox/admin/faults"),
        (Method::PUT, "/sandbox/admin/faults"),
        (Method::POST, "/sandbox/admin/reset"),
        (Method::POST, "/sandbox/admin/clients"),
        (Method::PUT, "/sandbox/admin/items"),
    ] {
        for presented in [None, Some("not the secret")] {
            let mut req = Request::builder().method(method.clone()).uri(uri);
            if let Some(p) = presented {
                req = req.header(ADMIN_HEADER, p);
            }
            let reply = send_as_is(&app, req.body(Body::from("{}")).unwrap()).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {uri} with {presented:?}");
        }
    }
    assert_eq!(get(&app, "/sandbox/admin/stats").await.status, StatusCode::OK);
}
