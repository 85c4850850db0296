//! The console's org pages, for members (the directory, joining and leaving, the org page
//! of a non-member, invite links) and for admins (Settings, Members and invitations), in
//! Chromium for the main flows and over HTTP for the refusals; and the invitations API
//! behind them, single-use under concurrent accepts.

use fantoccini::{Client, Locator};
use latchkey_e2e::chrome::{self, chromedriver, ChromeDriver};
use latchkey_e2e::{backend_tests, hidden_fields, json, Api, Backend, Browser, Cloud, Reply, SandboxOrg, TestDb, User};
use std::time::Duration;

backend_tests!(
    the_directory_shows_public_orgs_and_their_providers_and_joins_and_leaves,
    a_non_member_gets_a_join_page_not_json,
    settings_change_name_description_and_visibility,
    deleting_an_org_needs_its_slug_typed_and_revokes_grants,
    a_member_role_changes_and_removal_revokes_their_grant,
    an_invitation_to_a_private_org_brings_a_new_user_in,
    used_expired_revoked_and_wrong_email_invitations_are_refused,
    the_invitations_api_follows_the_contract,
    an_invitation_is_single_use_under_concurrent_accepts,
    the_public_listing_offers_only_providers_with_a_configured_app,
    every_org_form_refuses_a_cross_site_post
);

// ---------------------------------------------------------------- helpers

async fn sandbox_cloud(backend: Backend) -> (TestDb, Cloud, Api) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    (db, cloud, api)
}

async fn click(browser: &Client, id: &str) {
    browser
        .wait()
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click #{id}: {e}"));
}

async fn wait_for(browser: &Client, id: &str) {
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id} did not appear: {e}"));
}

