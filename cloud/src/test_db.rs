//! Unit-test fixture: a real, migrated SQLite in a temporary directory, and the smallest
//! set of rows a connection needs. For tests of one module's SQL against the real schema;
//! whole flows are tested over HTTP in `tests/e2e`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::connections::NewGrant;
use crate::crypto::KeyRing;
use crate::oauth::client::TokenSet;
use crate::store::Store;
use latchkey_shared::secret::SecretString;

pub struct TempSqlite {
    pub store: Store,
    dir: std::path::PathBuf,
}

impl TempSqlite {
    pub async fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("latchkey-unit-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("latchkey.db").display());
        let settings = crate::store::PoolSettings { max_connections: 4, ..Default::default() };
        let store = Store::connect(&url, &settings).await.unwrap();
        store.migrate().await.unwrap();
        TempSqlite { store, dir }
    }

    /// A cloud's state over this database, with a fresh one-key ring (version 1).
    pub fn state(&self) -> crate::state::AppState {
        let config = crate::config::Config::default();
        let keys = ring(1, &[(1, &crate::crypto::generate_master_key())]);
        let providers = config.provider_registry().unwrap();
        crate::state::AppState::new(self.store.clone(), config, keys, providers, None)
    }

    /// A member `u1` of org `o1` (`acme`), whose managed sandbox app is `a1`.
    pub async fn seed_member_and_app(&self) {
        for sql in [
            "insert into users (id, email, username, password_hash, created_at, updated_at) \
             values ('u1', 'm@example.test', 'm', 'x', 0, 0)",
            "insert into orgs (id, slug, name, visibility, created_at, updated_at) \
             values ('o1', 'acme', 'Acme', 'public', 0, 0)",
            "insert into managed_apps (id, org_id, provider, client_id_ct, client_secret_ct, client_id_hint, scopes, \
             key_version, created_at, updated_at) values ('a1', 'o1', 'sandbox', x'00', x'00', 'c…', '', 1, 0, 0)",
        ] {
            sqlx::query(sql).execute(self.store.pool()).await.unwrap();
        }
    }

    /// As `seed_member_and_app`, plus one active connection `c1`, expired, holding the
    /// given sealed tokens under key version `key_version`.
    pub async fn seed_connection(&self, access_ct: &[u8], refresh_ct: &[u8], key_version: i64) {
        self.seed_member_and_app().await;
        sqlx::query(
            "insert into connections (id, org_id, connector_key, user_id, provider, app_id, account_id, label, scopes, \
             status, consent_only, access_token_ct, refresh_token_ct, token_type, expires_at, key_version, connected_at, \
             created_at, updated_at) values ('c1', 'o1', 'sandbox', 'u1', 'sandbox', 'a1', 'acct', 'acct', '', 'active', \
             0, $1, $2, 'bearer', 1, $3, 0, 0, 0)",
        )
        .bind(access_ct.to_vec())
        .bind(refresh_ct.to_vec())
        .bind(key_version)
        .execute(self.store.pool())
        .await
        .unwrap();
    }
}

/// A key ring with `keys` as (version, master key), `active` being the one new writes use.
pub fn ring(active: u32, keys: &[(u32, &SecretString)]) -> KeyRing {
    let keys: Vec<_> = keys.iter().map(|(v, k)| (*v, (*k).clone())).collect();
    KeyRing::new(active, &keys).unwrap()
}

/// Tokens as a provider would return them.
pub fn tokens(access: &str, refresh: &str) -> TokenSet {
    TokenSet {
        access_token: SecretString::from(access.to_owned()),
        refresh_token: Some(SecretString::from(refresh.to_owned())),
        token_type: "bearer".into(),
        expires_in: Some(3600),
        scope: None,
        id_token: None,
    }
}

/// A consented grant of member `u1` for the `sandbox` connector of org `o1`.
pub fn grant(tokens: &TokenSet) -> NewGrant<'_> {
    NewGrant {
        org_id: "o1",
        connector_key: "sandbox",
        user_id: "u1",
        provider: "sandbox",
        app_id: "a1",
        account_id: "acct",
        account_name: None,
        scopes: &[],
        consent_only: false,
        tokens,
    }
}

impl Drop for TempSqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
