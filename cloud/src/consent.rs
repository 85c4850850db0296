//! The consent flow: start (state, PKCE, nonce stored in the database, bound to the
//! member's session) and the callback (state consumed once, mix-up defence, code
//! exchange with the managed secret, ID token verified, grant stored as the member's
//! connection).
//!
//! The redirect URI is one fixed URL, `{public_url}/oauth/callback`, sent unchanged at the
//! token endpoint; the callback has no redirect parameter of its own.
//!
//! This module owns the `consent_states` table; connectors, memberships and grants are
//! read and written through `apps`, `orgs` and `connections`.

use crate::access::{authorize, ClientMeta, Need, Org, Principal, Via};
use crate::accounts;
use crate::apps::{self, ConnectorTerms};
use crate::audit;
use crate::connections::{self, Choice, NewGrant};
use crate::error::{Error, Result};
use crate::oauth::client::TokenSet;
use crate::oauth::credentials::{self, AppCredentials};
use crate::oauth::oidc::{Expected, OidcError};
use crate::orgs;
use crate::providers::{Pkce, ProviderDef};
use crate::sealed;
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

/// Which connection a consent is for: `connection` (a label or id) to reconnect that one,
/// `add` for another account; neither for a plain connect (see `connections::Choice`).
#[derive(Clone, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentChoice {
    /// The label or id of the connection to reconnect.
    #[schema(min_length = 1)]
    pub connection: Option<String>,
    /// Connect another account rather than reconnecting the one you have.
    #[serde(default)]
    pub add: bool,
}

/// A [`ConsentChoice`] checked against the member's connections.
struct Chosen {
    /// The connection to reconnect: its id and label.
    reconnect: Option<(String, String)>,
    add: bool,
}

async fn chosen(
    state: &AppState,
    principal: &Principal,
    org_id: &str,
    key: &str,
    choice: &ConsentChoice,
) -> Result<Chosen> {
    if choice.add && choice.connection.is_some() {
        return Err(Error::bad_request("name a connection to reconnect or ask to add one, not both"));
    }
    let reconnect = match choice.connection.as_deref() {
        Some(name) => Some(connections::id_and_label(state, &principal.user_id, org_id, key, name).await?),
        None => None,
    };
    Ok(Chosen { reconnect, add: choice.add })
}

/// What a member is about to connect: checked as `start` checks it, for the page that asks
/// them to confirm.
#[derive(Debug, serde::Serialize)]
pub struct Preview {
    pub org_slug: String,
    pub org_name: String,
    pub connector_key: String,
    pub description: String,
    pub provider: String,
    pub provider_display_name: String,
    /// The Latchkey account that will own the grant.
    pub account_username: String,
    pub account_email: String,
    /// The label of the connection this consent reconnects, if one was named.
    pub reconnecting: Option<String>,
    /// Another account is being added.
    pub adding: bool,
}

/// The confirm page's facts. Nothing is started or stored.
pub async fn preview(
    state: &AppState,
    principal: &Principal,
    org_ref: &str,
    key: &str,
    choice: &ConsentChoice,
) -> Result<Preview> {
    let target = target(state, principal, org_ref, key).await?;
    let chosen = chosen(state, principal, &target.org.id, key, choice).await?;
    let me = accounts::me(state, &principal.user_id).await?;
    let description = apps::list_connectors(state, principal, &target.org.id)
        .await?
        .into_iter()
        .find(|c| c.key == key)
        .map(|c| c.description)
        .unwrap_or_default();
    Ok(Preview {
        org_slug: target.org.slug,
        org_name: target.org.name,
        connector_key: key.to_owned(),
        description,
        provider: target.terms.provider,
        provider_display_name: target.def.display_name.clone(),
        account_username: me.username,
        account_email: me.email,
        reconnecting: chosen.reconnect.map(|(_, label)| label),
        adding: chosen.add,
    })
}

/// The org, connector, provider and managed app a consent would use, after the checks.
struct Target<'a> {
    org: Org,
    terms: ConnectorTerms,
    def: &'a ProviderDef,
    creds: AppCredentials,
}

