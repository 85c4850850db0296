//! What goes when something goes. Removing an org's managed app, a connector or a member,
//! or moving a connector to another provider, ends connections that made sense only with
//! what was removed; the rules are listed here
//! so the modules that own apps and orgs call one function and need not know how
//! connections end (revoked at the provider first, then forgotten; see
//! `connections::disconnect_all`).

use crate::access::ClientMeta;
use crate::connections::{self, Which};
use crate::error::Result;
use crate::state::AppState;

/// A managed app is being deleted: every connection made with it is disconnected first,
/// while the app's credentials still exist to revoke at the provider.
pub async fn app_deleted(state: &AppState, app_id: &str, actor: &str, meta: &ClientMeta) -> Result<()> {
    connections::disconnect_all(state, Which::App(app_id), actor, meta).await
}

/// A member left or was removed: their connections in the org end.
pub async fn member_removed(
    state: &AppState,
    org_id: &str,
    user_id: &str,
    actor: &str,
    meta: &ClientMeta,
) -> Result<()> {
    connections::disconnect_all(state, Which::Member { org_id, user_id }, actor, meta).await
}

/// A connector is being deleted: its connections end with it, so no token is served or
/// refreshed for a connector the org no longer publishes.
pub async fn connector_deleted(
    state: &AppState,
    org_id: &str,
    key: &str,
    actor: &str,
    meta: &ClientMeta,
) -> Result<()> {
    connections::disconnect_all(state, Which::Connector { org_id, key }, actor, meta).await
}

/// A connector now points at `provider`: its connections made with another provider's
/// app end (revoked with that app while it still exists).
pub async fn connector_moved(
    state: &AppState,
    org_id: &str,
    key: &str,
    provider: &str,
    actor: &str,
    meta: &ClientMeta,
) -> Result<()> {
    connections::disconnect_all(state, Which::ConnectorNotOn { org_id, key, provider }, actor, meta).await
}

/// An org is being deleted: every connection in it is revoked at the provider while its
/// managed apps still exist; the rest goes with the org's row.
pub async fn org_deleted(state: &AppState, org_id: &str, actor: &str, meta: &ClientMeta) -> Result<()> {
    connections::disconnect_all(state, Which::Org(org_id), actor, meta).await
}
