//! Drives the sandbox router end to end with `tower::ServiceExt::oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

use super::*;

const BASE: &str = "http://127.0.0.1:8080/sandbox";
const CLIENT: &str = "latchkey-app";
const SECRET: &str = "s3cret value";
const REDIRECT: &str = "http://127.0.0.1:8080/oauth/callback";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).map_err(|e| format!("not JSON ({e}): {}", self.text())).unwrap()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    /// The query parameters of the `Location` header.
    fn location(&self) -> (String, HashMap<String, String>) {
        assert_eq!(self.status, StatusCode::FOUND, "{}", self.text());
        let url = url::Url::parse(self.header(header::LOCATION).unwrap()).unwrap();
        let params = url.query_pairs().into_owned().collect();
        let mut bare = url.clone();
        bare.set_query(None);
        (bare.to_string(), params)
    }
    fn oauth_error(&self) -> String {
        self.json()["error"].as_str().unwrap().to_owned()
    }
}

fn sandbox() -> (Sandbox, Router) {
    let sb = Sandbox::new(format!("{BASE}/"));
    sb.register_client(CLIENT, SECRET, REDIRECT);
    let router = sb.router();
    (sb, router)
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec();
    Reply { status, headers, body }
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(id), enc(secret))))
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn get_bearer(app: &Router, uri: &str, token: &str) -> Reply {
    send(app, Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty()).unwrap())
        .await
}

async fn post_form(app: &Router, uri: &str, auth: Option<&str>, pairs: &[(&str, &str)]) -> Reply {
    let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(auth) = auth {
        req = req.header(header::AUTHORIZATION, auth);
    }
    send(app, req.body(Body::from(form(pairs))).unwrap()).await
}

async fn token_request(app: &Router, pairs: &[(&str, &str)]) -> Reply {
    post_form(app, "/sandbox/token", Some(&basic(CLIENT, SECRET)), pairs).await
}

async fn put_faults(app: &Router, faults: Value) -> Reply {
    send(
        app,
        Request::builder()
            .method(Method::PUT)
            .uri("/sandbox/admin/faults")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(faults.to_string()))
            .unwrap(),
    )
    .await
}

async fn stats(app: &Router) -> Value {
    get(app, "/sandbox/admin/stats").await.json()
}

fn pkce() -> (String, String) {
    let verifier = random_token("v-");
    let challenge = URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()));
    (verifier, challenge)
}

fn authorize_uri(challenge: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", CLIENT),
        ("redirect_uri", REDIRECT),
        ("state", "st-123"),
        ("scope", "profile items:read"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    pairs.extend_from_slice(extra);
    format!("/sandbox/authorize?{}", form(&pairs))
}

/// Consents as `user` through the real form; answers the code.
async fn consent(app: &Router, challenge: &str, user: &str) -> String {
    let page = get(app, &authorize_uri(challenge, &[])).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let post = post_form(
        app,
        "/sandbox/authorize",
        None,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("state", "st-123"),
            ("scope", "profile items:read"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("username", user),
            ("decision", "approve"),
        ],
    )
    .await;
    let (target, params) = post.location();
    assert_eq!(target, REDIRECT);
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["iss"], BASE);
    params["code"].clone()
}

