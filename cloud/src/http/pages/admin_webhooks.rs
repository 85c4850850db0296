//! The admin page for an org's webhooks: the endpoints, registering one (its secret shown
//! once, on the answer to the form), deleting one, and each endpoint's latest deliveries
//! with their status, latency and response code and a Resend button.
//!
//! Every change goes through the same domain functions as the JSON API
//! (`crate::webhook_endpoints`), which check the admin role and audit it.

use super::{notice, Page, PagePost, PageResult};
use crate::access::{self, ClientMeta, Need, Org};
use crate::error::Result;
use crate::http::extract::Path;
use crate::state::AppState;
use crate::webhook_endpoints::{self, CreateWebhook, CreatedWebhook, WebhookEndpoint};
use crate::webhooks::outbox::Delivery;
use crate::webhooks::EventType;
use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;
use serde::Serialize;

/// Deliveries shown per endpoint.
const SHOWN: usize = 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/orgs/{org}/admin/webhooks", get(webhooks_page).post(create))
        .route("/orgs/{org}/admin/webhooks/{id}/delete", post(delete))
        .route("/orgs/{org}/admin/webhooks/{id}/deliveries/{delivery_id}/resend", post(resend))
}

#[derive(Serialize)]
struct EndpointView {
    endpoint: WebhookEndpoint,
    deliveries: Vec<Delivery>,
}

async fn webhooks_page(State(state): State<AppState>, page: Page, Path(org_ref): Path<String>) -> PageResult {
    let org = access::authorize(&state, &page.principal, &org_ref, Need::Admin).await?;
    render(&state, &page, &org, None).await
}

async fn render(state: &AppState, page: &Page, org: &Org, created: Option<&CreatedWebhook>) -> PageResult {
    let mut endpoints = Vec::new();
    for endpoint in webhook_endpoints::list(state, &page.principal, &org.id).await? {
        let mut deliveries = webhook_endpoints::deliveries(state, &page.principal, &org.id, &endpoint.id).await?;
        deliveries.truncate(SHOWN);
        endpoints.push(EndpointView { endpoint, deliveries });
    }
    let events: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
    page.ok(
        "admin_webhooks.html",
        context! { org => org, section => "webhooks", endpoints => endpoints, events => events, created => created },
    )
}

/// The form's fields as pairs: the event checkboxes repeat one name.
async fn create(
    State(state): State<AppState>,
    Path(org_ref): Path<String>,
    meta: ClientMeta,
    PagePost { page, form }: PagePost<Vec<(String, String)>>,
) -> PageResult {
    let org = access::authorize(&state, &page.principal, &org_ref, Need::Admin).await?;
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let req = CreateWebhook {
        url: field("url"),
        events: form.iter().filter(|(k, _)| k == "events").map(|(_, v)| v.clone()).collect(),
        description: Some(field("description")),
    };
    let created = webhook_endpoints::create(&state, &page.principal, &meta, &org.id, req).await?;
    // Rendered here, not redirected: the secret is shown this once.
    render(&state, &page, &org, Some(&created)).await
}

async fn delete(
    State(state): State<AppState>,
    Path((org_ref, id)): Path<(String, String)>,
    meta: ClientMeta,
    PagePost { page, form: _ }: PagePost<super::layout::NoFields>,
) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    webhook_endpoints::delete(&state, &page.principal, &meta, &org.id, &id).await?;
    Ok(notice(
        &format!("/orgs/{}/admin/webhooks", org.slug),
        "Deleted the webhook; its pending deliveries will not be sent.",
    ))
}

async fn resend(
    State(state): State<AppState>,
    Path((org_ref, id, delivery_id)): Path<(String, String, String)>,
    meta: ClientMeta,
    PagePost { page, form: _ }: PagePost<super::layout::NoFields>,
) -> PageResult {
    let org = admin_org(&state, &page, &org_ref).await?;
    let delivery = webhook_endpoints::resend(&state, &page.principal, &meta, &org.id, &id, &delivery_id).await?;
    Ok(notice(
        &format!("/orgs/{}/admin/webhooks#webhook-{id}", org.slug),
        &format!("Sending the {} event again (same event id).", delivery.event_type),
    ))
}

async fn admin_org(state: &AppState, page: &Page, org_ref: &str) -> Result<Org> {
    access::authorize(state, &page.principal, org_ref, Need::Admin).await
}
