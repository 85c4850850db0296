//! The admin console's connection health and audit log: the pages (HTTP and Chromium)
//! and the JSON API under them, on both backends. Health shows every member's
//! connection with its status in words, last refresh and last token fetch, and never a
//! token; the audit log filters, pages, exports CSV/JSON safely, and records where org
//! events came from.

use fantoccini::Locator;
use latchkey_e2e::chrome::{self, chromedriver};
use latchkey_e2e::{backend_tests, json, Api, Backend, Browser, Cloud, Reply, SandboxOrg, TestDb};
use serde_json::Value;

backend_tests!(
    health_follows_a_connection_from_active_to_failing_to_needs_reauth,
    the_last_token_stamp_is_written_at_most_once_a_minute,
    audit_filters_pages_and_names_the_events,
    audit_exports_csv_and_json_safely,
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

async fn health(api: &Api, token: &str, query: &str) -> Vec<Value> {
    let r = api.get(&format!("/v1/orgs/acme/connections/health{query}"), Some(token)).await;
    r.ok(200).as_array().unwrap().clone()
}

async fn signed_in(api: &Api, user: &latchkey_e2e::User) -> Browser {
    let browser = Browser::new();
    assert!(browser.login(&api.base, user).await.status.is_redirection());
    browser
}

async fn health_page_of(api: &Api, browser: &Browser, query: &str) -> Reply {
    browser.get(&format!("{}/orgs/acme/admin/health{query}", api.base)).await
}

async fn health_follows_a_connection_from_active_to_failing_to_needs_reauth(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, org, pat) = SandboxOrg::connected_cloud(&db).await;

    // Before any fetch: active, refreshed at connect, no token fetched yet.
    let rows = health(&api, &org.admin.access, "").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "active");
    assert!(rows[0]["last_refreshed_at"].is_string());
    assert!(rows[0]["last_token_at"].is_null());

    // After a fetch: the token fetch is shown; never the token.
    let access = fetch(&api, &pat).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    let r = api.get("/v1/orgs/acme/connections/health", Some(&org.admin.access)).await;
    assert!(!r.text.contains(&access), "the health API leaked the access token");
    let rows = r.ok(200).as_array().unwrap().clone();
    let row = &rows[0];
    assert_eq!(row["status"], "active");
    assert_eq!(row["connector_key"], "sandbox");
    assert_eq!(row["user"]["username"], "member");
    assert_eq!(row["user"]["email"], org.member.email.as_str());
    assert_eq!(row["user"]["id"], org.member.id.as_str());
    assert_eq!(row["account_name"], "sandbox-user");
    assert_eq!(row["label"], "sandbox-user");
    assert_eq!(row["failure_count"], 0);
    assert!(row["last_token_at"].is_string(), "{row}");
    let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
    assert!(keys.iter().all(|k| !k.contains("token") || *k == "last_token_at"), "{keys:?}");

    let admin = signed_in(&api, &org.admin).await;
    let page = health_page_of(&api, &admin, "").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("data-status=\"active\""));
    assert!(page.text.contains("member@example.test") && page.text.contains("sandbox-user"));
    assert!(!page.text.contains("class=\"last-token\">never"), "the token fetch is not shown");
    assert!(!page.text.contains(&access), "the health page leaked the access token");

    // The provider fails while the token is still valid: served, and shown as failing.
    SandboxOrg::faults(&api, json!({"token_status": 503})).await;
    sql(&db, &format!("update connections set expires_at = {}", now() + 20)).await;
    assert_eq!(fetch(&api, &pat).await.ok(200)["access_token"], access.as_str());
    let rows = health(&api, &org.admin.access, "").await;
    assert_eq!(rows[0]["status"], "failing", "{rows:?}");
    assert_eq!(rows[0]["failure_count"], 1);
    assert!(rows[0]["next_attempt_at"].is_string());
    let page = health_page_of(&api, &admin, "?status=failing").await;
    assert!(page.text.contains("data-status=\"failing\""), "{}", page.text);
    assert!(page.text.contains("1 failed refresh; next attempt in"), "{}", page.text);
    assert!(!page.text.contains(&access));

    // Filtering by status, in the API and on the page.
    assert_eq!(health(&api, &org.admin.access, "?status=failing").await.len(), 1);
    assert_eq!(health(&api, &org.admin.access, "?status=active").await.len(), 0);
    api.get("/v1/orgs/acme/connections/health?status=bogus", Some(&org.admin.access))
        .await
        .assert_error(400, "invalid_request");
    let page = health_page_of(&api, &admin, "?status=active").await;
    assert!(page.text.contains("id=\"health-empty\"") && !page.text.contains("data-status="), "{}", page.text);
    health_page_of(&api, &admin, "?status=bogus").await.assert_page_error(400);

    // invalid_grant: the grant is dead, the member must reconnect.
    SandboxOrg::faults(&api, json!({"token_status": null, "refresh_invalid_grant": true})).await;
    sql(&db, &format!("update connections set next_attempt_at = null, expires_at = {}", now() - 5)).await;
    fetch(&api, &pat).await.assert_error(409, "reauth_required");
    let rows = health(&api, &org.admin.access, "?status=needs_reauth").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let page = health_page_of(&api, &admin, "").await;
    assert!(page.text.contains("data-status=\"needs_reauth\"") && page.text.contains("Needs reconnect"));

    // Members are refused, in the API and on the page; a PAT needs orgs:read.
    api.get("/v1/orgs/acme/connections/health", Some(&org.member.access)).await.assert_error(403, "forbidden");
    let member = signed_in(&api, &org.member).await;
    health_page_of(&api, &member, "").await.assert_page_error(403);
    let (_, weak) = api.pat(&org.admin, &["connections:read"]).await;
    api.get("/v1/orgs/acme/connections/health", Some(&weak)).await.assert_error(403, "insufficient_scope");
    let (_, reader) = api.pat(&org.admin, &["orgs:read"]).await;
    assert_eq!(health(&api, &reader, "").await.len(), 1);
    // No connector may take the health view's path.
    api.put(
        "/v1/orgs/acme/connectors/health",
        Some(&org.admin.access),
        json!({"provider": "sandbox", "scopes": ["profile"]}),
    )
    .await
    .assert_error(400, "invalid_request");
}

