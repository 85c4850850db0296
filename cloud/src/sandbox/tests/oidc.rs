//! The sandbox as an OpenID provider: ID tokens that verify against its JWKS, discovery,
//! the ID-token faults and the `iss` faults of the authorization redirect.

use axum::http::StatusCode;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::json;

use super::*;

/// Approves at once a request for `scope` with `nonce`; answers the redirect's parameters
/// and the PKCE verifier.
async fn approve(app: &Router, scope: &str, nonce: &str) -> (HashMap<String, String>, String) {
    put_faults(app, json!({"auto_approve": true})).await;
    let (verifier, challenge) = pkce();
    let uri = format!(
        "/sandbox/authorize?{}",
        form(&[
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", REDIRECT),
            ("state", "st-1"),
            ("scope", scope),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("nonce", nonce),
            ("login_hint", "alice"),
        ])
    );
    let (_, params) = get(app, &uri).await.location();
    (params, verifier)
}

async fn id_token(app: &Router, scope: &str) -> Option<String> {
    let (params, verifier) = approve(app, scope, "n-123").await;
    let reply = exchange(app, &params["code"], &verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["id_token"].as_str().map(str::to_owned)
}

fn verify(app_jwks: &Value, token: &str) -> Result<Value, jsonwebtoken::errors::Error> {
    let jwks: JwkSet = serde_json::from_value(app_jwks.clone()).unwrap();
    let kid = jsonwebtoken::decode_header(token)?.kid.unwrap();
    let key = DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut v = Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[CLIENT]);
    v.set_issuer(&[BASE]);
    jsonwebtoken::decode::<Value>(token, &key, &v).map(|d| d.claims)
}

#[tokio::test]
async fn openid_code_exchanges_return_an_id_token_that_verifies() {
    let (_sb, app) = sandbox();
    let discovery = get(&app, "/sandbox/.well-known/openid-configuration").await.json();
    assert_eq!(discovery["issuer"], BASE);
    assert_eq!(discovery["jwks_uri"], format!("{BASE}/.well-known/jwks.json"));
    assert_eq!(discovery["authorization_response_iss_parameter_supported"], true);
    let jwks = get(&app, "/sandbox/.well-known/jwks.json").await.json();

    let token = id_token(&app, "openid profile").await.expect("an id_token");
    let claims = verify(&jwks, &token).unwrap();
    assert_eq!(claims["sub"], subject_for("alice"));
    assert_eq!(claims["nonce"], "n-123");
    assert!(claims["iat"].is_u64());
    // Without `openid`: none.
    assert_eq!(id_token(&app, "profile").await, None);

    // Each fault spoils exactly its part.
    for (fault, check) in [
        ("wrong_aud", Some("InvalidAudience")),
        ("wrong_iss", Some("InvalidIssuer")),
        ("expired", Some("ExpiredSignature")),
        ("bad_signature", Some("InvalidSignature")),
        ("wrong_nonce", None),
    ] {
        put_faults(&app, json!({"id_token_fault": fault})).await;
        let result = verify(&jwks, &id_token(&app, "openid").await.unwrap());
        match check {
            Some(kind) => assert_eq!(result.err().map(|e| format!("{:?}", e.kind())).as_deref(), Some(kind), "{fault}"),
            None => assert_ne!(result.unwrap()["nonce"], "n-123"),
        }
    }
    put_faults(&app, json!({"id_token_fault": null})).await;

    // A rotated key: new tokens name the new key, which the old JWKS lacks.
    let rotated = post_form(&app, "/sandbox/admin/rotate_key", None, &[]).await.json();
    assert_ne!(rotated["keys"][0]["kid"], jwks["keys"][0]["kid"]);
    let token = id_token(&app, "openid").await.unwrap();
    assert_eq!(jsonwebtoken::decode_header(&token).unwrap().kid.as_deref(), rotated["keys"][0]["kid"].as_str());
    assert!(verify(&rotated, &token).is_ok());
}

#[tokio::test]
async fn redirect_iss_faults() {
    let (_sb, app) = sandbox();
    put_faults(&app, json!({"omit_redirect_iss": true, "advertise_redirect_iss": false})).await;
    let (params, _) = approve(&app, "profile", "n").await;
    assert!(!params.contains_key("iss"));
    let meta = get(&app, "/sandbox/.well-known/oauth-authorization-server").await.json();
    assert_eq!(meta["authorization_response_iss_parameter_supported"], false);
    put_faults(&app, json!({"omit_redirect_iss": false, "redirect_iss": "https://evil.example"})).await;
    let (params, _) = approve(&app, "profile", "n").await;
    assert_eq!(params["iss"], "https://evil.example");
    assert_eq!(put_faults(&app, json!({"redirect_iss": ""})).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(put_faults(&app, json!({"id_token_fault": "nonsense"})).await.status, StatusCode::BAD_REQUEST);
}
