//! The admin console's managed apps and connectors pages: an admin configures the sandbox
//! app, rotates its secret, publishes and unpublishes a connector and deletes the app, in
//! Chromium; over HTTP, what the pages (and the API) must refuse. The client secret
//! appears in no page, answer or audit event.

use fantoccini::{Client, Locator};
use latchkey_e2e::chrome::{self, chromedriver};
use latchkey_e2e::{
    backend_tests, consent, form_fields, hidden_fields, json, Api, Backend, Browser, Cloud, SandboxOrg, TestDb, User,
};
use std::time::Duration;

backend_tests!(an_admin_runs_apps_and_connectors_in_the_pages, the_admin_pages_refuse_what_they_must);

async fn revocations(api: &Api) -> u64 {
    SandboxOrg::stats(api).await["revocations"].as_u64().unwrap()
}

/// Registers a client at the sandbox (as an admin would in a provider's console).
async fn register_at_sandbox(api: &Api, client_id: &str, secret: &str) {
    api.post(
        "/sandbox/admin/clients",
        None,
        json!({"client_id": client_id, "client_secret": secret, "redirect_uri": format!("{}/oauth/callback", api.base)}),
    )
    .await
    .ok(201);
}

/// An org `acme` with an admin and a member, and nothing configured.
async fn bare_org(api: &Api) -> (User, User) {
    let admin = api.user("admin").await;
    let member = api.user("member").await;
    api.org(&admin, "acme", "public").await;
    api.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&member.access), None).await.ok(200);
    (admin, member)
}

async fn text_of(browser: &Client, id: &str) -> String {
    browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}")).text().await.unwrap_or_default()
}

async fn value_of(browser: &Client, id: &str) -> String {
    browser.find(Locator::Id(id)).await.unwrap().prop("value").await.unwrap().unwrap_or_default()
}

async fn type_into(browser: &Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}"));
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(browser: &Client, id: &str) {
    browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id}: {e}")).click().await.unwrap();
}

/// Clicks `id` (a form's button) and waits for the notice the next page shows.
async fn submit(browser: &Client, id: &str) -> String {
    click(browser, id).await;
    let flash = browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("notice-flash")).await;
    let flash = flash.unwrap_or_else(|_| panic!("no notice after #{id}"));
    flash.text().await.unwrap()
}

/// `(action, actor_id, ip, user_agent, detail)` of an audit event.
type AuditRow = (String, Option<String>, Option<String>, Option<String>, Option<String>);

/// Every page the test saw, to search for the secret at the end.
struct Seen(Vec<String>);

impl Seen {
    async fn page(&mut self, browser: &Client) {
        self.0.push(browser.source().await.unwrap());
    }
}

