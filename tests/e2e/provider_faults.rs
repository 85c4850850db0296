//! What a provider controls and what it leaves behind: absurd numbers (`expires_in`,
//! `Retry-After`), a grant that ends without a refresh token, and grants we stop holding
//! (replaced by a reconnect, or received by a refresh that lost its lease), which must be
//! revoked at the provider rather than left live. On both backends, against the sandbox.

use latchkey_e2e::{backend_tests, consent, json, Api, Backend, Cloud, Reply, SandboxOrg, TestDb};
use serde_json::Value;
use std::time::Duration;

backend_tests!(
    a_provider_expires_in_of_i64_max_neither_overflows_nor_outlives_a_year,
    a_provider_retry_after_of_u64_max_backs_off_an_hour_not_a_second,
    an_expired_token_without_a_refresh_token_asks_for_reauth_instead_of_503_forever,
    a_reconnect_revokes_the_replaced_grant_at_the_provider,
    a_refresh_that_loses_its_lease_revokes_the_tokens_it_received,
    a_reconnect_at_a_github_style_provider_deletes_the_replaced_token,
);

const YEAR: i64 = 365 * 24 * 3600;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn fetch(api: &Api, pat: &str) -> Reply {
    api.post("/oauth/connection-token", Some(pat), json!({"org": "acme", "connector_key": "sandbox"})).await
}

async fn sql(db: &TestDb, statement: &str) {
    let raw = db.raw().await;
    sqlx::query(statement).execute(&raw).await.unwrap();
    raw.close().await;
}

async fn expire(db: &TestDb) {
    sql(db, &format!("update connections set expires_at = {}", now() - 5)).await;
}

async fn expires_at(db: &TestDb) -> Option<i64> {
    let raw = db.raw().await;
    let at: Option<i64> = sqlx::query_scalar("select expires_at from connections").fetch_one(&raw).await.unwrap();
    raw.close().await;
    at
}

/// The outcomes and details of the `connection.revoke_superseded` events.
async fn superseded_events(db: &TestDb) -> Vec<(String, Value)> {
    let raw = db.raw().await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select outcome, detail from audit_events where action = 'connection.revoke_superseded' order by id",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    raw.close().await;
    rows.into_iter().map(|(o, d)| (o, serde_json::from_str(&d).unwrap())).collect()
}

fn grant(stats: &Value, n: usize) -> &Value {
    &stats["grants"][n]
}

async fn items_status(api: &Api, access_token: &str) -> u16 {
    let r =
        Api::read(api.client.get(format!("{}/sandbox/api/items?limit=1", api.base)).bearer_auth(access_token)).await;
    r.status.as_u16()
}

async fn a_provider_expires_in_of_i64_max_neither_overflows_nor_outlives_a_year(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    // At the code exchange: `now + expires_in` must not overflow.
    SandboxOrg::faults(&api, json!({"token_expires_in": i64::MAX})).await;
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let at = expires_at(&db).await.expect("an expiry");
    assert!((now() + YEAR - 60..=now() + YEAR).contains(&at), "expires_at {at} is not a year away");

    // At a refresh: a number too big for an integer is still a (capped) lifetime, not "never".
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    for absurd in [json!(u64::MAX), json!("1e400"), json!(1e300)] {
        SandboxOrg::faults(&api, json!({"token_expires_in": absurd})).await;
        expire(&db).await;
        let body = fetch(&api, &pat).await.ok(200);
        assert!(body["expires_at"].is_string(), "{absurd}: {body}");
        let at = expires_at(&db).await.expect("an expiry");
        assert!((now() + YEAR - 60..=now() + YEAR).contains(&at), "{absurd}: expires_at {at} is not a year away");
    }
    // A negative lifetime is an expired token, never served.
    SandboxOrg::faults(&api, json!({"token_expires_in": -100})).await;
    expire(&db).await;
    fetch(&api, &pat).await.assert_error(503, "provider_unavailable");
}

async fn a_provider_retry_after_of_u64_max_backs_off_an_hour_not_a_second(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, _org, pat) = SandboxOrg::connected_cloud(&db).await;
    SandboxOrg::faults(&api, json!({"token_429_retry_after": u64::MAX})).await;
    expire(&db).await;
    let r = fetch(&api, &pat).await;
    r.assert_error(503, "provider_unavailable");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((3000..=3600).contains(&retry), "Retry-After {retry}: neither a second nor years");
    // The provider is left alone meanwhile.
    let refreshes = |s: &Value| grant(s, 0)["token_requests"]["refresh_token"].as_u64().unwrap();
    let before = refreshes(&SandboxOrg::stats(&api).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fetch(&api, &pat).await.assert_error(503, "provider_unavailable");
    assert_eq!(refreshes(&SandboxOrg::stats(&api).await), before, "a retry within the provider's wait");
}

