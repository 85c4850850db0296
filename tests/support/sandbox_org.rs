//! A ready org with a managed sandbox app and a connector, and a consent driven through
//! the pages as a browser would.

use crate::*;
use reqwest::Method;
use serde_json::Value;

/// An org `acme` with a managed sandbox app and a `sandbox` connector, an admin and a
/// member, against a cloud that serves the sandbox provider.
pub struct SandboxOrg {
    pub admin: User,
    pub member: User,
    pub client_id: String,
    pub client_secret: String,
}

impl SandboxOrg {
    /// Against a cloud that serves the sandbox itself.
    pub async fn setup(api: &Api) -> Self {
        Self::setup_at(api, api, &api.base).await
    }

    /// Against a sandbox served by another process (`sandbox`), for clouds whose public
    /// URL is `public` (replicas behind one URL).
    pub async fn setup_at(api: &Api, sandbox: &Api, public: &str) -> Self {
        let admin = api.user("admin").await;
        let member = api.user("member").await;
        api.org(&admin, "acme", "public").await;
        api.send(Method::POST, "/v1/orgs/acme/join", Some(&member.access), None).await.ok(200);
        let (client_id, client_secret) = publish_sandbox(api, sandbox, public, &admin, "acme").await;
        SandboxOrg { admin, member, client_id, client_secret }
    }

    /// [`SandboxOrg::setup`], with the member connected to `sandbox` through the pages.
    pub async fn with_member_connected(api: &Api) -> Self {
        let org = Self::setup(api).await;
        let (_, page) = consent(api, &org.member, "acme", "sandbox").await;
        assert_eq!(page.status, 200, "{}", page.text);
        org
    }

    /// A cloud serving the sandbox, [`SandboxOrg::setup`] on it, the member connected, and
    /// a PAT of the member's that may fetch tokens.
    pub async fn connected_cloud(db: &TestDb) -> (Cloud, Api, Self, String) {
        let cloud = Cloud::start_with(db, |c| c.sandbox = true).await;
        let api = cloud.api();
        let org = Self::setup(&api).await;
        let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
        assert_eq!(page.status, 200, "{}", page.text);
        let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
        (cloud, api, org, pat)
    }

    /// Sets sandbox faults (see `PUT /sandbox/admin/faults`).
    pub async fn faults(api: &Api, faults: Value) {
        let r = api.put("/sandbox/admin/faults", None, faults).await;
        assert!(r.status.is_success(), "setting faults failed: {}", r.text);
    }

    pub async fn stats(api: &Api) -> Value {
        api.get("/sandbox/admin/stats", None).await.ok(200)
    }
}

/// Registers a new client at the sandbox (`sandbox`, reached by `public`) and publishes it
/// in `org` as the managed sandbox app and a `sandbox` connector; returns its client id and
/// secret.
pub async fn publish_sandbox(api: &Api, sandbox: &Api, public: &str, admin: &User, org: &str) -> (String, String) {
    let client_id = format!("sandbox-client-{}", uuid::Uuid::new_v4().simple());
    let client_secret = format!("sandbox-secret-{}", uuid::Uuid::new_v4().simple());
    // Register the app at the provider, as an admin would in its console.
    sandbox
        .post(
            "/sandbox/admin/clients",
            None,
            json!({"client_id": client_id, "client_secret": client_secret, "redirect_uri": format!("{public}/oauth/callback")}),
        )
        .await
        .ok(201);
    api.put(
        &format!("/v1/orgs/{org}/apps/sandbox"),
        Some(&admin.access),
        json!({"client_id": client_id, "client_secret": client_secret}),
    )
    .await
    .ok(200);
    api.put(
        &format!("/v1/orgs/{org}/connectors/sandbox"),
        Some(&admin.access),
        json!({"provider": "sandbox", "scopes": ["profile", "items:read"], "description": "Sandbox listening history"}),
    )
    .await
    .ok(200);
    (client_id, client_secret)
}

/// Consents as `user` in a fresh browser with the sandbox approving at once; returns the
/// browser and the callback page.
pub async fn consent(api: &Api, user: &User, org: &str, key: &str) -> (Browser, Reply) {
    let browser = Browser::new();
    assert!(browser.login(&api.base, user).await.status.is_redirection());
    SandboxOrg::faults(api, json!({"auto_approve": true})).await;
    let (_, page) = browser.connect(&api.base, org, key).await;
    (browser, page)
}

/// A config file for replicas that use a sandbox served by another process.
pub fn sandbox_provider_config(dir: &std::path::Path, sandbox: &str) -> std::path::PathBuf {
    let path = dir.join("replicas.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[providers.sandbox]
display_name = "Sandbox"
authorization_url = "{sandbox}/sandbox/authorize"
token_url = "{sandbox}/sandbox/token"
revocation_url = "{sandbox}/sandbox/revoke"
userinfo_url = "{sandbox}/sandbox/userinfo"
account_id_field = "sub"
account_name_field = "name"
issuer = "{sandbox}/sandbox"
scopes = ["profile", "items:read"]
pkce = "required"
token_auth_method = "client_secret_basic"
rotates_refresh_tokens = true
"#
        ),
    )
    .unwrap();
    path
}