/// Waits (up to 15 s) until an element's text starts with `prefix`.
async fn wait_for_text(browser: &Client, id: &str, prefix: &str) {
    for _ in 0..150 {
        if let Ok(e) = browser.find(Locator::Id(id)).await {
            if e.text().await.unwrap_or_default().starts_with(prefix) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("#{id} never read {prefix:?}");
}

async fn text_of(browser: &Client, id: &str) -> String {
    browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("no #{id}: {e}")).text().await.unwrap_or_default()
}

async fn has(browser: &Client, id: &str) -> bool {
    browser.find(Locator::Id(id)).await.is_ok()
}

async fn type_into(browser: &Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("no #{id}: {e}"));
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn sign_in(browser: &Client, base: &str, user: &User, next: &str, ready: &str) {
    chrome::sign_in(browser, base, &user.email, &user.password, next, ready).await;
}

/// `check_page` on an error page: the browser logs the page's own 4xx status as a console
/// error, which is expected here; anything else it logged still fails.
async fn check_error_page(driver: &ChromeDriver, browser: &Client, name: &str, status: u16) {
    let logged = driver.console_errors(browser).await;
    let expected = format!("the server responded with a status of {status}");
    assert!(logged.iter().all(|e| e.contains(&expected)), "{name} logged other console errors: {logged:#?}");
    driver.check_page(browser, name).await;
}

async fn revocations(api: &Api) -> u64 {
    SandboxOrg::stats(api).await["revocations"].as_u64().unwrap()
}

/// The form token of a signed-in browser, read from a page.
async fn csrf(browser: &Browser, base: &str) -> Vec<(String, String)> {
    let page = browser.get(&format!("{base}/orgs")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    hidden_fields(&page.text).into_iter().filter(|(k, _)| k == "csrf").collect()
}

fn with(mut fields: Vec<(String, String)>, more: &[(&str, &str)]) -> Vec<(String, String)> {
    fields.extend(more.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    fields
}

async fn role_in(api: &Api, owner: &User, org: &str, user: &User) -> Option<String> {
    let members = api.get(&format!("/v1/orgs/{org}/members"), Some(&owner.access)).await.ok(200);
    members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == user.id.as_str())
        .map(|m| m["role"].as_str().unwrap().to_owned())
}

async fn invite(api: &Api, owner: &User, org: &str, body: serde_json::Value) -> (String, String) {
    let r = api.post(&format!("/v1/orgs/{org}/invitations"), Some(&owner.access), body).await;
    let created = r.ok(201);
    let url = created["url"].as_str().unwrap().to_owned();
    (created["id"].as_str().unwrap().to_owned(), url.rsplit('/').next().unwrap().to_owned())
}

async fn accept(api: &Api, user: &User, token: &str) -> Reply {
    api.send(reqwest::Method::POST, &format!("/v1/invitations/{token}/accept"), Some(&user.access), None).await
}

// ---------------------------------------------------------------- members: the directory

async fn the_directory_shows_public_orgs_and_their_providers_and_joins_and_leaves(backend: Backend) {
    let (_db, _cloud, api) = sandbox_cloud(backend).await;
    let org = SandboxOrg::setup(&api).await;
    api.send(
        reqwest::Method::PATCH,
        "/v1/orgs/acme",
        Some(&org.admin.access),
        Some(json!({"description": "Lumio's music team"})),
    )
    .await
    .ok(200);
    api.org(&org.admin, "hidden", "private").await;
    let newbie = api.user("newbie").await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;

    sign_in(&browser, &api.base, &newbie, "/orgs", "public-orgs").await;
    driver.check_page(&browser, "org-directory").await;
    assert!(has(&browser, "no-orgs").await, "newbie has no orgs yet");
    assert_eq!(text_of(&browser, "providers-acme").await, "Offers: Sandbox");
    let card = text_of(&browser, "public-orgs").await;
    assert!(card.contains("Lumio's music team"), "{card}");
    assert!(!has(&browser, "join-hidden").await, "a private org is not listed");

    click(&browser, "join-acme").await;
    wait_for(&browser, "connect-sandbox").await;
    assert_eq!(text_of(&browser, "notice-flash").await, "You joined acme.");
    driver.check_page(&browser, "org-member-page").await;
    assert_eq!(role_in(&api, &org.admin, "acme", &newbie).await.as_deref(), Some("member"));

    browser.goto(&format!("{}/orgs", api.base)).await.unwrap();
    wait_for(&browser, "my-orgs").await;
    click(&browser, "leave-acme").await;
    wait_for(&browser, "confirm-leave").await;
    driver.check_page(&browser, "org-directory-leave-dialog").await;
    click(&browser, "confirm-leave").await;
    wait_for(&browser, "join-acme").await;
    assert_eq!(text_of(&browser, "notice-flash").await, "You left acme.");
    assert_eq!(role_in(&api, &org.admin, "acme", &newbie).await, None);

    // Creating an org from the directory.
    click(&browser, "create-org").await;
    wait_for(&browser, "slug").await;
    driver.check_page(&browser, "org-new").await;
    type_into(&browser, "slug", "newbies").await;
    type_into(&browser, "name", "Newbies").await;
    type_into(&browser, "description", "Just us").await;
    browser.find(Locator::Id("visibility")).await.unwrap().select_by_value("public").await.unwrap();
    click(&browser, "create").await;
    wait_for(&browser, "leave-open").await;
    let created = api.get("/v1/orgs/newbies", Some(&newbie.access)).await.ok(200);
    assert_eq!((created["role"].as_str(), created["description"].as_str()), (Some("owner"), Some("Just us")));
    browser.close().await.unwrap();
}

async fn a_non_member_gets_a_join_page_not_json(backend: Backend) {
    let (_db, _cloud, api) = sandbox_cloud(backend).await;
    let org = SandboxOrg::setup(&api).await;
    api.org(&org.admin, "hidden", "private").await;
    let outsider = api.user("outsider").await;

    let browser = Browser::new();
    browser.login(&api.base, &outsider).await;
    let page = browser.get(&format!("{}/orgs/acme", api.base)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.header("content-type").unwrap_or_default().starts_with("text/html"));
    assert!(page.text.contains("id=\"join\""), "{}", page.text);
    // A private org does not exist for a non-member.
    browser.get(&format!("{}/orgs/hidden", api.base)).await.assert_page_error(404);

    let driver = chromedriver().await;
    let chrome = driver.browser().await;
    sign_in(&chrome, &api.base, &outsider, "/orgs/acme", "join").await;
    driver.check_page(&chrome, "org-join").await;
    click(&chrome, "join").await;
    wait_for(&chrome, "connect-sandbox").await;
    assert_eq!(role_in(&api, &org.admin, "acme", &outsider).await.as_deref(), Some("member"));
    chrome.close().await.unwrap();
}

// ---------------------------------------------------------------- admins: settings

async fn settings_change_name_description_and_visibility(backend: Backend) {
    let (_db, _cloud, api) = sandbox_cloud(backend).await;
    let org = SandboxOrg::setup(&api).await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;

    sign_in(&browser, &api.base, &org.admin, "/orgs/acme/admin", "settings-form").await;
    driver.check_page(&browser, "org-settings").await;
    type_into(&browser, "name", "Acme Music").await;
    type_into(&browser, "description", "Playlists for the office").await;
    browser.find(Locator::Id("visibility")).await.unwrap().select_by_value("private").await.unwrap();
    click(&browser, "save-settings").await;
    wait_for(&browser, "notice-flash").await;
    assert_eq!(text_of(&browser, "notice-flash").await, "Settings saved.");
    let now = api.get("/v1/orgs/acme", Some(&org.admin.access)).await.ok(200);
    assert_eq!(now["name"], "Acme Music");
    assert_eq!(now["description"], "Playlists for the office");
    assert_eq!(now["visibility"], "private");
    browser.close().await.unwrap();

    // An admin who is not an owner may rename but not change visibility or delete.
    api.put(&format!("/v1/orgs/acme/members/{}", org.member.id), Some(&org.admin.access), json!({"role": "admin"}))
        .await
        .ok(200);
    let admin = Browser::new();
    admin.login(&api.base, &org.member).await;
    let page = admin.get(&format!("{}/orgs/acme/admin", api.base)).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("id=\"delete-owners-only\""), "{}", page.text);
    let token = csrf(&admin, &api.base).await;
    let r = admin
        .post_form(
            &api.base,
            "/orgs/acme/admin",
            &with(token.clone(), &[("name", "Renamed"), ("visibility", "public")]),
        )
        .await;
    r.assert_page_error(403);
    let r = admin.post_form(&api.base, "/orgs/acme/admin", &with(token.clone(), &[("name", "Renamed")])).await;
    assert!(r.status.is_redirection(), "{}", r.text);
    let now = api.get("/v1/orgs/acme", Some(&org.admin.access)).await.ok(200);
    assert_eq!((now["name"].as_str(), now["visibility"].as_str()), (Some("Renamed"), Some("private")));
    admin
        .post_form(&api.base, "/orgs/acme/admin/delete", &with(token, &[("confirm", "acme")]))
        .await
        .assert_page_error(403);
    // A plain member does not get the admin pages.
    let outsider = api.user("plain").await;
    api.send(reqwest::Method::PATCH, "/v1/orgs/acme", Some(&org.admin.access), Some(json!({"visibility": "public"})))
        .await
        .ok(200);
    api.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&outsider.access), None).await.ok(200);
    let plain = Browser::new();
    plain.login(&api.base, &outsider).await;
    plain.get(&format!("{}/orgs/acme/admin", api.base)).await.assert_page_error(403);
    plain.get(&format!("{}/orgs/acme/admin/members", api.base)).await.assert_page_error(403);
}

