//! `POST /sandbox/token` (RFC 6749 §4.1.3, §6; PKCE RFC 7636) and `POST /sandbox/revoke`
//! (RFC 7009), with client authentication and the injected faults.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;

use super::admin::Faults;
use super::oidc::{self, IdTokenFacts};
use super::wire::{form_decode, no_store, no_store_json, OAuthError, Params};
use super::{canonical_scope, scope_contains, sha256, Sandbox, State as SandboxState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    AuthorizationCode,
    RefreshToken,
    Other,
}

/// `POST /sandbox/token`.
///
/// Order: count the request (per grant when the code or refresh token names one, and
/// among those in flight), wait `token_delay_ms`, answer 429 if more than
/// `token_concurrency_limit` are in flight or an injected fault if one applies, then
/// authenticate the client and run the grant.
pub(super) async fn token(State(sb): State<Sandbox>, headers: HeaderMap, body: Bytes) -> Response {
    let params = Params::parse(&body);
    let kind = match params.get("grant_type") {
        Some("authorization_code") => Kind::AuthorizationCode,
        Some("refresh_token") => Kind::RefreshToken,
        _ => Kind::Other,
    };
    let (_in_flight, at_once) = sb.token_call();
    let (faults, grant) = {
        let mut st = sb.lock();
        st.token_requests_total += 1;
        let grant = match kind {
            Kind::AuthorizationCode => params.get("code").and_then(|c| st.codes.get(c)).and_then(|c| c.grant),
            Kind::RefreshToken => params.get("refresh_token").and_then(|t| st.refresh_tokens.get(t)).map(|t| t.grant),
            Kind::Other => None,
        };
        if let Some(g) = grant.and_then(|g| st.grants.get_mut(g)) {
            match kind {
                Kind::AuthorizationCode => g.code_requests += 1,
                Kind::RefreshToken => g.refresh_requests += 1,
                Kind::Other => {}
            }
        }
        (st.faults.clone(), grant)
    };
    if faults.token_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.token_delay_ms)).await;
    }
    let mut st = sb.lock();
    let overloaded = faults.token_concurrency_limit.is_some_and(|limit| at_once > limit);
    let fault = if overloaded {
        Some(
            OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                "sandbox: too many requests at once",
            )
            .with_retry_after(1),
        )
    } else {
        injected_fault(&faults, kind)
    };
    let result = match fault {
        Some(fault) => Err(fault),
        None => run_grant(&mut st, &faults, kind, &headers, &params, sb.base_url()),
    };
    match result {
        Ok(body) => no_store_json(StatusCode::OK, body),
        Err(e) => {
            if let Some(g) = grant.and_then(|g| st.grants.get_mut(g)) {
                g.failed_requests += 1;
            }
            e.into_response()
        }
    }
}

/// The fault to answer instead of running the grant, if any. `token_status` applies to
/// every token request; the others only to refreshes.
fn injected_fault(faults: &Faults, kind: Kind) -> Option<OAuthError> {
    if let Some(status) = faults.token_status {
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let error = match status {
            400 => "invalid_request",
            401 => "invalid_client",
            429 | 503 => "temporarily_unavailable",
            _ => "server_error",
        };
        return Some(OAuthError::new(code, error, format!("sandbox fault: the token endpoint answers {status}")));
    }
    if kind != Kind::RefreshToken {
        return None;
    }
    if let Some(secs) = faults.token_429_retry_after {
        return Some(
            OAuthError::new(StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable", "sandbox fault: rate limited")
                .with_retry_after(secs),
        );
    }
    if faults.refresh_invalid_grant {
        return Some(OAuthError::invalid_grant("sandbox fault: the refresh token is invalid"));
    }
    if faults.refresh_invalid_grant_in_200 {
        // GitHub answers refresh errors with HTTP 200.
        return Some(OAuthError::new(StatusCode::OK, "invalid_grant", "sandbox fault: the refresh token is invalid"));
    }
    None
}

fn run_grant(
    st: &mut SandboxState,
    faults: &Faults,
    kind: Kind,
    headers: &HeaderMap,
    params: &Params,
    issuer: &str,
) -> Result<Value, OAuthError> {
    if let Some(name) = params.first_repeated() {
        return Err(OAuthError::invalid_request(format!("parameter `{name}` is repeated")));
    }
    let client_id = authenticate_client(st, headers, params)?;
    match kind {
        Kind::AuthorizationCode => exchange_code(st, faults, &client_id, params, issuer),
        Kind::RefreshToken => refresh(st, faults, &client_id, params),
        Kind::Other => match params.get("grant_type") {
            None => Err(OAuthError::invalid_request("grant_type is required")),
            Some(other) => Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported; use authorization_code or refresh_token"),
            )),
        },
    }
}