async fn last_token_at(db: &TestDb) -> Option<i64> {
    let raw = db.raw().await;
    let at: Option<i64> = sqlx::query_scalar("select last_token_at from connections").fetch_one(&raw).await.unwrap();
    raw.close().await;
    at
}

/// The hot path writes the stamp when it is unset or a minute old, and not otherwise.
async fn the_last_token_stamp_is_written_at_most_once_a_minute(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, _org, pat) = SandboxOrg::connected_cloud(&db).await;
    fetch(&api, &pat).await.ok(200);
    let first = last_token_at(&db).await.expect("stamped on the first fetch");
    assert!((now() - first).abs() <= 5);
    let recent = now() - 30;
    sql(&db, &format!("update connections set last_token_at = {recent}")).await;
    for _ in 0..5 {
        fetch(&api, &pat).await.ok(200);
    }
    assert_eq!(last_token_at(&db).await, Some(recent), "a fresh stamp was rewritten");
    sql(&db, &format!("update connections set last_token_at = {}", now() - 61)).await;
    fetch(&api, &pat).await.ok(200);
    assert!(last_token_at(&db).await.unwrap() >= now() - 5, "a stale stamp was not renewed");
}

const UA: &str = "console-health-test/1.0 (admin laptop)";

async fn with_agent(api: &Api, method: reqwest::Method, path: &str, token: &str, ua: &str, body: Value) -> Reply {
    Api::read(
        api.client
            .request(method, format!("{}{path}", api.base))
            .bearer_auth(token)
            .header("user-agent", ua)
            .json(&body),
    )
    .await
}