async fn an_expired_token_without_a_refresh_token_asks_for_reauth_instead_of_503_forever(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    // An app without offline access: the grant ends with its access token.
    SandboxOrg::faults(&api, json!({"issue_refresh_tokens": false})).await;
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    fetch(&api, &pat).await.ok(200);

    expire(&db).await;
    let id = api.get("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.ok(200)["id"].clone();
    for _ in 0..2 {
        let r = fetch(&api, &pat).await;
        r.assert_error(409, "reauth_required");
        let connect_url = format!("{}/connect/acme/sandbox?connection={}", api.base, id.as_str().unwrap());
        assert_eq!(r.json()["connect_url"], connect_url);
    }
    let conn = api.get("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.ok(200);
    assert_eq!(conn["status"], "needs_reauth");
    let raw = db.raw().await;
    let marked: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where action = 'connection.refresh' and outcome = 'needs_reauth'",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    raw.close().await;
    assert_eq!(marked, 1, "audited once");

    // Reconnecting heals it.
    SandboxOrg::faults(&api, json!({"issue_refresh_tokens": true})).await;
    consent(&api, &org.member, "acme", "sandbox").await;
    fetch(&api, &pat).await.ok(200);
}

async fn a_reconnect_revokes_the_replaced_grant_at_the_provider(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, org, pat) = SandboxOrg::connected_cloud(&db).await;
    let old_access = fetch(&api, &pat).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(items_status(&api, &old_access).await, 200);

    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let stats = SandboxOrg::stats(&api).await;
    assert_eq!(grant(&stats, 0)["revoked"], true, "the replaced grant is still live at the provider: {stats}");
    assert_eq!(grant(&stats, 1)["revoked"], false, "the new grant was revoked: {stats}");
    assert_eq!(items_status(&api, &old_access).await, 401, "the replaced access token still works");

    let new_access = fetch(&api, &pat).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    assert_ne!(new_access, old_access);
    assert_eq!(items_status(&api, &new_access).await, 200);
    let events = superseded_events(&db).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "success");
    assert_eq!(events[0].1["why"], "reconnect");
    assert_eq!(events[0].1["revoked_at_provider"], true);
}

async fn a_refresh_that_loses_its_lease_revokes_the_tokens_it_received(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, _org, pat) = SandboxOrg::connected_cloud(&db).await;
    SandboxOrg::faults(&api, json!({"token_delay_ms": 1500})).await;
    expire(&db).await;
    let asking = {
        let (api, pat) = (api.clone(), pat.clone());
        tokio::spawn(async move { fetch(&api, &pat).await })
    };
    // While the refresh is at the provider, its lease passes to another replica.
    let raw = db.raw().await;
    let mut leased = false;
    for _ in 0..100 {
        let owner: Option<String> =
            sqlx::query_scalar("select refresh_lock_owner from connections").fetch_one(&raw).await.unwrap();
        if owner.is_some() {
            leased = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(leased, "the refresh never took its lease");
    sqlx::query("update connections set refresh_lock_owner = 'another-replica'").execute(&raw).await.unwrap();
    raw.close().await;

    // The result is dropped: nothing stored, and what the provider issued is revoked there.
    asking.await.unwrap().assert_error(503, "provider_unavailable");
    let stats = SandboxOrg::stats(&api).await;
    assert_eq!(grant(&stats, 0)["token_requests"]["refresh_token"], 1);
    assert_eq!(grant(&stats, 0)["revoked"], true, "the dropped tokens are still live at the provider: {stats}");
    let events = superseded_events(&db).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "success");
    assert_eq!(events[0].1["why"], "refresh_lost_lease");
}

/// A provider defined in the config file that revokes as GitHub does (token deletion),
/// served by the sandbox at `base`.
fn github_style_provider(base: &str) -> std::collections::BTreeMap<String, toml::Value> {
    let table: toml::Table = format!(
        r#"
display_name = "GitHub-style sandbox"
authorization_url = "{base}/sandbox/authorize"
token_url = "{base}/sandbox/token"
revocation_url = "{base}/sandbox/applications/{{client_id}}/token"
revocation_method = "github_token"
userinfo_url = "{base}/sandbox/userinfo"
account_id_field = "sub"
account_name_field = "name"
issuer = "{base}/sandbox"
scopes = ["profile", "items:read"]
pkce = "required"
token_auth_method = "client_secret_basic"
rotates_refresh_tokens = true
"#
    )
    .parse()
    .unwrap();
    [("ghsandbox".to_owned(), toml::Value::Table(table))].into_iter().collect()
}

async fn a_reconnect_at_a_github_style_provider_deletes_the_replaced_token(backend: Backend) {
    let db = TestDb::new(backend).await;
    let port = latchkey_e2e::free_port();
    let providers = github_style_provider(&format!("http://127.0.0.1:{port}"));
    let cloud = Cloud::start_on(&db, port, |c| {
        c.sandbox = true;
        c.providers = providers;
    })
    .await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let app = json!({"client_id": org.client_id, "client_secret": org.client_secret});
    api.put("/v1/orgs/acme/apps/ghsandbox", Some(&org.admin.access), app).await.ok(200);
    let connector = json!({"provider": "ghsandbox", "scopes": ["profile", "items:read"]});
    api.put("/v1/orgs/acme/connectors/gh", Some(&org.admin.access), connector).await.ok(200);
    let (_, page) = consent(&api, &org.member, "acme", "gh").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    let ask = json!({"org": "acme", "connector_key": "gh"});
    let token = |r: Value| r["access_token"].as_str().unwrap().to_owned();
    let old_access = token(api.post("/oauth/connection-token", Some(&pat), ask.clone()).await.ok(200));

    let (_, page) = consent(&api, &org.member, "acme", "gh").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(items_status(&api, &old_access).await, 401, "the replaced access token still works");
    let stats = SandboxOrg::stats(&api).await;
    assert_eq!(stats["revocations"], 1, "{stats}");
    // The one token, not the grant: GitHub's grant deletion would end the new grant too.
    assert_eq!(grant(&stats, 0)["revoked"], false, "{stats}");
    let new_access = token(api.post("/oauth/connection-token", Some(&pat), ask).await.ok(200));
    assert_eq!(items_status(&api, &new_access).await, 200);
    let events = superseded_events(&db).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].0.as_str(), &events[0].1["revoked_at_provider"]), ("success", &json!(true)));

    // Disconnecting deletes the current token the same way.
    api.delete("/v1/orgs/acme/connections/gh", Some(&org.member.access)).await.ok(204);
    assert_eq!(items_status(&api, &new_access).await, 401, "a disconnected token still works");
}
