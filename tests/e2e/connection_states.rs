//! A connection's states as an admin and its member see them, against the sandbox over
//! HTTP on both backends: `active` → `failing` (the token still served while valid) →
//! `exhausted` (no more provider refreshes, on demand or in the background; the token
//! until it expires, then 409 `reauth_required`) → the member reconnects from the banner
//! on their home page → `active`; and `failing` → `active` when the provider heals. Each
//! state in the health API, the admin health page and the member's home, and each change
//! as one audit event.

use fantoccini::Locator;
use latchkey_e2e::chrome::{self, chromedriver};
use latchkey_e2e::{backend_tests, hidden_fields, json, Api, Backend, Browser, Cloud, Reply, SandboxOrg, TestDb, User};
use serde_json::Value;
use std::time::Duration;

backend_tests!(
    failing_then_exhausted_then_reconnected_is_active_again,
    a_failing_connection_recovers_when_the_provider_heals,
    the_background_refresher_exhausts_a_failing_connection_then_leaves_it_alone,
);

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn sql(db: &TestDb, statement: &str) {
    let raw = db.raw().await;
    sqlx::query(statement).execute(&raw).await.unwrap();
    raw.close().await;
}

async fn fetch(api: &Api, pat: &str) -> Reply {
    api.post("/oauth/connection-token", Some(pat), json!({"org": "acme", "connector_key": "sandbox"})).await
}

/// A cloud serving the sandbox whose connections are exhausted after three failed
/// refreshes, the member connected; the background refresher runs every
/// `refresher_interval_secs`.
async fn connected(db: &TestDb, refresher_interval_secs: u64) -> (Cloud, Api, SandboxOrg, String) {
    let cloud = Cloud::start_with(db, |c| {
        c.sandbox = true;
        c.refresh_exhaust_after_failures = 3;
        c.refresher_interval_secs = refresher_interval_secs;
    })
    .await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let (_, page) = latchkey_e2e::consent(&api, &org.member, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    (cloud, api, org, pat)
}

/// The one connection's row in the health API.
async fn health(api: &Api, admin: &User) -> Value {
    let rows = api.get("/v1/orgs/acme/connections/health", Some(&admin.access)).await.ok(200);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0].clone()
}

async fn health_filtered(api: &Api, admin: &User, status: &str) -> usize {
    let rows = api.get(&format!("/v1/orgs/acme/connections/health?status={status}"), Some(&admin.access)).await;
    rows.ok(200).as_array().unwrap().len()
}

/// The refreshes the sandbox has been asked for.
async fn provider_refreshes(api: &Api) -> u64 {
    let stats = SandboxOrg::stats(api).await;
    stats["grants"].as_array().unwrap().iter().map(|g| g["token_requests"]["refresh_token"].as_u64().unwrap()).sum()
}

/// The org's state-change audit events, oldest first: (action, detail).
async fn changes(api: &Api, admin: &User) -> Vec<(String, Value)> {
    let events = api.get("/v1/orgs/acme/audit?action=connection.&limit=1000", Some(&admin.access)).await.ok(200);
    let mut out: Vec<(String, Value)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            ["connection.failing", "connection.exhausted", "connection.needs_reauth", "connection.recovered"]
                .contains(&e["action"].as_str().unwrap())
        })
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["detail"].clone()))
        .collect();
    out.reverse();
    out
}

fn actions(changes: &[(String, Value)]) -> Vec<&str> {
    changes.iter().map(|(a, _)| a.as_str()).collect()
}

async fn signed_in(api: &Api, user: &User) -> Browser {
    let browser = Browser::new();
    assert!(browser.login(&api.base, user).await.status.is_redirection());
    browser
}