fn ids(events: &Value) -> Vec<String> {
    events.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

async fn audit(api: &Api, token: &str, query: &str) -> Value {
    api.get(&format!("/v1/orgs/acme/audit{query}"), Some(token)).await.ok(200)
}

async fn audit_filters_pages_and_names_the_events(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let admin = &org.admin.access;
    // Five renames from a known user agent.
    for n in 0..5 {
        with_agent(&api, reqwest::Method::PATCH, "/v1/orgs/acme", admin, UA, json!({"name": format!("Acme {n}")}))
            .await
            .ok(200);
    }
    // The member starts a consent from another agent.
    with_agent(
        &api,
        reqwest::Method::POST,
        "/v1/orgs/acme/connectors/sandbox/authorize",
        &org.member.access,
        "member-agent",
        json!({}),
    )
    .await
    .ok(200);

    // Org events carry IP and user agent.
    let renames = audit(&api, admin, "?action=org.update").await;
    assert_eq!(renames.as_array().unwrap().len(), 5, "{renames}");
    for e in renames.as_array().unwrap() {
        assert_eq!(e["ip"], "127.0.0.1");
        assert_eq!(e["user_agent"], UA);
        assert_eq!(e["actor_username"], "admin");
        assert_eq!(e["target_name"], "acme");
    }
    let all = audit(&api, admin, "").await;
    for action in ["org.create", "org.join", "app.put", "connector.put", "connection.authorize"] {
        let e = all.as_array().unwrap().iter().find(|e| e["action"] == action).unwrap_or_else(|| panic!("no {action}"));
        // The test client sends no user agent of its own; the IP is always there.
        assert_eq!(e["ip"], "127.0.0.1", "{action} without its IP: {e}");
    }
    let join = all.as_array().unwrap().iter().find(|e| e["action"] == "org.join").unwrap();
    assert_eq!(join["target"], org.member.id.as_str());
    assert_eq!(join["target_name"], "member");
    let authorize = all.as_array().unwrap().iter().find(|e| e["action"] == "connection.authorize").unwrap();
    assert_eq!(authorize["user_agent"], "member-agent");
    assert_eq!(authorize["target_name"], Value::Null);
    assert_eq!(authorize["target"], "sandbox");

    // Actor by username or id; action exact or by prefix; time.
    let by_member = audit(&api, admin, "?actor=member").await;
    assert!(!by_member.as_array().unwrap().is_empty());
    assert!(by_member.as_array().unwrap().iter().all(|e| e["actor_id"] == org.member.id.as_str()));
    assert_eq!(ids(&audit(&api, admin, &format!("?actor={}", org.member.id)).await), ids(&by_member));
    let org_events = audit(&api, admin, "?action=org.").await;
    assert!(org_events.as_array().unwrap().iter().all(|e| e["action"].as_str().unwrap().starts_with("org.")));
    assert_eq!(org_events.as_array().unwrap().len(), 7, "create, join, 5 updates: {org_events}");
    assert_eq!(audit(&api, admin, "?action=org").await.as_array().unwrap().len(), 0);
    assert_eq!(audit(&api, admin, "?action=connector.").await.as_array().unwrap().len(), 1);
    assert_eq!(audit(&api, admin, "?since=2999-01-01T00:00:00Z").await.as_array().unwrap().len(), 0);
    assert_eq!(audit(&api, admin, "?until=2000-01-01T00:00:00Z").await.as_array().unwrap().len(), 0);
    assert_eq!(
        ids(&audit(&api, admin, "?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00%2B02:00").await),
        ids(&all)
    );
    api.get("/v1/orgs/acme/audit?since=yesterday", Some(admin)).await.assert_error(400, "invalid_request");
    api.get("/v1/orgs/acme/audit?limit=0", Some(admin)).await.assert_error(400, "invalid_request");
    api.get("/v1/orgs/acme/audit?format=xml", Some(admin)).await.assert_error(400, "invalid_request");
    api.get("/v1/orgs/acme/audit?before=no-such-event", Some(admin)).await.assert_error(400, "invalid_request");
    api.get("/v1/orgs/acme/audit", Some(&org.member.access)).await.assert_error(403, "forbidden");

    // Pages of two through the renames: newest first, none twice, none missed; and back.
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut query = "?action=org.update&limit=2".to_owned();
    loop {
        let page = audit(&api, admin, &query).await;
        let page_ids = ids(&page);
        if page_ids.is_empty() {
            break;
        }
        query = format!("?action=org.update&limit=2&before={}", page_ids.last().unwrap());
        seen.extend(page_ids.clone());
        pages.push(page_ids);
    }
    assert_eq!(seen, ids(&renames));
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 1]);
    let back = audit(&api, admin, &format!("?action=org.update&limit=2&after={}", pages[1][0])).await;
    assert_eq!(ids(&back), pages[0]);

    // The page: names, IP, UA; the filter form's fields; Older/Newer; export links.
    let browser = signed_in(&api, &org.admin).await;
    let page = browser.get(&format!("{}/orgs/acme/admin/audit?action=org.update", api.base)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    // As a browser reads it: the templates escape `/` and `&`.
    let html = page.text.replace("&#x2f;", "/").replace("&amp;", "&");
    assert_eq!(html.matches("data-action=\"org.update\"").count(), 5);
    assert!(html.contains(UA) && html.contains("127.0.0.1"));
    assert!(html.contains("href=\"/v1/orgs/acme/audit?action=org.update&format=csv\""), "{html}");
    assert!(!html.contains("id=\"page-older\""));
    let page = browser.get(&format!("{}/orgs/acme/admin/audit?actor=nobody", api.base)).await;
    assert!(page.text.contains("id=\"audit-empty\""));
    let page =
        browser.get(&format!("{}/orgs/acme/admin/audit?since=2000-01-01T00:00&until=2999-01-01T00:00", api.base)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("data-action=\"org.create\""));
    browser.get(&format!("{}/orgs/acme/admin/audit?since=soon", api.base)).await.assert_page_error(400);
    let member = signed_in(&api, &org.member).await;
    member.get(&format!("{}/orgs/acme/admin/audit", api.base)).await.assert_page_error(403);

    // Fifty more renames: the page shows fifty, and Older/Newer walk the rest and back.
    for n in 0..50 {
        api.send(reqwest::Method::PATCH, "/v1/orgs/acme", Some(admin), Some(json!({"name": format!("Acme {n}")})))
            .await
            .ok(200);
    }
    let link = |html: &str, id: &str| -> Option<String> {
        let href = html.split(&format!("id=\"{id}\" href=\"")).nth(1)?.split('"').next()?;
        Some(href.to_owned())
    };
    let first = browser.get(&format!("{}/orgs/acme/admin/audit?action=org.update", api.base)).await;
    let first = first.text.replace("&#x2f;", "/").replace("&amp;", "&");
    assert_eq!(first.matches("data-action=").count(), 50);
    assert!(link(&first, "page-newer").is_none());
    let older = link(&first, "page-older").expect("an Older link");
    assert!(older.contains("action=org.update") && older.contains("before="), "{older}");
    let second = browser.get(&format!("{}{older}", api.base)).await;
    assert_eq!(second.status, 200, "{}", second.text);
    let second = second.text.replace("&#x2f;", "/").replace("&amp;", "&");
    assert_eq!(second.matches("data-action=").count(), 5);
    assert!(link(&second, "page-older").is_none());
    let newer = link(&second, "page-newer").expect("a Newer link");
    let back = browser.get(&format!("{}{newer}", api.base)).await;
    let back = back.text.replace("&#x2f;", "/").replace("&amp;", "&");
    assert_eq!(back.matches("data-action=").count(), 50);
    let rows = |html: &str| -> Vec<String> {
        html.split("<tr id=\"event-").skip(1).map(|r| r.split('"').next().unwrap().to_owned()).collect()
    };
    assert_eq!(rows(&back), rows(&first));
}

