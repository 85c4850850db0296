//! The sandbox provider outside a developer's machine: never on a public listen address
//! outside dev mode, and its admin hooks only with the secret printed at start.

use latchkey_e2e::{free_port, json, Api, Backend, Cloud, CloudProcess, TestDb, SANDBOX_ADMIN_SECRET};

const HOOKS: [(&str, &str); 6] = [
    ("GET", "/sandbox/admin/stats"),
    ("GET", "/sandbox/admin/faults"),
    ("PUT", "/sandbox/admin/faults"),
    ("POST", "/sandbox/admin/reset"),
    ("POST", "/sandbox/admin/clients"),
    ("PUT", "/sandbox/admin/items"),
];

/// `method path` with `secret` (or none) in `X-Sandbox-Admin`, and the answer's status.
async fn hook_status(api: &Api, method: &str, path: &str, secret: Option<&str>) -> u16 {
    let mut req = api.client.request(method.parse().unwrap(), format!("{}{path}", api.base)).json(&json!({}));
    if let Some(s) = secret {
        req = req.header("x-sandbox-admin", s);
    }
    req.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_admin_hooks_refuse_callers_without_the_secret() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    for (method, path) in HOOKS {
        for secret in [None, Some("not-the-secret"), Some("")] {
            assert_eq!(hook_status(&api, method, path, secret).await, 401, "{method} {path} with {secret:?}");
        }
    }
    // A stranger cannot switch on auto-approval (consent without the user) either.
    assert_eq!(api.get("/sandbox/admin/faults", None).await.ok(200)["auto_approve"], false);
    // With the secret, the hooks work.
    assert_eq!(hook_status(&api, "GET", "/sandbox/admin/stats", Some(SANDBOX_ADMIN_SECRET)).await, 200);
    api.put("/sandbox/admin/faults", None, json!({"auto_approve": true})).await.ok(200);
}

/// Whether the cloud process serves the sandbox provider.
async fn serves_sandbox(proc: &CloudProcess) -> bool {
    let meta = proc.api().get("/sandbox/.well-known/oauth-authorization-server", None).await;
    assert!(meta.status == 200 || meta.status == 404, "{} {}", meta.status, meta.text);
    meta.status == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_sandbox_is_not_served_on_a_public_listen_address() {
    let db = TestDb::new(Backend::Sqlite).await;
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let public = [("LATCHKEY_LISTEN", listen.as_str()), ("LATCHKEY_SANDBOX", "1"), ("LATCHKEY_SANDBOX_FORCE", "1")];
    let proc = CloudProcess::spawn_on(&db, port, &public).await;
    assert!(!serves_sandbox(&proc).await, "log:\n{}", proc.log_text());
    assert!(proc.log_text().contains("NOT serving the sandbox provider"));
    drop(proc);

    // Loopback behind a public proxy is public too.
    let proxied = [
        ("LATCHKEY_PUBLIC_URL", "https://latchkey.example.com"),
        ("LATCHKEY_SANDBOX", "1"),
        ("LATCHKEY_SANDBOX_FORCE", "1"),
    ];
    let proc = CloudProcess::spawn(&db, &proxied).await;
    assert!(!serves_sandbox(&proc).await, "log:\n{}", proc.log_text());
    drop(proc);

    // Dev mode, a developer's own machine, may still serve it there.
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let dev = [("LATCHKEY_LISTEN", listen.as_str()), ("LATCHKEY_SANDBOX", "1"), ("LATCHKEY_DEV", "1")];
    let proc = CloudProcess::spawn_on(&db, port, &dev).await;
    assert!(serves_sandbox(&proc).await, "log:\n{}", proc.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_sandbox_admin_secret_is_printed_at_start_and_alone_opens_the_hooks() {
    let db = TestDb::new(Backend::Sqlite).await;
    let proc = CloudProcess::spawn(&db, &[("LATCHKEY_SANDBOX", "1"), ("LATCHKEY_SANDBOX_ADMIN_SECRET", "")]).await;
    let log = proc.log_text();
    let secret = log
        .lines()
        .find_map(|l| l.split_once("X-Sandbox-Admin: ").map(|(_, s)| s.trim().to_owned()))
        .unwrap_or_else(|| panic!("no admin secret printed; log:\n{log}"));
    assert!(secret.len() >= 32, "a random secret: {secret}");
    let api = proc.api();
    assert_eq!(hook_status(&api, "GET", "/sandbox/admin/stats", Some(&secret)).await, 200);
    assert_eq!(hook_status(&api, "GET", "/sandbox/admin/stats", Some(SANDBOX_ADMIN_SECRET)).await, 401);
    // Printed for the operator, never in a log line.
    assert_eq!(log.matches(&secret).count(), 1, "{log}");
}