async fn target<'a>(state: &'a AppState, principal: &Principal, org_ref: &str, key: &str) -> Result<Target<'a>> {
    principal.require(Scope::ConnectionsCreate)?;
    let org = authorize(state, principal, org_ref, Need::Member).await?;
    let terms =
        apps::connector_terms(state, &org.id, key).await?.ok_or_else(|| Error::not_found("no such connector"))?;
    let def = state
        .providers
        .get(&terms.provider)
        .ok_or_else(|| Error::bad_request("this connector's provider is no longer configured"))?;
    let creds = credentials::load(&state.store, &state.keys, &org.id, &terms.provider)
        .await?
        .ok_or_else(|| Error::bad_request("this org has no managed app for the connector's provider; ask an admin"))?;
    Ok(Target { org, terms, def, creds })
}

/// Starts a consent: returns the provider's authorization URL.
pub async fn start(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    key: &str,
    choice: &ConsentChoice,
) -> Result<String> {
    let Target { org, terms, def, creds } = target(state, principal, org_ref, key).await?;
    let chosen = chosen(state, principal, &org.id, key, choice).await?;
    let started = Started {
        state_token: random_b64url(),
        verifier: (def.pkce != Pkce::None).then(|| SecretString::new(random_b64url())),
        nonce: def.oidc.then(random_b64url),
    };
    save_state(state, principal, &org.id, key, &terms.provider, &started, &chosen).await?;
    let url = authorization_url(state, def, &creds, &terms, &started)?;
    audit::record(
        &state.store,
        audit::Event {
            org_id: Some(&org.id),
            actor_id: Some(&principal.user_id),
            pat_id: principal.pat_id(),
            action: "connection.authorize",
            target: Some(key),
            outcome: "started",
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
            detail: Some(serde_json::json!({
                "reconnect": chosen.reconnect.as_ref().map(|(id, _)| id),
                "add": chosen.add,
            })),
        },
    )
    .await?;
    Ok(url)
}

/// The secrets of one started consent.
struct Started {
    state_token: String,
    verifier: Option<SecretString>,
    nonce: Option<String>,
}

/// Stores the state (hashed), the sealed verifier and the nonce, bound to the login.
async fn save_state(
    state: &AppState,
    principal: &Principal,
    org_id: &str,
    key: &str,
    provider: &str,
    started: &Started,
    chosen: &Chosen,
) -> Result<()> {
    let id = new_id();
    let verifier_ct = match &started.verifier {
        Some(v) => Some(state.keys.seal_str(sealed::pkce_verifier(&id), v)?),
        None => None,
    };
    let now = now();
    sqlx::query(
        "insert into consent_states (id, state_hash, user_id, session_id, org_id, connector_key, provider, \
         pkce_verifier_ct, nonce, redirect_uri, expires_at, key_version, created_at, updated_at, connection_id, \
         add_account) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15)",
    )
    .bind(&id)
    .bind(sha256_hex(&started.state_token))
    .bind(&principal.user_id)
    .bind(principal.session_id())
    .bind(org_id)
    .bind(key)
    .bind(provider)
    .bind(verifier_ct)
    .bind(started.nonce.as_deref())
    .bind(redirect_uri(state))
    .bind(now + STATE_TTL_SECS)
    .bind(i64::from(state.keys.active_version()))
    .bind(now)
    .bind(chosen.reconnect.as_ref().map(|(id, _)| id.as_str()))
    .bind(i64::from(chosen.add))
    .execute(state.store.pool())
    .await?;
    // Expired states are useless; sweep them now and then.
    sqlx::query("delete from consent_states where expires_at < $1")
        .bind(now - STATE_TTL_SECS)
        .execute(state.store.pool())
        .await?;
    Ok(())
}

