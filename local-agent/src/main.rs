//! `latchkey`, the local agent. For now it only introduces itself; pairing, the token
//! client and connectors arrive with the local-agent issue.
#![forbid(unsafe_code)]

use clap::Parser;

/// Latchkey local agent: pairs with the Latchkey cloud, fetches short-lived access
/// tokens and syncs your data into a local database that never leaves this machine.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    println!("latchkey {}: the local agent is not built yet; see README.md", env!("CARGO_PKG_VERSION"));
}
