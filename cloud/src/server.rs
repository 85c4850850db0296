//! Start-up and shutdown: open the store, run migrations, build the key ring, serve, drain.

use crate::config::{Config, KeySource};
use crate::drain::Phase;
use crate::state::AppState;
use crate::store::{Backend, Store};
use anyhow::Context;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;

/// Opens the database named by the config and brings its schema up to date.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let url = config.database_url();
    let store = Store::connect(&url, &config.pool_settings()).await?;
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

/// Serves until `shutdown` resolves, then drains (see `crate::drain`) and stops:
///
/// 1. `/readyz` answers 503 and every answer carries `Connection: close`, for
///    `drain_period()` (`drain_secs`), while everything is still served; the background
///    refresher and the webhook worker start nothing new;
/// 2. the listener closes; requests in flight, the refreshes and deliveries under way and
///    the audit queue get `shutdown_timeout_secs` between them, after which the process
///    stops anyway (a refresh lease left behind runs out within `refresh_lease_secs`);
/// 3. the pool closes.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("reading the listen address")?;
    tracing::info!(listen = %addr, public_url = %state.public_url, "latchkey-cloud is serving");
    let (store, drain, audit) = (state.store.clone(), state.drain.clone(), state.audit.clone());
    let drain_period = state.config.drain_period();
    let shutdown_timeout = Duration::from_secs(state.config.shutdown_timeout_secs);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let refresher = tokio::spawn(crate::refresh::background_refresher(state.clone(), stop_rx.clone()));
    let webhooks = tokio::spawn(crate::webhooks::worker::run(state.clone(), stop_rx));
    let app = crate::http::app(state);
    let stop_accepting = {
        let drain = drain.clone();
        async move {
            shutdown.await;
            drain.advance(Phase::Draining);
            let _ = stop_tx.send(true);
            tracing::info!(
                drain_secs = drain_period.as_secs(),
                "stopping: draining (/readyz answers 503, every answer closes its connection); a second signal stops at once"
            );
            tokio::time::sleep(drain_period).await;
            drain.advance(Phase::Stopping);
        }
    };
    let mut server = tokio::spawn(crate::listener::serve(listener, app, stop_accepting));
    let ended_early = tokio::select! {
        served = &mut server => Some(served),
        () = drain.reached(Phase::Stopping) => None,
    };
    let deadline = tokio::time::Instant::now() + shutdown_timeout;
    let served = match ended_early {
        Some(served) => served,
        None => {
            tracing::info!("no longer accepting connections; finishing what is in flight");
            match tokio::time::timeout_at(deadline, &mut server).await {
                Ok(served) => served,
                Err(_) => {
                    tracing::warn!(
                        timeout_secs = shutdown_timeout.as_secs(),
                        "requests were still in flight at the shutdown timeout; stopping anyway"
                    );
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    // Serving may also have ended on its own (an error); stop the rest the same way.
    drain.advance(Phase::Stopping);
    let background = async {
        let _ = refresher.await;
        let _ = webhooks.await;
    };
    if tokio::time::timeout_at(deadline, background).await.is_err() {
        tracing::warn!("refreshes or webhook deliveries were still under way at the shutdown timeout; stopping anyway");
    }
    audit.flush(deadline.saturating_duration_since(tokio::time::Instant::now())).await;
    // Closing waits for connections still out (a request abandoned above): bounded too.
    if tokio::time::timeout(Duration::from_secs(1), store.close()).await.is_err() {
        tracing::warn!("database connections were still in use when the pool closed");
    }
    tracing::info!("latchkey-cloud stopped");
    served.context("the HTTP server task")?.context("serving HTTP")
}

/// Resolves on the first SIGINT or SIGTERM. From then on a second one ends the process at
/// once, without finishing anything: exit code 130 (SIGINT) or 143 (SIGTERM), as a shell
/// reports a process those signals killed.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut interrupt, mut terminate) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for SIGINT and SIGTERM");
                return std::future::pending().await;
            }
        };
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tokio::spawn(async move {
            let (name, code) = tokio::select! {
                _ = interrupt.recv() => ("SIGINT", 130),
                _ = terminate.recv() => ("SIGTERM", 143),
            };
            tracing::warn!(signal = name, "second stop signal: exiting at once");
            std::process::exit(code);
        });
    }
    #[cfg(not(unix))]
    {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            return std::future::pending().await;
        }
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::warn!("second Ctrl-C: exiting at once");
                std::process::exit(130);
            }
        });
    }
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
