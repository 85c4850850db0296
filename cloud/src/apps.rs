//! Providers, managed OAuth apps and the connectors an org publishes with them.
//!
//! An org has at most one managed app per provider. Its client id and secret are sealed
//! with the key ring, bound to the app's row; listings show only the last four characters
//! of the client id. The secret never leaves this module except to a provider's token
//! endpoint.

use crate::access::{authorize, ClientMeta, Need, Principal, Role};
use crate::audit;
use crate::cascade;
use crate::error::{Error, Result};
use crate::oauth::credentials;
use crate::providers::{Pkce, ProviderDef, TokenAuthMethod};
use crate::sealed;
use crate::state::AppState;
use crate::store::{new_id, now, rfc3339, unique_violation};
use latchkey_shared::secret::SecretString;
use latchkey_shared::{ErrorCode, Scope};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Creates an app, or changes an existing one: what is omitted is kept (so rotating the
/// secret is `{client_secret}` alone).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutApp {
    /// Required for a new app; omitted, an existing app keeps its client id.
    #[schema(value_type = Option<String>)]
    pub client_id: Option<SecretString>,
    /// Required for a new app; omitted, an existing app keeps its secret. Write-only.
    #[schema(value_type = Option<String>, format = Password)]
    pub client_secret: Option<SecretString>,
    /// Scopes the app may request. Omitted: an existing app keeps its scopes; a new one
    /// gets the provider's default scopes plus the scopes the agent's connector for it
    /// needs (`suggested_scopes`). Refused when it drops a scope a connector uses.
    pub scopes: Option<Vec<String>>,
}

