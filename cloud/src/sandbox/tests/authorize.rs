//! `GET|POST /sandbox/authorize`: the consent page, its decision and its errors, and the
//! whole code flow that starts there.

use axum::http::{header, StatusCode};
use serde_json::json;

use super::*;

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
