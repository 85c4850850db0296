//! Test support: throwaway databases on both backends, the cloud started in-process on a
//! real loopback listener or as a real `latchkey-cloud` process, and a small HTTP client
//! that does not follow redirects.
//!
//! PostgreSQL is required: when it is unreachable the PostgreSQL tests fail with a
//! message that says how to start it. `LATCHKEY_TEST_SKIP_POSTGRES=1` skips them on a
//! developer machine, and is ignored when `CI` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod chrome;
mod cloud;
mod db;
mod http;
mod nginx;
mod own_pg;
mod proxy;
mod sandbox_org;

pub use cloud::*;
pub use db::*;
pub use http::*;
pub use nginx::*;
pub use own_pg::*;
pub use proxy::*;
pub use sandbox_org::*;
pub use serde_json::json;

/// A fixed master key for tests (base64 of 32 bytes).
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmchISE=";

/// The sandbox admin secret every test cloud is started with; [`Api`] sends it to the
/// sandbox's admin hooks (`/sandbox/admin/…`) and nowhere else.
pub const SANDBOX_ADMIN_SECRET: &str = "test-sandbox-admin-secret";

/// The machine's CPU as `/proc/cpuinfo` names it, for the benchmarks' figures.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_default()
}
