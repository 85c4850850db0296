//! Test helpers shared by the provider modules' tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde::Deserialize;

/// The `[providers.*]` tables of a config file, in the form
/// [`ProviderRegistry::with_config`](super::ProviderRegistry::with_config) takes them.
pub(super) fn config(src: &str) -> BTreeMap<String, toml::Value> {
    #[derive(Deserialize)]
    struct File {
        providers: BTreeMap<String, toml::Value>,
    }
    toml::from_str::<File>(src).unwrap().providers
}
