//! OpenID Connect as a relying party: the provider's metadata (OpenID Connect Discovery)
//! and signing keys (JWKS), cached per provider, and the checks of an ID token (OpenID
//! Connect Core 3.1.3.7).
//!
//! Metadata comes from `{issuer}/.well-known/openid-configuration`; its `issuer` must be
//! the registry's. Keys come from the registry's `jwks_uri`, else the metadata's. Both are
//! cached for [`CACHE_TTL`] per provider; a token signed under a `kid` the cached keys lack
//! makes one refetch. Every fetch goes through the provider client (its timeouts, no
//! redirects) and reads at most [`MAX_DOCUMENT_BYTES`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::client::{describe, ProviderClient};
use crate::providers::ProviderDef;

/// How long fetched metadata and keys are used before being fetched again.
pub const CACHE_TTL: Duration = Duration::from_secs(3600);
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;
/// The largest metadata document or JWKS read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// ID-token signature algorithms accepted: asymmetric ones only (no `none`, no HMAC).
const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The parts of a provider's metadata we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// RFC 9207: the provider puts `iss` in every authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// Per provider (by registry name): metadata and keys with the time they were fetched.
#[derive(Debug, Default)]
pub struct OidcCache {
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Default)]
struct Entry {
    metadata: Option<(Instant, Arc<Metadata>)>,
    keys: Option<(Instant, Arc<Vec<Jwk>>)>,
}

impl OidcCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn fresh<T: Clone>(slot: Option<&(Instant, T)>) -> Option<T> {
    slot.filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, v)| v.clone())
}

/// Why an ID token (or the metadata needed to check one) was refused. The messages name
/// the failed check only: never the token or its claims' values.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider's metadata or keys could not be had.
    #[error("{0}")]
    Unavailable(String),
    /// The ID token failed a check.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> OidcError {
    OidcError::Invalid(message.into())
}

/// What the ID token must say.
#[derive(Debug)]
pub struct Expected<'a> {
    /// The registry's issuer; `None` (a provider with only a `jwks_uri`) skips `iss`.
    pub issuer: Option<&'a str>,
    pub client_id: &'a str,
    /// The nonce sent with the authorization request, if one was.
    pub nonce: Option<&'a str>,
}

/// The claims of a verified ID token that the caller may use.
#[derive(Debug, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
    /// A string or an array of strings (checked by jsonwebtoken).
    aud: Value,
    /// Required by Core 2; only its presence is checked.
    #[allow(dead_code)]
    iat: serde_json::Number,
}

impl ProviderClient {
    /// The provider's discovery document (cached), which must name the registry's issuer.
    pub async fn metadata(&self, def: &ProviderDef) -> Result<Arc<Metadata>, OidcError> {
        let Some(issuer) = def.issuer.as_deref() else {
            return Err(OidcError::Unavailable("the provider has no issuer configured".into()));
        };
        if let Some(m) = fresh(self.oidc.lock().get(&def.name).and_then(|e| e.metadata.as_ref())) {
            return Ok(m);
        }
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let body = self.fetch_json(&url, "the provider's metadata").await?;
        let metadata: Metadata = serde_json::from_value(body)
            .map_err(|_| OidcError::Unavailable("the provider's metadata has no issuer".into()))?;
        // OpenID Connect Discovery 4.3: the document must be the issuer's own.
        if metadata.issuer != issuer {
            return Err(OidcError::Unavailable("the provider's metadata names another issuer".into()));
        }
        let metadata = Arc::new(metadata);
        self.oidc.lock().entry(def.name.clone()).or_default().metadata = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    /// The provider's signing keys: cached unless `refetch`.
    async fn keys(&self, def: &ProviderDef, refetch: bool) -> Result<Arc<Vec<Jwk>>, OidcError> {
        if !refetch {
            if let Some(k) = fresh(self.oidc.lock().get(&def.name).and_then(|e| e.keys.as_ref())) {
                return Ok(k);
            }
        }
        let uri = match &def.jwks_uri {
            Some(uri) => uri.clone(),
            None => self
                .metadata(def)
                .await?
                .jwks_uri
                .clone()
                .ok_or_else(|| OidcError::Unavailable("the provider's metadata has no jwks_uri".into()))?,
        };
        let body = self.fetch_json(&uri, "the provider's signing keys").await?;
        // One key we cannot read (an encryption key, a new key type) must not hide the rest.
        let keys: Vec<Jwk> = body
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| OidcError::Unavailable("the provider's JWKS has no keys".into()))?
            .iter()
            .filter_map(|k| serde_json::from_value(k.clone()).ok())
            .collect();
        let keys = Arc::new(keys);
        self.oidc.lock().entry(def.name.clone()).or_default().keys = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }

