//! The refresh lease is short and heartbeat-renewed: a refresh slower than the lease is
//! still done once across two replicas (its holder keeps renewing), and a replica killed
//! while it holds a lease blocks that connection only until the lease runs out (seconds),
//! after which another replica takes over and refreshes it once.

use crate::single_flight::{expire_all, refreshes};
use latchkey_e2e::{json, skip_postgres, Api, Backend, Browser, CloudProcess, SandboxOrg, TestDb};
use std::time::{Duration, Instant};

const LEASE_SECS: u64 = 3;

async fn token(api: &Api, pat: &str) -> latchkey_e2e::Reply {
    api.post("/oauth/connection-token", Some(pat), json!({"org": "acme", "connector_key": "sandbox"})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_refresh_keeps_its_lease_and_a_killed_holders_lease_runs_out_in_seconds() {
    if skip_postgres() {
        return;
    }
    let provider_db = TestDb::new(Backend::Sqlite).await;
    let provider = CloudProcess::spawn(&provider_db, &[("LATCHKEY_SANDBOX", "1")]).await;
    let sandbox = provider.api();
    let db = TestDb::new(Backend::Postgres).await;
    let config = latchkey_e2e::sandbox_provider_config(db.dir.path(), &provider.base);
    let config = config.to_str().unwrap().to_owned();
    let first_port = latchkey_e2e::free_port();
    let public = format!("http://127.0.0.1:{first_port}");
    let lease = LEASE_SECS.to_string();
    let spawn = |port: u16| {
        let vars = [
            ("LATCHKEY_CONFIG", config.clone()),
            ("LATCHKEY_PUBLIC_URL", public.clone()),
            ("LATCHKEY_TOKEN_RATE_LIMIT", "0".into()),
            ("LATCHKEY_PROVIDER_TIMEOUT_SECS", "20".into()),
            ("LATCHKEY_REFRESH_WAIT_SECS", "30".into()),
            ("LATCHKEY_REFRESH_LEASE_SECS", lease.clone()),
            ("LATCHKEY_REFRESHER_INTERVAL_SECS", "3600".into()),
        ];
        let db = &db;
        async move {
            let borrowed: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
            CloudProcess::spawn_on(db, port, &borrowed).await
        }
    };
    let mut a = spawn(first_port).await;
    let b = spawn(latchkey_e2e::free_port()).await;
    let (api_a, api_b) = (a.api(), b.api());
    let org = SandboxOrg::setup_at(&api_a, &sandbox, &public).await;
    SandboxOrg::faults(&sandbox, json!({"auto_approve": true, "rotate_refresh_tokens": true})).await;
    let browser = Browser::new();
    assert!(browser.login(&api_a.base, &org.member).await.status.is_redirection());
    let (_, page) = browser.connect(&api_a.base, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (_, pat) = api_a.pat(&org.member, &["connections:token"]).await;

    // A provider that takes more than two leases to answer; requests on both replicas.
    SandboxOrg::faults(&sandbox, json!({"token_delay_ms": LEASE_SECS * 1000 * 2 + 1000})).await;
    expire_all(&db).await;
    let mut asked = Vec::new();
    for i in 0..8 {
        let (api, pat) = (if i % 2 == 0 { api_a.clone() } else { api_b.clone() }, pat.clone());
        asked.push(tokio::spawn(async move { token(&api, &pat).await }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut tokens = Vec::new();
    for r in asked {
        let r = r.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        tokens.push(r.json()["access_token"].as_str().unwrap().to_owned());
    }
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "one refreshed token for all");
    assert_eq!(refreshes(&SandboxOrg::stats(&sandbox).await), (1, 0, false), "one refresh, no reuse");
    let waits = api_b.get("/metrics", None).await.text;
    assert!(waits.contains("latchkey_refresh_lease_waits_total "), "{waits}");
    assert!(!waits.contains("latchkey_refresh_lease_waits_total 0\n"), "B waited for A's refresh:\n{waits}");

    // A is killed while its refresh waits at the provider: B takes the connection over
    // once the lease runs out.
    SandboxOrg::faults(&sandbox, json!({"token_delay_ms": 4000})).await;
    expire_all(&db).await;
    let doomed = {
        let (api, pat) = (api_a.clone(), pat.clone());
        tokio::spawn(async move {
            let _ = api
                .client
                .post(format!("{}/oauth/connection-token", api.base))
                .bearer_auth(&pat)
                .json(&json!({"org": "acme", "connector_key": "sandbox"}))
                .send()
                .await;
        })
    };
    let started = Instant::now();
    while refreshes(&SandboxOrg::stats(&sandbox).await).0 < 2 {
        assert!(started.elapsed() < Duration::from_secs(5), "A's refresh never reached the provider");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let A's heartbeat renew the lease once, so the wait below is a full lease.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    a.kill();
    let killed = Instant::now();
    let _ = doomed.await;
    SandboxOrg::faults(&sandbox, json!({"token_delay_ms": 0})).await;
    let r = token(&api_b, &pat).await;
    let blocked = killed.elapsed();
    assert_eq!(r.status, 200, "{}", r.text);
    eprintln!("lease: a connection whose holder was SIGKILLed was refreshed by another replica {blocked:?} later (lease {LEASE_SECS} s)");
    assert!(blocked <= Duration::from_secs(LEASE_SECS + 2), "blocked for {blocked:?}, more than the lease");
    // A's request reached the provider and died there, before the grant was touched.
    assert_eq!(refreshes(&SandboxOrg::stats(&sandbox).await), (3, 0, false), "one takeover refresh, no reuse");
    let metrics = api_b.get("/metrics", None).await.text;
    assert!(metrics.contains("latchkey_refresh_lease_takeovers_total 1\n"), "{metrics}");
    drop(b);
}
