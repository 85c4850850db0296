//! `GET /metrics` after some traffic: every family the alerts and the dashboard in
//! `deploy/` are written against is there, with the samples that traffic makes.

use crate::single_flight::expire_all;
use latchkey_e2e::{json, Backend, Cloud, SandboxOrg, TestDb};
use std::time::{Duration, Instant};

/// Every metric family (as its `# TYPE` line names it).
const FAMILIES: &[&str] = &[
    "latchkey_http_requests",
    "latchkey_http_request_duration_seconds",
    "latchkey_connection_token_answers",
    "latchkey_provider_refreshes",
    "latchkey_provider_refresh_duration_seconds",
    "latchkey_refresh_lease_waits",
    "latchkey_refresh_lease_takeovers",
    "latchkey_audit_queue_depth",
    "latchkey_audit_queue_capacity",
    "latchkey_audit_dropped",
    "latchkey_db_pool_connections",
    "latchkey_db_pool_max_connections",
    "latchkey_db_acquire_timeouts",
    "latchkey_db_unavailable",
    "latchkey_draining",
    "latchkey_connections",
    "latchkey_webhook_deliveries",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_agreed_metric_family_is_exported_after_some_traffic() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start_with(&db, |c| {
        c.sandbox = true;
        c.token_rate_limit = 0;
        c.refresher_interval_secs = 1;
    })
    .await;
    let api = cloud.api();
    let org = SandboxOrg::with_member_connected(&api).await;
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    let ask = || {
        let (api, pat) = (api.clone(), pat.clone());
        async move {
            api.post("/oauth/connection-token", Some(&pat), json!({"org": "acme", "connector_key": "sandbox"})).await
        }
    };
    ask().await.ok(200);
    // Five requests for one expired connection: one refreshes, the others wait for it.
    SandboxOrg::faults(&api, json!({"token_delay_ms": 300})).await;
    expire_all(&db).await;
    let burst: Vec<_> = (0..5).map(|_| tokio::spawn(ask())).collect();
    for r in burst {
        r.await.unwrap().ok(200);
    }

    // `latchkey_connections` is counted by the background refresher, once a round.
    let started = Instant::now();
    let text = loop {
        let text = api.get("/metrics", None).await.text;
        if text.contains("latchkey_connections{status=\"active\"} 1") {
            break text;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no connection counts:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for family in FAMILIES {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} is missing:\n{text}");
    }
    for sample in [
        "latchkey_connection_token_answers_total{outcome=\"issued\"} 6",
        "latchkey_provider_refreshes_total{provider=\"sandbox\",outcome=\"success\"} 1",
        "latchkey_provider_refresh_duration_seconds_count{provider=\"sandbox\"} 1",
        "latchkey_refresh_lease_waits_total 4",
        "latchkey_refresh_lease_takeovers_total 0",
        "latchkey_audit_queue_capacity 10000",
        "latchkey_audit_dropped_total 0",
        "latchkey_db_pool_connections{state=\"in_use\"} ",
        "latchkey_db_pool_connections{state=\"idle\"} ",
        "latchkey_db_pool_max_connections 8",
        "latchkey_db_unavailable_total 0",
        "latchkey_draining 0",
        "latchkey_connections{status=\"needs_reauth\"} 0",
    ] {
        assert!(text.contains(sample), "no `{sample}` in:\n{text}");
    }
    cloud.stop().await;
}