/// The provider's authorization URL for a started consent.
fn authorization_url(
    state: &AppState,
    def: &ProviderDef,
    creds: &AppCredentials,
    terms: &ConnectorTerms,
    started: &Started,
) -> Result<String> {
    // The connector's scopes, else the app's, else the provider's.
    let scopes = [&terms.scopes, &creds.scopes, &def.scopes].into_iter().find(|s| !s.is_empty());
    let mut url = url::Url::parse(&def.authorization_url).map_err(|e| anyhow::anyhow!("provider URL: {e}"))?;
    let mut q = url.query_pairs_mut();
    q.append_pair("response_type", "code")
        .append_pair("client_id", creds.client_id.expose())
        .append_pair("redirect_uri", &redirect_uri(state))
        .append_pair("state", &started.state_token);
    if let Some(scopes) = scopes {
        q.append_pair(&def.scope_param, &def.scope_string(scopes));
    }
    if let Some(v) = &started.verifier {
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(v.expose().as_bytes()));
        q.append_pair("code_challenge", &challenge).append_pair("code_challenge_method", "S256");
    }
    if let Some(n) = &started.nonce {
        q.append_pair("nonce", n);
    }
    for (k, v) in &def.extra_authorize_params {
        q.append_pair(k, v);
    }
    drop(q);
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
    fn failed(message: impl Into<String>, org_slug: Option<String>) -> Self {
        Outcome { ok: false, connection_id: None, org_slug, message: message.into() }
    }
}

/// Why a callback that got past its state ended without a connection.
#[derive(Debug)]
enum ConsentError {
    /// Said to the member on the callback page as it is, and kept in the audit event.
    Refused(String),
    /// Our own failure (database, key ring): logged once with its cause, here; the member
    /// is asked to try again.
    Internal(Error),
}

impl From<Error> for ConsentError {
    fn from(e: Error) -> Self {
        ConsentError::Internal(e)
    }
}

impl ConsentError {
    fn refused(message: impl Into<String>) -> Self {
        ConsentError::Refused(message.into())
    }

    /// What the member reads.
    fn into_message(self) -> String {
        match self {
            ConsentError::Refused(message) => message,
            ConsentError::Internal(e) => {
                tracing::error!(error = %e, "a consent callback failed");
                "Temporary error; try again.".to_owned()
            }
        }
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
    nonce: Option<String>,
    redirect_uri: String,
    expires_at: i64,
    consumed_at: Option<i64>,
    connection_id: Option<String>,
    add_account: i64,
}

impl StateRow {
    fn choice(&self) -> Choice<'_> {
        match (&self.connection_id, self.add_account) {
            (Some(id), _) => Choice::Reconnect(id),
            (None, 0) => Choice::Plain,
            (None, _) => Choice::Add,
        }
    }
}

/// Handles the provider's redirect. Never stores anything unless every check passes.
pub async fn callback(
    state: &AppState,
    browser: Option<&Principal>,
    meta: &ClientMeta,
    params: CallbackParams,
) -> Result<Outcome> {
    let Some(state_token) = params.state.as_deref().filter(|s| !s.is_empty() && s.len() <= 256) else {
        return Ok(Outcome::failed(
            "The sign-in could not be completed: the request is missing its state. Start again from the org page.",
            None,
        ));
    };
    let row: Option<StateRow> = sqlx::query_as(
        "select id, user_id, session_id, org_id, connector_key, provider, pkce_verifier_ct, nonce, redirect_uri, \
         expires_at, consumed_at, connection_id, add_account from consent_states where state_hash = $1",
    )
    .bind(sha256_hex(state_token))
    .fetch_optional(state.store.pool())
    .await?;
    let Some(row) = row else {
        return Ok(Outcome::failed("This sign-in link is not valid. Start again from the org page.", None));
    };
    let org_slug = orgs::slug_of(state, &row.org_id).await?;
    if let Some(refusal) = consume(state, &row, browser).await? {
        return Ok(Outcome::failed(refusal, org_slug));
    }
    let result = finish(state, &row, &params).await.map_err(ConsentError::into_message);
    // A new connection is `connection.create`, an existing one updated
    // `connection.reconnect` (its id the target); a refused consent `connection.connect`.
    let (action, target, detail) = match &result {
        Ok(stored) => (
            if stored.created { "connection.create" } else { "connection.reconnect" },
            stored.id.as_str(),
            serde_json::json!({ "connector": row.connector_key, "label": stored.label }),
        ),
        Err(m) => ("connection.connect", row.connector_key.as_str(), serde_json::json!({ "reason": m })),
    };
    audit::record(
        &state.store,
        audit::Event {
            org_id: Some(&row.org_id),
            actor_id: Some(&row.user_id),
            action,
            target: Some(target),
            outcome: if result.is_ok() { "success" } else { "failure" },
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
            detail: Some(detail),
            ..Default::default()
        },
    )
    .await?;
    Ok(match result {
        Ok(stored) => Outcome { ok: true, connection_id: Some(stored.id), org_slug, message: "Connected.".to_owned() },
        Err(message) => Outcome::failed(message, org_slug),
    })
}

