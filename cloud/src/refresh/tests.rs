//! The lease, the stale-write guards and the save retry, against a real SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::test_db::TempSqlite;

const LEASE: i64 = 11;

async fn db() -> TempSqlite {
    let db = TempSqlite::new().await;
    db.seed_connection(b"\xa1", b"\xb1", 1).await;
    db
}

async fn row(db: &TempSqlite) -> TokenRow {
    sqlx::query_as(TOKEN_ROW).bind("c1").fetch_one(db.store.pool()).await.unwrap()
}

fn refreshed(access: &[u8], refresh: &[u8], now: i64) -> Refreshed {
    Refreshed {
        access_token_ct: access.to_vec(),
        refresh_token_ct: Some(refresh.to_vec()),
        token_type: "bearer".into(),
        expires_at: Some(now + 3600),
        key_version: 1,
    }
}

fn failing(next_attempt_at: i64, now: i64) -> Failed {
    Failed {
        failures: 1,
        error: "provider_5xx",
        status: "failing",
        next_attempt_at: Some(next_attempt_at),
        failing_since: now,
    }
}

/// The race CI caught across three replicas: X reads the row, Y refreshes and releases
/// the lease, then X tries the lease with what it read. X must not get it, or it would
/// spend the refresh token Y already rotated.
#[tokio::test]
async fn a_replica_holding_a_stale_read_cannot_take_the_lease_after_another_refreshed() {
    let db = db().await;
    let pool = db.store.pool();
    let now = crate::store::now();
    let stale = row(&db).await;

    assert!(try_lease(pool, "y", &stale, now, LEASE).await.unwrap(), "Y takes the free lease");
    assert!(!try_lease(pool, "x", &stale, now, LEASE).await.unwrap(), "X waits while Y holds it");
    let y = LeaseHolder { pool, owner: "y", id: "c1" };
    assert!(y.save_refreshed(&refreshed(b"\xa2", b"\xb2", now), now).await.unwrap());
    assert!(!try_lease(pool, "x", &stale, now, LEASE).await.unwrap(), "the lease is free again, but X's read is stale");

    let fresh = row(&db).await;
    assert_eq!(fresh.refresh_token_ct.as_deref(), Some(&b"\xb2"[..]));
    assert_eq!(fresh.expires_at, Some(now + 3600));
    assert!(try_lease(pool, "x", &fresh, now, LEASE).await.unwrap(), "with a fresh read X may refresh");
}

/// A dead holder's lease runs out; a connection in backoff is not refreshed early.
#[tokio::test]
async fn an_expired_lease_is_taken_over_but_backoff_is_respected() {
    let db = db().await;
    let pool = db.store.pool();
    let now = crate::store::now();
    let current = row(&db).await;
    assert!(try_lease(pool, "dead", &current, now - 2 * LEASE, LEASE).await.unwrap());
    assert!(try_lease(pool, "x", &current, now, LEASE).await.unwrap(), "the dead holder's lease expired");

    let x = LeaseHolder { pool, owner: "x", id: "c1" };
    assert!(x.fail(&failing(now + 30, now), now).await.unwrap());
    let backing_off = row(&db).await;
    assert!(!try_lease(pool, "y", &backing_off, now, LEASE).await.unwrap(), "in backoff");
    assert!(try_lease(pool, "y", &backing_off, now + 31, LEASE).await.unwrap(), "after backoff");
}

