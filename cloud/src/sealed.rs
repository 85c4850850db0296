//! Every encrypted column in the schema, and the associated data each value is bound to.
//!
//! A sealed value's AAD names its table, column and row, so a ciphertext copied into
//! another row or column fails to open. The names live here, once: the code that writes a
//! column, the code that reads it and `keys rotate` all take them from this module, and a
//! new encrypted column is added to `SEALED` so rotation and `keys verify` cover it.

use crate::crypto::Aad;

/// One table's sealed columns: (column holding the ciphertext, column name in the AAD).
pub struct SealedTable {
    pub table: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
}

const MANAGED_APPS: &str = "managed_apps";
const CONNECTIONS: &str = "connections";
const CONSENT_STATES: &str = "consent_states";
const WEBHOOK_ENDPOINTS: &str = "webhook_endpoints";

/// Every sealed column in the schema.
pub const SEALED: &[SealedTable] = &[
    SealedTable {
        table: MANAGED_APPS,
        columns: &[("client_id_ct", "client_id"), ("client_secret_ct", "client_secret")],
    },
    SealedTable {
        table: CONNECTIONS,
        columns: &[("access_token_ct", "access_token"), ("refresh_token_ct", "refresh_token")],
    },
    SealedTable { table: CONSENT_STATES, columns: &[("pkce_verifier_ct", "pkce_verifier")] },
    SealedTable { table: WEBHOOK_ENDPOINTS, columns: &[("secret_ct", "secret")] },
];

/// A managed app's client id (`managed_apps.client_id_ct`).
pub fn client_id(app_id: &str) -> Aad<'_> {
    Aad { table: MANAGED_APPS, column: "client_id", row_id: app_id }
}

/// A managed app's client secret (`managed_apps.client_secret_ct`).
pub fn client_secret(app_id: &str) -> Aad<'_> {
    Aad { table: MANAGED_APPS, column: "client_secret", row_id: app_id }
}

/// A connection's access token (`connections.access_token_ct`).
pub fn access_token(connection_id: &str) -> Aad<'_> {
    Aad { table: CONNECTIONS, column: "access_token", row_id: connection_id }
}

/// A connection's refresh token (`connections.refresh_token_ct`).
pub fn refresh_token(connection_id: &str) -> Aad<'_> {
    Aad { table: CONNECTIONS, column: "refresh_token", row_id: connection_id }
}

/// A started consent's PKCE verifier (`consent_states.pkce_verifier_ct`).
pub fn pkce_verifier(state_id: &str) -> Aad<'_> {
    Aad { table: CONSENT_STATES, column: "pkce_verifier", row_id: state_id }
}

/// A webhook endpoint's signing secret (`webhook_endpoints.secret_ct`).
pub fn webhook_secret(endpoint_id: &str) -> Aad<'_> {
    Aad { table: WEBHOOK_ENDPOINTS, column: "secret", row_id: endpoint_id }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed constructors name exactly the columns `keys rotate` walks, so a value
    /// written through them is re-sealed under the same AAD.
    #[test]
    fn every_constructor_names_a_listed_column() {
        for aad in [
            client_id("r"),
            client_secret("r"),
            access_token("r"),
            refresh_token("r"),
            pkce_verifier("r"),
            webhook_secret("r"),
        ] {
            let listed = SEALED
                .iter()
                .any(|t| t.table == aad.table && t.columns.iter().any(|(_, column)| *column == aad.column));
            assert!(listed, "{}.{} is not in SEALED", aad.table, aad.column);
        }
    }
}
