//! Many grants expiring together do not stampede the provider: the background refresher
//! renews every one exactly once while never more than `refresh_provider_concurrency`
//! refresh calls are in flight to the provider (which would answer 429 beyond that), and a
//! provider's 429 with `Retry-After` holds every refresh to it, not only the one that got
//! it. One cloud on SQLite, the sandbox provider over HTTP.

use crate::connection_accounts::connect_as;
use latchkey_e2e::{json, Backend, Browser, Cloud, SandboxOrg, TestDb};
use serde_json::Value;
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 10;
const CAP: u64 = 2;

fn refreshes_per_grant(stats: &Value) -> Vec<u64> {
    stats["grants"].as_array().unwrap().iter().map(|g| g["token_requests"]["refresh_token"].as_u64().unwrap()).collect()
}

fn failed(stats: &Value) -> u64 {
    stats["grants"].as_array().unwrap().iter().map(|g| g["failed_token_requests"].as_u64().unwrap()).sum()
}

/// Makes every connection due for the background refresher (inside its lead time) but
/// still valid, so only the refresher renews them.
async fn expire_soon(db: &TestDb) {
    let raw = db.raw().await;
    let soon = time::OffsetDateTime::now_utc().unix_timestamp() + 60;
    sqlx::query("update connections set expires_at = $1").bind(soon).execute(&raw).await.unwrap();
    raw.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_expiring_together_are_renewed_once_each_within_the_providers_cap() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start_with(&db, |c| {
        c.sandbox = true;
        c.refresh_provider_concurrency = usize::try_from(CAP).unwrap();
        c.refresher_concurrency = 8;
        c.refresher_interval_secs = 1;
    })
    .await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let browser = Browser::new();
    assert!(browser.login(&api.base, &org.member).await.status.is_redirection());
    SandboxOrg::faults(&api, json!({"auto_approve": true})).await;
    for i in 0..ACCOUNTS {
        connect_as(&api, &browser, if i == 0 { "" } else { "?add=1" }, &format!("user{i}")).await;
    }
    let before = SandboxOrg::stats(&api).await;
    assert_eq!(refreshes_per_grant(&before), vec![0; ACCOUNTS]);

    // A slow provider that refuses more than CAP refreshes at once, rotating tokens and
    // revoking a grant whose old refresh token comes back.
    SandboxOrg::faults(
        &api,
        json!({"token_delay_ms": 300, "token_concurrency_limit": CAP, "rotate_refresh_tokens": true}),
    )
    .await;
    expire_soon(&db).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let renewed = "select count(*) from connections where status = 'active' and expires_at > $1";
    let fresh = || async {
        let raw = db.raw().await;
        let n: i64 = sqlx::query_scalar(renewed)
            .bind(time::OffsetDateTime::now_utc().unix_timestamp() + 600)
            .fetch_one(&raw)
            .await
            .unwrap();
        raw.close().await;
        n
    };
    while fresh().await < i64::try_from(ACCOUNTS).unwrap() {
        assert!(Instant::now() < deadline, "not all renewed in 30 s: {}", SandboxOrg::stats(&api).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = SandboxOrg::stats(&api).await;
    assert_eq!(refreshes_per_grant(&stats), vec![1; ACCOUNTS], "each grant refreshed exactly once: {stats}");
    assert_eq!(failed(&stats), 0, "no 429 and no reused refresh token: {stats}");
    let peak = stats["token_requests_peak_in_flight"].as_u64().unwrap();
    assert!(peak <= CAP, "at most {CAP} refreshes in flight at the provider, saw {peak}");
    assert!(peak >= 1);

    // A provider's 429 Retry-After holds every refresh to it for that long: after the
    // first 429, no more than the calls already in flight reach it in the next second.
    SandboxOrg::faults(&api, json!({"token_delay_ms": 0, "token_concurrency_limit": null, "token_429_retry_after": 3}))
        .await;
    let start_total = SandboxOrg::stats(&api).await["token_requests_total"].as_u64().unwrap();
    expire_soon(&db).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while SandboxOrg::stats(&api).await["token_requests_total"].as_u64().unwrap() == start_total {
        assert!(Instant::now() < deadline, "the refresher never tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = SandboxOrg::stats(&api).await["token_requests_total"].as_u64().unwrap() - start_total;
    assert!(asked <= CAP, "the 429 paused the other refreshes: {asked} calls within a second of it");
    cloud.stop().await;
}