async fn audit_exports_csv_and_json_safely(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let admin = api.user("admin").await;
    api.org(&admin, "acme", "public").await;
    let hostile = "=HYPERLINK(\"http://evil.example\",\"click\")";
    with_agent(&api, reqwest::Method::PATCH, "/v1/orgs/acme", &admin.access, hostile, json!({"name": "Acme, \"Inc\""}))
        .await
        .ok(200);
    with_agent(&api, reqwest::Method::PATCH, "/v1/orgs/acme", &admin.access, "-2+3", json!({"name": "Acme"}))
        .await
        .ok(200);

    let csv = api.get("/v1/orgs/acme/audit?format=csv", Some(&admin.access)).await;
    assert_eq!(csv.status, 200, "{}", csv.text);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert_eq!(csv.header("content-disposition"), Some("attachment; filename=\"acme-audit.csv\""));
    let lines: Vec<&str> = csv.text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("\"id\",\"created_at\",\"org_id\",\"actor_id\",\"actor_username\""), "{}", lines[0]);
    assert_eq!(lines.len(), 4, "header, create, two updates: {}", csv.text);
    // Quoted, quotes doubled, and the formula neutralised with a leading apostrophe.
    assert!(csv.text.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\""), "{}", csv.text);
    assert!(csv.text.contains("\"'-2+3\""), "{}", csv.text);
    assert!(!csv.text.contains(",\"=") && !csv.text.contains(",\"-2"));
    let filtered = api.get("/v1/orgs/acme/audit?format=csv&action=org.create", Some(&admin.access)).await;
    assert_eq!(filtered.text.split("\r\n").filter(|l| !l.is_empty()).count(), 2);

    let export = api.get("/v1/orgs/acme/audit?format=json", Some(&admin.access)).await;
    assert_eq!(export.header("content-disposition"), Some("attachment; filename=\"acme-audit.json\""));
    let events = export.ok(200);
    assert_eq!(events.as_array().unwrap().len(), 3);
    assert!(events.as_array().unwrap().iter().any(|e| e["user_agent"] == hostile));
    // A plain listing is not a download.
    assert!(api.get("/v1/orgs/acme/audit", Some(&admin.access)).await.header("content-disposition").is_none());
    // The session cookie's export link works for the page's user too.
    let browser = signed_in(&api, &admin).await;
    let r = browser.get(&format!("{}/v1/orgs/acme/audit?format=csv", api.base)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// The two pages in Chromium: axe-clean, no console errors, the filters working without
/// script, and a member refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_audit_pages_in_chromium() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (_cloud, api, org, pat) = SandboxOrg::connected_cloud(&db).await;
    let access = fetch(&api, &pat).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    let driver = chromedriver().await;
    let browser = driver.browser().await;
    chrome::sign_in(
        &browser,
        &api.base,
        &org.admin.email,
        &org.admin.password,
        "/orgs/acme/admin/health",
        "filter-all",
    )
    .await;
    driver.check_page(&browser, "admin-health").await;
    let source = browser.source().await.unwrap();
    assert!(!source.contains(&access), "the health page leaked the access token");
    let row = browser.find(Locator::Css("tr[data-status]")).await.unwrap();
    assert_eq!(row.attr("data-status").await.unwrap().as_deref(), Some("active"));
    assert!(!row.find(Locator::Css(".last-token time")).await.unwrap().text().await.unwrap().is_empty());
    browser.find(Locator::Id("filter-failing")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("health-empty")).await.unwrap();
    assert!(browser.current_url().await.unwrap().as_str().ends_with("/orgs/acme/admin/health?status=failing"));
    driver.check_page(&browser, "admin-health-filtered").await;

    browser.find(Locator::Id("admin-audit")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("audit-filter")).await.unwrap();
    driver.check_page(&browser, "admin-audit").await;
    browser.find(Locator::Id("filter-action")).await.unwrap().send_keys("connector.").await.unwrap();
    browser.find(Locator::Id("filter-apply")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Css("tr[data-action='connector.put']")).await.unwrap();
    let rows = browser.find_all(Locator::Css("tr[data-action]")).await.unwrap();
    assert_eq!(rows.len(), 1);
    let csv = browser.find(Locator::Id("export-csv")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert_eq!(csv, "/v1/orgs/acme/audit?action=connector.&format=csv");
    driver.check_page(&browser, "admin-audit-filtered").await;

    let member = driver.browser().await;
    chrome::sign_in(
        &member,
        &api.base,
        &org.member.email,
        &org.member.password,
        "/orgs/acme/admin/health",
        "error-reason",
    )
    .await;
    // The browser logs the page's own 403 as an error; that one is expected, nothing else.
    let errors = driver.console_errors(&member).await;
    assert!(errors.iter().all(|e| e.contains("status of 403")), "{errors:?}");
    assert!(member.source().await.unwrap().contains("owners and admins"));
    driver.check_page(&member, "admin-health-forbidden").await;
    browser.close().await.unwrap();
    member.close().await.unwrap();
}