/// A managed app as admins see it: never the secret, only a hint of the client id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ManagedApp {
    pub id: String,
    pub provider: String,
    pub client_id_hint: String,
    pub scopes: Vec<String>,
    /// Username of who last configured it, when known.
    pub configured_by: Option<String>,
    /// The org's connectors on this provider (deleting the app leaves them unusable).
    pub connectors: i64,
    /// Members' connections made with this app (deleting the app disconnects them).
    pub connections: i64,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutConnector {
    pub provider: String,
    /// Each must be among the scopes of the org's app for `provider`; empty: the app's.
    pub scopes: Vec<String>,
    /// Default true: the connection is only ever used through the consent of the member
    /// who made it.
    pub consent_only: Option<bool>,
    /// The name members see (default: the provider's name).
    pub display_name: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Connector {
    pub id: String,
    pub key: String,
    /// The name members see: the admin's, else the provider's.
    pub display_name: String,
    pub provider: String,
    pub provider_display_name: String,
    pub scopes: Vec<String>,
    pub consent_only: bool,
    pub description: String,
    /// Whether the org still has a managed app for this connector's provider.
    pub app_configured: bool,
    /// Members' connections to it; shown to the org's admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

/// A provider as listed: its public facts, never anything of an org's app.
#[derive(Debug, Serialize, ToSchema)]
pub struct Provider {
    name: String,
    display_name: String,
    scopes: Vec<String>,
    scope_separator: String,
    #[schema(value_type = String)]
    pkce: Pkce,
    #[schema(value_type = String)]
    token_auth_method: TokenAuthMethod,
    authorization_url: String,
    token_url: String,
    revocation_url: Option<String>,
    userinfo_url: Option<String>,
    issuer: Option<String>,
    extra_authorize_params: BTreeMap<String, String>,
    rotates_refresh_tokens: bool,
    docs_url: Option<String>,
    /// The provider's developer console, where the OAuth app is registered.
    console_url: Option<String>,
    /// The scopes the local agent's connector for this provider needs (empty: none).
    suggested_scopes: Vec<String>,
}

impl From<&ProviderDef> for Provider {
    fn from(p: &ProviderDef) -> Self {
        Provider {
            name: p.name.clone(),
            display_name: p.display_name.clone(),
            scopes: p.scopes.clone(),
            scope_separator: p.scope_separator.clone(),
            pkce: p.pkce,
            token_auth_method: p.token_auth_method,
            authorization_url: p.authorization_url.clone(),
            token_url: p.token_url.clone(),
            revocation_url: p.revocation_url.clone(),
            userinfo_url: p.userinfo_url.clone(),
            issuer: p.issuer.clone(),
            extra_authorize_params: p.extra_authorize_params.clone(),
            rotates_refresh_tokens: p.rotates_refresh_tokens,
            docs_url: p.docs_url.clone(),
            console_url: p.console_url.clone(),
            suggested_scopes: p.suggested_scopes.clone(),
        }
    }
}

/// What a consent needs of a connector.
pub struct ConnectorTerms {
    pub provider: String,
    /// The scopes the connector asks for (may be empty: the app's or provider's).
    pub scopes: Vec<String>,
    pub consent_only: bool,
}

/// Every provider: the built-in registry plus the operator's config-file providers.
pub fn providers(state: &AppState) -> Vec<Provider> {
    state.providers.iter().map(Provider::from).collect()
}

/// The columns of an app as listed, with who configured it and what depends on it.
const APP_SELECT: &str = "select a.id, a.provider, a.client_id_hint, a.scopes, a.created_at, a.updated_at, \
     u.username as configured_by, \
     (select count(*) from connectors c where c.org_id = a.org_id and c.provider = a.provider) as connectors, \
     (select count(*) from connections n where n.app_id = a.id) as connections \
     from managed_apps a left join users u on u.id = coalesce(a.updated_by, a.created_by)";

pub async fn list_apps(state: &AppState, principal: &Principal, org_ref: &str) -> Result<Vec<ManagedApp>> {
    principal.require(Scope::AppsRead)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    let rows: Vec<AppRow> = sqlx::query_as(&format!("{APP_SELECT} where a.org_id = $1 order by a.provider"))
        .bind(&org.id)
        .fetch_all(state.store.pool())
        .await?;
    Ok(rows.into_iter().map(AppRow::into_view).collect())
}

/// Creates the org's app for `provider`, or changes it (what `req` omits is kept).
pub async fn put_app(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    provider: &str,
    req: PutApp,
) -> Result<ManagedApp> {
    principal.require(Scope::AppsWrite)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    let def = state.providers.get(provider).ok_or_else(|| unknown_provider(provider))?;
    let client_id = req.client_id.as_ref().map(|c| c.expose().trim().to_owned());
    if let Some(client_id) = &client_id {
        if client_id.is_empty() || client_id.len() > 512 || client_id.chars().any(char::is_control) {
            return Err(Error::bad_request("client_id: 1 to 512 printable characters"));
        }
    }
    if let Some(secret) = &req.client_secret {
        let secret = secret.expose();
        if secret.is_empty() || secret.len() > 4096 || secret.chars().any(char::is_control) {
            return Err(Error::bad_request("client_secret: 1 to 4096 printable characters"));
        }
    }
    let scopes = req.scopes.map(validate_scopes).transpose()?;
    let (id_changed, secret_changed) = (req.client_id.is_some(), req.client_secret.is_some());
    let existing = credentials::load(&state.store, &state.keys, &org.id, provider).await?;
    let now = now();
    let (id, hint, scopes) = match existing {
        Some(app) => {
            if let Some(scopes) = &scopes {
                check_connectors_within(state, &org.id, provider, scopes).await?;
            }
            let client_id = client_id.map(SecretString::new).unwrap_or(app.client_id);
            let secret = req.client_secret.unwrap_or(app.client_secret);
            let scopes = scopes.unwrap_or(app.scopes);
            let hint = hint_of(client_id.expose());
            update_app(state, &app.app_id, &client_id, &secret, &hint, &scopes, &principal.user_id, now).await?;
            (app.app_id, hint, scopes)
        }
        None => {
            let (Some(client_id), Some(secret)) = (client_id, req.client_secret) else {
                return Err(Error::bad_request(format!(
                    "client_id and client_secret: both are needed to configure the org's first `{provider}` app"
                )));
            };
            let scopes = scopes.unwrap_or_else(|| default_scopes(def));
            let hint = hint_of(&client_id);
            let client_id = SecretString::new(client_id);
            let id = new_id();
            let id_ct = state.keys.seal_str(sealed::client_id(&id), &client_id)?;
            let secret_ct = state.keys.seal_str(sealed::client_secret(&id), &secret)?;
            let inserted = sqlx::query(
                "insert into managed_apps (id, org_id, provider, client_id_ct, client_secret_ct, client_id_hint, \
                 scopes, key_version, created_by, updated_by, created_at, updated_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $10)",
            )
            .bind(&id)
            .bind(&org.id)
            .bind(provider)
            .bind(id_ct)
            .bind(secret_ct)
            .bind(&hint)
            .bind(scopes.join(" "))
            .bind(i64::from(state.keys.active_version()))
            .bind(&principal.user_id)
            .bind(now)
            .execute(state.store.pool())
            .await;
            match inserted {
                Ok(_) => (id, hint, scopes),
                // Someone created it meanwhile: replace theirs, as a PUT does.
                Err(e) if unique_violation(&e).is_some() => {
                    let id: String =
                        sqlx::query_scalar("select id from managed_apps where org_id = $1 and provider = $2")
                            .bind(&org.id)
                            .bind(provider)
                            .fetch_one(state.store.pool())
                            .await?;
                    update_app(state, &id, &client_id, &secret, &hint, &scopes, &principal.user_id, now).await?;
                    (id, hint, scopes)
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    audit_change(
        state,
        principal,
        meta,
        &org.id,
        "app.put",
        provider,
        Some(serde_json::json!({
            "app_id": id,
            "client_id_hint": hint,
            "client_id_changed": id_changed,
            "client_secret_changed": secret_changed,
            "scopes": scopes,
        })),
    )
    .await?;
    let row: AppRow =
        sqlx::query_as(&format!("{APP_SELECT} where a.id = $1")).bind(&id).fetch_one(state.store.pool()).await?;
    Ok(row.into_view())
}

/// A new app's scopes when the admin names none: the provider's defaults, then what the
/// agent's connector for it needs.
fn default_scopes(def: &ProviderDef) -> Vec<String> {
    let mut scopes = def.scopes.clone();
    for s in &def.suggested_scopes {
        if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
    scopes
}

/// The last four characters of a client id.
fn hint_of(client_id: &str) -> String {
    let chars: Vec<char> = client_id.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// An app's scopes may not drop a scope one of the org's connectors on it asks for.
async fn check_connectors_within(state: &AppState, org_id: &str, provider: &str, scopes: &[String]) -> Result<()> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("select key, scopes from connectors where org_id = $1 and provider = $2 order by key")
            .bind(org_id)
            .bind(provider)
            .fetch_all(state.store.pool())
            .await?;
    for (key, used) in rows {
        if let Some(missing) = used.split_whitespace().find(|s| !scopes.iter().any(|a| a == s)) {
            return Err(Error::bad_request(format!(
                "scopes: connector `{key}` asks for `{missing}`, which these scopes drop; change or unpublish the connector first"
            )));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn update_app(
    state: &AppState,
    id: &str,
    client_id: &SecretString,
    client_secret: &SecretString,
    hint: &str,
    scopes: &[String],
    actor: &str,
    now: i64,
) -> Result<()> {
    // Both are sealed afresh under the active key, so the row's key version is true of both.
    let id_ct = state.keys.seal_str(sealed::client_id(id), client_id)?;
    let secret_ct = state.keys.seal_str(sealed::client_secret(id), client_secret)?;
    sqlx::query(
        "update managed_apps set client_id_ct = $1, client_secret_ct = $2, client_id_hint = $3, scopes = $4, \
         key_version = $5, updated_by = $6, updated_at = $7 where id = $8",
    )
    .bind(id_ct)
    .bind(secret_ct)
    .bind(hint)
    .bind(scopes.join(" "))
    .bind(i64::from(state.keys.active_version()))
    .bind(actor)
    .bind(now)
    .bind(id)
    .execute(state.store.pool())
    .await?;
    Ok(())
}

pub async fn delete_app(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    provider: &str,
) -> Result<()> {
    principal.require(Scope::AppsWrite)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    // Every connection made with the app is disconnected first (revoked at the provider
    // while the app's credentials still exist).
    let app: Option<AppRow> = sqlx::query_as(&format!("{APP_SELECT} where a.org_id = $1 and a.provider = $2"))
        .bind(&org.id)
        .bind(provider)
        .fetch_optional(state.store.pool())
        .await?;
    let Some(app) = app else { return Err(Error::not_found("this org has no managed app for that provider")) };
    cascade::app_deleted(state, &app.id, &principal.user_id, meta).await?;
    let done = sqlx::query("delete from managed_apps where id = $1").bind(&app.id).execute(state.store.pool()).await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("this org has no managed app for that provider"));
    }
    let detail = serde_json::json!({ "app_id": app.id, "connectors": app.connectors, "connections": app.connections });
    audit_change(state, principal, meta, &org.id, "app.delete", provider, Some(detail)).await
}

/// The terms of connector `key` in the org, if it exists.
pub async fn connector_terms(state: &AppState, org_id: &str, key: &str) -> Result<Option<ConnectorTerms>> {
    let row: Option<(String, String, i64)> =
        sqlx::query_as("select provider, scopes, consent_only from connectors where org_id = $1 and key = $2")
            .bind(org_id)
            .bind(key)
            .fetch_optional(state.store.pool())
            .await?;
    Ok(row.map(|(provider, scopes, consent_only)| ConnectorTerms {
        provider,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        consent_only: consent_only != 0,
    }))
}

/// Members (and admins) read the org's connectors; admins also see how many connections
/// each has.
pub async fn list_connectors(state: &AppState, principal: &Principal, org_ref: &str) -> Result<Vec<Connector>> {
    principal.require(Scope::ConnectionsRead)?;
    let org = authorize(state, principal, org_ref, Need::Member).await?;
    let admin = matches!(org.role, Some(Role::Owner | Role::Admin));
    let mut connectors = list_connectors_unchecked(state, &org.id).await?;
    if !admin {
        for c in &mut connectors {
            c.connections = None;
        }
    }
    Ok(connectors)
}

pub async fn put_connector(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    key: &str,
    req: PutConnector,
) -> Result<Connector> {
    principal.require(Scope::AppsWrite)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    validate_key(key)?;
    if state.providers.get(&req.provider).is_none() {
        return Err(unknown_provider(&req.provider));
    }
    let app_scopes: Option<String> =
        sqlx::query_scalar("select scopes from managed_apps where org_id = $1 and provider = $2")
            .bind(&org.id)
            .bind(&req.provider)
            .fetch_optional(state.store.pool())
            .await?;
    let Some(app_scopes) = app_scopes else {
        return Err(Error::bad_request(format!(
            "provider: this org has no managed app for `{0}`; configure one first with PUT /v1/orgs/{1}/apps/{0}",
            req.provider, org.slug
        )));
    };
    let scopes = validate_scopes(req.scopes)?;
    let app_scopes: Vec<&str> = app_scopes.split_whitespace().collect();
    if let Some(outside) = scopes.iter().find(|s| !app_scopes.contains(&s.as_str())) {
        return Err(Error::bad_request(format!(
            "scopes: `{outside}` is not among the scopes of the org's `{}` app ({}); add it to the app first",
            req.provider,
            if app_scopes.is_empty() { "none".to_owned() } else { app_scopes.join(" ") }
        )));
    }
    let display_name = req.display_name.unwrap_or_default().trim().to_owned();
    if display_name.chars().count() > 100 || display_name.chars().any(char::is_control) {
        return Err(Error::bad_request("display_name: at most 100 printable characters"));
    }
    let description = req.description.unwrap_or_default();
    if description.chars().count() > 500 || description.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::bad_request("description: at most 500 printable characters"));
    }
    cascade::connector_moved(state, &org.id, key, &req.provider, &principal.user_id, meta).await?;
    let now = now();
    sqlx::query(
        "insert into connectors (id, org_id, key, provider, scopes, consent_only, display_name, description, \
         created_by, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
         on conflict (org_id, key) do update set provider = excluded.provider, scopes = excluded.scopes, \
         consent_only = excluded.consent_only, display_name = excluded.display_name, \
         description = excluded.description, updated_at = excluded.updated_at",
    )
    .bind(new_id())
    .bind(&org.id)
    .bind(key)
    .bind(&req.provider)
    .bind(scopes.join(" "))
    .bind(i64::from(req.consent_only.unwrap_or(true)))
    .bind(&display_name)
    .bind(&description)
    .bind(&principal.user_id)
    .bind(now)
    .execute(state.store.pool())
    .await?;
    audit_change(
        state,
        principal,
        meta,
        &org.id,
        "connector.put",
        key,
        Some(serde_json::json!({ "provider": req.provider, "scopes": scopes, "display_name": display_name })),
    )
    .await?;
    list_connectors_unchecked(state, &org.id)
        .await?
        .into_iter()
        .find(|c| c.key == key)
        .ok_or_else(|| Error::not_found("no such connector"))
}

async fn list_connectors_unchecked(state: &AppState, org_id: &str) -> Result<Vec<Connector>> {
    let rows: Vec<ConnectorRow> = sqlx::query_as(
        "select c.id, c.key, c.provider, c.scopes, c.consent_only, c.display_name, c.description, c.created_at, \
         c.updated_at, \
         (select count(*) from managed_apps a where a.org_id = c.org_id and a.provider = c.provider) as apps, \
         (select count(*) from connections n where n.org_id = c.org_id and n.connector_key = c.key) as connections \
         from connectors c where c.org_id = $1 order by c.key",
    )
    .bind(org_id)
    .fetch_all(state.store.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.into_view(state)).collect())
}

pub async fn delete_connector(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    key: &str,
) -> Result<()> {
    principal.require(Scope::AppsWrite)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    let connections: i64 =
        sqlx::query_scalar("select count(*) from connections where org_id = $1 and connector_key = $2")
            .bind(&org.id)
            .bind(key)
            .fetch_one(state.store.pool())
            .await?;
    // Revoked at the provider first, as an app's deletion does.
    cascade::connector_deleted(state, &org.id, key, &principal.user_id, meta).await?;
    let done = sqlx::query("delete from connectors where org_id = $1 and key = $2")
        .bind(&org.id)
        .bind(key)
        .execute(state.store.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("no such connector"));
    }
    let detail = serde_json::json!({ "connections": connections });
    audit_change(state, principal, meta, &org.id, "connector.delete", key, Some(detail)).await
}

/// An admin's change to the org's apps or connectors, for the audit log (never a secret).
async fn audit_change(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_id: &str,
    action: &str,
    target: &str,
    detail: Option<serde_json::Value>,
) -> Result<()> {
    let event = audit::Event { target: Some(target), detail, ..principal.org_event(meta, org_id, action) };
    audit::record(&state.store, event).await
}

fn unknown_provider(name: &str) -> Error {
    Error::client(
        axum::http::StatusCode::BAD_REQUEST,
        ErrorCode::InvalidRequest,
        format!("provider: unknown provider `{name}`; GET /v1/providers lists them"),
    )
}

fn validate_key(key: &str) -> Result<()> {
    let ok = (1..=32).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(Error::bad_request("key: 1 to 32 characters of a-z, 0-9, - and _"));
    }
    // `/v1/orgs/{org}/connections/health` is the admins' health view, not a connector.
    if key == "health" {
        return Err(Error::bad_request("key: `health` is reserved; choose another"));
    }
    Ok(())
}

fn validate_scopes(scopes: Vec<String>) -> Result<Vec<String>> {
    if scopes.len() > 100 {
        return Err(Error::bad_request("scopes: at most 100"));
    }
    for s in &scopes {
        if s.is_empty() || s.len() > 256 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::bad_request("scopes: each scope is 1 to 256 characters without spaces"));
        }
    }
    Ok(scopes)
}

#[derive(sqlx::FromRow)]
struct AppRow {
    id: String,
    provider: String,
    client_id_hint: String,
    scopes: String,
    created_at: i64,
    updated_at: i64,
    configured_by: Option<String>,
    connectors: i64,
    connections: i64,
}

impl AppRow {
    fn into_view(self) -> ManagedApp {
        ManagedApp {
            id: self.id,
            provider: self.provider,
            client_id_hint: self.client_id_hint,
            scopes: self.scopes.split_whitespace().map(str::to_owned).collect(),
            configured_by: self.configured_by,
            connectors: self.connectors,
            connections: self.connections,
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

#[derive(sqlx::FromRow)]
struct ConnectorRow {
    id: String,
    key: String,
    provider: String,
    scopes: String,
    consent_only: i64,
    display_name: String,
    description: String,
    created_at: i64,
    updated_at: i64,
    apps: i64,
    connections: i64,
}

impl ConnectorRow {
    fn into_view(self, state: &AppState) -> Connector {
        let provider_display_name = state
            .providers
            .get(&self.provider)
            .map(|p| p.display_name.clone())
            .unwrap_or_else(|| self.provider.clone());
        Connector {
            display_name: if self.display_name.is_empty() { provider_display_name.clone() } else { self.display_name },
            provider_display_name,
            id: self.id,
            key: self.key,
            provider: self.provider,
            scopes: self.scopes.split_whitespace().map(str::to_owned).collect(),
            consent_only: self.consent_only != 0,
            description: self.description,
            app_configured: self.apps > 0,
            connections: Some(self.connections),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}
