//! `latchkey`, the Latchkey local agent.
//!
//! It pairs with the Latchkey cloud once (RFC 8628 device flow), then fetches short-lived
//! provider access tokens from the cloud with the device's PAT, runs connectors against
//! the providers' APIs with those tokens, and stores what it syncs in a local SQLite
//! database. The synced data never goes to the cloud, and the PAT never goes anywhere but
//! the configured cloud URL.
#![forbid(unsafe_code)]
// Tests may panic on a broken expectation; the code under test may not.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod attention;
pub mod browser;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod connectors;
pub mod error;
pub mod event_text;
pub mod pairing;
pub mod pat_store;
pub mod private_file;
pub mod progress;
pub mod retry;
pub mod run_state;
pub mod schedule;
pub mod shutdown;
pub mod starter;
pub mod store;
pub mod sync;
pub mod token_client;

pub use error::{Error, Result};

/// `latchkey/<version>`, sent as the `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("latchkey/", env!("CARGO_PKG_VERSION"));