/// Client authentication (RFC 6749 §2.3.1): HTTP Basic, or `client_id` + `client_secret`
/// in the body — not both. Returns the client id.
fn authenticate_client(st: &SandboxState, headers: &HeaderMap, params: &Params) -> Result<String, OAuthError> {
    let (client_id, secret) = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let (id, secret) = parse_basic(value.to_str().ok())
                .ok_or_else(|| OAuthError::invalid_client("the Authorization header is not valid HTTP Basic"))?;
            if params.get("client_secret").is_some() {
                return Err(OAuthError::invalid_request("use one client authentication method, not two"));
            }
            if params.get("client_id").is_some_and(|body_id| body_id != id) {
                return Err(OAuthError::invalid_client("client_id in the body differs from the Basic credentials"));
            }
            (id, secret)
        }
        None => match (params.get("client_id"), params.get("client_secret")) {
            (Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
            _ => return Err(OAuthError::invalid_client("client authentication is required")),
        },
    };
    let expected = st.clients.get(&client_id).map(|c| c.secret_hash);
    // Compare digests so neither content nor length of the secret leaks through timing.
    let given = sha256(secret.as_bytes());
    let ok = expected.is_some_and(|hash| bool::from(hash.ct_eq(&given)));
    if ok {
        Ok(client_id)
    } else {
        Err(OAuthError::invalid_client("unknown client or wrong client secret"))
    }
}

fn parse_basic(value: Option<&str>) -> Option<(String, String)> {
    let (scheme, encoded) = value?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

fn token_response(
    faults: &Faults,
    access_token: String,
    expires_in: u64,
    refresh_token: Option<String>,
    scope: String,
) -> Value {
    let mut body = Map::new();
    body.insert("access_token".into(), access_token.into());
    body.insert("token_type".into(), "Bearer".into());
    body.insert("expires_in".into(), faults.token_expires_in.clone().unwrap_or_else(|| expires_in.into()));
    if let Some(rt) = refresh_token {
        body.insert("refresh_token".into(), rt.into());
    }
    body.insert("scope".into(), scope.into());
    Value::Object(body)
}

/// Whether `verifier` is a well-formed PKCE verifier (RFC 7636 §4.1) matching the `S256`
/// `challenge`.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()));
    well_formed && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

fn exchange_code(
    st: &mut SandboxState,
    faults: &Faults,
    client_id: &str,
    params: &Params,
    issuer: &str,
) -> Result<Value, OAuthError> {
    let code = params.get("code").ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let Some(rec) = st.codes.get_mut(code) else {
        return Err(OAuthError::invalid_grant("unknown authorization code"));
    };
    if rec.client_id != client_id {
        return Err(OAuthError::invalid_grant("the authorization code was issued to another client"));
    }
    if rec.used {
        // RFC 6749 §4.1.2: deny, and revoke what the code produced.
        if let Some(g) = rec.grant {
            st.revoke_grant(g);
        }
        return Err(OAuthError::invalid_grant("the authorization code was already used; its grant is revoked"));
    }
    // Any presentation by its client consumes the code, successful or not.
    rec.used = true;
    if Instant::now() >= rec.expires_at {
        return Err(OAuthError::invalid_grant("the authorization code expired"));
    }
    if params.get("redirect_uri") != Some(rec.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant("redirect_uri differs from the one in the authorization request"));
    }
    let Some(verifier) = params.get("code_verifier") else {
        return Err(OAuthError::invalid_grant("code_verifier is required (PKCE)"));
    };
    if !pkce_matches(verifier, &rec.code_challenge) {
        return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
    }
    let (user, scope, nonce) = (rec.user.clone(), rec.scope.clone(), rec.nonce.clone());
    // OpenID Connect Core 3.1.3.3: with `openid`, an ID token about the user.
    let id_token = if scope_contains(&scope, "openid") {
        let facts = IdTokenFacts { issuer, client_id, user: &user, nonce: nonce.as_deref() };
        let token = oidc::id_token(&st.signing_key, &st.foreign_key, &facts, faults.id_token_fault)
            .ok_or_else(|| OAuthError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "signing failed"))?;
        Some(token)
    } else {
        None
    };
    let grant = st.create_grant(user, client_id.to_owned(), scope.clone());
    if let Some(rec) = st.codes.get_mut(code) {
        rec.grant = Some(grant);
    }
    let (access, ttl) = st.issue_access_token(grant, scope.clone());
    let refresh = faults.issue_refresh_tokens.then(|| st.issue_refresh_token(grant));
    let mut body = token_response(faults, access, ttl, refresh, scope);
    if let (Some(token), Value::Object(map)) = (id_token, &mut body) {
        map.insert("id_token".into(), token.into());
    }
    Ok(body)
}

