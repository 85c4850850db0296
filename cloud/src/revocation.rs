//! Ending a grant at its provider: which token to send, with which app's credentials, and
//! the audit record when a grant is ended because a newer one replaced it.
//!
//! Three callers: a disconnect (`connections`), a reconnect that replaces a grant
//! (`connections::store_grant`), and a refresh whose result is dropped because it lost its
//! lease (`refresh`). A failed revocation never fails the caller: the local state is what
//! matters to us, and the provider's copy is logged and audited so an operator can act.

use crate::audit;
use crate::oauth::credentials;
use crate::providers::RevocationMethod;
use crate::sealed;
use crate::state::AppState;
use latchkey_shared::secret::SecretString;

/// A grant's tokens in the clear, only for the moment of a revocation.
pub struct Grant {
    pub access: SecretString,
    pub refresh: Option<SecretString>,
}

impl Grant {
    /// Opens the sealed tokens of connection `id`.
    pub fn open(state: &AppState, id: &str, access_ct: &[u8], refresh_ct: Option<&[u8]>) -> Result<Self, String> {
        let access = state.keys.open_str(sealed::access_token(id), access_ct).map_err(|e| e.to_string())?;
        let refresh = match refresh_ct {
            Some(ct) => Some(state.keys.open_str(sealed::refresh_token(id), ct).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(Self { access, refresh })
    }

    /// Whether the two share a token: then they are one grant at the provider, and
    /// revoking one would end the other.
    pub fn shares_a_token_with(&self, other: &Grant) -> bool {
        let theirs = other.tokens();
        self.tokens().iter().any(|t| theirs.contains(t))
    }

    fn tokens(&self) -> Vec<&str> {
        [Some(&self.access), self.refresh.as_ref()].into_iter().flatten().map(|t| t.expose().as_str()).collect()
    }
}

/// Revokes `grant` at `provider` with the org's managed app: its refresh token when it has
/// one (that ends the whole grant), else its access token; GitHub's endpoint takes only
/// access tokens. `Ok(false)` when the provider has no revocation endpoint.
pub async fn revoke(state: &AppState, org_id: &str, provider: &str, grant: &Grant) -> Result<bool, String> {
    let def = state.providers.get(provider).ok_or("provider no longer configured")?;
    if def.revocation_url.is_none() {
        return Ok(false);
    }
    let creds = credentials::load(&state.store, &state.keys, org_id, provider)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the managed app is gone")?;
    let (token, hint) = match (&grant.refresh, def.revocation_method) {
        (Some(rt), RevocationMethod::Rfc7009) => (rt, "refresh_token"),
        _ => (&grant.access, "access_token"),
    };
    state.provider_client.revoke(def, &creds, token, hint).await
}

/// Where a superseded grant lived, and why it was superseded.
pub struct Superseded<'a> {
    pub connection_id: &'a str,
    pub org_id: &'a str,
    pub provider: &'a str,
    /// `reconnect` or `refresh_lost_lease`.
    pub why: &'a str,
}

/// Revokes a grant that the connection no longer holds, so it does not stay live at the
/// provider. `grant` is `Err` when its tokens could not even be opened. Never fails:
/// the outcome is logged and audited as `connection.revoke_superseded`.
pub async fn revoke_superseded(state: &AppState, at: &Superseded<'_>, grant: Result<Grant, String>) {
    let outcome = match grant {
        Ok(grant) => revoke(state, at.org_id, at.provider, &grant).await,
        Err(e) => Err(e),
    };
    let (result, detail) = match &outcome {
        Ok(revoked) => ("success", serde_json::json!({ "why": at.why, "revoked_at_provider": revoked })),
        Err(e) => {
            tracing::warn!(connection = %at.connection_id, why = at.why, error = %e, "could not revoke a superseded grant at the provider");
            ("revocation_failed", serde_json::json!({ "why": at.why, "revoked_at_provider": false, "error": e }))
        }
    };
    let event = audit::Event {
        org_id: Some(at.org_id),
        action: "connection.revoke_superseded",
        target: Some(at.connection_id),
        outcome: result,
        detail: Some(detail),
        ..Default::default()
    };
    if let Err(e) = audit::record(&state.store, event).await {
        tracing::warn!(error = %e, "could not audit the revocation of a superseded grant");
    }
}
