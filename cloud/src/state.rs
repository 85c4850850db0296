//! The application state every handler and domain function gets: infrastructure only
//! (database, key ring, configuration, provider registry and client, audit writer,
//! metrics). Domain rules live in the domain modules, which take `&AppState`; nothing
//! here imports them.

use crate::audit::AuditWriter;
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::gate::Gate;
use crate::oauth::client::ProviderClient;
use crate::providers::ProviderRegistry;
use crate::sandbox::Sandbox;
use crate::single_flight::KeyedLocks;
use crate::store::Store;
use std::sync::Arc;

/// Cheap to clone; everything inside is immutable or internally synchronised.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub store: Store,
    pub config: Config,
    pub keys: KeyRing,
    pub providers: ProviderRegistry,
    /// Outgoing calls to providers, with timeouts.
    pub provider_client: ProviderClient,
    /// The sandbox provider, when this process serves it.
    pub sandbox: Option<Sandbox>,
    /// In-process single flight of refreshes, one lock per connection.
    pub flights: KeyedLocks,
    /// Refresh calls in flight per provider, capped; paused on a provider's 429.
    pub provider_pacing: crate::providers::pacing::ProviderPacing,
    /// Names this process in refresh leases.
    pub instance_id: String,
    /// Batching writer of hot-path audit events.
    pub audit: AuditWriter,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `config.public_url()`, computed once.
    pub public_url: String,
    /// Password hashing (Argon2id): bounded, so a flood is refused rather than queued.
    pub password_gate: Gate,
    /// Wakes this replica's webhook worker when an event is published here.
    pub webhook_wake: tokio::sync::Notify,
    /// Serving, draining or stopping (`server::serve` moves it on).
    pub drain: crate::drain::Drain,
    /// The token endpoint's per-PAT limit, in this replica's memory; `None` when off.
    pub token_limit: Option<crate::ratelimit::PerReplica>,
}

impl AppState {
    /// Must run inside a Tokio runtime: it starts the audit writer.
    pub fn new(
        store: Store,
        config: Config,
        keys: KeyRing,
        providers: ProviderRegistry,
        sandbox: Option<Sandbox>,
    ) -> Self {
        let public_url = config.public_url();
        let provider_pacing = crate::providers::pacing::ProviderPacing::new(config.refresh_provider_concurrency);
        let provider_client = ProviderClient::new(std::time::Duration::from_secs(config.provider_timeout_secs));
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let (audit, _writer) = AuditWriter::start(store.clone(), config.audit_queue, Arc::clone(&metrics));
        let password_gate = Gate::new(config.password_hash_concurrency, config.password_hash_queue);
        let token_limit = crate::ratelimit::PerReplica::per_minute(config.token_rate_limit);
        Self(Arc::new(Inner {
            store,
            config,
            keys,
            providers,
            provider_client,
            sandbox,
            flights: KeyedLocks::default(),
            provider_pacing,
            instance_id: uuid::Uuid::new_v4().to_string(),
            audit,
            metrics,
            public_url,
            password_gate,
            webhook_wake: tokio::sync::Notify::new(),
            drain: crate::drain::Drain::default(),
            token_limit,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
