//! The admin's whole journey through the console in headless Chromium, on both backends:
//! from an empty cloud to a member whose grant is active, and back out again. Nothing here
//! uses the JSON API except what stands in for somebody else: registering the OAuth app at
//! the sandbox provider (the provider's own console), and the agent's side of device
//! pairing (RFC 8628 calls the agent makes). Every page is checked (axe-core, console
//! errors) and photographed; `docs/admin-guide.md` shows the `guide-*` pictures
//! (`UPDATE_GUIDE_IMAGES=1` copies them into `docs/images/`).
//!
//! At the end every form the journey met is posted again from another origin with its own
//! valid token: each is refused with an error page, and the database is unchanged.

use fantoccini::{Client, Locator};
use latchkey_e2e::chrome::{chromedriver, ChromeDriver};
use latchkey_e2e::{backend_tests, hidden_fields, Api, Backend, Cloud, SandboxOrg, TestDb};
use serde_json::json;
use std::time::Duration;

backend_tests!(an_admin_runs_an_org_from_the_console_alone);

const ADMIN: (&str, &str, &str) = ("ada", "ada@example.test", "quartz-meadow-violin-77");
const MEMBER: (&str, &str, &str) = ("bodhi", "bodhi@example.test", "copper-lantern-orchid-31");

struct Journey<'a> {
    driver: &'a ChromeDriver,
    base: String,
    /// Every form met on the way: (page URL, action, method) for the cross-site replay.
    forms: Vec<(String, String)>,
}

impl Journey<'_> {
    async fn open(&mut self, b: &Client, path: &str, ready: &str, shot: &str) {
        b.goto(&format!("{}{path}", self.base)).await.unwrap();
        self.shown(b, ready, shot).await;
    }

    /// Waits for `ready`, checks the page and remembers its forms.
    async fn shown(&mut self, b: &Client, ready: &str, shot: &str) {
        if let Err(e) = b.wait().at_most(Duration::from_secs(15)).for_element(Locator::Id(ready)).await {
            let url = b.current_url().await.map(|u| u.to_string()).unwrap_or_default();
            panic!("{shot}: no #{ready} ({e}) at {url}:\n{}", page_text(b).await);
        }
        self.driver.check_page(b, shot).await;
        let url = b.current_url().await.unwrap().to_string();
        for form in b.find_all(Locator::Css("form[method=post], form[method=POST]")).await.unwrap() {
            let action = form.attr("action").await.unwrap().unwrap_or_default();
            self.forms.push((url.clone(), action));
        }
    }
}

async fn fill(b: &Client, id: &str, text: &str) {
    let field = b.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("no #{id}: {e}"));
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(b: &Client, id: &str) {
    b.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("no #{id}: {e}")).click().await.unwrap();
}

async fn text(b: &Client, id: &str) -> String {
    b.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("no #{id}: {e}")).text().await.unwrap()
}

async fn select(b: &Client, id: &str, value: &str) {
    let field = b.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("no #{id}: {e}"));
    field.select_by_value(value).await.unwrap();
}