/// Consumes the state, once, for the browser that started it; says why not otherwise.
async fn consume(state: &AppState, row: &StateRow, browser: Option<&Principal>) -> Result<Option<&'static str>> {
    if row.consumed_at.is_some() {
        return Ok(Some("This sign-in was already used. Start again from the org page."));
    }
    if row.expires_at <= now() {
        return Ok(Some("This sign-in took too long and expired. Start again from the org page."));
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
        return Ok(Some("This sign-in was started in another browser session. Start again from the org page."));
    }
    let consumed = sqlx::query(
        "update consent_states set consumed_at = $1, updated_at = $1 where id = $2 and consumed_at is null",
    )
    .bind(now())
    .bind(&row.id)
    .execute(state.store.pool())
    .await?;
    if consumed.rows_affected() == 0 {
        return Ok(Some("This sign-in was already used. Start again from the org page."));
    }
    Ok(None)
}

/// Every check after the state: provider error, issuer, membership, exchange, ID token,
/// identity.
async fn finish(
    state: &AppState,
    row: &StateRow,
    params: &CallbackParams,
) -> Result<connections::Stored, ConsentError> {
    let def = state
        .providers
        .get(&row.provider)
        .ok_or_else(|| ConsentError::refused("This connector's provider is no longer configured."))?;
    check_provider_answer(params)?;
    check_issuer(state, def, params).await?;
    let code = params
        .code
        .as_deref()
        .filter(|c| !c.is_empty() && c.len() <= 2048)
        .ok_or_else(|| ConsentError::refused("The provider sent no code."))?;
    // The member may have left the org (or the connector gone) since starting.
    if orgs::role_of(state, &row.org_id, &row.user_id).await?.is_none() {
        return Err(ConsentError::refused("You are no longer a member of this org."));
    }
    let terms = apps::connector_terms(state, &row.org_id, &row.connector_key)
        .await?
        .ok_or_else(|| ConsentError::refused("This connector no longer exists."))?;
    if terms.provider != row.provider {
        return Err(ConsentError::refused("This connector now uses another provider; connect again."));
    }
    let creds = credentials::load(&state.store, &state.keys, &row.org_id, &row.provider)
        .await?
        .ok_or_else(|| ConsentError::refused("The org's managed app for this provider was removed."))?;
    let verifier = match &row.pkce_verifier_ct {
        Some(ct) => Some(state.keys.open_str(sealed::pkce_verifier(&row.id), ct).map_err(Error::from)?),
        None => None,
    };
    let tokens =
        state.provider_client.exchange_code(def, &creds, code, &row.redirect_uri, verifier.as_ref()).await.map_err(
            |e| ConsentError::refused(format!("The provider did not accept the sign-in ({e}); nothing was connected.")),
        )?;
    let subject = match check_id_token(state, def, &creds, row, &tokens).await {
        Ok(subject) => subject,
        Err(refusal) => {
            revoke_unused(state, def, &creds, &tokens).await;
            return Err(refusal);
        }
    };
    let (account_id, account_name) = state.provider_client.account(def, &tokens.access_token).await.map_err(|e| {
        ConsentError::refused(format!("Could not read your account at the provider ({e}); nothing was connected."))
    })?;
    // OpenID Connect Core 5.3.2: userinfo's `sub` is the ID token's.
    if let Some(subject) = subject.filter(|_| def.account_id_field == "sub") {
        if subject != account_id {
            revoke_unused(state, def, &creds, &tokens).await;
            return Err(ConsentError::refused(
                "The provider's ID token and account information name different users; nothing was connected.",
            ));
        }
    }
    let scopes: Vec<String> = tokens.scope.as_deref().map(|s| def.parse_granted_scopes(s)).unwrap_or_default();
    let grant = NewGrant {
        org_id: &row.org_id,
        connector_key: &row.connector_key,
        user_id: &row.user_id,
        provider: &row.provider,
        app_id: &creds.app_id,
        account_id: &account_id,
        account_name: account_name.as_deref(),
        scopes: &scopes,
        consent_only: terms.consent_only,
        tokens: &tokens,
    };
    Ok(connections::store(state, &grant, row.choice()).await?)
}