async fn deleting_an_org_needs_its_slug_typed_and_revokes_grants(backend: Backend) {
    let (db, _cloud, api) = sandbox_cloud(backend).await;
    let org = SandboxOrg::with_member_connected(&api).await;
    let before = revocations(&api).await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;

    sign_in(&browser, &api.base, &org.admin, "/orgs/acme/admin", "delete-form").await;
    type_into(&browser, "confirm-slug", "acne").await;
    click(&browser, "delete-org").await;
    wait_for(&browser, "error-reason").await;
    assert!(text_of(&browser, "error-reason").await.contains("type its slug"));
    check_error_page(&driver, &browser, "org-delete-refused", 400).await;
    api.get("/v1/orgs/acme", Some(&org.admin.access)).await.ok(200);
    assert_eq!(revocations(&api).await, before);

    browser.goto(&format!("{}/orgs/acme/admin", api.base)).await.unwrap();
    wait_for(&browser, "delete-form").await;
    type_into(&browser, "confirm-slug", "acme").await;
    click(&browser, "delete-org").await;
    wait_for(&browser, "notice-flash").await;
    assert_eq!(text_of(&browser, "notice-flash").await, "Deleted acme.");
    driver.check_page(&browser, "org-directory-after-delete").await;
    api.get("/v1/orgs/acme", Some(&org.admin.access)).await.assert_error(404, "not_found");
    assert_eq!(revocations(&api).await, before + 1, "the member's grant is revoked at the provider");
    assert_eq!(db.count("select count(*) from connections").await, 0);
    assert_eq!(db.count("select count(*) from memberships").await, 0);
    browser.close().await.unwrap();

    // The API: owners only.
    let other = api.org(&org.admin, "other", "public").await;
    api.send(reqwest::Method::POST, "/v1/orgs/other/join", Some(&org.member.access), None).await.ok(200);
    api.delete("/v1/orgs/other", Some(&org.member.access)).await.assert_error(403, "forbidden");
    api.delete(&format!("/v1/orgs/{}", other["id"].as_str().unwrap()), Some(&org.admin.access)).await.ok(204);
    api.delete("/v1/orgs/other", Some(&org.admin.access)).await.assert_error(404, "not_found");
}

