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
    for command in
        ["init", "login", "logout", "status", "connect", "disconnect", "sync", "run", "events", "token", "service"]
    {
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

/// A fresh config dir and data dir.
struct Home(std::path::PathBuf);

impl Home {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("latchkey-agent-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Home(dir)
    }

    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = latchkey()
            .args(args)
            .env("LATCHKEY_CONFIG", self.0.join("latchkey.toml"))
            .env("LATCHKEY_DATA_DIR", self.0.join("data"))
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn init_can_write_a_config_ready_for_the_demo() {
    let home = Home::new("init");
    let (ok, out, err) =
        home.run(&["init", "--cloud-url", "http://127.0.0.1:9090", "--org", "demo", "--connector", "sandbox"]);
    assert!(ok, "{err}");
    assert!(out.contains("latchkey login"), "init says what comes next: {out}");
    // The connector is usable as written: `token` gets past the config to the missing pairing.
    let (ok, _, err) = home.run(&["token", "sandbox"]);
    assert!(!ok);
    assert!(err.contains("not paired") && err.contains("run `latchkey login`"), "{err}");
    let text = std::fs::read_to_string(home.0.join("latchkey.toml")).unwrap();
    assert!(text.contains("cloud_url = \"http://127.0.0.1:9090\"") && text.contains("org = \"demo\""), "{text}");

    // A second init does not clobber the file unless told to.
    let (ok, _, err) = home.run(&["init"]);
    assert!(!ok && err.contains("already exists") && err.contains("--force"), "{err}");
    let (ok, _, err) = home.run(&["init", "--force"]);
    assert!(ok, "{err}");
    let (_, _, err) = home.run(&["sync", "sandbox"]);
    assert!(err.contains("no connector named `sandbox`"), "--force wrote a fresh starter file: {err}");
}

#[test]
fn init_refuses_half_a_connector_request() {
    let home = Home::new("half");
    let (ok, _, err) = home.run(&["init", "--connector", "sandbox"]);
    assert!(!ok && err.contains("--org"), "{err}");
    let (ok, _, err) = home.run(&["init", "--org", "demo", "--connector", "myspace"]);
    assert!(!ok && err.contains("sandbox") && err.contains("github"), "lists the kinds it knows: {err}");
    assert!(!home.0.join("latchkey.toml").exists(), "nothing is written");
}
