//! The org page: a card per connector, with each of the member's accounts on it (label,
//! account, status, and what to do next: reconnect, disconnect, rename), "Add another
//! account", and a banner for any connection that needs the member (a connector that
//! cannot work says why, with its card disabled). A signed-in visitor who is not a member
//! of a public org gets a page to join it. Reconnect goes through the consent routes
//! (`http::consent`); disconnect and rename post here and call the same domain functions
//! as the API.

use super::{notice, Page, PagePost, PageResult};
use crate::access;
use crate::access::{ClientMeta, Need, Org, Principal};
use crate::apps::{self, Connector};
use crate::connections::{self, Connection};
use crate::error::Result;
use crate::http::extract::Path;
use crate::state::AppState;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs/{org}", get(org_page))
        .route("/orgs/{org}/connections/{key}/disconnect", post(disconnect))
        .route("/orgs/{org}/connections/{key}/label", post(relabel))
}

async fn org_page(State(state): State<AppState>, page: Page, Path(org_ref): Path<String>) -> PageResult {
    let visible = access::authorize(&state, &page.principal, &org_ref, Need::Visible).await?;
    if visible.role.is_none() {
        return page.ok("org_join.html", context! { org => visible });
    }
    let (org, cards) = cards(&state, &page.principal, &org_ref).await?;
    let attention: Vec<&Account> = cards.iter().flat_map(|c| c.accounts.iter()).filter(|a| a.attention).collect();
    page.ok("org.html", context! { org => org, connectors => cards, attention => attention })
}

/// A card on the org page.
#[derive(serde::Serialize)]
struct Card {
    key: String,
    display_name: String,
    provider_display_name: String,
    description: String,
    app_configured: bool,
    /// Why the connector cannot be used now, if it cannot.
    unavailable: Option<String>,
    /// The only connection's status, `none` without one, `several` with more.
    status: String,
    status_label: String,
    connect_label: &'static str,
    /// The only connection's account, if there is exactly one.
    account: String,
    accounts: Vec<Account>,
}

/// One of the member's connections on a card.
#[derive(serde::Serialize)]
struct Account {
    id: String,
    key: String,
    connector: String,
    label: String,
    account: String,
    status: String,
    status_label: &'static str,
    /// Its grant needs the member: reconnect.
    attention: bool,
}

fn status_label(status: &str) -> &'static str {
    match status {
        "active" => "Active",
        "failing" => "Refreshes failing",
        "needs_reauth" => "Needs reauthorisation",
        "exhausted" => "Gave up retrying",
        "revoked" => "Revoked",
        _ => "Not connected",
    }
}

impl Card {
    fn new(connector: Connector, mine: Vec<&Connection>) -> Self {
        let accounts: Vec<Account> = mine
            .iter()
            .map(|c| Account {
                id: c.id.clone(),
                key: connector.key.clone(),
                connector: connector.display_name.clone(),
                label: c.label.clone(),
                account: c.account_name.clone().unwrap_or_else(|| c.account_id.clone()),
                status: c.status.clone(),
                status_label: status_label(&c.status),
                attention: matches!(c.status.as_str(), "needs_reauth" | "exhausted" | "failing"),
            })
            .collect();
        let (status, status_label, account) = match accounts.as_slice() {
            [] => ("none".to_owned(), status_label("none").to_owned(), String::new()),
            [one] => (one.status.clone(), one.status_label.to_owned(), one.account.clone()),
            several => ("several".to_owned(), format!("{} accounts", several.len()), String::new()),
        };
        let unavailable = (!connector.app_configured).then(|| {
            format!(
                "Unavailable: this org's {} app was removed, so nobody can connect. Ask an org admin to set it up again.",
                connector.provider_display_name
            )
        });
        Card {
            unavailable,
            key: connector.key,
            display_name: connector.display_name,
            provider_display_name: connector.provider_display_name,
            description: connector.description,
            app_configured: connector.app_configured,
            connect_label: if accounts.is_empty() { "Connect" } else { "Reconnect" },
            account,
            status,
            status_label,
            accounts,
        }
    }
}

/// The org and one card per connector, for a member.
async fn cards(state: &AppState, principal: &Principal, org_ref: &str) -> Result<(Org, Vec<Card>)> {
    let org = access::authorize(state, principal, org_ref, Need::Member).await?;
    let connectors = apps::list_connectors(state, principal, &org.id).await?;
    let mine = connections::list(state, principal, Some(&org.id)).await?;
    let cards = connectors
        .into_iter()
        .map(|connector| {
            let on_it = mine.iter().filter(|m| m.connector_key == connector.key).collect();
            Card::new(connector, on_it)
        })
        .collect();
    Ok((org, cards))
}

#[derive(Deserialize)]
struct DisconnectForm {
    connection: String,
}

/// An account's Disconnect: revoked at the provider, then forgotten.
async fn disconnect(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path((org_ref, key)): Path<(String, String)>,
    post: PagePost<DisconnectForm>,
) -> PageResult {
    let PagePost { page, form } = post;
    let gone = connections::get(&state, &page.principal, &org_ref, &key, Some(&form.connection)).await?;
    connections::disconnect_own(&state, &page.principal, &meta, &org_ref, &key, Some(&gone.id)).await?;
    Ok(notice(&format!("/orgs/{}", gone.org), &format!("Disconnected {}.", gone.label)))
}

#[derive(Deserialize)]
struct LabelForm {
    connection: String,
    label: String,
}

/// An account's rename.
async fn relabel(
    State(state): State<AppState>,
    meta: ClientMeta,
    Path((org_ref, key)): Path<(String, String)>,
    post: PagePost<LabelForm>,
) -> PageResult {
    let PagePost { page, form } = post;
    let renamed =
        connections::relabel(&state, &page.principal, &meta, &org_ref, &key, Some(&form.connection), &form.label)
            .await?;
    Ok(notice(&format!("/orgs/{}", renamed.org), &format!("Renamed to {}.", renamed.label)))
}