// ---------------------------------------------------------------- admins: members

async fn a_member_role_changes_and_removal_revokes_their_grant(backend: Backend) {
    let (_db, _cloud, api) = sandbox_cloud(backend).await;
    let org = SandboxOrg::with_member_connected(&api).await;
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    let ask = json!({"org": "acme", "connector_key": "sandbox"});
    api.post("/oauth/connection-token", Some(&pat), ask.clone()).await.ok(200);
    let before = revocations(&api).await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;

    sign_in(&browser, &api.base, &org.admin, "/orgs/acme/admin/members", "members").await;
    driver.check_page(&browser, "org-members").await;
    let row = text_of(&browser, "member-member").await;
    assert!(row.contains("member@example.test"), "{row}");
    browser.find(Locator::Id("role-member")).await.unwrap().select_by_value("admin").await.unwrap();
    click(&browser, "set-role-member").await;
    wait_for(&browser, "notice-flash").await;
    assert_eq!(text_of(&browser, "notice-flash").await, "member is now admin.");
    assert_eq!(role_in(&api, &org.admin, "acme", &org.member).await.as_deref(), Some("admin"));

    click(&browser, "remove-member").await;
    wait_for(&browser, "confirm-remove").await;
    driver.check_page(&browser, "org-members-remove-dialog").await;
    click(&browser, "confirm-remove").await;
    wait_for_text(&browser, "notice-flash", "Removed member").await;
    assert!(!has(&browser, "member-member").await);
    assert_eq!(role_in(&api, &org.admin, "acme", &org.member).await, None);
    assert_eq!(revocations(&api).await, before + 1, "the removed member's grant is revoked at the provider");
    api.post("/oauth/connection-token", Some(&pat), ask).await.assert_error(403, "not_a_member");

    // The last owner cannot remove themselves.
    let admin = Browser::new();
    admin.login(&api.base, &org.admin).await;
    let token = csrf(&admin, &api.base).await;
    let r = admin.post_form(&api.base, &format!("/orgs/acme/admin/members/{}/remove", org.admin.id), &token).await;
    r.assert_page_error(409);
    admin.post_form(&api.base, "/orgs/acme/leave", &token).await.assert_page_error(409);
    browser.close().await.unwrap();
}

// ---------------------------------------------------------------- invitations

