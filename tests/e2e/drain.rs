//! A replica that is told to stop (SIGTERM, as `docker compose up` or a Kubernetes rollout
//! sends) drains: `/readyz` turns 503 at once, while everything is still answered, each
//! answer with `Connection: close` so balancers and agents move their connections; a
//! request still in flight when the listener closes is finished; then the process exits 0.
//! A second signal stops it at once.

use crate::single_flight::expire_all;
use latchkey_e2e::{consent, json, Api, Backend, CloudProcess, Reply, SandboxOrg, TestDb};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn token(api: &Api, pat: &str) -> Reply {
    api.post("/oauth/connection-token", Some(pat), json!({"org": "acme", "connector_key": "sandbox"})).await
}

/// One request on a fresh connection, read until the server closes it: what the server
/// sent, or `None` when it kept the connection open.
async fn closes_after_one_answer(base: &str, path: &str) -> Option<String> {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("the replica still accepts connections");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await {
        Ok(Ok(_)) => Some(String::from_utf8_lossy(&answer).into_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_replica_serves_through_its_drain_finishes_in_flight_work_and_exits_0() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut cloud = CloudProcess::spawn(
        &db,
        &[("LATCHKEY_SANDBOX", "1"), ("LATCHKEY_TOKEN_RATE_LIMIT", "0"), ("LATCHKEY_DRAIN_SECS", "3")],
    )
    .await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    let before = token(&api, &pat).await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert_eq!(before.header("connection"), None, "keep-alive while serving normally");
    assert!(closes_after_one_answer(&api.base, "/healthz").await.is_none(), "HTTP/1.1 keeps the connection open");

    let signalled = Instant::now();
    cloud.send_term();
    // Not ready at once…
    let ready = api.get("/readyz", None).await;
    let why = ready.assert_error(503, "service_unavailable");
    assert!(why.contains("draining"), "{why}");
    // …but everything is still answered, and every answer closes its connection.
    let health = api.get("/healthz", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.header("connection"), Some("close"));
    let during = token(&api, &pat).await;
    assert_eq!(during.status, 200, "{}", during.text);
    assert_eq!(during.header("connection"), Some("close"));
    assert_eq!(during.json()["access_token"], before.json()["access_token"]);
    let raw = closes_after_one_answer(&api.base, "/healthz").await.expect("the replica closes the connection");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("connection: close"), "{raw}");
    let metrics = api.get("/metrics", None).await;
    assert!(metrics.text.contains("\nlatchkey_draining 1\n"), "{}", metrics.text);

    // A request that is still at the provider when the drain ends (the listener closes at
    // 3 s, the provider answers at about 3.5 s) is finished, not cut off.
    SandboxOrg::faults(&api, json!({"token_delay_ms": 3000})).await;
    expire_all(&db).await;
    let slow = {
        let (api, pat) = (api.clone(), pat.clone());
        tokio::spawn(async move { token(&api, &pat).await })
    };

    let exit = cloud.wait_exit(Duration::from_secs(20)).await;
    let took = signalled.elapsed();
    let log = cloud.log_text();
    assert_eq!(exit, Some(Some(0)), "a clean exit after the drain:\n{log}");
    assert!(took >= Duration::from_secs(3), "it served its whole drain period, exited after {took:?}");
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 200, "the request in flight was finished: {}", slow.text);
    assert_ne!(slow.json()["access_token"], before.json()["access_token"], "it refreshed");
    assert!(log.contains("draining"), "the drain is logged:\n{log}");
    assert!(!log.contains("still in flight") && !log.contains("still unwritten"), "nothing was cut off:\n{log}");
    eprintln!("drain: SIGTERM → exit 0 after {took:?} (drain 3 s, a 3 s provider call in flight)");
    // Everything it answered was audited before it exited: the token answer during the
    // drain and the slow one included.
    let audited = db.count("select count(*) from audit_events where action = 'connection.token'").await;
    assert_eq!(audited, 3, "every token answer has its audit event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_a_draining_replica_at_once() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut cloud = CloudProcess::spawn(&db, &[("LATCHKEY_DRAIN_SECS", "60")]).await;
    let api = cloud.api();
    cloud.send_term();
    let started = Instant::now();
    while api.get("/readyz", None).await.status != 503 {
        assert!(started.elapsed() < Duration::from_secs(5), "the first signal did not start the drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cloud.wait_exit(Duration::from_millis(500)).await, None, "still draining");
    let second = Instant::now();
    cloud.send_term();
    let exit = cloud.wait_exit(Duration::from_secs(3)).await;
    assert_eq!(exit, Some(Some(143)), "the second SIGTERM ends it at once:\n{}", cloud.log_text());
    eprintln!("drain: second SIGTERM → exit 143 after {:?}", second.elapsed());
}