/// The page's main text. Just after a click the next document may still be loading and
/// have no `<main>` yet (or lose it while reading), so this waits for one, up to 10 s.
async fn page_text(b: &Client) -> String {
    let mut last = None;
    for _ in 0..100 {
        match b.find(Locator::Css("main")).await {
            Ok(main) => match main.text().await {
                Ok(text) => return text,
                Err(e) => last = Some(e),
            },
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no <main> on the page within 10 s: {last:?}")
}

/// Waits until the page's main text contains `what`.
async fn until_shown(b: &Client, what: &str) {
    for _ in 0..100 {
        if page_text(b).await.contains(what) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the page never showed {what:?}:\n{}", page_text(b).await);
}

async fn sign_up(j: &mut Journey<'_>, b: &Client, (username, email, password): (&str, &str, &str), shot: &str) {
    j.shown(b, "signup-form", shot).await;
    fill(b, "username", username).await;
    fill(b, "email", email).await;
    fill(b, "password", password).await;
    fill(b, "confirm", password).await;
    click(b, "sign-up").await;
}

async fn an_admin_runs_an_org_from_the_console_alone(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let driver = chromedriver().await;
    let mut j = Journey { driver: &driver, base: api.base.clone(), forms: Vec::new() };
    let admin = driver.browser().await;

    // 1. Sign up.
    admin.goto(&format!("{}/signup", api.base)).await.unwrap();
    sign_up(&mut j, &admin, ADMIN, "guide-01-sign-up").await;
    j.shown(&admin, "nav-account", "journey-home").await;
    assert_eq!(text(&admin, "signed-in-as").await, ADMIN.0);

    // 2. A private org.
    j.open(&admin, "/orgs/new", "create", "guide-02-new-org").await;
    fill(&admin, "slug", "acme").await;
    // A name a cookie could not carry as it is: the notice after the redirect still shows it.
    fill(&admin, "name", "Acme Research; Café").await;
    fill(&admin, "description", "The lab's shared data sources").await;
    select(&admin, "visibility", "private").await;
    click(&admin, "create").await;
    j.shown(&admin, "nav-admin-acme", "journey-org-created").await;
    assert!(text(&admin, "notice-flash").await.contains("Created Acme Research; Café."));

    // 3. The managed app. First the provider's side: the admin registers an OAuth app at
    // the sandbox's console with the redirect URI the apps page shows.
    j.open(&admin, "/orgs/acme/admin/apps", "redirect-uri", "guide-03-apps").await;
    let redirect_uri = text(&admin, "redirect-uri").await;
    assert_eq!(redirect_uri, format!("{}/oauth/callback", api.base));
    let client_id = format!("sandbox-client-{}", uuid::Uuid::new_v4().simple());
    let client_secret = format!("sandbox-secret-{}", uuid::Uuid::new_v4().simple());
    api.post(
        "/sandbox/admin/clients",
        None,
        json!({"client_id": client_id, "client_secret": client_secret, "redirect_uri": redirect_uri}),
    )
    .await
    .ok(201);
    click(&admin, "open-sandbox").await;
    fill(&admin, "client-id-sandbox", &client_id).await;
    fill(&admin, "client-secret-sandbox", &client_secret).await;
    click(&admin, "configure-sandbox").await;
    j.shown(&admin, "configured-sandbox", "guide-04-app-configured").await;
    let hint = text(&admin, "hint-sandbox").await;
    assert!(hint.contains(&client_id[client_id.len() - 4..]), "the client id hint: {hint}");
    assert!(!admin.source().await.unwrap().contains(&client_secret), "the apps page shows the secret");

    // 4. A connector.
    j.open(&admin, "/orgs/acme/admin/connectors", "publish-form", "guide-05-connectors").await;
    fill(&admin, "connector-key", "sandbox").await;
    fill(&admin, "connector-display-name", "Sandbox listening history").await;
    fill(&admin, "connector-description", "What you listened to, for the lab's study").await;
    select(&admin, "connector-provider", "sandbox").await;
    fill(&admin, "connector-scopes", "profile items:read").await;
    click(&admin, "publish").await;
    j.shown(&admin, "connector-sandbox", "journey-connector-published").await;

    // 5. Invite the member by link.
    j.open(&admin, "/orgs/acme/admin/members", "invite-form", "guide-06-members").await;
    fill(&admin, "invite-email", MEMBER.1).await;
    click(&admin, "create-invite").await;
    j.shown(&admin, "invite-url", "guide-07-invitation").await;
    let invite_url =
        admin.find(Locator::Id("invite-url")).await.unwrap().prop("value").await.unwrap().unwrap_or_default();
    assert!(invite_url.starts_with(&format!("{}/invite/", api.base)), "{invite_url}");

    // 6. The member opens the link without an account, signs up through it and joins.
    let member = driver.browser().await;
    member.goto(&invite_url).await.unwrap();
    j.shown(&member, "invite-sign-up", "guide-08-invite-signed-out").await;
    click(&member, "invite-sign-up").await;
    sign_up(&mut j, &member, MEMBER, "journey-member-sign-up").await;
    j.shown(&member, "accept-invite", "journey-invite-signed-in").await;
    click(&member, "accept-invite").await;

    // 7. The member connects at the provider (the sandbox asks for approval).
    SandboxOrg::faults(&api, json!({"auto_approve": false})).await;
    j.shown(&member, "connect-sandbox", "guide-09-org-page").await;
    let org_page = member.window().await.unwrap();
    click(&member, "connect-sandbox").await;
    let mut tab = None;
    for _ in 0..50 {
        if let Some(w) = member.windows().await.unwrap().into_iter().find(|w| *w != org_page) {
            tab = Some(w);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    member.switch_to_window(tab.expect("Connect opened a tab")).await.unwrap();
    j.shown(&member, "confirm-connect", "guide-10-connect-confirm").await;
    click(&member, "confirm-connect").await;
    member.wait().for_element(Locator::Id("approve")).await.unwrap().click().await.unwrap();
    member.switch_to_window(org_page).await.unwrap();
    for _ in 0..100 {
        if text(&member, "status-sandbox").await == "Active" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(text(&member, "status-sandbox").await, "Active");
    driver.check_page(&member, "guide-11-connected").await;

    // 8. The member pairs a device: the agent's RFC 8628 calls, the approval in the page.
    let started = Api::read(
        api.client
            .post(format!("{}/oauth/device_authorization", api.base))
            .header("user-agent", "latchkey/1.0 (bos-laptop)")
            .form(&[("client_id", "latchkey-agent")]),
    )
    .await
    .ok(200);
    member.goto(started["verification_uri_complete"].as_str().unwrap()).await.unwrap();
    j.shown(&member, "confirm", "guide-12-device").await;
    click(&member, "confirm").await;
    until_shown(&member, "Approved").await;
    let device = Api::read(api.client.post(format!("{}/oauth/token", api.base)).form(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", started["device_code"].as_str().unwrap()),
        ("client_id", "latchkey-agent"),
    ]))
    .await
    .ok(200);
    let device_pat = device["access_token"].as_str().unwrap().to_owned();
    assert!(device_pat.starts_with("lk_pat_"));
    j.open(&member, "/account/devices", "account-devices", "guide-13-devices").await;
    assert!(page_text(&member).await.contains("bos-laptop"), "the paired device is listed");
    // The contract serves tokens only for connections in public orgs (API.md, row 6):
    // this private org's grant stays in the cloud until the org is made public.
    let ask = json!({"org": "acme", "connector_key": "sandbox"});
    let refused = api
        .client
        .post(format!("{}/oauth/connection-token", api.base))
        .bearer_auth(&device_pat)
        .header("user-agent", "latchkey/1.0 (bos-laptop)")
        .json(&ask);
    Api::read(refused).await.assert_error(404, "not_found");

    // 9. The member makes a PAT in the page; it works once, shown once.
    j.open(&member, "/account/tokens", "token-form", "guide-14-tokens").await;
    fill(&member, "token-name", "notebook").await;
    let token_scope = member.find(Locator::Id("scope_connections_token")).await.unwrap();
    assert!(token_scope.prop("checked").await.unwrap().as_deref() != Some("true"), "connections:token preselected");
    click(&member, "create-token").await;
    j.shown(&member, "created-token", "guide-15-token-created").await;
    let pat = text(&member, "new-token").await;
    assert!(pat.starts_with("lk_pat_"), "{pat}");
    api.get("/v1/me", Some(&pat)).await.ok(200);
    j.open(&member, "/account/tokens", "token-form", "journey-tokens-listed").await;
    assert!(!member.source().await.unwrap().contains(&pat), "the token is shown again");

    // 10. The admin sees the connection and the events.
    j.open(&admin, "/orgs/acme/admin/health", "health", "guide-16-health").await;
    let health = page_text(&admin).await;
    assert!(
        health.contains(MEMBER.0) && health.contains("sandbox") && health.to_lowercase().contains("active"),
        "{health}"
    );
    j.open(&admin, "/orgs/acme/admin/audit", "audit", "guide-17-audit").await;
    let audit = page_text(&admin).await;
    for shown in [ADMIN.0, MEMBER.0, "invitation", "connection"] {
        assert!(audit.contains(shown), "the audit log does not show {shown:?}:\n{audit}");
    }
    // Every admin action carries who, from where, with what.
    let raw = db.raw().await;
    let missing: Vec<String> = sqlx::query_scalar(
        "select action from audit_events where org_id is not null and actor_id is not null \
         and (ip is null or user_agent is null)",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    raw.close().await;
    assert!(missing.is_empty(), "org events without IP or user agent: {missing:?}");

    // 11. The admin removes the member: the grant is revoked at the provider.
    let revocations = || async { SandboxOrg::stats(&api).await["revocations"].as_u64().unwrap() };
    let before = revocations().await;
    j.open(&admin, "/orgs/acme/admin/members", &format!("remove-{}", MEMBER.0), "journey-members-before-removal").await;
    click(&admin, &format!("remove-{}", MEMBER.0)).await;
    admin.wait().for_element(Locator::Id("confirm-remove")).await.unwrap();
    driver.check_page(&admin, "guide-18-remove-member").await;
    click(&admin, "confirm-remove").await;
    until_shown(&admin, "Removed").await;
    assert_eq!(revocations().await, before + 1, "the member's grant was not revoked at the provider");
    let gone = api.get("/v1/orgs/acme/connections", Some(&device_pat)).await;
    gone.assert_error(404, "not_found");

    // Every form met on the way, posted from another origin with its page's own token:
    // an error page, and nothing changes.
    cross_site_posts_are_refused(&j, &admin, &member, &db).await;
    if std::env::var_os("UPDATE_GUIDE_IMAGES").is_some() {
        copy_guide_images();
    }
    admin.close().await.unwrap();
    member.close().await.unwrap();
}

async fn cross_site_posts_are_refused(j: &Journey<'_>, admin: &Client, member: &Client, db: &TestDb) {
    let snapshot = db.snapshot().await;
    let mut checked = 0;
    for (page, action) in &j.forms {
        // The token of whichever browser can open the page; a cookie of the same login.
        for b in [admin, member] {
            let cookie = b.get_named_cookie("latchkey_session").await;
            let Ok(cookie) = cookie else { continue };
            let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
            let cookie = format!("latchkey_session={}", cookie.value());
            let html = client.get(page).header("cookie", &cookie).send().await.unwrap().text().await.unwrap();
            let fields = hidden_fields(&html);
            if !fields.iter().any(|(k, _)| k == "csrf") {
                continue;
            }
            let target = if action.is_empty() { page.clone() } else { format!("{}{action}", j.base) };
            let r = Api::read(
                client.post(&target).header("cookie", &cookie).header("origin", "http://127.0.0.1:1").form(&fields),
            )
            .await;
            if action.is_empty() && r.status == 405 {
                // A dialog's form whose target its script fills in on opening.
                break;
            }
            r.assert_page_error(403);
            checked += 1;
            break;
        }
    }
    assert!(checked >= 8, "only {checked} forms were replayed: {:?}", j.forms);
    assert_eq!(db.snapshot().await, snapshot, "a refused cross-site post changed the database");
}

fn copy_guide_images() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = root.join("screenshots");
    let images = root.join("../docs/images");
    for entry in std::fs::read_dir(&shots).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("guide-") {
            std::fs::copy(entry.path(), images.join(&name)).unwrap();
        }
    }
}
