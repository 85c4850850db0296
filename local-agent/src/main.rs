//! The `latchkey` binary: parses the command line and hands over to [`latchkey_agent::cli`].
#![forbid(unsafe_code)]

use clap::Parser;
use latchkey_agent::cli::Cli;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    latchkey_agent::cli::main(cli)
}
