//! Providers, managed apps and connectors: who may read and write them, what listings
//! show, what is really stored, and what the audit log keeps.

use latchkey_e2e::{backend_tests, cloud_command, json, Backend, CloudProcess, TestDb};

backend_tests!(managed_apps_and_connectors);

const CLIENT_ID: &str = "spotify-client-id-7f3a9c2e1b4d1234";
const CLIENT_SECRET: &str = "spotify-secret-Zq8vLm2Np4Rt6Xw9Yb1Cd3Ef5Gh7Jk";

async fn managed_apps_and_connectors(backend: Backend) {
    let db = TestDb::new(backend).await;
    // A real process, so the test can also read everything it logged (at debug level).
    let cloud = CloudProcess::spawn(&db, &[("RUST_LOG", "debug")]).await;
    let api = cloud.api();
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let carol = api.user("carol").await;
    api.org(&alice, "acme", "public").await;
    api.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&bob.access), None).await.ok(200);
    api.org(&carol, "globex", "public").await;
    api.org(&alice, "hidden", "private").await;

    // The registry lists the built-ins.
    let providers = api.get("/v1/providers", Some(&bob.access)).await.ok(200);
    let names: Vec<&str> = providers.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for p in [
        "github",
        "gitlab",
        "google",
        "microsoft",
        "spotify",
        "twitch",
        "kick",
        "discord",
        "slack",
        "notion",
        "linear",
        "dropbox",
        "strava",
        "zoom",
        "atlassian",
        "reddit",
        "x",
    ] {
        assert!(names.contains(&p), "{p} missing from /v1/providers");
    }
    let google = providers.as_array().unwrap().iter().find(|p| p["name"] == "google").unwrap();
    assert_eq!(google["extra_authorize_params"]["access_type"], "offline");

    // An admin saves an app; the answer and the listing show only the hint.
    let saved = api
        .put(
            "/v1/orgs/acme/apps/spotify",
            Some(&alice.access),
            json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
        )
        .await;
    assert!(!saved.text.contains(CLIENT_SECRET) && !saved.text.contains(CLIENT_ID));
    let saved = saved.ok(200);
    assert_eq!(saved["client_id_hint"], "1234");
    assert_eq!(saved["provider"], "spotify");
    let app_id = saved["id"].as_str().unwrap().to_owned();
    let listed = api.get("/v1/orgs/acme/apps", Some(&alice.access)).await;
    assert!(!listed.text.contains(CLIENT_SECRET) && !listed.text.contains(CLIENT_ID));
    let listed = listed.ok(200);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["client_id_hint"], "1234");
    assert!(listed[0].get("client_secret").is_none());

    // Replacing keeps the app's identity.
    let replaced = api
        .put(
            "/v1/orgs/acme/apps/spotify",
            Some(&alice.access),
            json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scopes": ["user-read-recently-played"]}),
        )
        .await
        .ok(200);
    assert_eq!(replaced["id"], app_id.as_str());
    assert_eq!(replaced["scopes"], json!(["user-read-recently-played"]));

    // A member cannot write or read apps; another org's admin cannot read them; a private
    // org's apps do not exist for outsiders.
    let attempt = json!({"client_id": "evil", "client_secret": "evil-secret"});
    api.put("/v1/orgs/acme/apps/spotify", Some(&bob.access), attempt.clone()).await.assert_error(403, "forbidden");
    api.get("/v1/orgs/acme/apps", Some(&bob.access)).await.assert_error(403, "forbidden");
    api.get("/v1/orgs/acme/apps", Some(&carol.access)).await.assert_error(403, "not_a_member");
    api.put("/v1/orgs/acme/apps/github", Some(&carol.access), attempt.clone()).await.assert_error(403, "not_a_member");
    api.get("/v1/orgs/hidden/apps", Some(&carol.access)).await.assert_error(404, "not_found");
    api.delete("/v1/orgs/acme/apps/spotify", Some(&bob.access)).await.assert_error(403, "forbidden");
    // Scopes gate PATs: apps:read cannot write; bob's apps:write PAT is still only a member.
    let (_, read_pat) = api.pat(&alice, &["apps:read"]).await;
    assert_eq!(api.get("/v1/orgs/acme/apps", Some(&read_pat)).await.ok(200).as_array().unwrap().len(), 1);
    api.put("/v1/orgs/acme/apps/github", Some(&read_pat), attempt.clone())
        .await
        .assert_error(403, "insufficient_scope");
    let (_, bob_pat) = api.pat(&bob, &["apps:write", "apps:read"]).await;
    api.put("/v1/orgs/acme/apps/github", Some(&bob_pat), attempt.clone()).await.assert_error(403, "forbidden");
    // Unknown providers and bad values are refused; nothing is stored.
    assert!(api
        .put("/v1/orgs/acme/apps/myspace", Some(&alice.access), attempt.clone())
        .await
        .assert_error(400, "invalid_request")
        .contains("unknown provider"));
    api.put("/v1/orgs/acme/apps/github", Some(&alice.access), json!({"client_id": "", "client_secret": "x"}))
        .await
        .assert_error(400, "invalid_request");
    api.put(
        "/v1/orgs/acme/apps/github",
        Some(&alice.access),
        json!({"client_id": "a", "client_secret": "b", "token_url": "https://evil.example/token"}),
    )
    .await
    .assert_error(400, "invalid_request");
    assert_eq!(api.get("/v1/orgs/acme/apps", Some(&alice.access)).await.ok(200).as_array().unwrap().len(), 1);

    // Connectors: refused without a managed app for the provider; members read them.
    let no_app = api
        .put("/v1/orgs/acme/connectors/code", Some(&alice.access), json!({"provider": "github", "scopes": ["repo"]}))
        .await;
    assert!(no_app.assert_error(400, "invalid_request").contains("no managed app"));
    let connector = api
        .put("/v1/orgs/acme/connectors/music", Some(&alice.access), json!({"provider": "spotify", "scopes": ["user-read-recently-played"], "description": "What you listened to"}))
        .await
        .ok(200);
    assert_eq!(connector["consent_only"], true);
    assert_eq!(connector["provider_display_name"], "Spotify");
    api.put("/v1/orgs/acme/connectors/music", Some(&bob.access), json!({"provider": "spotify", "scopes": []}))
        .await
        .assert_error(403, "forbidden");
    let seen = api.get("/v1/orgs/acme/connectors", Some(&bob.access)).await.ok(200);
    assert_eq!(seen[0]["key"], "music");
    assert_eq!(seen[0]["app_configured"], true);
    api.get("/v1/orgs/acme/connectors", Some(&carol.access)).await.assert_error(403, "not_a_member");
    api.put("/v1/orgs/acme/connectors/Bad%20Key", Some(&alice.access), json!({"provider": "spotify", "scopes": []}))
        .await
        .assert_error(400, "invalid_request");

    // Another org's app, to move ciphertexts between rows below.
    let other = api
        .put(
            "/v1/orgs/globex/apps/github",
            Some(&carol.access),
            json!({"client_id": "globex-id-0000", "client_secret": "globex-secret-value"}),
        )
        .await
        .ok(200);
    let other_id = other["id"].as_str().unwrap().to_owned();

    // The raw rows hold neither the client id nor the secret in plain text.
    let raw = db.raw().await;
    let dump: Vec<String> = match backend {
        Backend::Postgres => sqlx::query_scalar("select t::text from managed_apps t").fetch_all(&raw).await.unwrap(),
        Backend::Sqlite => sqlx::query_scalar(
            "select id || provider || client_id_hint || scopes || hex(client_id_ct) || hex(client_secret_ct) from managed_apps",
        )
        .fetch_all(&raw)
        .await
        .unwrap(),
    };
    let dump = dump.join("\n").to_lowercase();
    assert!(dump.contains(&app_id));
    for plain in [CLIENT_ID, CLIENT_SECRET] {
        assert!(!dump.contains(&plain.to_lowercase()), "plaintext in the database");
        assert!(!dump.contains(&hex(plain)), "plaintext (hex) in the database");
    }
    if backend == Backend::Sqlite {
        // The database files themselves, WAL included.
        for file in ["latchkey.db", "latchkey.db-wal"] {
            let bytes = std::fs::read(db.dir.path().join(file)).unwrap_or_default();
            for plain in [CLIENT_ID, CLIENT_SECRET] {
                assert!(!bytes.windows(plain.len()).any(|w| w == plain.as_bytes()), "{plain} found in {file}");
            }
        }
    }
    let verify = cloud_command(&db, &[]).args(["keys", "verify"]).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));

    // A ciphertext moved to another row, or to another column, fails to decrypt, and the
    // failure names the value.
    sqlx::query("update managed_apps set client_secret_ct = (select client_secret_ct from managed_apps where id = $1) where id = $2")
        .bind(&app_id)
        .bind(&other_id)
        .execute(&raw)
        .await
        .unwrap();
    sqlx::query("update managed_apps set client_id_ct = client_secret_ct where id = $1")
        .bind(&app_id)
        .execute(&raw)
        .await
        .unwrap();
    let verify = cloud_command(&db, &[]).args(["keys", "verify"]).output().unwrap();
    assert!(!verify.status.success());
    let err = String::from_utf8_lossy(&verify.stderr);
    assert!(err.contains(&format!("managed_apps.client_secret of row {other_id}")), "{err}");
    assert!(err.contains(&format!("managed_apps.client_id of row {app_id}")), "{err}");
    assert!(err.contains("wrong or the value was moved"), "{err}");

    // Every change was audited, without a secret.
    let events: Vec<(String, Option<String>)> =
        sqlx::query_as("select action, detail from audit_events where action like 'app.%' or action like 'connector.%' order by created_at")
            .fetch_all(&raw)
            .await
            .unwrap();
    let actions: Vec<&str> = events.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "app.put").count(), 3, "{actions:?}");
    assert!(actions.contains(&"connector.put"));
    let all = format!("{events:?}");
    assert!(!all.contains(CLIENT_SECRET) && !all.contains(CLIENT_ID) && !all.contains("globex-secret-value"));
    raw.close().await;

    // Deleting the app leaves the connector without one.
    api.delete("/v1/orgs/acme/apps/spotify", Some(&alice.access)).await.ok(204);
    api.delete("/v1/orgs/acme/apps/spotify", Some(&alice.access)).await.assert_error(404, "not_found");
    assert_eq!(api.get("/v1/orgs/acme/connectors", Some(&bob.access)).await.ok(200)[0]["app_configured"], false);
    api.delete("/v1/orgs/acme/connectors/music", Some(&alice.access)).await.ok(204);

    // Nothing secret reached the logs, even at debug level.
    let log = cloud.log_text();
    assert!(log.contains("app") || log.contains("request"), "the log is unexpectedly empty");
    for secret in [CLIENT_ID, CLIENT_SECRET, "globex-secret-value", "evil-secret", &alice.password, &alice.refresh] {
        assert!(!log.contains(secret), "a secret value reached the log");
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}
