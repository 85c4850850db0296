//! A managed app's credentials as the OAuth client needs them: opened from
//! `managed_apps` only for a call to the provider, and never kept.

use crate::crypto::KeyRing;
use crate::error::Result;
use crate::sealed;
use crate::store::Store;
use latchkey_shared::secret::SecretString;

/// The opened credentials of an org's managed app for one provider.
pub struct AppCredentials {
    pub app_id: String,
    pub client_id: SecretString,
    pub client_secret: SecretString,
    /// The scopes the admin configured for the app (may be empty: the provider's defaults).
    pub scopes: Vec<String>,
}

/// The org's app for `provider`, opened; `None` when the org has none.
pub async fn load(store: &Store, keys: &KeyRing, org_id: &str, provider: &str) -> Result<Option<AppCredentials>> {
    let row: Option<(String, Vec<u8>, Vec<u8>, String)> = sqlx::query_as(
        "select id, client_id_ct, client_secret_ct, scopes from managed_apps where org_id = $1 and provider = $2",
    )
    .bind(org_id)
    .bind(provider)
    .fetch_optional(store.pool())
    .await?;
    let Some((app_id, id_ct, secret_ct, scopes)) = row else { return Ok(None) };
    Ok(Some(AppCredentials {
        client_id: keys.open_str(sealed::client_id(&app_id), &id_ct)?,
        client_secret: keys.open_str(sealed::client_secret(&app_id), &secret_ct)?,
        scopes: scopes.split_whitespace().map(str::to_owned).collect(),
        app_id,
    }))
}
