//! The sandbox as an OpenID provider: when a code was issued for a scope with `openid`,
//! the code exchange also returns an ES256 `id_token` (OpenID Connect Core 3.1.3.3) signed
//! with a P-256 key generated when the sandbox starts, published at
//! `GET /sandbox/.well-known/jwks.json` and named by the discovery document
//! `GET /sandbox/.well-known/openid-configuration`.
//!
//! The `id_token_fault` switch makes it misbehave the ways a relying party must catch: a
//! wrong `nonce`, `aud` or `iss`, an expired token, or a signature made with another key
//! (under the published key's `kid`). `POST /sandbox/admin/rotate_key` replaces the key,
//! as a provider rotating its keys would.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::wire::no_store_json;
use super::{random_token, subject_for, Sandbox, SCOPES};

/// Lifetime of an ID token.
const ID_TOKEN_TTL_SECS: u64 = 300;

/// How an ID token is spoiled on purpose (`id_token_fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdTokenFault {
    /// A `nonce` other than the one in the authorization request.
    WrongNonce,
    /// An `aud` naming another client.
    WrongAud,
    /// An `iss` other than the sandbox's issuer.
    WrongIss,
    /// `exp` an hour ago.
    Expired,
    /// Signed with a key that is not in the JWKS (under the published key's `kid`).
    BadSignature,
}

/// An ES256 signing key and its public JWK.
pub(super) struct SigningKey {
    kid: String,
    key: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    /// A fresh P-256 key.
    pub(super) fn generate() -> Result<Self, ring::error::Unspecified> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| ring::error::Unspecified)?;
        // Uncompressed point: 0x04 ‖ x (32) ‖ y (32).
        let point = pair.public_key().as_ref();
        let (x, y) = match (point.get(1..33), point.get(33..65)) {
            (Some(x), Some(y)) if point.len() == 65 => (x, y),
            _ => return Err(ring::error::Unspecified),
        };
        let kid = random_token("sbx_key_");
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
            "kid": kid,
            "use": "sig",
            "alg": "ES256",
        });
        Ok(Self { kid, key: EncodingKey::from_ec_der(pkcs8.as_ref()), jwk })
    }
}

/// What the ID token is about.
pub(super) struct IdTokenFacts<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub user: &'a str,
    pub nonce: Option<&'a str>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
}

/// A signed ID token for `facts`, spoiled as `fault` says. `None` only if signing fails.
pub(super) fn id_token(
    key: &SigningKey,
    foreign: &SigningKey,
    facts: &IdTokenFacts<'_>,
    fault: Option<IdTokenFault>,
) -> Option<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let mut claims = Claims {
        iss: facts.issuer,
        sub: subject_for(facts.user),
        aud: facts.client_id,
        exp: now + ID_TOKEN_TTL_SECS,
        iat: now,
        nonce: facts.nonce.map(str::to_owned),
    };
    let mut signer = key;
    match fault {
        None => {}
        Some(IdTokenFault::WrongNonce) => claims.nonce = Some(random_token("wrong_nonce_")),
        Some(IdTokenFault::WrongAud) => claims.aud = "another-client",
        Some(IdTokenFault::WrongIss) => claims.iss = "https://issuer.invalid/sandbox",
        Some(IdTokenFault::Expired) => {
            claims.exp = now.saturating_sub(3600);
            claims.iat = now.saturating_sub(3600 + ID_TOKEN_TTL_SECS);
        }
        Some(IdTokenFault::BadSignature) => signer = foreign,
    }
    let mut header = Header::new(Algorithm::ES256);
    // The published key's id even when another key signs: a forgery, not an unknown key.
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &signer.key).ok()
}

/// `GET /sandbox/.well-known/jwks.json`: the public signing key.
pub(super) async fn jwks(State(sb): State<Sandbox>) -> Response {
    let st = sb.lock();
    no_store_json(StatusCode::OK, json!({ "keys": [st.signing_key.jwk.clone()] }))
}

/// `POST /sandbox/admin/rotate_key`: a new signing key replaces the old one (whose
/// tokens stop verifying). Answers the new JWKS.
pub(super) async fn rotate_key(State(sb): State<Sandbox>) -> Response {
    match SigningKey::generate() {
        Ok(key) => {
            let mut st = sb.lock();
            st.signing_key = key;
            no_store_json(StatusCode::OK, json!({ "keys": [st.signing_key.jwk.clone()] }))
        }
        Err(_) => super::wire::OAuthError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "could not generate a key",
        )
        .into_response(),
    }
}

/// The endpoints and abilities both metadata documents list.
pub(super) fn metadata(sb: &Sandbox) -> serde_json::Map<String, Value> {
    let base = sb.base_url();
    let advertise_iss = sb.lock().faults.advertise_redirect_iss;
    let doc = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "revocation_endpoint": format!("{base}/revoke"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": advertise_iss,
    });
    match doc {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

/// `GET /sandbox/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4).
pub(super) async fn openid_configuration(State(sb): State<Sandbox>) -> Response {
    no_store_json(StatusCode::OK, Value::Object(metadata(&sb)))
}
