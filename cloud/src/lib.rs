//! The Latchkey cloud as a library: `http::app` builds the router, `server::serve` runs
//! it on a listener, so tests drive the real service over real HTTP.
//!
//! Layers, each importing only from layers below it (`layers.rs` checks this on every
//! test run; `docs/architecture.md` explains it):
//!
//! - assembly: `cli`, `demo`, `server`
//! - HTTP: `http` (routes and pages, one file per resource)
//! - domain services: `connection_token`, `consent`, `devices`, `accounts`, `pats`,
//!   `orgs`, `apps`, `cascade`, `connections`, `refresh`, and `access` (who is calling
//!   and what may they touch)
//! - infrastructure: `webhooks` (the event outbox), `state`, `keys`, `config`, `oauth`, `sandbox`, `providers`,
//!   `audit`, `ratelimit`, `sealed`, `error`, `single_flight`, `gate`, `metrics`,
//!   `drain`, `store`, `crypto`
#![forbid(unsafe_code)]

pub mod access;
pub mod accounts;
pub mod apps;
pub mod audit;
pub mod cascade;
pub mod cli;
pub mod config;
pub mod connection_health;
pub mod connection_token;
pub mod connections;
pub mod consent;
pub mod crypto;
pub mod demo;
pub mod devices;
pub mod drain;
pub mod error;
pub mod gate;
pub mod http;
pub mod invitations;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod oauth;
pub mod orgs;
pub mod pats;
pub mod providers;
pub mod ratelimit;
pub mod refresh;
pub mod revocation;
pub mod sandbox;
pub mod sealed;
pub mod server;
pub mod single_flight;
pub mod state;
pub mod store;
pub mod webhook_endpoints;
pub mod webhooks;

#[cfg(test)]
mod layers;
#[cfg(test)]
mod test_db;
