//! Drives the sandbox router end to end with `tower::ServiceExt::oneshot`. The helpers and
//! the tests of the router as a whole and of [`Sandbox::provider_def`] are here; each
//! endpoint's tests sit in the file named like the module that serves it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod authorize;
mod oidc;
mod resource;
mod token;

use std::collections::HashMap;

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
const ADMIN_SECRET: &str = "sandbox admin secret";

fn new_sandbox(base: &str) -> Sandbox {
    Sandbox::new(base.to_owned(), &SecretString::from(ADMIN_SECRET)).unwrap()
}

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
    let sb = new_sandbox(&format!("{BASE}/"));
    sb.register_client(CLIENT, SECRET, REDIRECT);
    let router = sb.router();
    (sb, router)
}

/// Sends `req`, with the admin secret (which only the admin hooks look at).
async fn send(app: &Router, mut req: Request<Body>) -> Reply {
    req.headers_mut().insert(ADMIN_HEADER, axum::http::HeaderValue::from_static(ADMIN_SECRET));
    send_as_is(app, req).await
}

async fn send_as_is(app: &Router, req: Request<Body>) -> Reply {
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

#[test]
fn provider_def_points_at_the_sandbox() {
    let sb = new_sandbox(&format!("{BASE}/"));
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
    let sb = new_sandbox(BASE);
    let me = json!({"sub": subject_for("q"), "name": "q", "email": "q@sandbox.test"});
    assert_eq!(sb.provider_def().read_account(&me), Some((subject_for("q"), Some("q".to_owned()))));
}
