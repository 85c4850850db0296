//! The admin pages for an org's managed apps (the provider registry, configuring an app,
//! rotating its secret, deleting it) and its connectors (publishing, unpublishing).
//!
//! Every page needs the org's owners or admins; every change goes through the same domain
//! function as the JSON API (`crate::apps`), which audits it. A client secret is read
//! from a password field and never rendered: pages show the client id's last four
//! characters only.

use super::{notice, Page, PagePost, PageResult};
use crate::access::{self, ClientMeta, Need, Org};
use crate::apps::{self, Connector, ManagedApp, PutApp, PutConnector};
use crate::consent;
use crate::error::{Error, Result};
use crate::http::extract::{Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use latchkey_shared::secret::SecretString;
use minijinja::context;
use serde::{Deserialize, Serialize};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs/{org}/admin/apps", get(apps_page))
        .route("/orgs/{org}/admin/apps/{provider}", post(configure))
        .route("/orgs/{org}/admin/apps/{provider}/rotate", post(rotate))
        .route("/orgs/{org}/admin/apps/{provider}/delete", get(delete_confirm).post(delete))
        .route("/orgs/{org}/admin/connectors", get(connectors_page).post(publish))
        .route("/orgs/{org}/admin/connectors/{key}/unpublish", get(unpublish_confirm).post(unpublish))
}

/// A provider of the registry as the apps page lists it, with the org's app if any.
#[derive(Serialize)]
struct ProviderRow {
    name: String,
    display_name: String,
    console_url: Option<String>,
    docs_url: Option<String>,
    default_scopes: String,
    suggested_scopes: String,
    /// What the configure form's scopes field starts with.
    form_scopes: String,
    app: Option<ManagedApp>,
}

#[derive(Deserialize)]
struct Search {
    q: Option<String>,
}

async fn admin_org(state: &AppState, page: &Page, org_ref: &str) -> Result<Org> {
    access::authorize(state, &page.principal, org_ref, Need::Admin).await
}

async fn apps_page(
    State(state): State<AppState>,
    page: Page,
    Path(org_ref): Path<String>,
    Query(search): Query<Search>,
) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    let configured = apps::list_apps(&state, &page.principal, &org.id).await?;
    let q = search.q.unwrap_or_default().trim().chars().take(100).collect::<String>();
    let needle = q.to_lowercase();
    let mut providers: Vec<ProviderRow> = state
        .providers
        .iter()
        .filter(|p| {
            needle.is_empty()
                || p.name.to_lowercase().contains(&needle)
                || p.display_name.to_lowercase().contains(&needle)
        })
        .map(|p| {
            let app = configured.iter().find(|a| a.provider == p.name);
            let mut defaults = p.scopes.clone();
            defaults.extend(p.suggested_scopes.iter().filter(|s| !p.scopes.contains(s)).cloned());
            ProviderRow {
                name: p.name.clone(),
                display_name: p.display_name.clone(),
                console_url: p.console_url.clone(),
                docs_url: p.docs_url.clone(),
                default_scopes: p.scopes.join(" "),
                suggested_scopes: p.suggested_scopes.join(" "),
                form_scopes: app.map_or_else(|| defaults.join(" "), |a| a.scopes.join(" ")),
                app: app.cloned(),
            }
        })
        .collect();
    // The org's apps first, then the rest of the registry.
    providers.sort_by(|a, b| (a.app.is_none(), &a.name).cmp(&(b.app.is_none(), &b.name)));
    page.ok(
        "admin_apps.html",
        context! {
            org => org,
            section => "apps",
            q => q,
            providers => providers,
            configured_count => configured.len(),
            redirect_uri => consent::redirect_uri(&state),
        },
    )
}