async fn exchange(app: &Router, code: &str, verifier: &str) -> Reply {
    token_request(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// A fresh grant for `user`: `(access_token, refresh_token)`.
async fn connect(app: &Router, user: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let code = consent(app, &challenge, user).await;
    let reply = exchange(app, &code, &verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
}

async fn refresh(app: &Router, refresh_token: &str) -> Reply {
    token_request(app, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
}

#[tokio::test]
async fn full_code_flow_with_pkce() {
    let (_sb, app) = sandbox();
    let (verifier, challenge) = pkce();

    let page = get(&app, &authorize_uri(&challenge, &[("login_hint", "alice"), ("nonce", "n-1")])).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header(header::CONTENT_TYPE).unwrap().starts_with("text/html"));
    let html = page.text();
    assert!(
        html.contains("Sandbox wants to let <strong id=\"client\">latchkey-app</strong> access your profile and items")
    );
    assert!(html.contains("id=\"approve\"") && html.contains("id=\"deny\""));
    assert!(html.contains("action=\"/sandbox/authorize\""));
    assert!(html.contains("name=\"username\" value=\"alice\""));
    assert!(html.contains(&format!("name=\"code_challenge\" value=\"{challenge}\"")));
    assert!(html.contains("name=\"nonce\" value=\"n-1\""));

    let code = consent(&app, &challenge, "alice").await;
    assert!(code.len() > 43);
    let reply = exchange(&app, &code, &verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header(header::CACHE_CONTROL), Some("no-store"));
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "profile items:read");
    let access = body["access_token"].as_str().unwrap();
    assert!(body["refresh_token"].as_str().is_some());

    let me = get_bearer(&app, "/sandbox/userinfo", access).await;
    assert_eq!(me.status, StatusCode::OK);
    let me = me.json();
    assert_eq!(me["name"], "alice");
    assert_eq!(me["email"], "alice@sandbox.test");
    assert_eq!(me["sub"], subject_for("alice"));

    let stats = stats(&app).await;
    assert_eq!(stats["token_requests_total"], 1);
    let grant = &stats["grants"][0];
    assert_eq!(grant["id"], "grant_1");
    assert_eq!(grant["user"], "alice");
    assert_eq!(grant["client_id"], CLIENT);
    assert_eq!(grant["token_requests"], json!({"authorization_code": 1, "refresh_token": 0}));
    assert_eq!(grant["failed_token_requests"], 0);
    assert_eq!(grant["revoked"], false);
}

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
async fn deny_redirects_with_access_denied() {
    let (_sb, app) = sandbox();
    let (_, challenge) = pkce();
    let reply = post_form(
        &app,
        "/sandbox/authorize",
        None,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("state", "s&t"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("decision", "deny"),
        ],
    )
    .await;
    let (target, params) = reply.location();
    assert_eq!(target, REDIRECT);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "s&t");
    assert_eq!(params["iss"], BASE);
    assert!(!params.contains_key("code"));
    // The raw Location carries the issuer URL-encoded.
    assert!(reply.header(header::LOCATION).unwrap().contains("iss=http%3A%2F%2F127.0.0.1%3A8080%2Fsandbox"));
}

#[tokio::test]
async fn authorize_errors_page_or_redirect() {
    let (_sb, app) = sandbox();
    let (_, challenge) = pkce();

    // Bad client or redirect URI: an error page, never a redirect.
    let cases: Vec<String> = vec![
        authorize_uri(&challenge, &[]).replace(CLIENT, "unknown-client"),
        authorize_uri(&challenge, &[]).replace("oauth%2Fcallback", "oauth%2Fcallback%2F"),
        authorize_uri(&challenge, &[]).replace("127.0.0.1%3A8080", "evil.example"),
        "/sandbox/authorize".to_owned(),
        format!("/sandbox/authorize?client_id={CLIENT}"),
        format!("{}&client_id=x", authorize_uri(&challenge, &[])),
    ];
    for uri in &cases {
        let reply = get(&app, uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(reply.header(header::LOCATION).is_none(), "{uri}");
        assert!(reply.text().contains("Authorization error"), "{uri}");
    }

    // Good client and redirect URI: errors go back to the client.
    let no_pkce = format!(
        "/sandbox/authorize?{}",
        form(&[("response_type", "code"), ("client_id", CLIENT), ("redirect_uri", REDIRECT), ("state", "x")])
    );
    let (target, params) = get(&app, &no_pkce).await.location();
    assert_eq!(target, REDIRECT);
    assert_eq!(params["error"], "invalid_request");
    assert_eq!(params["state"], "x");
    assert_eq!(params["iss"], BASE);

    let plain = authorize_uri(&challenge, &[]).replace("S256", "plain");
    assert_eq!(get(&app, &plain).await.location().1["error"], "invalid_request");
    let no_method = authorize_uri(&challenge, &[]).replace("&code_challenge_method=S256", "");
    assert_eq!(get(&app, &no_method).await.location().1["error"], "invalid_request");
    let bad_scope = authorize_uri(&challenge, &[]).replace("items%3Aread", "admin");
    assert_eq!(get(&app, &bad_scope).await.location().1["error"], "invalid_scope");
    let token_type = authorize_uri(&challenge, &[]).replace("response_type=code", "response_type=token");
    assert_eq!(get(&app, &token_type).await.location().1["error"], "unsupported_response_type");
    let repeated = format!("{}&state=again", authorize_uri(&challenge, &[]));
    assert_eq!(get(&app, &repeated).await.location().1["error"], "invalid_request");
}

#[tokio::test]
async fn consent_page_escapes_everything() {
    let (_sb, app) = sandbox();
    let (_, challenge) = pkce();
    let uri = authorize_uri(&challenge, &[("nonce", "\"><script>alert(1)</script>"), ("login_hint", "<b>'x'</b>")])
        .replace("st-123", "%22%3E%3Cimg+src%3Dx%3E");
    let reply = get(&app, &uri).await;
    assert_eq!(reply.status, StatusCode::OK);
    let html = reply.text();
    assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<b>"));
    assert!(html.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;b&gt;&#39;x&#39;&lt;/b&gt;"));
    assert!(reply.header(header::CONTENT_SECURITY_POLICY).unwrap().contains("default-src 'none'"));

    // An invalid username is refused on the page, not redirected.
    let reply = post_form(
        &app,
        "/sandbox/authorize",
        None,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("username", "<b>x</b>"),
            ("decision", "approve"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.header(header::LOCATION).is_none());
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
    let sb2 = Sandbox::new(BASE.into());
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

#[tokio::test]
async fn userinfo_rejects_bad_tokens() {
    let (_sb, app) = sandbox();
    for reply in [
        get_bearer(&app, "/sandbox/userinfo", "sbx_at_unknown").await,
        get(&app, "/sandbox/userinfo").await,
        send(
            &app,
            Request::get("/sandbox/userinfo").header(header::AUTHORIZATION, "Basic eDp5").body(Body::empty()).unwrap(),
        )
        .await,
    ] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.header(header::WWW_AUTHENTICATE), Some("Bearer error=\"invalid_token\""));
        assert_eq!(reply.oauth_error(), "invalid_token");
    }
    // Expired: a zero lifetime.
    put_faults(&app, json!({"access_token_ttl_secs": 0})).await;
    let (access, rt) = connect(&app, "jack").await;
    assert_eq!(get_bearer(&app, "/sandbox/userinfo", &access).await.status, StatusCode::UNAUTHORIZED);
    put_faults(&app, json!({"access_token_ttl_secs": 60})).await;
    let fresh = refresh(&app, &rt).await.json();
    assert_eq!(fresh["expires_in"], 60);
    let me = get_bearer(&app, "/sandbox/userinfo", fresh["access_token"].as_str().unwrap()).await;
    assert_eq!(me.json()["name"], "jack");
    // Stable subject per username, different across usernames.
    assert_eq!(subject_for("jack"), subject_for("jack"));
    assert_ne!(subject_for("jack"), subject_for("jill"));
}

async fn walk_items(app: &Router, token: &str, limit: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/sandbox/api/items?limit={limit}&cursor={c}"),
            None => format!("/sandbox/api/items?limit={limit}"),
        };
        let reply = get_bearer(app, &uri, token).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let body = reply.json();
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        all.extend(items.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(body["next_cursor"].is_null());
                return all;
            }
        }
    }
}

