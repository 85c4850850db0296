//! `latchkey-cloud demo`: a cloud a newcomer can try in minutes. Dev mode, the sandbox
//! provider, a fresh SQLite, and seed data: an admin, a member, a public org `demo` with
//! a managed sandbox app and a `sandbox` connector. It prints what to do next.

use crate::access::{ClientMeta, Principal, Via};
use crate::accounts::{self, RegisterRequest};
use crate::apps::{self, PutApp, PutConnector};
use crate::config::Config;
use crate::orgs::{self, CreateOrg, Visibility};
use crate::server;
use crate::state::AppState;
use anyhow::Context;
use latchkey_shared::secret::SecretString;

pub const ADMIN_EMAIL: &str = "admin@demo.test";
pub const ADMIN_PASSWORD: &str = "amber-falcon-orchard-71";
pub const MEMBER_EMAIL: &str = "member@demo.test";
pub const MEMBER_PASSWORD: &str = "violet-harbor-lantern-42";
const SANDBOX_CLIENT_ID: &str = "latchkey-demo";

/// Seeds a fresh demo cloud and serves it until stopped.
pub async fn run(mut config: Config, items: usize) -> anyhow::Result<()> {
    config.dev = true;
    config.sandbox = true;
    if config.database_url.is_none() && config.data_dir.join("latchkey.db").exists() {
        anyhow::bail!(
            "{} already holds a Latchkey database; the demo wants a fresh one (use --data-dir with a new directory)",
            config.data_dir.display()
        );
    }
    let listen = config.listen;
    let data_dir = config.data_dir.clone();
    let state = server::build_state(config).await?;
    seed(&state, items).await.context("seeding the demo")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e} (use --listen)"))?;
    print_next_steps(&state, &data_dir);
    server::serve(state, listener, server::shutdown_signal()).await
}

async fn seed(state: &AppState, items: usize) -> crate::error::Result<()> {
    let meta = ClientMeta { ip: "127.0.0.1".into(), user_agent: Some("latchkey-cloud demo".into()) };
    let admin = accounts::register(
        state,
        RegisterRequest {
            email: ADMIN_EMAIL.into(),
            username: "admin".into(),
            password: SecretString::from(ADMIN_PASSWORD),
            invitation: None,
        },
        &meta,
    )
    .await?;
    let member = accounts::register(
        state,
        RegisterRequest {
            email: MEMBER_EMAIL.into(),
            username: "member".into(),
            password: SecretString::from(MEMBER_PASSWORD),
            invitation: None,
        },
        &meta,
    )
    .await?;
    // Seeding acts as the admin and the member themselves would.
    let as_user = |id: &str| Principal { user_id: id.to_owned(), via: Via::Session { session_id: String::new() } };
    let (admin_p, member_p) = (as_user(&admin.id), as_user(&member.id));
    orgs::create(
        state,
        &admin_p,
        &meta,
        CreateOrg {
            slug: "demo".into(),
            name: "Demo".into(),
            description: Some("A public org with a sandbox connector, for trying Latchkey".into()),
            visibility: Visibility::Public,
        },
    )
    .await?;
    orgs::join(state, &member_p, &meta, "demo").await?;
    // The managed app, registered at the sandbox as at a real provider's console. Its
    // secret is random and lives only in the cloud's encrypted store.
    let secret = accounts::random_token("demo-secret-");
    if let Some(sandbox) = &state.sandbox {
        sandbox.register_client(SANDBOX_CLIENT_ID, secret.expose(), &crate::consent::redirect_uri(state));
        sandbox.set_items(items);
    }
    apps::put_app(
        state,
        &admin_p,
        &meta,
        "demo",
        "sandbox",
        PutApp { client_id: Some(SecretString::from(SANDBOX_CLIENT_ID)), client_secret: Some(secret), scopes: None },
    )
    .await?;
    apps::put_connector(
        state,
        &admin_p,
        &meta,
        "demo",
        "sandbox",
        PutConnector {
            provider: "sandbox".into(),
            scopes: vec!["profile".into(), "items:read".into()],
            consent_only: Some(true),
            display_name: Some("Sandbox Music".into()),
            description: Some("Your listening history on the sandbox music service".into()),
        },
    )
    .await?;
    Ok(())
}

fn print_next_steps(state: &AppState, data_dir: &std::path::Path) {
    let url = &state.public_url;
    let data_dir = data_dir.display();
    // The same commands as the README's quickstart; its test checks that they agree.
    println!(
        "\n\
         Latchkey demo is running at {url}   (Ctrl-C stops it)\n\
         \x20 data dir (SQLite, dev key): {data_dir}\n\
         \n\
         Seeded: a public org `demo` with a managed sandbox app and a `sandbox` connector.\n\
         \x20 member login: {MEMBER_EMAIL} / {MEMBER_PASSWORD}\n\
         \x20 admin login:  {ADMIN_EMAIL} / {ADMIN_PASSWORD}\n\
         \n\
         Next, in another terminal (with `latchkey` on your PATH):\n\
         \x20 latchkey init --cloud-url {url} --org demo --connector sandbox\n\
         \x20 latchkey login            # approve the code on {url}/device, signed in as the member\n\
         \x20 latchkey connect sandbox  # continue on the cloud's page, approve on the sandbox's; it waits\n\
         \x20 latchkey sync sandbox     # the data goes to the agent's local database, not the cloud\n\
         \x20 latchkey events --limit 5\n\
         \x20 latchkey status\n\
         \n\
         The org page: {url}/orgs/demo\n"
    );
}