/// Scopes typed into a field: separated by spaces or commas.
fn scopes_of(field: &str) -> Vec<String> {
    field.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// An empty field is a value left as it was.
fn given(secret: SecretString) -> Option<SecretString> {
    if secret.expose().trim().is_empty() {
        None
    } else {
        Some(secret)
    }
}

fn display_name_of(state: &AppState, provider: &str) -> String {
    state.providers.get(provider).map_or_else(|| provider.to_owned(), |p| p.display_name.clone())
}

#[derive(Deserialize)]
struct ConfigureForm {
    #[serde(default)]
    client_id: String,
    #[serde(default = "empty_secret")]
    client_secret: SecretString,
    #[serde(default)]
    scopes: String,
}

fn empty_secret() -> SecretString {
    SecretString::new(String::new())
}

async fn configure(
    State(state): State<AppState>,
    Path((org_ref, provider)): Path<(String, String)>,
    meta: ClientMeta,
    PagePost { page, form }: PagePost<ConfigureForm>,
) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    let scopes = scopes_of(&form.scopes);
    let client_id = form.client_id.trim();
    let req = PutApp {
        client_id: (!client_id.is_empty()).then(|| SecretString::new(client_id.to_owned())),
        client_secret: given(form.client_secret),
        scopes: (!scopes.is_empty()).then_some(scopes),
    };
    let app = apps::put_app(&state, &page.principal, &meta, &org.id, &provider, req).await?;
    Ok(notice(
        &format!("/orgs/{}/admin/apps#provider-{provider}", org.slug),
        &format!(
            "Saved the {} app (client id ending {}, scopes: {}).",
            display_name_of(&state, &provider),
            app.client_id_hint,
            if app.scopes.is_empty() { "none".to_owned() } else { app.scopes.join(" ") }
        ),
    ))
}

#[derive(Deserialize)]
struct RotateForm {
    #[serde(default = "empty_secret")]
    client_secret: SecretString,
}

async fn rotate(
    State(state): State<AppState>,
    Path((org_ref, provider)): Path<(String, String)>,
    meta: ClientMeta,
    PagePost { page, form }: PagePost<RotateForm>,
) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    let Some(secret) = given(form.client_secret) else {
        return Err(Error::bad_request("client_secret: enter the new secret").into());
    };
    let configured = apps::list_apps(&state, &page.principal, &org.id).await?;
    if !configured.iter().any(|a| a.provider == provider) {
        return Err(Error::not_found("this org has no managed app for that provider").into());
    }
    let req = PutApp { client_id: None, client_secret: Some(secret), scopes: None };
    apps::put_app(&state, &page.principal, &meta, &org.id, &provider, req).await?;
    Ok(notice(
        &format!("/orgs/{}/admin/apps#provider-{provider}", org.slug),
        &format!("Rotated the {} app's secret; the client id is unchanged.", display_name_of(&state, &provider)),
    ))
}

async fn delete_confirm(
    State(state): State<AppState>,
    page: Page,
    Path((org_ref, provider)): Path<(String, String)>,
) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    let app = apps::list_apps(&state, &page.principal, &org.id)
        .await?
        .into_iter()
        .find(|a| a.provider == provider)
        .ok_or_else(|| Error::not_found("this org has no managed app for that provider"))?;
    let name = display_name_of(&state, &provider);
    page.ok(
        "admin_confirm.html",
        context! {
            org => org,
            section => "apps",
            title => format!("Delete the {name} app?"),
            consequence => format!(
                "Deleting it disconnects {} your members made with it (each is revoked at {name}), and leaves {} without an app until one is configured again.",
                plural(app.connections, "connection", "connections"),
                plural(app.connectors, "connector", "connectors"),
            ),
            connections => app.connections,
            action => format!("/orgs/{}/admin/apps/{provider}/delete", org.slug),
            button => format!("Delete the {name} app"),
            back => format!("/orgs/{}/admin/apps", org.slug),
        },
    )
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

async fn delete(
    State(state): State<AppState>,
    Path((org_ref, provider)): Path<(String, String)>,
    meta: ClientMeta,
    PagePost { page, form: _ }: PagePost<super::layout::NoFields>,
) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    apps::delete_app(&state, &page.principal, &meta, &org.id, &provider).await?;
    Ok(notice(
        &format!("/orgs/{}/admin/apps", org.slug),
        &format!("Deleted the {} app; its connections were disconnected.", display_name_of(&state, &provider)),
    ))
}

