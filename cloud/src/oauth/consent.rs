//! The consent flow: start (state, PKCE, nonce stored in the database, bound to the
//! member's session) and the callback (state consumed once, mix-up defence, code
//! exchange with the managed secret, grant stored as the member's connection).
//!
//! The redirect URI is one fixed URL, `{public_url}/oauth/callback`, sent unchanged at the
//! token endpoint; the callback has no redirect parameter of its own.

use crate::apps;
use crate::audit;
use crate::auth::{Principal, Via};
use crate::connections::{self, NewGrant};
use crate::crypto::Aad;
use crate::error::{Error, Result};
use crate::orgs::{self, Need};
use crate::providers::Pkce;
use crate::state::AppState;
use crate::store::{new_id, now};
use base64::Engine;
use latchkey_shared::pat::sha256_hex;
use latchkey_shared::secret::SecretString;
use latchkey_shared::Scope;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How long a started consent may take.
pub const STATE_TTL_SECS: i64 = 600;

pub fn redirect_uri(state: &AppState) -> String {
    format!("{}/oauth/callback", state.public_url)
}

fn random_b64url() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn verifier_aad(id: &str) -> Aad<'_> {
    Aad { table: "consent_states", column: "pkce_verifier", row_id: id }
}

/// Starts a consent: returns the provider's authorization URL.
pub async fn start(state: &AppState, principal: &Principal, org_ref: &str, key: &str) -> Result<String> {
    principal.require(Scope::ConnectionsCreate)?;
    let org = orgs::authorize(state, principal, org_ref, Need::Member).await?;
    let connector: Option<(String, String)> =
        sqlx::query_as("select provider, scopes from connectors where org_id = $1 and key = $2")
            .bind(&org.id)
            .bind(key)
            .fetch_optional(state.store.pool())
            .await?;
    let (provider, connector_scopes) = connector.ok_or_else(|| Error::not_found("no such connector"))?;
    let def = state
        .providers
        .get(&provider)
        .ok_or_else(|| Error::bad_request("this connector's provider is no longer configured"))?;
    let creds = apps::credentials(state, &org.id, &provider)
        .await?
        .ok_or_else(|| Error::bad_request("this org has no managed app for the connector's provider; ask an admin"))?;

    let state_token = random_b64url();
    let id = new_id();
    let verifier = (def.pkce != Pkce::None).then(|| SecretString::new(random_b64url()));
    let nonce = def.oidc.then(random_b64url);
    let verifier_ct = match &verifier {
        Some(v) => Some(state.keys.seal_str(verifier_aad(&id), v)?),
        None => None,
    };
    let now = now();
    sqlx::query(
        "insert into consent_states (id, state_hash, user_id, session_id, org_id, connector_key, provider, \
         pkce_verifier_ct, nonce, redirect_uri, expires_at, key_version, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
    )
    .bind(&id)
    .bind(sha256_hex(&state_token))
    .bind(&principal.user_id)
    .bind(principal.session_id())
    .bind(&org.id)
    .bind(key)
    .bind(&provider)
    .bind(verifier_ct)
    .bind(nonce.as_deref())
    .bind(redirect_uri(state))
    .bind(now + STATE_TTL_SECS)
    .bind(i64::from(state.keys.active_version()))
    .bind(now)
    .execute(state.store.pool())
    .await?;
    // Expired states are useless; sweep them now and then.
    sqlx::query("delete from consent_states where expires_at < $1")
        .bind(now - STATE_TTL_SECS)
        .execute(state.store.pool())
        .await?;

    let scopes: Vec<String> = {
        let from_connector: Vec<String> = connector_scopes.split_whitespace().map(str::to_owned).collect();
        if !from_connector.is_empty() {
            from_connector
        } else if !creds.scopes.is_empty() {
            creds.scopes.clone()
        } else {
            def.scopes.clone()
        }
    };
    let mut url = url::Url::parse(&def.authorization_url).map_err(|e| anyhow::anyhow!("provider URL: {e}"))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", creds.client_id.expose())
            .append_pair("redirect_uri", &redirect_uri(state))
            .append_pair("state", &state_token);
        if !scopes.is_empty() {
            q.append_pair(&def.scope_param, &def.scope_string(&scopes));
        }
        if let Some(v) = &verifier {
            let challenge =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(v.expose().as_bytes()));
            q.append_pair("code_challenge", &challenge).append_pair("code_challenge_method", "S256");
        }
        if let Some(n) = &nonce {
            q.append_pair("nonce", n);
        }
        for (k, v) in &def.extra_authorize_params {
            q.append_pair(k, v);
        }
    }
    audit::record(
        &state.store,
        audit::Event {
            org_id: Some(&org.id),
            actor_id: Some(&principal.user_id),
            pat_id: principal.pat_id(),
            action: "connection.authorize",
            target: Some(key),
            outcome: "started",
            ..Default::default()
        },
    )
    .await?;
    Ok(url.into())
}

