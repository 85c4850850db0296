//! An org's webhook endpoints (admins): registering one (its secret shown once), listing,
//! deleting, and each one's delivery log with resends. Deliveries themselves are the
//! outbox's (`crate::webhooks`).
//!
//! The signing secret is sealed with the key ring, bound to the endpoint's row; it is
//! returned by [`create`] once and never again (listings, pages, logs and audit events
//! never carry it). PAT scopes: `orgs:read` to list, `orgs:write` to change.

use crate::access::{authorize, ClientMeta, Need, Principal};
use crate::audit;
use crate::error::{Error, Result};
use crate::sealed;
use crate::state::AppState;
use crate::store::{new_id, now, rfc3339};
use crate::webhooks::outbox::{self, Delivery};
use crate::webhooks::target::TargetPolicy;
use crate::webhooks::{generate_secret, EventType};
use latchkey_shared::Scope;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Endpoints one org may have.
const MAX_ENDPOINTS: i64 = 20;
/// Deliveries a log shows.
pub const LOG_LIMIT: i64 = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://…` (see docs/webhooks.md for what else is allowed).
    pub url: String,
    /// Event types to send, e.g. `["connection.created", "member.joined"]`; at least one.
    pub events: Vec<String>,
    pub description: Option<String>,
}

/// A new endpoint (its `id` and the rest, as listed), with its signing secret: the only
/// time the secret is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    /// `whsec_…`: the HMAC-SHA256 key of `Latchkey-Signature`. Shown once.
    pub secret: String,
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
}

/// An endpoint as listed: never its secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: String,
    /// Username of who registered it, when known.
    pub created_by: Option<String>,
    pub created_at: String,
}

const ENDPOINT_SELECT: &str = "select w.id, w.url, w.events, w.description, u.username as created_by, w.created_at \
     from webhook_endpoints w left join users u on u.id = w.created_by";

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: String,
    url: String,
    events: String,
    description: String,
    created_by: Option<String>,
    created_at: i64,
}

impl EndpointRow {
    fn into_view(self) -> WebhookEndpoint {
        let r = self;
        WebhookEndpoint {
            id: r.id,
            url: r.url,
            events: r.events.split_whitespace().map(str::to_owned).collect(),
            description: r.description,
            created_by: r.created_by,
            created_at: rfc3339(r.created_at),
        }
    }
}