/// A configured app as the publish form offers it.
#[derive(Serialize)]
struct AppChoice {
    name: String,
    display_name: String,
    app_scopes: String,
    suggested: String,
}

#[derive(Deserialize)]
struct ProviderChoice {
    provider: Option<String>,
}

async fn connectors_page(
    State(state): State<AppState>,
    page: Page,
    Path(org_ref): Path<String>,
    Query(choice): Query<ProviderChoice>,
) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    let connectors: Vec<Connector> = apps::list_connectors(&state, &page.principal, &org.id).await?;
    let choices: Vec<AppChoice> = apps::list_apps(&state, &page.principal, &org.id)
        .await?
        .into_iter()
        .map(|a| {
            let def = state.providers.get(&a.provider);
            let suggested =
                def.map(|p| p.suggested_scopes.clone()).filter(|s| !s.is_empty()).unwrap_or_else(|| a.scopes.clone());
            AppChoice {
                display_name: def.map_or_else(|| a.provider.clone(), |p| p.display_name.clone()),
                name: a.provider,
                app_scopes: a.scopes.join(" "),
                suggested: suggested.join(" "),
            }
        })
        .collect();
    let selected = choice
        .provider
        .filter(|p| choices.iter().any(|c| &c.name == p))
        .or_else(|| choices.first().map(|c| c.name.clone()))
        .unwrap_or_default();
    page.ok(
        "admin_connectors.html",
        context! { org => org, section => "connectors", connectors => connectors, apps => choices, selected => selected },
    )
}

#[derive(Deserialize)]
struct PublishForm {
    key: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: String,
    provider: String,
    #[serde(default)]
    scopes: String,
}

async fn publish(
    State(state): State<AppState>,
    Path(org_ref): Path<String>,
    meta: ClientMeta,
    PagePost { page, form }: PagePost<PublishForm>,
) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    let key = form.key.trim().to_owned();
    let display_name = form.display_name.trim();
    let description = form.description.trim().replace("\r\n", "\n");
    let req = PutConnector {
        provider: form.provider,
        scopes: scopes_of(&form.scopes),
        consent_only: Some(true),
        display_name: (!display_name.is_empty()).then(|| display_name.to_owned()),
        description: Some(description),
    };
    let connector = apps::put_connector(&state, &page.principal, &meta, &org.id, &key, req).await?;
    Ok(notice(
        &format!("/orgs/{}/admin/connectors", org.slug),
        &format!("Published the connector {} ({}).", connector.key, connector.display_name),
    ))
}

async fn unpublish_confirm(
    State(state): State<AppState>,
    page: Page,
    Path((org_ref, key)): Path<(String, String)>,
) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    let connector = apps::list_connectors(&state, &page.principal, &org.id)
        .await?
        .into_iter()
        .find(|c| c.key == key)
        .ok_or_else(|| Error::not_found("no such connector"))?;
    let connections = connector.connections.unwrap_or(0);
    page.ok(
        "admin_confirm.html",
        context! {
            org => org,
            section => "connectors",
            title => format!("Unpublish the connector {key}?"),
            consequence => format!(
                "Unpublishing it disconnects {} your members made with it (each is revoked at {}); members no longer see it.",
                plural(connections, "connection", "connections"),
                connector.provider_display_name,
            ),
            connections => connections,
            action => format!("/orgs/{}/admin/connectors/{key}/unpublish", org.slug),
            button => format!("Unpublish {key}"),
            back => format!("/orgs/{}/admin/connectors", org.slug),
        },
    )
}

async fn unpublish(
    State(state): State<AppState>,
    Path((org_ref, key)): Path<(String, String)>,
    meta: ClientMeta,
    PagePost { page, form: _ }: PagePost<super::layout::NoFields>,
) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    apps::delete_connector(&state, &page.principal, &meta, &org.id, &key).await?;
    Ok(notice(
        &format!("/orgs/{}/admin/connectors", org.slug),
        &format!("Unpublished the connector {key}; its connections were disconnected."),
    ))
}