/// The provider's own refusal.
fn check_provider_answer(params: &CallbackParams) -> Result<(), ConsentError> {
    if let Some(error) = &params.error {
        return Err(ConsentError::Refused(if error == "access_denied" {
            "You declined access at the provider; nothing was connected.".to_owned()
        } else {
            format!(
                "The provider refused: {}.",
                error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect::<String>()
            )
        }));
    }
    Ok(())
}

/// RFC 9207, the mix-up defence: when the registry names the provider's issuer, an `iss`
/// naming another is refused, and so is a missing `iss` when the provider's metadata says
/// it always sends one (or the metadata cannot be read to tell).
async fn check_issuer(state: &AppState, def: &ProviderDef, params: &CallbackParams) -> Result<(), ConsentError> {
    let Some(issuer) = &def.issuer else { return Ok(()) };
    match params.iss.as_deref() {
        Some(iss) if iss == issuer => Ok(()),
        Some(_) => Err(ConsentError::refused(
            "The answer did not come from the expected provider (issuer mismatch); nothing was connected.",
        )),
        None => {
            let metadata = state.provider_client.metadata(def).await.map_err(|e| {
                tracing::warn!(provider = %def.name, error = %e, "a consent callback without iss: metadata unavailable");
                ConsentError::refused(format!(
                    "The answer does not name its issuer and the provider's metadata could not be checked ({e}); \
                     nothing was connected."
                ))
            })?;
            if metadata.authorization_response_iss_parameter_supported {
                return Err(ConsentError::refused(
                    "The answer does not name its issuer (iss), which this provider always does; nothing was connected.",
                ));
            }
            Ok(())
        }
    }
}

/// OpenID Connect Core 3.1.3.7: an ID token, when the provider sent one, must verify:
/// signature with the provider's keys, `iss`, `aud`/`azp`, `exp` and the stored `nonce`.
/// Returns its subject. A provider with neither `issuer` nor `jwks_uri` has no keys to
/// check against: its ID token is not used (identity comes from userinfo).
async fn check_id_token(
    state: &AppState,
    def: &ProviderDef,
    creds: &AppCredentials,
    row: &StateRow,
    tokens: &TokenSet,
) -> Result<Option<String>, ConsentError> {
    let Some(id_token) = &tokens.id_token else { return Ok(None) };
    if def.issuer.is_none() && def.jwks_uri.is_none() {
        tracing::debug!(provider = %def.name, "an ID token not verified: the provider has no issuer or jwks_uri");
        return Ok(None);
    }
    let expected =
        Expected { issuer: def.issuer.as_deref(), client_id: creds.client_id.expose(), nonce: row.nonce.as_deref() };
    match state.provider_client.verify_id_token(def, &expected, id_token.expose()).await {
        Ok(claims) => Ok(Some(claims.sub)),
        Err(e) => {
            tracing::warn!(provider = %def.name, reason = %e, "a consent's ID token was refused");
            Err(ConsentError::refused(match e {
                OidcError::Invalid(why) => {
                    format!("The provider's ID token was refused: {why}. Nothing was connected.")
                }
                OidcError::Unavailable(why) => {
                    format!("The provider's ID token could not be checked: {why}. Nothing was connected.")
                }
            }))
        }
    }
}

/// Best effort: tokens issued for a consent we refuse are revoked at the provider.
async fn revoke_unused(state: &AppState, def: &ProviderDef, creds: &AppCredentials, tokens: &TokenSet) {
    let (token, hint) = match &tokens.refresh_token {
        Some(refresh) => (refresh, "refresh_token"),
        None => (&tokens.access_token, "access_token"),
    };
    if let Err(e) = state.provider_client.revoke(def, creds, token, hint).await {
        tracing::info!(provider = %def.name, error = %e, "could not revoke the tokens of a refused consent");
    }
}
