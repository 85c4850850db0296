//! Start-up and shutdown: open the store, run migrations, build the key ring, serve.

use crate::config::{Config, KeySource};
use crate::state::AppState;
use crate::store::{Backend, Store};
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Opens the database named by the config and brings its schema up to date.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url();
    let store = Store::connect(&url, config.database_max_connections).await?;
    store.migrate().await?;
    match store.backend() {
        Backend::Sqlite => tracing::info!(
            database = %redact_url(&url),
            "storage: embedded SQLite (one process; set DATABASE_URL=postgres://… to run replicas on PostgreSQL)"
        ),
        Backend::Postgres => tracing::info!(database = %redact_url(&url), "storage: PostgreSQL"),
    }
    Ok(store)
}

/// Everything a running cloud needs.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let (keys, source) = config.key_ring()?;
    match source {
        KeySource::Configured => {}
        KeySource::DevGenerated => tracing::warn!(
            path = %config.data_dir.join("master.key").display(),
            "DEV MODE: generated a master key into the data directory; never use dev mode in production"
        ),
        KeySource::DevFile => tracing::warn!(
            path = %config.data_dir.join("master.key").display(),
            "DEV MODE: using the generated master key in the data directory; never use dev mode in production"
        ),
    }
    if config.dev {
        tracing::warn!("DEV MODE is on: plain-http cookies are allowed and secrets are only as safe as this machine");
    }
    let mut providers = config.provider_registry()?;
    let sandbox = sandbox_for(&config);
    if let Some(sandbox) = &sandbox {
        providers.add(sandbox.provider_def());
    }
    let store = open_store(&config).await?;
    crate::keys::verify_ring_against_store(&store, &keys).await?;
    Ok(AppState::new(store, config, keys, providers, sandbox))
}

/// The sandbox provider when asked for, and only in dev mode or on a loopback listener
/// with a loopback public URL: anyone who reaches it can mint "provider" tokens. Its
/// admin hooks need a secret: the configured one, or a random one printed here (on
/// stdout, not in the logs).
fn sandbox_for(config: &Config) -> Option<crate::sandbox::Sandbox> {
    if !config.sandbox {
        return None;
    }
    let public = config.public_url();
    let allowed = config.dev || (config.listen.ip().is_loopback() && loopback_url(&public));
    if !allowed {
        tracing::warn!(listen = %config.listen, public_url = %public, "NOT serving the sandbox provider: it needs a loopback listen address and public URL, or dev mode");
        return None;
    }
    let secret = match config.sandbox_admin_secret.as_ref().filter(|s| !s.expose().is_empty()) {
        Some(secret) => secret.clone(),
        None => {
            let secret = crate::sandbox::Sandbox::generate_admin_secret();
            println!(
                "Sandbox admin hooks ({public}/sandbox/admin/…) need the header X-Sandbox-Admin: {}",
                secret.expose()
            );
            secret
        }
    };
    tracing::warn!(base = %format!("{public}/sandbox"), "serving the SANDBOX OAuth provider: for demos and tests only");
    match crate::sandbox::Sandbox::new(format!("{public}/sandbox"), &secret) {
        Ok(sandbox) => Some(sandbox),
        Err(_) => {
            tracing::error!("NOT serving the sandbox provider: no ID-token signing key could be generated");
            None
        }
    }
}

fn loopback_url(url: &str) -> bool {
    let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("reading the listen address")?;
    tracing::info!(listen = %addr, public_url = %state.public_url, "latchkey-cloud is serving");
    let store = state.store.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let refresher = tokio::spawn(crate::refresh::background_refresher(state.clone(), stop_rx.clone()));
    let webhooks = tokio::spawn(crate::webhooks::worker::run(state.clone(), stop_rx));
    let app = crate::http::app(state);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    let _ = stop_tx.send(true);
    let _ = refresher.await;
    let _ = webhooks.await;
    // Give the audit writer its last batch window before the pool closes.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    store.close().await;
    tracing::info!("latchkey-cloud stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

/// A database URL without its password, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:[redacted]{}", &url[..scheme_end + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}
