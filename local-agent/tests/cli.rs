//! The `latchkey` binary as a user first meets it. (Being an integration test, this also
//! makes `cargo test --workspace` build the binary the end-to-end tests run.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn latchkey() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

#[test]
fn help_lists_every_command() {
    let out = latchkey().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for command in ["init", "login", "logout", "status", "connect", "sync", "run", "events", "token"] {
        assert!(help.contains(command), "--help does not list `{command}`");
    }
}

#[test]
fn a_missing_config_says_what_to_do() {
    let dir = std::env::temp_dir().join(format!("latchkey-agent-cli-{}", std::process::id()));
    let out = latchkey()
        .args(["token", "sandbox"])
        .env("LATCHKEY_CONFIG", dir.join("missing.toml"))
        .env("LATCHKEY_DATA_DIR", &dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("latchkey init") || err.contains("missing.toml"), "{err}");
}