/// What the provider sent back. Unknown parameters are ignored: providers add their own.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub iss: Option<String>,
}

/// The callback's result, for the page that tells the opener.
#[derive(Debug)]
pub struct Outcome {
    pub ok: bool,
    pub connection_id: Option<String>,
    pub org_slug: Option<String>,
    pub message: String,
}

impl Outcome {
    fn fail(message: impl Into<String>) -> Self {
        Outcome { ok: false, connection_id: None, org_slug: None, message: message.into() }
    }
}

#[derive(sqlx::FromRow)]
struct StateRow {
    id: String,
    user_id: String,
    session_id: Option<String>,
    org_id: String,
    connector_key: String,
    provider: String,
    pkce_verifier_ct: Option<Vec<u8>>,
    redirect_uri: String,
    expires_at: i64,
    consumed_at: Option<i64>,
}

/// Handles the provider's redirect. Never stores anything unless every check passes.
pub async fn callback(state: &AppState, browser: Option<&Principal>, params: CallbackParams) -> Result<Outcome> {
    let Some(state_token) = params.state.as_deref().filter(|s| !s.is_empty() && s.len() <= 256) else {
        return Ok(Outcome::fail(
            "The sign-in could not be completed: the request is missing its state. Start again from the org page.",
        ));
    };
    let row: Option<StateRow> = sqlx::query_as(
        "select id, user_id, session_id, org_id, connector_key, provider, pkce_verifier_ct, redirect_uri, expires_at, \
         consumed_at from consent_states where state_hash = $1",
    )
    .bind(sha256_hex(state_token))
    .fetch_optional(state.store.pool())
    .await?;
    let Some(row) = row else {
        return Ok(Outcome::fail("This sign-in link is not valid. Start again from the org page."));
    };
    let org_slug: Option<String> = sqlx::query_scalar("select slug from orgs where id = $1")
        .bind(&row.org_id)
        .fetch_optional(state.store.pool())
        .await?;
    let fail = |message: &str| Outcome { org_slug: org_slug.clone(), ..Outcome::fail(message) };
    if row.consumed_at.is_some() {
        return Ok(fail("This sign-in was already used. Start again from the org page."));
    }
    if row.expires_at <= now() {
        return Ok(fail("This sign-in took too long and expired. Start again from the org page."));
    }
    // The browser that returns must be the member who started, in the same login when a
    // login started it.
    let same_browser = match browser {
        Some(Principal { user_id, via: Via::Session { session_id } }) => {
            *user_id == row.user_id && row.session_id.as_ref().is_none_or(|s| s == session_id)
        }
        _ => false,
    };
    if !same_browser {
        return Ok(fail("This sign-in was started in another browser session. Start again from the org page."));
    }
    // Consume the state, once, whatever happens next.
    let consumed = sqlx::query(
        "update consent_states set consumed_at = $1, updated_at = $1 where id = $2 and consumed_at is null",
    )
    .bind(now())
    .bind(&row.id)
    .execute(state.store.pool())
    .await?;
    if consumed.rows_affected() == 0 {
        return Ok(fail("This sign-in was already used. Start again from the org page."));
    }
    let outcome = finish(state, &row, &params).await;
    let (result, message) = match &outcome {
        Ok(_) => ("success", None),
        Err(m) => ("failure", Some(m.clone())),
    };
    audit::record(
        &state.store,
        audit::Event {
            org_id: Some(&row.org_id),
            actor_id: Some(&row.user_id),
            action: "connection.connect",
            target: Some(&row.connector_key),
            outcome: result,
            detail: message.map(|m| serde_json::json!({ "reason": m })),
            ..Default::default()
        },
    )
    .await?;
    Ok(match outcome {
        Ok(id) => Outcome { ok: true, connection_id: Some(id), org_slug, message: "Connected.".to_owned() },
        Err(message) => fail(&message),
    })
}