async fn an_invitation_to_a_private_org_brings_a_new_user_in(backend: Backend) {
    let (_db, _cloud, api) = sandbox_cloud(backend).await;
    let owner = api.user("owner").await;
    api.org(&owner, "secret", "private").await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;

    sign_in(&browser, &api.base, &owner, "/orgs/secret/admin/members", "invite-form").await;
    driver.check_page(&browser, "org-members-empty").await;
    type_into(&browser, "invite-email", "Newcomer@Example.test").await;
    type_into(&browser, "invite-days", "3").await;
    click(&browser, "create-invite").await;
    wait_for(&browser, "invite-url").await;
    driver.check_page(&browser, "org-invite-created").await;
    let url = browser.find(Locator::Id("invite-url")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert!(url.starts_with(&format!("{}/invite/lk_inv_", api.base)), "{url}");
    // Shown once: the page after it does not carry the link.
    browser.goto(&format!("{}/orgs/secret/admin/members", api.base)).await.unwrap();
    wait_for(&browser, "invitations").await;
    assert!(!browser.source().await.unwrap().contains(url.rsplit('/').next().unwrap()));
    assert!(text_of(&browser, "invitations").await.contains("newcomer@example.test"));
    browser.close().await.unwrap();

    // A fresh browser without an account opens the link.
    let fresh = driver.browser().await;
    fresh.goto(&url).await.unwrap();
    wait_for(&fresh, "invite-sign-in").await;
    driver.check_page(&fresh, "org-invite-signed-out").await;
    assert_eq!(text_of(&fresh, "invite-org").await, "secret");
    assert_eq!(text_of(&fresh, "invite-by").await, "owner");
    assert_eq!(text_of(&fresh, "invite-role").await, "member");
    let sign_up = fresh.find(Locator::Id("invite-sign-up")).await.unwrap().attr("href").await.unwrap().unwrap();
    assert!(sign_up.starts_with("/signup?next=%2Finvite%2Flk_inv_"), "{sign_up}");
    // The sign-up page is built elsewhere: register through the API with the invitation,
    // then follow the invite's Sign in link, which comes back to the invitation.
    let token = url.rsplit('/').next().unwrap();
    let password = "newcomer rides a purple bicycle to the lighthouse";
    api.post(
        "/v1/auth/register",
        None,
        json!({"email": "newcomer@example.test", "username": "newcomer", "password": password, "invitation": token}),
    )
    .await
    .ok(201);
    click(&fresh, "invite-sign-in").await;
    wait_for(&fresh, "email").await;
    type_into(&fresh, "email", "newcomer@example.test").await;
    type_into(&fresh, "password", password).await;
    click(&fresh, "sign-in").await;
    wait_for(&fresh, "accept-invite").await;
    driver.check_page(&fresh, "org-invite").await;
    click(&fresh, "accept-invite").await;
    wait_for(&fresh, "leave-open").await;
    assert_eq!(text_of(&fresh, "notice-flash").await, "You joined secret.");
    assert!(fresh.current_url().await.unwrap().as_str().ends_with("/orgs/secret"));
    driver.check_page(&fresh, "org-page-after-invite").await;

    // Used now: the link shows why it no longer works.
    fresh.goto(&url).await.unwrap();
    wait_for(&fresh, "error-reason").await;
    assert!(text_of(&fresh, "error-reason").await.contains("already been used"));
    check_error_page(&driver, &fresh, "org-invite-used", 409).await;
    fresh.close().await.unwrap();
}

async fn used_expired_revoked_and_wrong_email_invitations_are_refused(backend: Backend) {
    let (db, _cloud, api) = sandbox_cloud(backend).await;
    let owner = api.user("owner").await;
    api.org(&owner, "secret", "private").await;
    let (alice, bob) = (api.user("alice").await, api.user("bob").await);
    let browser = Browser::new();
    browser.login(&api.base, &alice).await;
    let token_fields = csrf(&browser, &api.base).await;
    let page = |token: &str| format!("{}/invite/{token}", api.base);

    // Unknown.
    browser.get(&page("lk_inv_nothing")).await.assert_page_error(404);
    browser.get(&page("garbage")).await.assert_page_error(404);
    accept(&api, &alice, "lk_inv_nothing").await.assert_error(404, "not_found");

    // Used.
    let (_, used) = invite(&api, &owner, "secret", json!({})).await;
    accept(&api, &bob, &used).await.ok(200);
    assert!(browser.get(&page(&used)).await.assert_page_error(409).contains("already been used"));
    browser.post_form(&api.base, &format!("/invite/{used}"), &token_fields).await.assert_page_error(409);
    accept(&api, &alice, &used).await.assert_error(409, "conflict");

    // Revoked.
    let (id, revoked) = invite(&api, &owner, "secret", json!({})).await;
    api.delete(&format!("/v1/orgs/secret/invitations/{id}"), Some(&owner.access)).await.ok(204);
    assert!(browser.get(&page(&revoked)).await.assert_page_error(409).contains("revoked"));
    accept(&api, &alice, &revoked).await.assert_error(409, "conflict");

    // Expired.
    let (id, expired) = invite(&api, &owner, "secret", json!({"expires_in_days": 1})).await;
    let raw = db.raw().await;
    sqlx::query("update invitations set expires_at = 1000 where id = $1").bind(&id).execute(&raw).await.unwrap();
    raw.close().await;
    assert!(browser.get(&page(&expired)).await.assert_page_error(409).contains("expired"));
    accept(&api, &alice, &expired).await.assert_error(409, "conflict");

    // For another email: refused for alice, accepted by bob's account whatever its case.
    let (_, for_bob) = invite(&api, &owner, "secret", json!({"email": "BOB@example.test"})).await;
    let page_for_bob = browser.get(&page(&for_bob)).await;
    assert_eq!(page_for_bob.status, 200, "the page shows; accepting is refused");
    let r = browser.post_form(&api.base, &format!("/invite/{for_bob}"), &token_fields).await;
    assert!(r.assert_page_error(403).contains("another email"));
    accept(&api, &alice, &for_bob).await.assert_error(403, "forbidden");
    assert_eq!(role_in(&api, &owner, "secret", &alice).await, None);
    // Bob is a member already (from the used link): the invitation stays unused for him.
    accept(&api, &bob, &for_bob).await.ok(200);
    let list = api.get("/v1/orgs/secret/invitations", Some(&owner.access)).await.ok(200);
    let statuses: Vec<&str> = list.as_array().unwrap().iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["pending", "expired", "revoked", "accepted"]);

    // A valid one, through the page.
    let (_, fine) = invite(&api, &owner, "secret", json!({})).await;
    let shown = browser.get(&page(&fine)).await;
    assert!(shown.text.contains("id=\"accept-invite\""), "{}", shown.text);
    let r = browser.post_form(&api.base, &format!("/invite/{fine}"), &token_fields).await;
    assert_eq!(r.header("location"), Some("/orgs/secret"), "{}", r.text);
    assert_eq!(role_in(&api, &owner, "secret", &alice).await.as_deref(), Some("member"));

    // Signed out, the page offers sign-in and sign-up that come back here.
    let (_, open) = invite(&api, &owner, "secret", json!({})).await;
    let anonymous = Browser::new().get(&page(&open)).await;
    assert_eq!(anonymous.status, 200);
    // (The template escapes `/` as `&#x2f;`.)
    let sign_in = format!("href=\"&#x2f;login?next=%2Finvite%2F{open}\" id=\"invite-sign-in\"");
    assert!(anonymous.text.contains(&sign_in), "{}", anonymous.text);
}