/// Registers an endpoint; the answer carries its secret, once.
pub async fn create(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    req: CreateWebhook,
) -> Result<CreatedWebhook> {
    principal.require(Scope::OrgsWrite)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    let url = TargetPolicy::of(&state.config).check_url(&req.url).map_err(Error::bad_request)?;
    let events = validate_events(&req.events)?;
    let description = req.description.unwrap_or_default().trim().to_owned();
    if description.chars().count() > 200 || description.chars().any(char::is_control) {
        return Err(Error::bad_request("description: at most 200 printable characters"));
    }
    let count: i64 = sqlx::query_scalar("select count(*) from webhook_endpoints where org_id = $1")
        .bind(&org.id)
        .fetch_one(state.store.pool())
        .await?;
    if count >= MAX_ENDPOINTS {
        return Err(Error::bad_request(format!("this org has {MAX_ENDPOINTS} webhooks, the most it may have")));
    }
    let id = new_id();
    let secret = generate_secret();
    let secret_ct = state.keys.seal_str(sealed::webhook_secret(&id), &secret)?;
    let now = now();
    sqlx::query(
        "insert into webhook_endpoints (id, org_id, url, events, description, secret_ct, key_version, created_by, \
         created_at, updated_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(&id)
    .bind(&org.id)
    .bind(url.as_str())
    .bind(events.join(" "))
    .bind(&description)
    .bind(secret_ct)
    .bind(i64::from(state.keys.active_version()))
    .bind(&principal.user_id)
    .bind(now)
    .execute(state.store.pool())
    .await?;
    let detail = serde_json::json!({ "url": url.as_str(), "events": events });
    let event = audit::Event {
        target: Some(&id),
        detail: Some(detail),
        ..principal.org_event(meta, &org.id, "webhook.create")
    };
    audit::record(&state.store, event).await?;
    let endpoint = get_in(state, &org.id, &id).await?;
    Ok(CreatedWebhook { secret: secret.expose().to_owned(), endpoint })
}

fn validate_events(names: &[String]) -> Result<Vec<String>> {
    if names.is_empty() {
        return Err(Error::bad_request("events: choose at least one event"));
    }
    let mut events: Vec<String> = Vec::new();
    for name in names {
        let Some(event) = EventType::parse(name) else {
            let known: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
            return Err(Error::bad_request(format!("events: unknown event `{name}`; one of {}", known.join(", "))));
        };
        if !events.iter().any(|e| e == event.as_str()) {
            events.push(event.as_str().to_owned());
        }
    }
    Ok(events)
}

pub async fn list(state: &AppState, principal: &Principal, org_ref: &str) -> Result<Vec<WebhookEndpoint>> {
    principal.require(Scope::OrgsRead)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    let rows: Vec<EndpointRow> =
        sqlx::query_as(&format!("{ENDPOINT_SELECT} where w.org_id = $1 order by w.created_at, w.id"))
            .bind(&org.id)
            .fetch_all(state.store.pool())
            .await?;
    Ok(rows.into_iter().map(EndpointRow::into_view).collect())
}

async fn get_in(state: &AppState, org_id: &str, id: &str) -> Result<WebhookEndpoint> {
    let row: Option<EndpointRow> = sqlx::query_as(&format!("{ENDPOINT_SELECT} where w.org_id = $1 and w.id = $2"))
        .bind(org_id)
        .bind(id)
        .fetch_optional(state.store.pool())
        .await?;
    row.map(EndpointRow::into_view).ok_or_else(|| Error::not_found("no such webhook in this org"))
}

/// Deletes an endpoint with its deliveries (pending ones are not sent).
pub async fn delete(state: &AppState, principal: &Principal, meta: &ClientMeta, org_ref: &str, id: &str) -> Result<()> {
    principal.require(Scope::OrgsWrite)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    let endpoint = get_in(state, &org.id, id).await?;
    let done = sqlx::query("delete from webhook_endpoints where id = $1 and org_id = $2")
        .bind(id)
        .bind(&org.id)
        .execute(state.store.pool())
        .await?;
    if done.rows_affected() == 0 {
        return Err(Error::not_found("no such webhook in this org"));
    }
    let detail = serde_json::json!({ "url": endpoint.url });
    let event =
        audit::Event { target: Some(id), detail: Some(detail), ..principal.org_event(meta, &org.id, "webhook.delete") };
    audit::record(&state.store, event).await
}

/// The endpoint's latest deliveries, newest first.
pub async fn deliveries(state: &AppState, principal: &Principal, org_ref: &str, id: &str) -> Result<Vec<Delivery>> {
    principal.require(Scope::OrgsRead)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    get_in(state, &org.id, id).await?;
    outbox::list(state, id, LOG_LIMIT).await
}

/// Sends a delivery again now, with the same event id.
pub async fn resend(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    id: &str,
    delivery_id: &str,
) -> Result<Delivery> {
    principal.require(Scope::OrgsWrite)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    get_in(state, &org.id, id).await?;
    let delivery = outbox::resend(state, id, delivery_id).await?;
    let detail = serde_json::json!({ "webhook_id": id, "event_id": delivery.event_id, "type": delivery.event_type });
    let event = audit::Event {
        target: Some(delivery_id),
        detail: Some(detail),
        ..principal.org_event(meta, &org.id, "webhook.resend")
    };
    audit::record(&state.store, event).await?;
    Ok(delivery)
}
