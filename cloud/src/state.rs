//! Shared application state handed to every handler.

use crate::config::Config;
use crate::crypto::KeyRing;
use crate::providers::ProviderRegistry;
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
    /// `config.public_url()`, computed once.
    pub public_url: String,
}

impl AppState {
    pub fn new(store: Store, config: Config, keys: KeyRing, providers: ProviderRegistry) -> Self {
        let public_url = config.public_url();
        Self(Arc::new(Inner { store, config, keys, providers, public_url }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
