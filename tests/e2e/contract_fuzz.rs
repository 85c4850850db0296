//! The OpenAPI document tells the whole truth, and a fuzzer keeps it so: schemathesis
//! (pinned and installed by `.ci/run`) drives a live cloud from `/openapi.json` with every
//! check — no 5xx, no undocumented status, answers that match their schemas, schema-valid
//! requests accepted and schema-violating ones refused — as a signed-in user (JWT), with a
//! PAT holding every scope, and without credentials. The allowances for business rules a
//! schema cannot state are in `tests/contract/schemathesis.toml`, each with its reason.

use latchkey_e2e::{Backend, CloudProcess, TestDb};
use std::process::Command;

/// The `st` command, or `None` where it is not installed (never under CI).
fn schemathesis() -> Option<&'static str> {
    let found = Command::new("st").arg("--version").output().is_ok_and(|o| o.status.success());
    if found {
        return Some("st");
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "schemathesis is not installed: `pip install schemathesis` (`.ci/run` installs the pinned version)"
    );
    eprintln!("skipping: schemathesis (`st`) is not installed; `pip install schemathesis` to run this test");
    None
}

fn fuzz(st: &str, base: &str, credential: Option<&str>, exclude: &[&str]) -> (bool, String) {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/contract/schemathesis.toml");
    let mut cmd = Command::new(st);
    cmd.args(["--config-file", config, "--no-color", "run", &format!("{base}/openapi.json")])
        .args(["--checks", "all", "--max-examples", "25", "--workers", "1", "--seed", "1"])
        .env("NO_COLOR", "1");
    if let Some(token) = credential {
        cmd.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    for path in exclude {
        cmd.args(["--exclude-path", path]);
    }
    let out = cmd.output().expect("run schemathesis");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_survives_schemathesis() {
    let Some(st) = schemathesis() else { return };
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = CloudProcess::spawn(&db, &[("LATCHKEY_TOKEN_RATE_LIMIT", "0")]).await;
    let api = cloud.api();
    let owner = api.user("owner").await;
    api.org(&owner, "acme", "public").await;
    let every_scope = [
        "connections:read",
        "connections:create",
        "connections:delete",
        "connections:token",
        "apps:read",
        "apps:write",
        "orgs:read",
        "orgs:write",
        "audit:read",
    ];
    let (_, pat) = api.pat(&owner, &every_scope).await;
    // Logging out or revoking the login would end the JWT run half-way.
    let login_enders = ["/v1/auth/logout", "/v1/sessions/{id}"];
    let runs = [
        ("a signed-in user's JWT", Some(owner.access.as_str()), &login_enders[..]),
        ("a PAT with every scope", Some(&pat), &[]),
        ("no credential", None, &[]),
    ];
    let mut failed = Vec::new();
    for (who, credential, exclude) in runs {
        let (ok, report) = fuzz(st, &api.base, credential, exclude);
        if !ok {
            failed.push(format!("==== as {who}:\n{report}"));
        }
    }
    assert!(failed.is_empty(), "schemathesis found the document untrue:\n{}", failed.join("\n"));
}