/// The member's home page, and the status its one banner shows (`None`: no banner).
async fn home_banner(api: &Api, member: &Browser) -> (Reply, Option<String>) {
    let home = member.get(&format!("{}/", api.base)).await;
    assert_eq!(home.status, 200, "{}", home.text);
    let status = home
        .text
        .split("class=\"attention\" id=\"attention-")
        .nth(1)
        .and_then(|rest| rest.split("data-status=\"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_owned);
    (home, status)
}

async fn admin_page(api: &Api, admin: &Browser, query: &str) -> Reply {
    let page = admin.get(&format!("{}/orgs/acme/admin/health{query}", api.base)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    page
}

/// Reconnects as a person would from the home page: the banner's Reconnect link opens
/// the confirm page, its button goes to the sandbox, which approves at once.
async fn reconnect_from_banner(api: &Api, member: &Browser, home: &Reply) {
    let href = home.text.split("id=\"reconnect-").nth(1).unwrap().split("href=\"").nth(1).unwrap();
    // As the page escapes it (minijinja escapes `/` too).
    let href = href.split('"').next().unwrap().replace("&#x2f;", "/").replace("&amp;", "&");
    assert!(href.starts_with("/connect/acme/sandbox?connection="), "{href}");
    let confirm = member.get(&format!("{}{href}", api.base)).await;
    assert_eq!(confirm.status, 200, "{}", confirm.text);
    SandboxOrg::faults(api, json!({"auto_approve": true})).await;
    let start = member.post_form(&api.base, &href, &hidden_fields(&confirm.text)).await;
    let provider = start.header("location").unwrap_or_else(|| panic!("{} {}", start.status, start.text)).to_owned();
    let (_, page) = member.follow(&provider).await;
    assert_eq!(page.status, 200, "{}", page.text);
}

async fn failing_then_exhausted_then_reconnected_is_active_again(backend: Backend) {
    let db = TestDb::new(backend).await;
    // The background refresher is kept out of the way: each refresh here is on demand.
    let (_cloud, api, org, pat) = connected(&db, 3600).await;
    let member = signed_in(&api, &org.member).await;
    let admin = signed_in(&api, &org.admin).await;
    let access = fetch(&api, &pat).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(health(&api, &org.admin).await["status"], "active");
    assert_eq!(home_banner(&api, &member).await.1, None, "nothing needs the member yet");

    // The provider fails while the token is valid for another 40 s: served, and failing.
    SandboxOrg::faults(&api, json!({"token_status": 503})).await;
    sql(&db, &format!("update connections set expires_at = {}", now() + 40)).await;
    let before = provider_refreshes(&api).await;
    assert_eq!(fetch(&api, &pat).await.ok(200)["access_token"], access.as_str());
    assert_eq!(provider_refreshes(&api).await, before + 1);
    let row = health(&api, &org.admin).await;
    assert_eq!(row["status"], "failing", "{row}");
    assert_eq!(row["label"], "sandbox-user");
    assert_eq!(row["failure_count"], 1);
    assert_eq!(row["last_error"], "provider_5xx");
    assert!(row["next_attempt_at"].is_string() && row["failing_since"].is_string(), "{row}");
    assert_eq!(health_filtered(&api, &org.admin, "failing").await, 1);
    assert_eq!(health_filtered(&api, &org.admin, "active").await, 0);
    let page = admin_page(&api, &admin, "?status=failing").await;
    assert!(page.text.contains("data-status=\"failing\"") && page.text.contains("1 failed refresh"), "{}", page.text);
    assert!(page.text.contains("<code>provider_5xx</code>"), "{}", page.text);
    let (home, status) = home_banner(&api, &member).await;
    assert_eq!(status.as_deref(), Some("failing"), "{}", home.text);
    assert!(home.text.contains("server errors; 1 failed refresh") && home.text.contains(">Reconnect</a>"));
    assert!(!home.text.contains(&access) && !page.text.contains(&access), "a page leaked the token");
    assert_eq!(actions(&changes(&api, &org.admin).await), ["connection.failing"]);

    // Two more failures (each once its backoff is over): exhausted, told once.
    for n in 2..=3 {
        sql(&db, "update connections set next_attempt_at = null").await;
        assert_eq!(fetch(&api, &pat).await.ok(200)["access_token"], access.as_str(), "failure {n}");
    }
    let row = health(&api, &org.admin).await;
    assert_eq!(row["status"], "exhausted", "{row}");
    assert_eq!(row["failure_count"], 3);
    assert!(row["next_attempt_at"].is_null(), "no attempt is planned: {row}");
    assert_eq!(health_filtered(&api, &org.admin, "exhausted").await, 1);
    let changed = changes(&api, &org.admin).await;
    assert_eq!(actions(&changed), ["connection.failing", "connection.exhausted"]);
    let detail = &changed[1].1;
    assert_eq!((detail["error"].as_str(), detail["failure_count"].as_i64()), (Some("provider_5xx"), Some(3)));
    assert_eq!((detail["from"].as_str(), detail["label"].as_str()), (Some("failing"), Some("sandbox-user")));
    let page = admin_page(&api, &admin, "?status=exhausted").await;
    assert!(page.text.contains("stopped retrying after 3 failed refreshes"), "{}", page.text);
    let (home, status) = home_banner(&api, &member).await;
    assert_eq!(status.as_deref(), Some("exhausted"));
    assert!(home.text.contains("stopped retrying this connection after 3 failed refreshes"), "{}", home.text);

    // Exhausted: the provider is never asked again, even with the token about to expire;
    // the token is served while it is valid, then the member must reconnect.
    let asked = provider_refreshes(&api).await;
    assert_eq!(asked, before + 3);
    sql(&db, &format!("update connections set expires_at = {}", now() + 20)).await;
    assert_eq!(fetch(&api, &pat).await.ok(200)["access_token"], access.as_str());
    sql(&db, &format!("update connections set expires_at = {}", now() - 5)).await;
    for _ in 0..2 {
        let r = fetch(&api, &pat).await;
        r.assert_error(409, "reauth_required");
        let reconnect_this = format!(
            "{}/connect/acme/sandbox?connection={}",
            api.base,
            health(&api, &org.admin).await["id"].as_str().unwrap_or_default()
        );
        assert_eq!(r.json()["connect_url"], reconnect_this.as_str());
    }
    assert_eq!(provider_refreshes(&api).await, asked, "an exhausted connection was refreshed");
    assert_eq!(health(&api, &org.admin).await["status"], "exhausted");

    // The member reconnects from the banner on their home page: active again, the failures
    // forgotten, the banner gone, a fresh token served.
    SandboxOrg::faults(&api, json!({"token_status": null})).await;
    reconnect_from_banner(&api, &member, &home).await;
    let row = health(&api, &org.admin).await;
    assert_eq!(row["status"], "active", "{row}");
    assert_eq!(row["failure_count"], 0);
    assert!(row["last_error"].is_null() && row["next_attempt_at"].is_null() && row["failing_since"].is_null(), "{row}");
    assert_eq!(home_banner(&api, &member).await.1, None);
    let fresh = fetch(&api, &pat).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    assert_ne!(fresh, access);
    let page = admin_page(&api, &admin, "").await;
    assert!(page.text.contains("data-status=\"active\"") && !page.text.contains("last error"), "{}", page.text);

    // A new run of failures after the reconnect starts from one, with its own clock.
    SandboxOrg::faults(&api, json!({"token_status": 502})).await;
    sql(&db, &format!("update connections set expires_at = {}", now() + 40)).await;
    fetch(&api, &pat).await.ok(200);
    let row = health(&api, &org.admin).await;
    assert_eq!((row["status"].as_str(), row["failure_count"].as_i64()), (Some("failing"), Some(1)), "{row}");
    let changed = changes(&api, &org.admin).await;
    assert_eq!(actions(&changed), ["connection.failing", "connection.exhausted", "connection.failing"]);
}

async fn a_failing_connection_recovers_when_the_provider_heals(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, org, pat) = connected(&db, 3600).await;
    let member = signed_in(&api, &org.member).await;
    let access = fetch(&api, &pat).await.ok(200)["access_token"].as_str().unwrap().to_owned();

    SandboxOrg::faults(&api, json!({"token_429_retry_after": 1})).await;
    sql(&db, &format!("update connections set expires_at = {}", now() + 40)).await;
    assert_eq!(fetch(&api, &pat).await.ok(200)["access_token"], access.as_str());
    let row = health(&api, &org.admin).await;
    assert_eq!((row["status"].as_str(), row["last_error"].as_str()), (Some("failing"), Some("rate_limited")), "{row}");
    assert_eq!(home_banner(&api, &member).await.1.as_deref(), Some("failing"));

    // The provider heals; the next refresh (once the backoff is over) recovers it.
    SandboxOrg::faults(&api, json!({"token_429_retry_after": null})).await;
    sql(&db, "update connections set next_attempt_at = null").await;
    let fresh = fetch(&api, &pat).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    assert_ne!(fresh, access, "a refreshed token");
    let row = health(&api, &org.admin).await;
    assert_eq!(row["status"], "active", "{row}");
    assert_eq!(row["failure_count"], 0);
    assert!(row["last_error"].is_null() && row["failing_since"].is_null(), "{row}");
    assert_eq!(home_banner(&api, &member).await.1, None, "the banner is gone");
    let changed = changes(&api, &org.admin).await;
    assert_eq!(actions(&changed), ["connection.failing", "connection.recovered"]);
    assert_eq!(changed[1].1["failure_count"], 1);
    assert_eq!(changed[1].1["status"], "active");

    // invalid_grant from active: needs_reauth, told once, with its banner.
    SandboxOrg::faults(&api, json!({"refresh_invalid_grant": true})).await;
    sql(&db, &format!("update connections set expires_at = {}", now() - 5)).await;
    fetch(&api, &pat).await.assert_error(409, "reauth_required");
    fetch(&api, &pat).await.assert_error(409, "reauth_required");
    let row = health(&api, &org.admin).await;
    assert_eq!((row["status"].as_str(), row["last_error"].as_str()), (Some("needs_reauth"), Some("invalid_grant")));
    let (home, status) = home_banner(&api, &member).await;
    assert_eq!(status.as_deref(), Some("needs_reauth"));
    assert!(home.text.contains("revoked or expired at the provider"), "{}", home.text);
    let changed = changes(&api, &org.admin).await;
    assert_eq!(actions(&changed), ["connection.failing", "connection.recovered", "connection.needs_reauth"]);
}

async fn the_background_refresher_exhausts_a_failing_connection_then_leaves_it_alone(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, org, pat) = connected(&db, 1).await;
    let access = fetch(&api, &pat).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    SandboxOrg::faults(&api, json!({"token_status": 500})).await;
    // Inside the refresher's lead time: it renews (and fails) on its own.
    sql(&db, &format!("update connections set expires_at = {}", now() + 120)).await;
    let mut status = String::new();
    for _ in 0..300 {
        status = health(&api, &org.admin).await["status"].as_str().unwrap().to_owned();
        if status == "exhausted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "exhausted", "three background failures exhaust it");
    let asked = provider_refreshes(&api).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(provider_refreshes(&api).await, asked, "the refresher kept refreshing an exhausted connection");
    assert_eq!(fetch(&api, &pat).await.ok(200)["access_token"], access.as_str(), "still served while valid");
    assert_eq!(actions(&changes(&api, &org.admin).await), ["connection.failing", "connection.exhausted"]);
}

/// The member's home banner and the admin's health page in Chromium, failing then
/// exhausted: axe-clean, no console errors, and the banner's Reconnect going to the
/// connect page of that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banners_and_health_in_chromium() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (_cloud, api, org, pat) = connected(&db, 3600).await;
    let access = fetch(&api, &pat).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    SandboxOrg::faults(&api, json!({"token_status": 503})).await;
    sql(&db, &format!("update connections set expires_at = {}", now() + 40)).await;
    fetch(&api, &pat).await.ok(200);

    let driver = chromedriver().await;
    let member = driver.browser().await;
    chrome::sign_in(&member, &api.base, &org.member.email, &org.member.password, "/", "attention").await;
    let banner = member.find(Locator::Css(".attention")).await.unwrap();
    assert_eq!(banner.attr("data-status").await.unwrap().as_deref(), Some("failing"));
    assert!(banner.text().await.unwrap().contains("Refreshing this connection is failing"));
    assert!(!member.source().await.unwrap().contains(&access), "the home page leaked the token");
    driver.check_page(&member, "home-connection-failing").await;

    let admin = driver.browser().await;
    chrome::sign_in(&admin, &api.base, &org.admin.email, &org.admin.password, "/orgs/acme/admin/health", "filter-all")
        .await;
    admin.find(Locator::Id("filter-failing")).await.unwrap().click().await.unwrap();
    admin.wait().for_element(Locator::Css("tr[data-status='failing']")).await.unwrap();
    driver.check_page(&admin, "admin-health-failing").await;

    for _ in 2..=3 {
        sql(&db, "update connections set next_attempt_at = null").await;
        fetch(&api, &pat).await.ok(200);
    }
    admin.find(Locator::Id("filter-exhausted")).await.unwrap().click().await.unwrap();
    admin.wait().for_element(Locator::Css("tr[data-status='exhausted']")).await.unwrap();
    driver.check_page(&admin, "admin-health-exhausted").await;

    member.refresh().await.unwrap();
    member.wait().for_element(Locator::Css(".attention[data-status='exhausted']")).await.unwrap();
    driver.check_page(&member, "home-connection-exhausted").await;
    member.find(Locator::Css(".attention a.button")).await.unwrap().click().await.unwrap();
    let url = member.current_url().await.unwrap();
    assert_eq!(url.path(), "/connect/acme/sandbox");
    assert_eq!(url.query(), Some("connection=sandbox-user"));
    member.close().await.unwrap();
    admin.close().await.unwrap();
}

/// Two replicas on one PostgreSQL, both running the background refresher against a
/// failing provider: every failure is one provider call and counted once, and each
/// change of state (failing, then exhausted) is audited once, not once per replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_tell_each_change_once() {
    if latchkey_e2e::skip_postgres() {
        return;
    }
    let provider_db = TestDb::new(Backend::Sqlite).await;
    let provider = latchkey_e2e::CloudProcess::spawn(&provider_db, &[("LATCHKEY_SANDBOX", "1")]).await;
    let sandbox = provider.api();
    let db = TestDb::new(Backend::Postgres).await;
    let config_file = latchkey_e2e::sandbox_provider_config(db.dir.path(), &provider.base);
    let providers: std::collections::BTreeMap<String, toml::Value> = {
        let table: toml::Table = std::fs::read_to_string(&config_file).unwrap().parse().unwrap();
        table["providers"].as_table().unwrap().clone().into_iter().collect()
    };
    let port = latchkey_e2e::free_port();
    let public = format!("http://127.0.0.1:{port}");
    let tweak = |c: &mut latchkey_cloud::config::Config| {
        c.providers = providers.clone();
        c.public_url = Some(public.clone());
        c.refresher_interval_secs = 1;
        c.refresh_exhaust_after_failures = 3;
    };
    let a = Cloud::start_on(&db, port, tweak).await;
    let b = Cloud::start_with(&db, tweak).await;
    let api = a.api();
    let org = SandboxOrg::setup_at(&api, &sandbox, &public).await;
    SandboxOrg::faults(&sandbox, json!({"auto_approve": true})).await;
    let member = signed_in(&api, &org.member).await;
    let (_, page) = member.connect(&api.base, "acme", "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.text);

    SandboxOrg::faults(&sandbox, json!({"token_status": 503})).await;
    sql(&db, &format!("update connections set expires_at = {}", now() + 120)).await;
    let mut status = String::new();
    for _ in 0..300 {
        status = health(&api, &org.admin).await["status"].as_str().unwrap().to_owned();
        if status == "exhausted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "exhausted");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = SandboxOrg::stats(&sandbox).await;
    let grant = &stats["grants"][0];
    assert_eq!(grant["token_requests"]["refresh_token"], 3, "one provider call per failure: {stats}");
    let row = health(&b.api(), &org.admin).await;
    assert_eq!(row["failure_count"], 3, "{row}");
    assert_eq!(actions(&changes(&api, &org.admin).await), ["connection.failing", "connection.exhausted"]);
    drop((a, b, provider));
}