async fn the_invitations_api_follows_the_contract(backend: Backend) {
    let (db, _cloud, api) = sandbox_cloud(backend).await;
    let owner = api.user("owner").await;
    api.org(&owner, "secret", "private").await;
    let (admin, member, joiner) = (api.user("admin").await, api.user("member").await, api.user("joiner").await);

    let r = api.post("/v1/orgs/secret/invitations", Some(&owner.access), json!({"role": "admin"})).await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let created = r.ok(201);
    let url = created["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/invite/lk_inv_", api.base)), "{url}");
    let token = url.rsplit('/').next().unwrap().to_owned();
    let expires = created["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z'), "{expires}");
    // Only a hash is stored; the listing never carries the token.
    assert_eq!(db.count(&format!("select count(*) from invitations where token_hash = '{token}'")).await, 0);
    let list = api.get("/v1/orgs/secret/invitations", Some(&owner.access)).await;
    assert!(!list.text.contains(&token));
    let list = list.ok(200);
    assert_eq!(list[0]["role"], "admin");
    assert_eq!(list[0]["created_by"], "owner");
    assert_eq!(list[0]["status"], "pending");

    let org = accept(&api, &admin, &token).await.ok(200);
    assert_eq!((org["slug"].as_str(), org["role"].as_str()), (Some("secret"), Some("admin")));

    // An admin invites members, not admins; a member does neither; bad input is refused.
    let (_, for_member) = invite(&api, &admin, "secret", json!({"email": "member@example.test"})).await;
    let post = |who: &User, body: serde_json::Value| {
        let access = who.access.clone();
        let api = api.clone();
        async move { api.post("/v1/orgs/secret/invitations", Some(&access), body).await }
    };
    post(&admin, json!({"role": "admin"})).await.assert_error(403, "forbidden");
    for bad in [
        json!({"role": "owner"}),
        json!({"expires_in_days": 0}),
        json!({"expires_in_days": 31}),
        json!({"email": "not an email"}),
        json!({"surprise": true}),
        json!({"expires_in_days": "soon"}),
    ] {
        post(&owner, bad.clone()).await.assert_error(400, "invalid_request");
    }
    accept(&api, &member, &for_member).await.ok(200);
    post(&member, json!({})).await.assert_error(403, "forbidden");
    api.get("/v1/orgs/secret/invitations", Some(&member.access)).await.assert_error(403, "forbidden");
    // Outsiders do not see a private org.
    post(&joiner, json!({})).await.assert_error(404, "not_found");

    // Revoking: once; unknown ids and other orgs' invitations are 404.
    let (id, _) = invite(&api, &owner, "secret", json!({})).await;
    api.delete(&format!("/v1/orgs/secret/invitations/{id}"), Some(&member.access)).await.assert_error(403, "forbidden");
    api.delete(&format!("/v1/orgs/secret/invitations/{id}"), Some(&admin.access)).await.ok(204);
    api.delete(&format!("/v1/orgs/secret/invitations/{id}"), Some(&admin.access)).await.assert_error(409, "conflict");
    api.delete("/v1/orgs/secret/invitations/nope", Some(&owner.access)).await.assert_error(404, "not_found");
    api.org(&joiner, "mine", "private").await;
    api.delete(&format!("/v1/orgs/mine/invitations/{id}"), Some(&joiner.access)).await.assert_error(404, "not_found");

    // A PAT needs orgs:write to accept.
    let (_, pat) = api.pat(&joiner, &["connections:read"]).await;
    let (_, for_joiner) = invite(&api, &owner, "secret", json!({})).await;
    api.send(reqwest::Method::POST, &format!("/v1/invitations/{for_joiner}/accept"), Some(&pat), None)
        .await
        .assert_error(403, "insufficient_scope");

    // Registration takes an invitation.
    let body = json!({"email": "late@example.test", "username": "late", "password": "late rides a purple bicycle home", "invitation": for_joiner});
    api.post("/v1/auth/register", None, body).await.ok(201);

    // Every change left an audit event with where it came from.
    let audit = api.get("/v1/orgs/secret/audit", Some(&owner.access)).await.ok(200);
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in ["invitation.create", "invitation.accept", "invitation.revoke"] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
    let raw = db.raw().await;
    let missing: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where action like 'invitation.%' and (ip is null or actor_id is null)",
    )
    .fetch_one(&raw)
    .await
    .unwrap();
    raw.close().await;
    assert_eq!(missing, 0);
}

