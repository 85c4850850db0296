//! End-to-end tests: the cloud over real HTTP, on SQLite and on PostgreSQL.
//! One test binary (linking many is slow on a small machine), one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod agent;
mod apps;
mod bad_input;
mod browser;
mod consent;
mod forgery;
mod keys;
mod openapi;
mod orgs;
mod pats;
mod quickstart;
mod replicas;
mod single_flight;
mod token;