fn refresh(st: &mut SandboxState, faults: &Faults, client_id: &str, params: &Params) -> Result<Value, OAuthError> {
    let token = params.get("refresh_token").ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let Some(rec) = st.refresh_tokens.get(token) else {
        return Err(OAuthError::invalid_grant("unknown refresh token"));
    };
    let (grant_index, used) = (rec.grant, rec.used);
    let grant = st.grants.get(grant_index).ok_or_else(|| OAuthError::invalid_grant("unknown refresh token"))?;
    if grant.client_id != client_id {
        return Err(OAuthError::invalid_grant("the refresh token was issued to another client"));
    }
    if grant.revoked {
        return Err(OAuthError::invalid_grant("the grant was revoked"));
    }
    if used {
        st.revoke_grant(grant_index);
        return Err(OAuthError::invalid_grant(
            "the refresh token was already used (rotated away); the whole grant is revoked",
        ));
    }
    let scope = match params.get("scope") {
        None => grant.scope.clone(),
        Some(raw) => {
            let wanted = canonical_scope(raw).map_err(|bad| {
                OAuthError::new(StatusCode::BAD_REQUEST, "invalid_scope", format!("unknown scope {bad:?}"))
            })?;
            if wanted.split(' ').any(|s| !s.is_empty() && !scope_contains(&grant.scope, s)) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "the requested scope exceeds the granted scope",
                ));
            }
            wanted
        }
    };
    let (access, ttl) = st.issue_access_token(grant_index, scope.clone());
    let new_refresh = if faults.rotate_refresh_tokens {
        if let Some(old) = st.refresh_tokens.get_mut(token) {
            old.used = true;
        }
        Some(st.issue_refresh_token(grant_index))
    } else {
        None
    };
    Ok(token_response(faults, access, ttl, new_refresh, scope))
}

/// `POST /sandbox/revoke` (RFC 7009): a refresh token revokes its whole grant, an access
/// token only itself; unknown tokens, and tokens of another client, still answer 200.
pub(super) async fn revoke(State(sb): State<Sandbox>, headers: HeaderMap, body: Bytes) -> Response {
    let params = Params::parse(&body);
    let mut st = sb.lock();
    match revoke_token(&mut st, &headers, &params) {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            no_store(response.headers_mut());
            response
        }
        Err(e) => e.into_response(),
    }
}

fn revoke_token(st: &mut SandboxState, headers: &HeaderMap, params: &Params) -> Result<(), OAuthError> {
    if let Some(name) = params.first_repeated() {
        return Err(OAuthError::invalid_request(format!("parameter `{name}` is repeated")));
    }
    let client_id = authenticate_client(st, headers, params)?;
    let token = params.get("token").ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    st.revocations += 1;
    // The hint only orders the look-ups (RFC 7009 §2.1); both kinds are searched.
    let refresh_grant = st.refresh_tokens.get(token).map(|t| t.grant);
    let owned_by_client = |st: &SandboxState, g: usize| st.grants.get(g).is_some_and(|g| g.client_id == client_id);
    if let Some(g) = refresh_grant {
        if owned_by_client(st, g) {
            st.revoke_grant(g);
        }
        return Ok(());
    }
    let access_grant = st.access_tokens.get(token).map(|t| t.grant);
    if let Some(g) = access_grant {
        if owned_by_client(st, g) {
            if let Some(at) = st.access_tokens.get_mut(token) {
                at.revoked = true;
            }
        }
    }
    Ok(())
}

/// `DELETE /sandbox/applications/{client_id}/token`, as GitHub has it: HTTP Basic
/// authentication of the client named in the path, JSON body `{"access_token": …}`.
/// Revokes that one access token: 204; 404 for a token the client does not own.
pub(super) async fn delete_token(
    State(sb): State<Sandbox>,
    Path(path_client): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    struct Body {
        access_token: String,
    }
    let mut st = sb.lock();
    let client_id = match authenticate_client(&st, &headers, &Params::parse(b"")) {
        Ok(id) if id == path_client && headers.contains_key(header::AUTHORIZATION) => id,
        Ok(_) => {
            return OAuthError::invalid_client("Basic credentials of the client in the path are required")
                .into_response()
        }
        Err(e) => return e.into_response(),
    };
    let Ok(Body { access_token }) = serde_json::from_slice::<Body>(&body) else {
        return OAuthError::invalid_request("body: {\"access_token\": \"…\"} is required").into_response();
    };
    st.revocations += 1;
    let owned = st
        .access_tokens
        .get(&access_token)
        .and_then(|t| st.grants.get(t.grant))
        .is_some_and(|g| g.client_id == client_id);
    match st.access_tokens.get_mut(&access_token) {
        Some(token) if owned => {
            token.revoked = true;
            StatusCode::NO_CONTENT.into_response()
        }
        _ => OAuthError::new(StatusCode::NOT_FOUND, "not_found", "no such token for this client").into_response(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod unit {
    use super::*;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", challenge));
        assert!(!pkce_matches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK", challenge));
        // Too short, even if it were to match.
        assert!(!pkce_matches("abc", &URL_SAFE_NO_PAD.encode(sha256(b"abc"))));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20client:s%3Acret+x"));
        assert_eq!(parse_basic(Some(&header)), Some(("my client".into(), "s:cret x".into())));
        assert_eq!(parse_basic(Some("Bearer abc")), None);
        assert_eq!(parse_basic(Some("Basic !!!")), None);
        assert_eq!(parse_basic(Some(&format!("Basic {}", STANDARD.encode("nocolon")))), None);
        assert_eq!(parse_basic(Some(&format!("Basic {}", STANDARD.encode("a:%zz")))), None);
    }
}