async fn an_admin_runs_apps_and_connectors_in_the_pages(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let (admin, member) = bare_org(&api).await;
    let client_id = format!("sandbox-client-{}", uuid::Uuid::new_v4().simple());
    let secret = format!("first-secret-{}", uuid::Uuid::new_v4().simple());
    register_at_sandbox(&api, &client_id, &secret).await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;
    let mut seen = Seen(Vec::new());

    // The registry: the redirect URI to register, a console link, a search.
    chrome::sign_in(&browser, &api.base, &admin.email, &admin.password, "/orgs/acme/admin/apps", "redirect-uri").await;
    driver.check_page(&browser, "admin-apps").await;
    seen.page(&browser).await;
    assert_eq!(text_of(&browser, "redirect-uri").await, format!("{}/oauth/callback", api.base));
    assert!(browser.find(Locator::Id("copy-redirect-uri")).await.unwrap().is_displayed().await.unwrap());
    let console = browser.find(Locator::Id("console-github")).await.unwrap();
    assert_eq!(console.attr("href").await.unwrap().as_deref(), Some("https://github.com/settings/developers"));
    assert_eq!(console.attr("target").await.unwrap().as_deref(), Some("_blank"));
    assert_eq!(console.attr("rel").await.unwrap().as_deref(), Some("noopener noreferrer"));
    assert_eq!(text_of(&browser, "status-sandbox").await, "Not configured");
    type_into(&browser, "search", "git").await;
    let github = browser.find(Locator::Id("provider-github")).await.unwrap();
    let sandbox = browser.find(Locator::Id("provider-sandbox")).await.unwrap();
    assert!(github.is_displayed().await.unwrap());
    assert!(!sandbox.is_displayed().await.unwrap(), "the search hides what does not match");
    type_into(&browser, "search", "sand").await;
    assert!(browser.find(Locator::Id("provider-sandbox")).await.unwrap().is_displayed().await.unwrap());

    // Configure the sandbox app: the scopes field suggests what the agent's connector needs.
    click(&browser, "open-sandbox").await;
    assert_eq!(value_of(&browser, "scopes-sandbox").await, "profile items:read");
    type_into(&browser, "client-id-sandbox", &client_id).await;
    type_into(&browser, "client-secret-sandbox", &secret).await;
    let flash = submit(&browser, "configure-sandbox").await;
    assert!(flash.contains("Saved the Sandbox app"), "{flash}");
    driver.check_page(&browser, "admin-apps-configured").await;
    seen.page(&browser).await;
    assert_eq!(text_of(&browser, "status-sandbox").await, "Configured");
    assert_eq!(text_of(&browser, "hint-sandbox").await, &client_id[client_id.len() - 4..]);
    assert_eq!(text_of(&browser, "scopes-shown-sandbox").await, "profile items:read");
    assert!(text_of(&browser, "configured-sandbox").await.contains("by admin"));
    assert_eq!(value_of(&browser, "client-secret-sandbox").await, "", "the secret is never echoed back");

    // Publish a connector with the suggested scopes.
    browser.goto(&format!("{}/orgs/acme/admin/connectors", api.base)).await.unwrap();
    browser.wait().for_element(Locator::Id("publish")).await.unwrap();
    driver.check_page(&browser, "admin-connectors").await;
    seen.page(&browser).await;
    assert_eq!(value_of(&browser, "connector-scopes").await, "profile items:read");
    type_into(&browser, "connector-key", "music").await;
    type_into(&browser, "connector-display-name", "Sandbox Music").await;
    type_into(&browser, "connector-description", "What you listened to").await;
    let flash = submit(&browser, "publish").await;
    assert!(flash.contains("Published the connector music"), "{flash}");
    driver.check_page(&browser, "admin-connectors-published").await;
    seen.page(&browser).await;
    assert_eq!(text_of(&browser, "connector-scopes-music").await, "profile items:read");
    assert_eq!(text_of(&browser, "connector-connections-music").await, "0");
    let listed = api.get("/v1/orgs/acme/connectors", Some(&member.access)).await.ok(200);
    assert_eq!(listed[0]["display_name"], "Sandbox Music");

    // The member connects; then the admin rotates the secret, and a new consent works
    // with the new one (the sandbox checks it).
    let (_, page) = consent(&api, &member, "acme", "music").await;
    assert!(page.status == 200 && page.text.contains("Connected."), "{}", page.text);
    let new_secret = format!("second-secret-{}", uuid::Uuid::new_v4().simple());
    register_at_sandbox(&api, &client_id, &new_secret).await;
    browser.goto(&format!("{}/orgs/acme/admin/apps?q=sandbox", api.base)).await.unwrap();
    browser.wait().for_element(Locator::Id("open-rotate-sandbox")).await.unwrap();
    driver.check_page(&browser, "admin-apps-search").await;
    assert!(browser.find(Locator::Id("provider-github")).await.is_err(), "?q= filters without JS too");
    click(&browser, "open-rotate-sandbox").await;
    type_into(&browser, "rotate-secret-sandbox", &new_secret).await;
    let flash = submit(&browser, "rotate-sandbox").await;
    assert!(flash.contains("Rotated"), "{flash}");
    seen.page(&browser).await;
    assert_eq!(text_of(&browser, "hint-sandbox").await, &client_id[client_id.len() - 4..], "the client id is kept");
    let (_, page) = consent(&api, &member, "acme", "music").await;
    assert!(page.status == 200 && page.text.contains("Connected."), "consent after rotation: {}", page.text);
    let (_, pat) = api.pat(&member, &["connections:token"]).await;
    let ask = json!({"org": "acme", "connector_key": "music"});
    api.post("/oauth/connection-token", Some(&pat), ask.clone()).await.ok(200);

    // Unpublish: the confirmation counts the connection, which is revoked at the provider.
    browser.goto(&format!("{}/orgs/acme/admin/connectors", api.base)).await.unwrap();
    assert_eq!(
        browser.wait().for_element(Locator::Id("connector-connections-music")).await.unwrap().text().await.unwrap(),
        "1"
    );
    click(&browser, "unpublish-music").await;
    browser.wait().for_element(Locator::Id("confirm")).await.unwrap();
    driver.check_page(&browser, "admin-connector-unpublish").await;
    seen.page(&browser).await;
    let consequence = text_of(&browser, "consequence").await;
    assert!(consequence.contains("disconnects 1 connection your members made with it"), "{consequence}");
    let before = revocations(&api).await;
    let flash = submit(&browser, "confirm").await;
    assert!(flash.contains("Unpublished the connector music"), "{flash}");
    seen.page(&browser).await;
    assert_eq!(revocations(&api).await, before + 1, "the member's grant is revoked at the provider");
    api.post("/oauth/connection-token", Some(&pat), ask).await.assert_error(404, "not_found");
    assert!(browser.find(Locator::Id("no-connectors")).await.is_ok());

    // Delete the app: its confirmation counts its connector and connection.
    api.put(
        "/v1/orgs/acme/connectors/sandbox",
        Some(&admin.access),
        json!({"provider": "sandbox", "scopes": ["profile", "items:read"]}),
    )
    .await
    .ok(200);
    let (_, page) = consent(&api, &member, "acme", "sandbox").await;
    assert!(page.text.contains("Connected."), "{}", page.text);
    browser.goto(&format!("{}/orgs/acme/admin/apps", api.base)).await.unwrap();
    browser.wait().for_element(Locator::Id("delete-sandbox")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("confirm")).await.unwrap();
    driver.check_page(&browser, "admin-app-delete").await;
    seen.page(&browser).await;
    let consequence = text_of(&browser, "consequence").await;
    assert!(consequence.contains("disconnects 1 connection your members made with it"), "{consequence}");
    assert!(consequence.contains("leaves 1 connector without an app"), "{consequence}");
    let before = revocations(&api).await;
    let flash = submit(&browser, "confirm").await;
    assert!(flash.contains("Deleted the Sandbox app"), "{flash}");
    seen.page(&browser).await;
    assert_eq!(revocations(&api).await, before + 1, "the grant made with the app is revoked");
    assert_eq!(db.count("select count(*) from connections").await, 0);
    assert_eq!(text_of(&browser, "status-sandbox").await, "Not configured");

    // The secrets are in no page, no answer and no audit event; every change is audited
    // with who, from where and with what.
    let apps = api.get("/v1/orgs/acme/apps", Some(&admin.access)).await;
    seen.0.push(apps.text);
    for html in &seen.0 {
        assert!(!html.contains(&secret) && !html.contains(&new_secret), "a secret in a page");
    }
    let raw = db.raw().await;
    let events: Vec<AuditRow> = sqlx::query_as(
        "select action, actor_id, ip, user_agent, detail from audit_events \
         where action like 'app.%' or action like 'connector.%' order by created_at",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    raw.close().await;
    let actions: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    // Each action done in the pages carries the browser's user agent.
    for action in ["app.put", "connector.put", "connector.delete", "app.delete"] {
        assert!(
            events.iter().any(|e| e.0 == action && e.3.as_deref().is_some_and(|ua| ua.contains("Chrome"))),
            "{action} not audited with the browser's user agent: {actions:?}"
        );
    }
    for (action, actor, ip, _, detail) in &events {
        assert_eq!(actor.as_deref(), Some(admin.id.as_str()), "{action}");
        assert!(ip.as_deref().is_some_and(|ip| !ip.is_empty() && ip != "unknown"), "{action} without an IP");
        let detail = detail.clone().unwrap_or_default();
        assert!(!detail.contains(&secret) && !detail.contains(&new_secret), "a secret in the audit log");
    }
    browser.close().await.unwrap();
}

/// A post from another site's page: the admin's cookie and even a valid token, but a
/// foreign `Origin`.
async fn cross_site(browser: &Browser, base: &str, path: &str, fields: &[(String, String)]) -> latchkey_e2e::Reply {
    Api::read(browser.client.post(format!("{base}{path}")).header("origin", "http://evil.example").form(fields)).await
}

async fn the_admin_pages_refuse_what_they_must(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::with_member_connected(&api).await;

    // The registry and the listing say what the pages need.
    let providers = api.get("/v1/providers", Some(&org.member.access)).await.ok(200);
    let github = providers.as_array().unwrap().iter().find(|p| p["name"] == "github").unwrap();
    assert_eq!(github["console_url"], "https://github.com/settings/developers");
    assert_eq!(github["suggested_scopes"], json!(["read:user", "notifications"]));
    let apps = api.get("/v1/orgs/acme/apps", Some(&org.admin.access)).await.ok(200);
    assert_eq!((apps[0]["connectors"].as_i64(), apps[0]["connections"].as_i64()), (Some(1), Some(1)));
    let as_admin = api.get("/v1/orgs/acme/connectors", Some(&org.admin.access)).await.ok(200);
    assert_eq!(as_admin[0]["connections"], 1);
    let as_member = api.get("/v1/orgs/acme/connectors", Some(&org.member.access)).await.ok(200);
    assert!(as_member[0].get("connections").is_none(), "members do not see the counts");

    // A member gets a 403 page on every admin page and form.
    let member = Browser::new();
    assert!(member.login(&api.base, &org.member).await.status.is_redirection());
    let member_page = member.get(&format!("{}/orgs/acme", api.base)).await;
    let member_token = hidden_fields(&member_page.text);
    for path in [
        "/orgs/acme/admin/apps",
        "/orgs/acme/admin/connectors",
        "/orgs/acme/admin/apps/sandbox/delete",
        "/orgs/acme/admin/connectors/sandbox/unpublish",
    ] {
        member.get(&format!("{}{path}", api.base)).await.assert_page_error(403);
    }
    let evil = form_fields(&member_page.text, &[("client_id", "evil"), ("client_secret", "evil-secret")]);
    member.post_form(&api.base, "/orgs/acme/admin/apps/sandbox", &evil).await.assert_page_error(403);
    member.post_form(&api.base, "/orgs/acme/admin/apps/sandbox/delete", &member_token).await.assert_page_error(403);
    member
        .post_form(&api.base, "/orgs/acme/admin/connectors/sandbox/unpublish", &member_token)
        .await
        .assert_page_error(403);

    // The admin's forms refuse a cross-site post, and change nothing.
    let admin = Browser::new();
    assert!(admin.login(&api.base, &org.admin).await.status.is_redirection());
    let page = admin.get(&format!("{}/orgs/acme/admin/apps", api.base)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(!page.text.contains(&org.client_secret) && !page.text.contains(&org.client_id));
    let with = |filled: &[(&str, &str)]| form_fields(&page.text, filled);
    let before = api.get("/v1/orgs/acme/apps", Some(&org.admin.access)).await.ok(200);
    let connectors_before = api.get("/v1/orgs/acme/connectors", Some(&org.admin.access)).await.ok(200);
    let forms: Vec<(&str, Vec<(String, String)>)> = vec![
        ("/orgs/acme/admin/apps/sandbox", with(&[("client_id", "evil-id"), ("client_secret", "evil"), ("scopes", "")])),
        ("/orgs/acme/admin/apps/github", with(&[("client_id", "evil-id"), ("client_secret", "evil"), ("scopes", "")])),
        ("/orgs/acme/admin/apps/sandbox/rotate", with(&[("client_secret", "evil")])),
        ("/orgs/acme/admin/apps/sandbox/delete", with(&[])),
        (
            "/orgs/acme/admin/connectors",
            with(&[("key", "evil"), ("provider", "sandbox"), ("scopes", "profile"), ("display_name", "x")]),
        ),
        ("/orgs/acme/admin/connectors/sandbox/unpublish", with(&[])),
    ];
    for (path, fields) in &forms {
        cross_site(&admin, &api.base, path, fields).await.assert_page_error(403);
        // Without the form token, even from our origin.
        let no_token: Vec<(String, String)> = fields.iter().filter(|(k, _)| k != "csrf").cloned().collect();
        admin.post_form(&api.base, path, &no_token).await.assert_page_error(403);
    }
    assert_eq!(api.get("/v1/orgs/acme/apps", Some(&org.admin.access)).await.ok(200), before);
    assert_eq!(api.get("/v1/orgs/acme/connectors", Some(&org.admin.access)).await.ok(200), connectors_before);
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    api.post("/oauth/connection-token", Some(&pat), json!({"org": "acme", "connector_key": "sandbox"})).await.ok(200);

    // A scope outside the app's is refused with the reason, by the page and by the API.
    let outside = with(&[("key", "wide"), ("provider", "sandbox"), ("scopes", "profile admin:all")]);
    let refused = admin.post_form(&api.base, "/orgs/acme/admin/connectors", &outside).await;
    let reason = refused.assert_page_error(400);
    assert!(reason.contains("admin:all") && reason.contains("not among the scopes"), "{reason}");
    let refused = api
        .put(
            "/v1/orgs/acme/connectors/wide",
            Some(&org.admin.access),
            json!({"provider": "sandbox", "scopes": ["admin:all"]}),
        )
        .await;
    assert!(refused.assert_error(400, "invalid_request").contains("not among the scopes"));
    // The app's scopes cannot drop one a connector uses.
    api.put("/v1/orgs/acme/apps/sandbox", Some(&org.admin.access), json!({"scopes": ["profile"]}))
        .await
        .assert_error(400, "invalid_request");
    // Publishing needs a configured app.
    let no_app = with(&[("key", "code"), ("provider", "github"), ("scopes", "")]);
    admin.post_form(&api.base, "/orgs/acme/admin/connectors", &no_app).await.assert_page_error(400);
    // Rotating needs a secret; a first app needs both halves.
    admin
        .post_form(&api.base, "/orgs/acme/admin/apps/sandbox/rotate", &with(&[("client_secret", "")]))
        .await
        .assert_page_error(400);
    api.put("/v1/orgs/acme/apps/github", Some(&org.admin.access), json!({"client_secret": "only-a-secret"}))
        .await
        .assert_error(400, "invalid_request");
    admin
        .post_form(&api.base, "/orgs/acme/admin/apps/github/rotate", &with(&[("client_secret", "x")]))
        .await
        .assert_page_error(404);
    assert_eq!(api.get("/v1/orgs/acme/apps", Some(&org.admin.access)).await.ok(200), before);
    assert_eq!(api.get("/v1/orgs/acme/connectors", Some(&org.admin.access)).await.ok(200), connectors_before);

    // Over the API, `{client_secret}` alone rotates: the client id and scopes are kept.
    let rotated = api
        .put("/v1/orgs/acme/apps/sandbox", Some(&org.admin.access), json!({"client_secret": "rotated-secret-1"}))
        .await;
    assert!(!rotated.text.contains("rotated-secret-1"));
    let rotated = rotated.ok(200);
    assert_eq!(rotated["client_id_hint"], before[0]["client_id_hint"]);
    assert_eq!(rotated["scopes"], before[0]["scopes"]);
}