async fn an_invitation_is_single_use_under_concurrent_accepts(backend: Backend) {
    let (db, _cloud, api) = sandbox_cloud(backend).await;
    let owner = api.user("owner").await;
    api.org(&owner, "secret", "private").await;
    let (_, token) = invite(&api, &owner, "secret", json!({})).await;
    let mut users = Vec::new();
    for n in 0..8 {
        users.push(api.user(&format!("racer{n}")).await);
    }
    let answers = futures_util::future::join_all(users.iter().map(|u| accept(&api, u, &token))).await;
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "exactly one accept wins: {:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in answers.iter().filter(|r| r.status != 200) {
        r.assert_error(409, "conflict");
    }
    assert_eq!(db.count("select count(*) from memberships").await, 2, "the owner and one racer");
}

async fn the_public_listing_offers_only_providers_with_a_configured_app(backend: Backend) {
    let (_db, _cloud, api) = sandbox_cloud(backend).await;
    let org = SandboxOrg::setup(&api).await;
    api.send(reqwest::Method::PATCH, "/v1/orgs/acme", Some(&org.admin.access), Some(json!({"description": "Music"})))
        .await
        .ok(200);
    let outsider = api.user("outsider").await;
    let list = api.get("/v1/orgs?public=true", Some(&outsider.access)).await.ok(200);
    let acme = list.as_array().unwrap().iter().find(|o| o["slug"] == "acme").unwrap().clone();
    assert_eq!(acme["description"], "Music");
    assert_eq!(acme["providers"], json!([{"name": "sandbox", "display_name": "Sandbox"}]));
    assert_eq!(acme["role"], serde_json::Value::Null);
    let bad = json!({"description": "x".repeat(501)});
    api.send(reqwest::Method::PATCH, "/v1/orgs/acme", Some(&org.admin.access), Some(bad))
        .await
        .assert_error(400, "invalid_request");

    // The app goes: the provider is no longer offered, and the member's card says why it
    // cannot work.
    api.delete("/v1/orgs/acme/apps/sandbox", Some(&org.admin.access)).await.ok(204);
    let list = api.get("/v1/orgs?public=true", Some(&outsider.access)).await.ok(200);
    let acme = list.as_array().unwrap().iter().find(|o| o["slug"] == "acme").unwrap().clone();
    assert_eq!(acme["providers"], json!([]));
    let driver = chromedriver().await;
    let browser = driver.browser().await;
    sign_in(&browser, &api.base, &org.member, "/orgs/acme", "unavailable-sandbox").await;
    assert!(text_of(&browser, "unavailable-sandbox").await.contains("app was removed"));
    assert!(!browser.find(Locator::Id("connect-sandbox")).await.unwrap().is_enabled().await.unwrap());
    driver.check_page(&browser, "org-page-unavailable-connector").await;
    browser.close().await.unwrap();
}

