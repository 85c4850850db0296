//! The save after a successful refresh. The provider has rotated the refresh token by
//! then, so a database that fails at that moment must not make the cloud drop the new
//! one: the next refresh would present the old token, and a provider that detects reuse
//! revokes the whole grant.

use crate::single_flight::{expire_all, refreshes};
use latchkey_e2e::{consent, json, Api, Backend, CloudProcess, OwnPg, Reply, SandboxOrg, TestDb};
use std::time::{Duration, Instant};

async fn token(api: &Api, pat: &str) -> Reply {
    api.post("/oauth/connection-token", Some(pat), json!({"org": "acme", "connector_key": "sandbox"})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_between_the_providers_answer_and_the_save_does_not_lose_the_rotated_refresh_token() {
    let Some(pg) = OwnPg::start() else { return };
    let db = TestDb::at(Backend::Postgres, pg.url());
    let cloud = CloudProcess::spawn(
        &db,
        &[
            ("LATCHKEY_SANDBOX", "1"),
            ("LATCHKEY_TOKEN_RATE_LIMIT", "0"),
            // A short lease (renewed while the refresh lives), so a lost token would be
            // spent (and the grant revoked) soon.
            ("LATCHKEY_PROVIDER_TIMEOUT_SECS", "5"),
            ("LATCHKEY_REFRESH_LEASE_SECS", "3"),
            ("LATCHKEY_REFRESH_WAIT_SECS", "30"),
            // Only this test's requests refresh.
            ("LATCHKEY_REFRESHER_INTERVAL_SECS", "3600"),
        ],
    )
    .await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    // A provider that rotates refresh tokens and revokes the grant on reuse, slow enough
    // to stop the database while the cloud waits for its answer.
    SandboxOrg::faults(&api, json!({"rotate_refresh_tokens": true, "token_delay_ms": 2000})).await;
    expire_all(&db).await;

    let refreshing = {
        let (api, pat) = (api.clone(), pat.clone());
        tokio::spawn(async move { token(&api, &pat).await })
    };
    let asked = Instant::now();
    while refreshes(&SandboxOrg::stats(&api).await).0 == 0 {
        assert!(asked.elapsed() < Duration::from_secs(10), "the refresh never reached the provider");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The cloud holds the lease and waits for the provider: stop the database, let the
    // provider answer (after 2 s) and the save fail, then start it again. The outage
    // outlasts the pool's wait for a connection (1 s), so a first save attempt does fail,
    // and outlasts the lease (3 s), which only the heartbeat keeps.
    pg.stop();
    tokio::time::sleep(Duration::from_secs(9)).await;
    pg.start_again();

    let first = refreshing.await.unwrap();

    // The next refresh spends the refresh token the database now holds. Had the rotated
    // one been dropped, that is the old one: the provider sees reuse and revokes the grant.
    SandboxOrg::faults(&api, json!({"token_delay_ms": 0})).await;
    expire_all(&db).await;
    let next = token(&api, &pat).await;
    let (asked, failed, revoked) = refreshes(&SandboxOrg::stats(&api).await);
    let log = cloud.log_text();
    assert_eq!((asked, failed, revoked), (2, 0, false), "no reuse at the provider, the grant alive:\n{log}");
    assert_eq!(next.status, 200, "the next token request: {}", next.text);
    assert_eq!(first.status, 200, "the request that refreshed through the outage: {}", first.text);
    assert_ne!(next.json()["access_token"], first.json()["access_token"]);
    assert!(log.contains("saving a refreshed grant failed"), "the outage did not hit the save:\n{log}");
}