#[tokio::test]
async fn items_paginate_to_the_end_without_duplicates() {
    let (sb, app) = sandbox();
    let (access, _) = connect(&app, "kate").await;

    // Default: 250 items, 100 per page.
    let first = get_bearer(&app, "/sandbox/api/items", &access).await.json();
    assert_eq!(first["items"].as_array().unwrap().len(), 100);
    let all = walk_items(&app, &access, 100).await;
    assert_eq!(all.len(), 250);

    sb.set_items(1234);
    let all = walk_items(&app, &access, 500).await;
    assert_eq!(all.len(), 1234);
    let ids: HashSet<&str> = all.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1234);
    assert_eq!(all[0]["id"], "trk_001233");
    assert_eq!(all[1233]["id"], "trk_000000");
    let times: Vec<time::OffsetDateTime> = all
        .iter()
        .map(|i| {
            time::OffsetDateTime::parse(
                i["played_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "newest first");
    let item = &all[7];
    for field in ["track", "artist", "album"] {
        let text = item[field].as_str().unwrap();
        assert!(!text.is_empty() && !text.to_lowercase().contains("item"), "{field}: {text}");
    }
    let duration = item["duration_ms"].as_u64().unwrap();
    assert!((120_000..420_000).contains(&duration));
    let distinct_tracks: HashSet<&str> = all.iter().map(|i| i["track"].as_str().unwrap()).collect();
    assert!(distinct_tracks.len() > 50, "varied titles");

    // Deterministic per user: the same again, and different for another user.
    assert_eq!(walk_items(&app, &access, 500).await, all);
    let (other, _) = connect(&app, "liam").await;
    let theirs = walk_items(&app, &other, 500).await;
    assert_eq!(theirs.len(), 1234);
    assert_ne!(theirs, all);

    // Items added during a walk do not shift it.
    let page = get_bearer(&app, "/sandbox/api/items?limit=10", &access).await.json();
    sb.set_items(1300);
    let next = page["next_cursor"].as_str().unwrap();
    let page2 = get_bearer(&app, &format!("/sandbox/api/items?limit=10&cursor={next}"), &access).await.json();
    assert_eq!(page2["items"][0]["id"], "trk_001223");
    assert_eq!(page2["total"], 1300, "the stream's size, for progress bars");

    // Bad limits and cursors.
    for q in ["limit=0", "limit=501", "limit=abc", "cursor=%%%", "cursor=bm90LWEtY3Vyc29y", "limit=5&limit=6"] {
        let reply = get_bearer(&app, &format!("/sandbox/api/items?{q}"), &access).await;
        assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::BAD_REQUEST, "invalid_request"), "{q}");
    }
    // No token.
    let reply = get(&app, "/sandbox/api/items").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header(header::WWW_AUTHENTICATE), Some("Bearer error=\"invalid_token\""));

    // Empty history.
    sb.set_items(0);
    let empty = get_bearer(&app, "/sandbox/api/items", &access).await.json();
    assert_eq!(empty, json!({"items": [], "next_cursor": null, "total": 0}));
}