/// Every org form, posted from another origin or without the form token: a 403 page, and
/// nothing changed.
async fn every_org_form_refuses_a_cross_site_post(backend: Backend) {
    let (db, _cloud, api) = sandbox_cloud(backend).await;
    let org = SandboxOrg::setup(&api).await;
    api.org(&org.admin, "other", "public").await;
    let (invitation_id, token) = invite(&api, &org.admin, "acme", json!({})).await;
    let newbie = api.user("newbie").await;
    let (owner, newcomer) = (Browser::new(), Browser::new());
    owner.login(&api.base, &org.admin).await;
    newcomer.login(&api.base, &newbie).await;
    let owner_token = csrf(&owner, &api.base).await;
    let newcomer_token = csrf(&newcomer, &api.base).await;
    let member = &org.member.id;

    let snapshot = || async {
        let mut counts = Vec::new();
        for table in ["orgs", "memberships", "invitations"] {
            counts.push(db.count(&format!("select count(*) from {table}")).await);
        }
        let raw = db.raw().await;
        let state: (String, String, String) =
            sqlx::query_as("select name, description, visibility from orgs where slug = 'acme'")
                .fetch_one(&raw)
                .await
                .unwrap();
        let roles: Vec<String> =
            sqlx::query_scalar("select role from memberships order by user_id, org_id").fetch_all(&raw).await.unwrap();
        let revoked: i64 = sqlx::query_scalar(
            "select count(*) from invitations where revoked_at is not null or accepted_at is not null",
        )
        .fetch_one(&raw)
        .await
        .unwrap();
        raw.close().await;
        format!("{counts:?} {state:?} {roles:?} {revoked}")
    };
    let before = snapshot().await;

    /// Who posts, with which form token, to where, with which fields.
    type Form<'a> = (&'a Browser, &'a Vec<(String, String)>, String, Vec<(&'a str, &'a str)>);
    let forms: Vec<Form> = vec![
        (
            &newcomer,
            &newcomer_token,
            "/orgs/new".into(),
            vec![("slug", "evil"), ("name", "Evil"), ("visibility", "public")],
        ),
        (&newcomer, &newcomer_token, "/orgs/other/join".into(), vec![]),
        (&owner, &owner_token, "/orgs/other/leave".into(), vec![]),
        (&newcomer, &newcomer_token, format!("/invite/{token}"), vec![]),
        (
            &owner,
            &owner_token,
            "/orgs/acme/admin".into(),
            vec![("name", "Pwned"), ("description", "x"), ("visibility", "private")],
        ),
        (&owner, &owner_token, "/orgs/acme/admin/delete".into(), vec![("confirm", "acme")]),
        (&owner, &owner_token, format!("/orgs/acme/admin/members/{member}/role"), vec![("role", "owner")]),
        (&owner, &owner_token, format!("/orgs/acme/admin/members/{member}/remove"), vec![]),
        (
            &owner,
            &owner_token,
            "/orgs/acme/admin/invitations".into(),
            vec![("email", ""), ("role", "admin"), ("expires_in_days", "7")],
        ),
        (&owner, &owner_token, format!("/orgs/acme/admin/invitations/{invitation_id}/revoke"), vec![]),
    ];
    for (browser, token, path, fields) in forms {
        // From another origin, with the right token.
        let cross = Api::read(
            browser
                .client
                .post(format!("{}{path}", api.base))
                .header("origin", "http://127.0.0.1:1")
                .form(&with(token.clone(), &fields)),
        )
        .await;
        cross.assert_page_error(403);
        // From our origin, without the token.
        let fields: Vec<(String, String)> = fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        browser.post_form(&api.base, &path, &fields).await.assert_page_error(403);
        assert_eq!(snapshot().await, before, "{path} changed something");
    }
}
