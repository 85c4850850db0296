//! No token answer without its audit event: when the audit log cannot be written, the
//! held events are retried, never dropped, and the token endpoint refuses (503) until
//! they are in.

use latchkey_e2e::{backend_tests, json, Backend, Cloud, SandboxOrg, TestDb};
use std::time::{Duration, Instant};

backend_tests!(a_failing_audit_log_stops_token_answers_instead_of_dropping_events);

/// Makes the database refuse (or accept again) every insert into the audit table.
async fn refuse_audit_inserts(db: &TestDb, refuse: bool) {
    let raw = db.raw().await;
    let statements: &[&str] = match (db.backend, refuse) {
        (Backend::Sqlite, true) => &[
            "create trigger refuse_audit before insert on audit_events begin select raise(abort, 'audit refused'); end",
        ],
        (Backend::Sqlite, false) => &["drop trigger refuse_audit"],
        (Backend::Postgres, true) => &[
            "create function refuse_audit() returns trigger language plpgsql as $$ begin raise exception 'audit refused'; end $$",
            "create trigger refuse_audit before insert on audit_events for each row execute function refuse_audit()",
        ],
        (Backend::Postgres, false) => &["drop trigger refuse_audit on audit_events"],
    };
    for sql in statements {
        sqlx::query(sql).execute(&raw).await.unwrap();
    }
    raw.close().await;
}

async fn issued_events(db: &TestDb) -> i64 {
    db.count("select count(*) from audit_events where action = 'connection.token' and outcome = 'issued'").await
}

async fn a_failing_audit_log_stops_token_answers_instead_of_dropping_events(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::with_member_connected(&api).await;
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    let fetch = || api.post("/oauth/connection-token", Some(&pat), json!({"org": "acme", "connector_key": "sandbox"}));
    fetch().await.ok(200);
    let mut issued = 1;

    refuse_audit_inserts(&db, true).await;
    // Answers issued before the writer gives up on its batch are held with it; then the
    // endpoint refuses.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = fetch().await;
        if r.status == 503 {
            r.assert_error(503, "service_unavailable");
            assert!(r.header("retry-after").is_some());
            break;
        }
        r.ok(200);
        issued += 1;
        assert!(Instant::now() < deadline, "tokens are still served while no audit event can be written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    fetch().await.assert_error(503, "service_unavailable");

    refuse_audit_inserts(&db, false).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = fetch().await;
        if r.status == 200 {
            issued += 1;
            break;
        }
        r.assert_error(503, "service_unavailable");
        assert!(Instant::now() < deadline, "tokens are not served again after the audit log recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every issued answer has its event: the held ones were written, none was dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while issued_events(&db).await < issued && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(issued_events(&db).await, issued);
}