/// Every check after the state: provider error, issuer, membership, exchange, identity.
async fn finish(state: &AppState, row: &StateRow, params: &CallbackParams) -> std::result::Result<String, String> {
    let def = state.providers.get(&row.provider).ok_or("This connector's provider is no longer configured.")?;
    if let Some(error) = &params.error {
        return Err(if error == "access_denied" {
            "You declined access at the provider; nothing was connected.".to_owned()
        } else {
            format!(
                "The provider refused: {}.",
                error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect::<String>()
            )
        });
    }
    // RFC 9207: a provider that names itself must name itself correctly.
    if let Some(issuer) = &def.issuer {
        if params.iss.as_deref() != Some(issuer.as_str()) {
            return Err(
                "The answer did not come from the expected provider (issuer mismatch); nothing was connected.".into()
            );
        }
    }
    let code =
        params.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 2048).ok_or("The provider sent no code.")?;
    // The member may have left the org (or the connector gone) since starting.
    let member: Option<String> = sqlx::query_scalar("select role from memberships where org_id = $1 and user_id = $2")
        .bind(&row.org_id)
        .bind(&row.user_id)
        .fetch_optional(state.store.pool())
        .await
        .map_err(|_| "Temporary error; try again.")?;
    if member.is_none() {
        return Err("You are no longer a member of this org.".into());
    }
    let consent_only: Option<i64> =
        sqlx::query_scalar("select consent_only from connectors where org_id = $1 and key = $2")
            .bind(&row.org_id)
            .bind(&row.connector_key)
            .fetch_optional(state.store.pool())
            .await
            .map_err(|_| "Temporary error; try again.")?;
    let consent_only = consent_only.ok_or("This connector no longer exists.")?;
    let creds = apps::credentials(state, &row.org_id, &row.provider)
        .await
        .map_err(|_| "Temporary error; try again.")?
        .ok_or("The org's managed app for this provider was removed.")?;
    let verifier = match &row.pkce_verifier_ct {
        Some(ct) => Some(state.keys.open_str(verifier_aad(&row.id), ct).map_err(|_| "Temporary error; try again.")?),
        None => None,
    };
    let tokens = state
        .provider_client
        .exchange_code(def, &creds, code, &row.redirect_uri, verifier.as_ref())
        .await
        .map_err(|e| format!("The provider did not accept the sign-in ({e}); nothing was connected."))?;
    let (account_id, account_name) = state
        .provider_client
        .account(def, &tokens.access_token)
        .await
        .map_err(|e| format!("Could not read your account at the provider ({e}); nothing was connected."))?;
    let scopes: Vec<String> = tokens.scope.as_deref().map(|s| def.parse_granted_scopes(s)).unwrap_or_default();
    connections::store_grant(
        state,
        NewGrant {
            org_id: &row.org_id,
            connector_key: &row.connector_key,
            user_id: &row.user_id,
            provider: &row.provider,
            app_id: &creds.app_id,
            account_id: &account_id,
            account_name: account_name.as_deref(),
            scopes: &scopes,
            consent_only: consent_only != 0,
            tokens: &tokens,
        },
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "storing a connection failed");
        "Temporary error while saving the connection; try again.".to_owned()
    })
}