/// The database refuses the save after the provider has rotated the refresh token (a
/// trigger stands in for a failing database), for longer than the retry budget. The
/// refresh keeps its lease meanwhile, then gives up loudly: an error, and an audit
/// event with outcome `save_failed`.
#[tokio::test]
async fn a_save_the_database_keeps_refusing_keeps_the_lease_then_is_given_up_with_an_audit_event() {
    let db = db().await;
    let config = crate::config::Config {
        refresh_save_retry_secs: 4,
        refresh_lease_secs: 3, // renewed every second
        ..Default::default()
    };
    let keys = crate::test_db::ring(1, &[(1, &crate::crypto::generate_master_key())]);
    let providers = config.provider_registry().unwrap();
    let state = AppState::new(db.store.clone(), config, keys, providers, None);
    let pool = db.store.pool();
    let now = crate::store::now();
    let before = row(&db).await;
    assert!(try_lease(pool, &state.instance_id, &before, now, lease_secs(&state)).await.unwrap());
    sqlx::query(
        "create trigger refuse_saves before update of access_token_ct on connections \
         begin select raise(abort, 'the disk is full'); end",
    )
    .execute(pool)
    .await
    .unwrap();

    let holder = LeaseHolder { pool, owner: &state.instance_id, id: "c1" };
    let started = std::time::Instant::now();
    let tokens = refreshed(b"\xa2", b"\xb2", now);
    let save = save_until_stored(&state, &holder, &before, &tokens);
    let given_up = holding(&holder, lease_secs(&state), save).await;
    assert!(given_up.is_err(), "the save cannot land");
    assert!(started.elapsed() >= Duration::from_secs(2), "it retried before giving up");

    let (owner, until): (Option<String>, i64) =
        sqlx::query_as("select refresh_lock_owner, refresh_lock_until from connections where id = 'c1'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(owner.as_deref(), Some(state.instance_id.as_str()), "nobody else may refresh meanwhile");
    assert!(until > now + lease_secs(&state), "the heartbeat renewed the lease");
    let after = row(&db).await;
    assert_eq!((after.access_token_ct, after.refresh_token_ct), (before.access_token_ct, before.refresh_token_ct));
    let mut audited = 0;
    for _ in 0..50 {
        audited = sqlx::query_scalar(
            "select count(*) from audit_events where action = 'connection.refresh' and outcome = 'save_failed' \
             and target = 'c1'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if audited > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(audited, 1_i64, "the give-up is audited");
}

/// The member reconnects while a refresh of the old grant is at the provider. Whatever
/// that refresh then learns must not touch the new grant.
#[tokio::test]
async fn a_refresh_finishing_after_a_reconnect_leaves_the_new_grant_alone() {
    let db = db().await;
    let state = db.state();
    let pool = db.store.pool();
    let now = crate::store::now();
    let old = row(&db).await;
    assert!(try_lease(pool, &state.instance_id, &old, now, LEASE).await.unwrap());

    let tokens = crate::test_db::tokens("new-grant-access", "new-grant-refresh");
    let grant = crate::test_db::grant(&tokens);
    assert_eq!(crate::connections::store_grant(&state, grant).await.unwrap(), "c1");
    let reconnected = row(&db).await;

    let old_refresh = LeaseHolder { pool, owner: &state.instance_id, id: "c1" };
    assert!(!old_refresh.save_refreshed(&refreshed(b"\xa2", b"\xb2", now), now).await.unwrap());
    assert!(!old_refresh.mark_needs_reauth("invalid_grant", now).await.unwrap());
    assert!(!old_refresh.fail(&failing(now + 30, now), now).await.unwrap());

    let after = row(&db).await;
    assert_eq!(after.status, "active");
    assert_eq!(after.access_token_ct, reconnected.access_token_ct);
    assert_eq!(after.refresh_token_ct, reconnected.refresh_token_ct);
    assert_eq!((after.failure_count, after.next_attempt_at), (0, None));
    let access = state.keys.open_str(sealed::access_token("c1"), &after.access_token_ct).unwrap();
    assert_eq!(access.expose(), "new-grant-access");
}

/// Two replicas read the same failing row; one takes the lease, fails again and writes
/// the next state. The other's read is stale (status or failure count), so it cannot take
/// the lease and count the same failure, or tell the same change, a second time.
#[tokio::test]
async fn a_replica_with_a_stale_failure_count_cannot_take_the_lease() {
    let db = db().await;
    let pool = db.store.pool();
    let now = crate::store::now();
    let stale = row(&db).await;
    assert!(try_lease(pool, "y", &stale, now, LEASE).await.unwrap());
    let y = LeaseHolder { pool, owner: "y", id: "c1" };
    // Y's failure is over its backoff at once, so only the stale read can stop X.
    assert!(y.fail(&failing(now, now), now).await.unwrap());
    assert!(!try_lease(pool, "x", &stale, now, LEASE).await.unwrap(), "X read `active` with no failures");
    let fresh = row(&db).await;
    assert_eq!((fresh.status.as_str(), fresh.failure_count), ("failing", 1));
    assert!(try_lease(pool, "x", &fresh, now, LEASE).await.unwrap(), "with a fresh read X may retry");

    // Exhausted: nobody takes the lease again, whatever they read.
    let x = LeaseHolder { pool, owner: "x", id: "c1" };
    let gave_up =
        Failed { failures: 2, error: "timeout", status: "exhausted", next_attempt_at: None, failing_since: now };
    assert!(x.fail(&gave_up, now).await.unwrap());
    let exhausted_row = row(&db).await;
    assert_eq!(exhausted_row.status, "exhausted");
    assert!(
        !try_lease(pool, "z", &exhausted_row, now, LEASE).await.unwrap(),
        "an exhausted connection is not refreshed"
    );
}

/// Exhaustion by count or by time since the first failure; 0 turns either off.
#[test]
fn a_run_of_failures_is_exhausted_by_count_or_by_time() {
    let config = crate::config::Config {
        refresh_exhaust_after_failures: 3,
        refresh_exhaust_after_secs: 100,
        ..Default::default()
    };
    assert!(!exhausted(&config, 2, 1000, 1050));
    assert!(exhausted(&config, 3, 1000, 1000), "by count");
    assert!(exhausted(&config, 1, 1000, 1100), "by time");
    let never = crate::config::Config {
        refresh_exhaust_after_failures: 0,
        refresh_exhaust_after_secs: 0,
        ..Default::default()
    };
    assert!(!exhausted(&never, 1000, 0, 1_000_000));
    let defaults = crate::config::Config::default();
    assert!(
        !exhausted(&defaults, 9, 0, 86_399) && exhausted(&defaults, 10, 0, 0) && exhausted(&defaults, 1, 0, 86_400)
    );
}

/// A holder that works longer than the lease keeps it (its heartbeat renews it), so no
/// other replica may refresh meanwhile; once the holder is gone (a killed process), its
/// lease runs out within the lease time and another replica takes it over, counted.
#[tokio::test]
async fn a_slow_holder_keeps_its_lease_and_a_dead_holders_lease_runs_out() {
    let db = db().await;
    let replica = |db: &TempSqlite| {
        let config = crate::config::Config { refresh_lease_secs: 3, ..Default::default() };
        let keys = crate::test_db::ring(1, &[(1, &crate::crypto::generate_master_key())]);
        let providers = config.provider_registry().unwrap();
        AppState::new(db.store.clone(), config, keys, providers, None)
    };
    let (a, b) = (replica(&db), replica(&db));
    let current = row(&db).await;
    assert!(matches!(acquire_lease(&a, &current, crate::store::now()).await.unwrap(), Lease::Taken));
    let holder = LeaseHolder { pool: db.store.pool(), owner: &a.instance_id, id: "c1" };
    let slow = async {
        tokio::time::sleep(Duration::from_millis(4500)).await;
        acquire_lease(&b, &current, crate::store::now()).await.unwrap()
    };
    let meanwhile = holding(&holder, lease_secs(&a), slow).await;
    assert!(matches!(meanwhile, Lease::Held), "1.5 leases in, the slow holder still has it");
    assert_eq!(b.metrics.lease_takeovers.get(), 0);

    // The holder is gone without releasing: B takes over within a lease (plus a second
    // of the clock's granularity).
    let gone = std::time::Instant::now();
    loop {
        match acquire_lease(&b, &current, crate::store::now()).await.unwrap() {
            Lease::Taken => break,
            Lease::Held => assert!(gone.elapsed() < Duration::from_secs(5), "the dead holder's lease did not run out"),
            Lease::Refused => panic!("the row did not change"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.metrics.lease_takeovers.get(), 1);
}
