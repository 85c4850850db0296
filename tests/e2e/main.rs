//! End-to-end tests: the cloud over real HTTP, on SQLite and on PostgreSQL.
//! One test binary (linking many is slow on a small machine), one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod agent;
mod agent_follow;
mod agent_outage;
mod apps;
mod audit_loss;
mod bad_input;
mod browser;
mod cascades;
mod chaos;
mod connection_accounts;
mod connection_states;
mod consent;
mod console_account;
mod console_apps;
mod console_health;
mod console_journey;
mod console_orgs;
mod contract_fuzz;
mod db_outage;
mod deploy_files;
mod devices;
mod drain;
mod forgery;
mod keys;
mod lease;
mod limits;
mod metrics;
mod oidc;
mod openapi;
mod orgs;
mod pat_binding;
mod pats;
mod provider_faults;
mod quickstart;
mod refresh_pacing;
mod refresh_save;
mod replicas;
mod sandbox_exposure;
mod secret_scan;
mod single_flight;
mod token;
mod webhooks;
