//! `POST /sandbox/token` and `POST /sandbox/revoke`: client authentication, code exchange,
//! refresh rotation and revocation.

use axum::http::{header, StatusCode};
use serde_json::json;

use super::*;

#[tokio::test]
async fn client_secret_post_and_bad_client_auth() {
    let (_sb, app) = sandbox();
    let (_, rt) = connect(&app, "bob").await;
    let ok = post_form(
        &app,
        "/sandbox/token",
        None,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("client_id", CLIENT), ("client_secret", SECRET)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let rt = ok.json()["refresh_token"].as_str().unwrap().to_owned();

    for auth in [Some(basic(CLIENT, "wrong")), Some(basic("nobody", SECRET)), Some("Basic %%%".to_owned()), None] {
        let reply = post_form(
            &app,
            "/sandbox/token",
            auth.as_deref(),
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(reply.oauth_error(), "invalid_client");
        assert!(reply.header(header::WWW_AUTHENTICATE).unwrap().starts_with("Basic"));
    }
    // Unknown grant type, missing grant type.
    let reply = token_request(&app, &[("grant_type", "password")]).await;
    assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::BAD_REQUEST, "unsupported_grant_type"));
    let reply = token_request(&app, &[]).await;
    assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));
    // The refresh token was not touched by the failed attempts.
    assert_eq!(refresh(&app, &rt).await.status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_or_missing_verifier_is_invalid_grant() {
    let (_sb, app) = sandbox();
    let (_, challenge) = pkce();
    let (other_verifier, _) = pkce();
    let code = consent(&app, &challenge, "carol").await;
    let reply = exchange(&app, &code, &other_verifier).await;
    assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));

    let (verifier, challenge) = pkce();
    let code = consent(&app, &challenge, "carol").await;
    let reply =
        token_request(&app, &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)]).await;
    assert_eq!(reply.oauth_error(), "invalid_grant");
    // A failed attempt consumed the code.
    assert_eq!(exchange(&app, &code, &verifier).await.oauth_error(), "invalid_grant");
    // Unknown codes too.
    assert_eq!(exchange(&app, "sbx_code_nope", &verifier).await.oauth_error(), "invalid_grant");
    assert!(stats(&app).await["grants"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn redirect_uri_mismatch_at_token_is_invalid_grant() {
    let (_sb, app) = sandbox();
    let (verifier, challenge) = pkce();
    let code = consent(&app, &challenge, "dave").await;
    let reply = token_request(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:8080/oauth/other"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
}

#[tokio::test]
async fn code_reuse_revokes_the_grant() {
    let (_sb, app) = sandbox();
    let (verifier, challenge) = pkce();
    let code = consent(&app, &challenge, "erin").await;
    let first = exchange(&app, &code, &verifier).await.json();
    let access = first["access_token"].as_str().unwrap();
    let rt = first["refresh_token"].as_str().unwrap();
    assert_eq!(get_bearer(&app, "/sandbox/userinfo", access).await.status, StatusCode::OK);

    let again = exchange(&app, &code, &verifier).await;
    assert_eq!((again.status, again.oauth_error().as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    let me = get_bearer(&app, "/sandbox/userinfo", access).await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&app, rt).await.oauth_error(), "invalid_grant");

    let grant = &stats(&app).await["grants"][0];
    assert_eq!(grant["revoked"], true);
    assert_eq!(grant["token_requests"], json!({"authorization_code": 2, "refresh_token": 1}));
    assert_eq!(grant["failed_token_requests"], 2);
}

#[tokio::test]
async fn rotation_and_reuse_revoke_the_whole_grant() {
    let (_sb, app) = sandbox();
    let (access0, rt0) = connect(&app, "frank").await;
    let first = refresh(&app, &rt0).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header(header::CACHE_CONTROL), Some("no-store"));
    let first = first.json();
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    let access1 = first["access_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt0);
    assert_ne!(access1, access0);
    assert_eq!(first["scope"], "profile items:read");

    // A narrower scope is allowed, a wider or unknown one is not.
    let narrow =
        token_request(&app, &[("grant_type", "refresh_token"), ("refresh_token", &rt1), ("scope", "profile")]).await;
    assert_eq!(narrow.json()["scope"], "profile");
    let rt2 = narrow.json()["refresh_token"].as_str().unwrap().to_owned();
    let narrow_access = narrow.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get_bearer(&app, "/sandbox/api/items", &narrow_access).await.status, StatusCode::FORBIDDEN);
    let bad =
        token_request(&app, &[("grant_type", "refresh_token"), ("refresh_token", &rt2), ("scope", "admin")]).await;
    assert_eq!(bad.oauth_error(), "invalid_scope");

    // Reusing a rotated-away token revokes everything, the newest refresh token included.
    let reuse = refresh(&app, &rt0).await;
    assert_eq!((reuse.status, reuse.oauth_error().as_str()), (StatusCode::BAD_REQUEST, "invalid_grant"));
    assert_eq!(refresh(&app, &rt2).await.oauth_error(), "invalid_grant");
    for token in [&access0, &access1] {
        assert_eq!(get_bearer(&app, "/sandbox/userinfo", token).await.status, StatusCode::UNAUTHORIZED);
    }
    let grant = &stats(&app).await["grants"][0];
    assert_eq!(grant["revoked"], true);
    assert_eq!(grant["token_requests"]["refresh_token"], 5);
    assert_eq!(grant["failed_token_requests"], 3);
}

#[tokio::test]
async fn without_rotation_the_refresh_token_stays() {
    let (_sb, app) = sandbox();
    let (_, rt) = connect(&app, "gina").await;
    assert_eq!(put_faults(&app, json!({"rotate_refresh_tokens": false})).await.json()["rotate_refresh_tokens"], false);
    for _ in 0..3 {
        let reply = refresh(&app, &rt).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.json().get("refresh_token").is_none());
    }
    assert_eq!(stats(&app).await["grants"][0]["revoked"], false);
}

#[tokio::test]
async fn revocation() {
    let (_sb, app) = sandbox();
    let auth = basic(CLIENT, SECRET);
    let (access, rt) = connect(&app, "hank").await;

    // An access token: only itself.
    let reply =
        post_form(&app, "/sandbox/revoke", Some(&auth), &[("token", &access), ("token_type_hint", "access_token")])
            .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(get_bearer(&app, "/sandbox/userinfo", &access).await.status, StatusCode::UNAUTHORIZED);
    let fresh = refresh(&app, &rt).await.json();
    let access2 = fresh["access_token"].as_str().unwrap();
    let rt2 = fresh["refresh_token"].as_str().unwrap();
    assert_eq!(get_bearer(&app, "/sandbox/userinfo", access2).await.status, StatusCode::OK);

    // A refresh token: the whole grant.
    let reply = post_form(&app, "/sandbox/revoke", Some(&auth), &[("token", rt2)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(get_bearer(&app, "/sandbox/userinfo", access2).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(&app, rt2).await.oauth_error(), "invalid_grant");

    // Unknown tokens still 200; no client auth → 401; no token → 400.
    assert_eq!(post_form(&app, "/sandbox/revoke", Some(&auth), &[("token", "nope")]).await.status, StatusCode::OK);
    let reply = post_form(&app, "/sandbox/revoke", None, &[("token", "nope")]).await;
    assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::UNAUTHORIZED, "invalid_client"));
    let reply = post_form(&app, "/sandbox/revoke", Some(&auth), &[]).await;
    assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::BAD_REQUEST, "invalid_request"));

    // Another client cannot revoke this client's tokens.
    let sb2 = new_sandbox(BASE);
    sb2.register_client(CLIENT, SECRET, REDIRECT);
    sb2.register_client("other", "other-secret", REDIRECT);
    let app2 = sb2.router();
    let (access3, _) = connect(&app2, "ivy").await;
    let reply =
        post_form(&app2, "/sandbox/revoke", Some(&basic("other", "other-secret")), &[("token", &access3)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(get_bearer(&app2, "/sandbox/userinfo", &access3).await.status, StatusCode::OK);

    let stats = stats(&app).await;
    assert_eq!(stats["revocations"], 3);
    assert_eq!(stats["grants"][0]["revoked"], true);
}
