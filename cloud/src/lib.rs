//! The Latchkey cloud as a library: `http::app` builds the router, `server::serve` runs
//! it on a listener, so tests drive the real service over real HTTP.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod apps;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connections;
pub mod crypto;
pub mod demo;
pub mod devices;
pub mod error;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod oauth;
pub mod orgs;
pub mod pages;
pub mod pats;
pub mod providers;
pub mod ratelimit;
pub mod refresh;
pub mod routes;
pub mod sandbox;
pub mod server;
pub mod state;
pub mod store;
#[cfg(test)]
mod test_db;
pub mod token_endpoint;
