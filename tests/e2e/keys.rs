//! The master key ring: a wrong key is refused at start-up, and `keys rotate`
//! re-encrypts a populated database while the cloud keeps serving.

use latchkey_e2e::{backend_tests, cloud_command, json, Backend, CloudProcess, TestDb, TEST_MASTER_KEY};

backend_tests!(wrong_master_key_is_refused, rotation_is_online_and_complete);

const NEW_KEY: &str = "bmV3LW1hc3Rlci1rZXktb2YtdGhpcnR5LXR3by1ieXQ=";
const PROVIDERS: [&str; 8] = ["github", "gitlab", "google", "spotify", "discord", "slack", "notion", "dropbox"];

async fn wrong_master_key_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = CloudProcess::spawn(&db, &[]).await;
    let api = cloud.api();
    let alice = api.user("alice").await;
    api.org(&alice, "acme", "public").await;
    api.put(
        "/v1/orgs/acme/apps/github",
        Some(&alice.access),
        json!({"client_id": "id-1", "client_secret": "secret-1"}),
    )
    .await
    .ok(200);
    drop(cloud);

    let wrong = CloudProcess::try_spawn(&db, &[("LATCHKEY_MASTER_KEY", NEW_KEY)]).await;
    let log = wrong.err().expect("a cloud with the wrong master key must not start");
    assert!(log.contains("master key version 1 is not the key this database was sealed with"), "{log}");
    // `keys verify` says the same.
    let out = cloud_command(&db, &[("LATCHKEY_MASTER_KEY", NEW_KEY)]).args(["keys", "verify"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the key this database was sealed with"));
}

async fn rotation_is_online_and_complete(backend: Backend) {
    let db = TestDb::new(backend).await;
    let ring = format!("2:{NEW_KEY},1:{TEST_MASTER_KEY}");
    // PATs, not JWTs: they live in the database, so they outlast key retirement and work
    // on every process whatever its public URL.
    let pats = {
        let cloud = CloudProcess::spawn(&db, &[]).await;
        let api = cloud.api();
        // Populate: 4 orgs × 8 providers, all sealed with key 1.
        let mut pats = Vec::new();
        for o in 0..4 {
            let admin = api.user(&format!("admin{o}")).await;
            api.org(&admin, &format!("org{o}"), "public").await;
            let (_, pat) = api.pat(&admin, &["apps:read", "apps:write"]).await;
            for p in PROVIDERS {
                api.put(
                    &format!("/v1/orgs/org{o}/apps/{p}"),
                    Some(&pat),
                    json!({"client_id": format!("{p}-id-{o}"), "client_secret": format!("{p}-secret-{o}")}),
                )
                .await
                .ok(200);
            }
            pats.push(pat);
        }
        pats
    };

    // The serving replica knows both keys (key 2 active) before the rotation starts.
    let cloud = CloudProcess::spawn(&db, &[("LATCHKEY_MASTER_KEY", &ring)]).await;
    let api = cloud.api();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (api, stop, admin) = (api.clone(), stop.clone(), pats[0].clone());
        tokio::spawn(async move {
            let mut served = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                api.get("/v1/orgs/org0/apps", Some(&admin)).await.ok(200);
                // Writes during the rotation must not be lost or clobbered.
                api.put(
                    "/v1/orgs/org0/apps/github",
                    Some(&admin),
                    json!({"client_id": "github-id-live", "client_secret": "github-secret-live"}),
                )
                .await
                .ok(200);
                served += 2;
            }
            served
        })
    };
    let ring_for_cmd = ring.clone();
    let db_url = db.url.clone();
    let dir = db.dir.path().to_path_buf();
    let rotate = tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(latchkey_e2e::binary("latchkey-cloud"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LATCHKEY_DATA_DIR", dir)
            .env("DATABASE_URL", db_url)
            .env("LATCHKEY_MASTER_KEY", ring_for_cmd)
            .args(["keys", "rotate"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = load.await.unwrap();
    let stdout = String::from_utf8_lossy(&rotate.stdout);
    assert!(rotate.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&rotate.stderr));
    assert!(served >= 2, "the cloud served nothing during the rotation");
    assert!(stdout.contains("managed_apps: 0 row(s) left under older key versions"), "{stdout}");
    assert!(stdout.contains("can be retired"), "{stdout}");

    // Everything now opens with key 2 alone, and a cloud with only key 2 starts.
    // (A bare key is version 1; the retired ring names its version.)
    let only_new_ring = format!("2:{NEW_KEY}");
    let only_new = [("LATCHKEY_MASTER_KEY", only_new_ring.as_str())];
    let out = cloud_command(&db, &only_new).args(["keys", "verify"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(cloud);
    let retired = CloudProcess::spawn(&db, &only_new).await;
    let apps = retired.api().get("/v1/orgs/org3/apps", Some(&pats[3])).await.ok(200);
    assert_eq!(apps.as_array().unwrap().len(), PROVIDERS.len());
    let raw = db.raw().await;
    let versions: Vec<i64> =
        sqlx::query_scalar("select distinct key_version from managed_apps").fetch_all(&raw).await.unwrap();
    assert_eq!(versions, vec![2]);
    raw.close().await;
}