#[tokio::test]
async fn a_hundred_thousand_items_are_fast() {
    let (sb, app) = sandbox();
    let (access, _) = connect(&app, "mona").await;
    sb.set_items(100_000);
    let started = Instant::now();
    let all = walk_items(&app, &access, 500).await;
    assert_eq!(all.len(), 100_000);
    assert_eq!(all[0]["id"], "trk_099999");
    let ids: HashSet<&str> = all.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 100_000);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

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
async fn garbage_input_never_500s() {
    let (_sb, app) = sandbox();
    let bodies: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, 0x00, 0x80],
        b"grant_type=authorization_code&code=%ZZ&code=x".to_vec(),
        b"%%%%&&&===".to_vec(),
        vec![b'a'; 10_000],
    ];
    for body in bodies {
        for uri in ["/sandbox/token", "/sandbox/revoke", "/sandbox/authorize"] {
            let reply = send(&app, Request::post(uri).body(Body::from(body.clone())).unwrap()).await;
            assert!(reply.status.is_client_error(), "{uri}: {}", reply.status);
        }
    }
    let reply = send(&app, Request::delete("/sandbox/token").body(Body::empty()).unwrap()).await;
    assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::METHOD_NOT_ALLOWED, "invalid_request"));
    let reply = get(&app, "/sandbox/authorize?%ff%00=%zz&client_id=%ff").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let reply = get_bearer(&app, "/sandbox/api/items?cursor=%ff", "x").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Repeated parameters at the token endpoint.
    let (_, rt) = connect(&app, "pia").await;
    let reply = send(
        &app,
        Request::post("/sandbox/token")
            .header(header::AUTHORIZATION, basic(CLIENT, SECRET))
            .body(Body::from(format!("grant_type=refresh_token&refresh_token={rt}&refresh_token={rt}")))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.oauth_error(), "invalid_request");
}

#[tokio::test]
async fn metadata_document() {
    let (_sb, app) = sandbox();
    let meta = get(&app, "/sandbox/.well-known/oauth-authorization-server").await.json();
    assert_eq!(meta["issuer"], BASE);
    assert_eq!(meta["token_endpoint"], format!("{BASE}/token"));
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
}

#[test]
fn provider_def_points_at_the_sandbox() {
    let sb = Sandbox::new(format!("{BASE}/"));
    let def = sb.provider_def();
    assert_eq!(def.name, "sandbox");
    assert_eq!(def.display_name, "Sandbox");
    assert_eq!(def.authorization_url, format!("{BASE}/authorize"));
    assert_eq!(def.token_url, format!("{BASE}/token"));
    assert_eq!(def.revocation_url.as_deref(), Some(format!("{BASE}/revoke").as_str()));
    assert_eq!(def.userinfo_url.as_deref(), Some(format!("{BASE}/userinfo").as_str()));
    assert_eq!(def.issuer.as_deref(), Some(BASE));
    assert_eq!(def.pkce, Pkce::Required);
    assert_eq!(def.token_auth_method, TokenAuthMethod::ClientSecretBasic);
    assert!(def.rotates_refresh_tokens);
    assert_eq!(def.scopes, vec!["profile", "items:read"]);
    assert_eq!(def.account_id_field, "sub");
    assert_eq!(def.account_name_field.as_deref(), Some("name"));
    assert!(!format!("{sb:?}").contains("secret"));
}

#[test]
fn account_is_read_from_userinfo_shape() {
    let sb = Sandbox::new(BASE.into());
    let me = json!({"sub": subject_for("q"), "name": "q", "email": "q@sandbox.test"});
    assert_eq!(sb.provider_def().read_account(&me), Some((subject_for("q"), Some("q".to_owned()))));
}
