//! The `latchkey-cloud` binary as an operator meets it: help, example config, a missing
//! master key, and the README's no-setup run command serving `/healthz`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::Duration;

fn cloud() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey-cloud"));
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

#[test]
fn help_documents_every_setting() {
    let out = cloud().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for setting in [
        "LATCHKEY_CONFIG",
        "LATCHKEY_LISTEN",
        "LATCHKEY_PUBLIC_URL",
        "LATCHKEY_DATA_DIR",
        "DATABASE_URL",
        "LATCHKEY_MASTER_KEY",
        "LATCHKEY_DEV",
        "LATCHKEY_SANDBOX",
        "LATCHKEY_TOKEN_RATE_LIMIT",
        "LATCHKEY_LOG_FORMAT",
        "LATCHKEY_TRUSTED_PROXY_HOPS",
        "LATCHKEY_REGISTRATIONS_PER_IP",
        "LATCHKEY_PASSWORD_HASH_CONCURRENCY",
        "LATCHKEY_PASSWORD_HASH_QUEUE",
    ] {
        assert!(help.contains(setting), "--help does not mention {setting}");
    }
    for command in ["serve", "migrate", "keys", "example-config"] {
        assert!(help.contains(command), "--help does not list `{command}`");
    }
}

#[test]
fn example_config_is_valid_and_complete() {
    let out = cloud().arg("example-config").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let dir = tempfile_dir();
    let path = dir.join("example.toml");
    std::fs::write(&path, &text).unwrap();
    // The example loads as it is.
    let config = latchkey_cloud::config::Config::load(Some(&path), &Default::default()).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    // And it documents every field of the config, commented or not.
    let defaults = serde_json::to_value(latchkey_cloud::config::Config::default()).unwrap();
    for key in defaults.as_object().unwrap().keys() {
        assert!(
            text.contains(&format!("{key} ="))
                || text.contains(&format!("[[{key}]]"))
                || text.contains(&format!("[{key}.")),
            "example config does not document `{key}`"
        );
    }
}

#[test]
fn refuses_to_start_without_a_master_key() {
    let dir = tempfile_dir();
    let out =
        cloud().arg("serve").env("LATCHKEY_DATA_DIR", &dir).env("LATCHKEY_LISTEN", "127.0.0.1:0").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no master key"), "{err}");
    assert!(err.contains("latchkey-cloud keys generate") && err.contains("--dev"), "{err}");
}

/// The old switch trusted the client-written leftmost entry; an operator who still sets
/// it must hear that it is gone, not run on a default they did not choose.
#[test]
fn the_replaced_trust_forwarded_for_setting_is_refused() {
    let dir = tempfile_dir();
    let out = cloud()
        .args(["--dev", "migrate"])
        .env("LATCHKEY_DATA_DIR", &dir)
        .env("LATCHKEY_TRUST_FORWARDED_FOR", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trusted_proxy_hops") && err.contains("LATCHKEY_TRUSTED_PROXY_HOPS"), "{err}");
}

#[test]
fn keys_generate_prints_a_usable_key() {
    let out = cloud().args(["keys", "generate"]).output().unwrap();
    let key = String::from_utf8(out.stdout).unwrap();
    assert!(latchkey_cloud::crypto::decode_master_key(key.trim()).is_ok());
}

/// The README's run command: `--dev` with nothing else set serves `/healthz` on SQLite.
#[test]
fn dev_mode_runs_with_no_setup() {
    let dir = tempfile_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = cloud()
        .arg("--dev")
        .current_dir(&dir)
        .env("LATCHKEY_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            s.read_to_string(&mut body).unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}\n{stderr}");
    assert!(body.contains("\"ok\""));
    assert!(stderr.contains("SQLite"), "start-up does not say it runs on SQLite: {stderr}");
    assert!(stderr.contains("DEV MODE"), "{stderr}");
    assert!(dir.join("latchkey-data/latchkey.db").exists());
    let key = dir.join("latchkey-data/master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(status.success(), "did not exit cleanly on SIGTERM: {status}");
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("latchkey-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_provider_with_a_plain_http_public_url_is_refused_at_start() {
    let dir = tempfile_dir();
    let config = dir.join("latchkey.toml");
    std::fs::write(
        &config,
        "[providers.acme]\ndisplay_name = \"Acme\"\nauthorization_url = \"http://acme.example/authorize\"\ntoken_url = \"https://acme.example/token\"\n",
    )
    .unwrap();
    let out = cloud()
        .args(["--dev", "--config"])
        .arg(&config)
        .arg("migrate")
        .env("LATCHKEY_DATA_DIR", &dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("acme") && err.contains("authorization_url"), "{err}");
    assert!(err.contains("loopback") || err.contains("https"), "{err}");

    // Loopback http is fine in the operator's file, and a built-in's URLs can be overridden.
    std::fs::write(
        &config,
        "[providers.acme]\ndisplay_name = \"Acme\"\nauthorization_url = \"http://127.0.0.1:9/authorize\"\ntoken_url = \"http://127.0.0.1:9/token\"\n\n\
         [providers.github]\ntoken_url = \"http://127.0.0.1:9/login/oauth/access_token\"\n",
    )
    .unwrap();
    let out = cloud()
        .args(["--dev", "--config"])
        .arg(&config)
        .arg("migrate")
        .env("LATCHKEY_DATA_DIR", &dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
