//! The org page: a card per connector, with the member's connection and what to do next
//! (a connector that cannot work says why, with its card disabled). A signed-in visitor
//! who is not a member of a public org gets a page to join it.

use super::{Page, PageResult};
use crate::access;
use crate::access::{Need, Org, Principal};
use crate::apps::{self, Connector};
use crate::connections::{self, Connection};
use crate::error::Result;
use crate::http::extract::Path;
use crate::state::AppState;
use axum::extract::State;
use minijinja::context;

pub async fn org_page(State(state): State<AppState>, page: Page, Path(org_ref): Path<String>) -> PageResult {
    let visible = access::authorize(&state, &page.principal, &org_ref, Need::Visible).await?;
    if visible.role.is_none() {
        return page.ok("org_join.html", context! { org => visible });
    }
    let (org, cards) = cards(&state, &page.principal, &org_ref).await?;
    page.ok("org.html", context! { org => org, connectors => cards })
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
    status: String,
    status_label: &'static str,
    connect_label: &'static str,
    account: String,
}

impl Card {
    fn new(connector: Connector, connection: Option<&Connection>) -> Self {
        let status = connection.map(|c| c.status.clone()).unwrap_or_else(|| "none".to_owned());
        let status_label = match status.as_str() {
            "active" => "Active",
            "needs_reauth" => "Needs reauthorisation",
            "revoked" => "Revoked",
            _ => "Not connected",
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
            connect_label: if connection.is_some() { "Reconnect" } else { "Connect" },
            account: connection
                .map(|c| c.account_name.clone().unwrap_or_else(|| c.account_id.clone()))
                .unwrap_or_default(),
            status,
            status_label,
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
            let connection = mine.iter().find(|m| m.connector_key == connector.key);
            Card::new(connector, connection)
        })
        .collect();
    Ok((org, cards))
}