    /// GETs a JSON document of at most [`MAX_DOCUMENT_BYTES`].
    async fn fetch_json(&self, url: &str, what: &str) -> Result<Value, OidcError> {
        let unavailable = |why: String| OidcError::Unavailable(format!("could not fetch {what}: {why}"));
        let mut resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP {}", resp.status().as_u16())));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(describe(&e)))? {
            if bytes.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(unavailable("the document is too large".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&bytes).map_err(|_| unavailable("not JSON".into()))
    }

    /// Verifies an ID token: signature by one of the provider's keys, `iss`, `aud` (and
    /// `azp`), `exp`, `nbf`, `sub`, `iat` and `nonce` (OpenID Connect Core 3.1.3.7).
    pub async fn verify_id_token(
        &self,
        def: &ProviderDef,
        expected: &Expected<'_>,
        token: &str,
    ) -> Result<IdClaims, OidcError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("it is not a well-formed JWT"))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(invalid(format!("it is signed with {:?}, which is not accepted", header.alg)));
        }
        let key = match pick_key(&self.keys(def, false).await?, &header) {
            Some(key) => key,
            // A key we have not seen: the provider may have rotated its keys. Once.
            None => pick_key(&self.keys(def, true).await?, &header)
                .ok_or_else(|| invalid("it is signed with a key the provider does not publish"))?,
        };
        let key = DecodingKey::from_jwk(&key).map_err(|_| invalid("the provider's signing key cannot be read"))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&[expected.client_id]);
        let mut required = vec!["exp", "aud", "sub"];
        if let Some(issuer) = expected.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &validation).map_err(classify)?.claims;
        // Core 3.1.3.7 items 4 and 5: with several audiences, `azp` names us.
        let several = claims.aud.as_array().is_some_and(|a| a.len() > 1);
        if (several || claims.azp.is_some()) && claims.azp.as_deref() != Some(expected.client_id) {
            return Err(invalid("it was issued to another party (azp)"));
        }
        if let Some(nonce) = expected.nonce {
            if claims.nonce.as_deref() != Some(nonce) {
                return Err(invalid("its nonce is not the one this sign-in sent"));
            }
        }
        if claims.sub.is_empty() {
            return Err(invalid("it has an empty subject"));
        }
        Ok(claims)
    }
}

/// The signing key the header names: by `kid`, or the only usable key when there is no
/// `kid`. Keys for encryption, symmetric keys and keys for another algorithm never match.
fn pick_key(keys: &[Jwk], header: &Header) -> Option<Jwk> {
    let mut usable = keys.iter().filter(|k| {
        let for_signing = k.common.public_key_use.as_ref().is_none_or(|u| matches!(u, PublicKeyUse::Signature));
        let asymmetric = !matches!(k.algorithm, AlgorithmParameters::OctetKey(_));
        let same_alg =
            k.common.key_algorithm.is_none_or(|a| a.to_string().parse::<Algorithm>().ok() == Some(header.alg));
        for_signing && asymmetric && same_alg
    });
    match &header.kid {
        Some(kid) => usable.find(|k| k.common.key_id.as_deref() == Some(kid.as_str())).cloned(),
        None => {
            let first = usable.next()?;
            usable.next().is_none().then(|| first.clone())
        }
    }
}

/// jsonwebtoken's verdict, said as the check that failed.
fn classify(e: jsonwebtoken::errors::Error) -> OidcError {
    use jsonwebtoken::errors::ErrorKind;
    invalid(match e.kind() {
        ErrorKind::InvalidSignature => "its signature does not verify with the provider's key".to_owned(),
        ErrorKind::ExpiredSignature => "it has expired".to_owned(),
        ErrorKind::ImmatureSignature => "it is not valid yet".to_owned(),
        ErrorKind::InvalidIssuer => "it was issued by another issuer (iss)".to_owned(),
        ErrorKind::InvalidAudience => "it was issued to another client (aud)".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => {
            format!("it lacks the `{}` claim", claim.chars().filter(char::is_ascii_alphanumeric).collect::<String>())
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::InvalidKeyFormat => {
            "its algorithm does not fit the provider's key".to_owned()
        }
        ErrorKind::Json(_) | ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
            "its claims cannot be read".to_owned()
        }
        _ => "it cannot be verified".to_owned(),
    })
}
