//! The console's account area: sign-up (and closed registration), password change,
//! sessions, personal access tokens, paired devices and the member's own activity; the
//! cross-site posts every form must refuse; and stale sessions (revoked, expired, a
//! restarted cloud) that land on sign-in and come back to the page they wanted.

use fantoccini::{Client, Locator};
use latchkey_e2e::chrome::{self, chromedriver};
use latchkey_e2e::{
    backend_tests, form_fields, hidden_fields, json, Api, Backend, Browser, Cloud, SandboxOrg, TestDb, User,
};
use std::time::Duration;

backend_tests!(
    closed_registration_is_refused_on_the_page_and_the_api,
    signing_up_over_http_signs_in_and_refuses_bad_input,
    a_password_change_signs_out_every_other_session,
    sessions_list_their_device_and_sign_out_everywhere_ends_them_all,
    tokens_devices_and_activity_through_the_pages,
    cross_site_posts_to_the_account_forms_change_nothing,
);

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.count(sql).await
}

/// The text at the start of the element `id="…"` (up to its first tag).
fn text_by_id<'a>(html: &'a str, id: &str) -> Option<&'a str> {
    let rest = html.split(&format!("id=\"{id}\"")).nth(1)?;
    rest.split_once('>').and_then(|(_, r)| r.split('<').next())
}

/// Whether a page answer is a redirect to sign-in.
fn to_sign_in(reply: &latchkey_e2e::Reply) -> bool {
    reply.status.is_redirection() && reply.header("location").is_some_and(|l| l.starts_with("/login"))
}

async fn closed_registration_is_refused_on_the_page_and_the_api(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.open_registration = false).await;
    let api = cloud.api();
    let refused = api
        .post(
            "/v1/auth/register",
            None,
            json!({"email": "eve@example.test", "username": "eve", "password": "eve rides a purple bicycle home"}),
        )
        .await;
    let why = refused.assert_error(403, "forbidden");
    assert!(why.contains("invitation"), "{why}");

    let browser = Browser::new();
    let page = browser.get(&format!("{}/signup", api.base)).await;
    assert!(page.assert_page_error(403).contains("invitation"));
    let fields: Vec<(String, String)> = [
        ("username", "eve"),
        ("email", "eve@example.test"),
        ("password", "eve rides a purple bicycle home"),
        ("confirm", "eve rides a purple bicycle home"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    browser.post_form(&api.base, "/signup", &fields).await.assert_page_error(403);
    // The sign-in page offers no sign-up.
    let login = browser.get(&format!("{}/login", api.base)).await;
    assert_eq!(login.status, 200);
    assert!(!login.text.contains("/signup"), "sign-in offers sign-up while registration is closed");
    assert_eq!(count(&db, "select count(*) from users").await, 0);

    // Open (the default): offered.
    drop(cloud);
    let open = Cloud::start(&db).await;
    let login = browser.get(&format!("{}/login?next=%2Faccount", open.base)).await;
    assert!(login.text.contains("href=\"/signup?next=%2Faccount\""), "{}", login.text);
}

fn signup_fields(page: &str, username: &str, password: &str, confirm: &str) -> Vec<(String, String)> {
    let email = format!("{username}@example.test");
    form_fields(page, &[("username", username), ("email", &email), ("password", password), ("confirm", confirm)])
}

async fn signing_up_over_http_signs_in_and_refuses_bad_input(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let base = cloud.base.clone();
    let browser = Browser::new();
    let page = browser.get(&format!("{base}/signup?next=%2Faccount%2Ftokens%3Fx%3D1")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("At least 10 characters"), "the rules are shown before typing");

    // Mismatch, weak password, bad username: the form again with the reason; no account.
    let strong = "otters juggle seventeen lanterns quietly";
    let mismatch = browser.post_form(&base, "/signup", &signup_fields(&page.text, "newbie", strong, "other")).await;
    assert_eq!(mismatch.status, 400);
    assert!(text_by_id(&mismatch.text, "error").is_some_and(|e| e.contains("differ")), "{}", mismatch.text);
    let weak =
        browser.post_form(&base, "/signup", &signup_fields(&page.text, "newbie", "password123", "password123")).await;
    assert_eq!(weak.status, 400);
    assert!(text_by_id(&weak.text, "error").is_some_and(|e| e.starts_with("password:")), "{}", weak.text);
    assert!(!weak.text.contains("password123"), "a refused password is never echoed back");
    let bad = browser.post_form(&base, "/signup", &signup_fields(&page.text, "no way!", strong, strong)).await;
    assert_eq!(bad.status, 400);
    assert_eq!(count(&db, "select count(*) from users").await, 0);

    // Good: signed in, and on to `next` (with its query string).
    let done = browser.post_form(&base, "/signup", &signup_fields(&page.text, "newbie", strong, strong)).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert_eq!(done.header("location"), Some("/account/tokens?x=1"));
    let account = browser.get(&format!("{base}/account")).await;
    assert_eq!(account.status, 200, "{}", account.text);
    assert_eq!(text_by_id(&account.text, "signed-in-as"), Some("newbie"));
    assert_eq!(
        count(&db, "select count(*) from audit_events where action = 'account.register' and ip is not null").await,
        1
    );

    // The same username again: refused with the reason.
    let again = Browser::new();
    let page = again.get(&format!("{base}/signup")).await;
    let taken = again.post_form(&base, "/signup", &signup_fields(&page.text, "newbie", strong, strong)).await;
    assert_eq!(taken.status, 400);
    // No token, or another site's `next`: refused / sent home.
    let no_token: Vec<(String, String)> =
        signup_fields(&page.text, "other", strong, strong).into_iter().filter(|(k, _)| k != "csrf").collect();
    again.post_form(&base, "/signup", &no_token).await.assert_page_error(403);
    let mut evil = signup_fields(&page.text, "other", strong, strong);
    evil.retain(|(k, _)| k != "next");
    evil.push(("next".into(), "//evil.test/".into()));
    let home = again.post_form(&base, "/signup", &evil).await;
    assert_eq!(home.header("location"), Some("/"), "{}", home.text);
}

async fn a_password_change_signs_out_every_other_session(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let base = api.base.clone();
    let alice = api.user("alice").await;
    let (_, pat) = api.pat(&alice, &["connections:read"]).await;
    let here = Browser::new();
    here.login(&base, &alice).await;
    let elsewhere = Browser::new();
    elsewhere.login(&base, &alice).await;

    let page = here.get(&format!("{base}/account")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let new = "seven quiet herons fold paper boats";
    let post = |current: &str, password: &str, confirm: &str| {
        form_fields(&page.text, &[("current_password", current), ("password", password), ("confirm", confirm)])
    };
    // Refusals change nothing.
    here.post_form(&base, "/account/password", &post(&alice.password, new, "different")).await.assert_page_error(400);
    let wrong = here.post_form(&base, "/account/password", &post("not my password", new, new)).await;
    assert!(wrong.assert_page_error(400).contains("current"));
    here.post_form(&base, "/account/password", &post(&alice.password, "password1", "password1"))
        .await
        .assert_page_error(400);
    assert_eq!(elsewhere.get(&format!("{base}/account")).await.status, 200);
    // A PAT may not change the password.
    api.post("/v1/me/password", Some(&pat), json!({"current_password": alice.password, "new_password": new}))
        .await
        .assert_error(403, "forbidden");

    let done = here.post_form(&base, "/account/password", &post(&alice.password, new, new)).await;
    assert_eq!(done.status, 303, "{}", done.text);
    let shown = here.get(&format!("{base}/account")).await;
    let notice = text_by_id(&shown.text, "notice-flash").unwrap_or_default().to_owned();
    assert!(notice.contains("Password changed") && notice.contains("2 other sessions"), "{notice}");
    // The other browser and the API login are signed out; this one and the PAT are not.
    assert!(to_sign_in(&elsewhere.get(&format!("{base}/account")).await));
    api.get("/v1/me", Some(&alice.access)).await.assert_error(401, "invalid_token");
    api.get("/v1/me", Some(&pat)).await.ok(200);
    assert_eq!(here.get(&format!("{base}/account")).await.status, 200);
    api.post("/v1/auth/login", None, json!({"email": alice.email, "password": alice.password}))
        .await
        .assert_error(401, "invalid_grant");
    let login = api.post("/v1/auth/login", None, json!({"email": alice.email, "password": new})).await.ok(200);
    let access = login["access_token"].as_str().unwrap();
    assert_eq!(
        count(&db, "select count(*) from audit_events where action = 'account.password_change' and outcome = 'success' and ip is not null").await,
        1
    );

    // The JSON API: the same rules.
    api.post("/v1/me/password", Some(access), json!({"current_password": "nope", "new_password": alice.password}))
        .await
        .assert_error(400, "invalid_grant");
    api.post("/v1/me/password", Some(access), json!({"current_password": new, "new_password": "short"}))
        .await
        .assert_error(400, "weak_password");
    api.post("/v1/me/password", Some(access), json!({"current_password": new}))
        .await
        .assert_error(400, "invalid_request");
    let changed = api
        .post("/v1/me/password", Some(access), json!({"current_password": new, "new_password": alice.password}))
        .await
        .ok(200);
    assert_eq!(changed["sessions_revoked"], 1, "this browser's login: {changed}");
    assert!(to_sign_in(&here.get(&format!("{base}/account")).await));
    api.get("/v1/me", Some(access)).await.ok(200);
}

async fn sessions_list_their_device_and_sign_out_everywhere_ends_them_all(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let base = api.base.clone();
    let bob = api.user("bob").await;
    let chrome_ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
    let laptop = Browser {
        client: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(chrome_ua)
            .build()
            .unwrap(),
    };
    laptop.login(&base, &bob).await;
    let phone = Browser::new();
    phone.login(&base, &bob).await;

    let list = api.get("/v1/sessions", Some(&bob.access)).await.ok(200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().any(|s| s["device"] == "Chrome on Linux"), "{list:?}");
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);

    // The page: every session, which one is this browser, and a button each.
    let page = laptop.get(&format!("{base}/account/sessions")).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("Chrome on Linux") && page.text.contains("id=\"this-browser\""), "{}", page.text);
    let phone_session = list
        .iter()
        .find(|s| s["current"] == false && s["device"] != "Chrome on Linux")
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .unwrap();
    // Revoking one from the page ends that browser's login, and only that one.
    let revoked =
        laptop.post_form(&base, &format!("/account/sessions/{phone_session}/revoke"), &hidden_fields(&page.text)).await;
    assert_eq!(revoked.status, 303, "{}", revoked.text);
    assert!(to_sign_in(&phone.get(&format!("{base}/account")).await));
    assert_eq!(laptop.get(&format!("{base}/account")).await.status, 200);
    // Someone else's session, or a made-up id: not found, nothing changes.
    laptop.post_form(&base, "/account/sessions/nope/revoke", &hidden_fields(&page.text)).await.assert_page_error(404);
    api.delete("/v1/sessions/nope", Some(&bob.access)).await.assert_error(404, "not_found");

    // Sign out everywhere from the page: every login ends, this browser's too.
    let everywhere = laptop.post_form(&base, "/account/sessions/revoke-all", &hidden_fields(&page.text)).await;
    assert!(to_sign_in(&everywhere), "{:?}", everywhere.headers);
    assert!(to_sign_in(&laptop.get(&format!("{base}/account")).await));
    api.get("/v1/me", Some(&bob.access)).await.assert_error(401, "invalid_token");
    // The API does the same (with a PAT it is refused).
    let login = api.post("/v1/auth/login", None, json!({"email": bob.email, "password": bob.password})).await.ok(200);
    let access = login["access_token"].as_str().unwrap();
    let (_, pat) = api.pat(&User { access: access.to_owned(), ..bob.clone() }, &["connections:read"]).await;
    api.delete("/v1/sessions", Some(&pat)).await.assert_error(403, "forbidden");
    let all = api.delete("/v1/sessions", Some(access)).await.ok(200);
    assert_eq!(all["sessions_revoked"], 1);
    api.get("/v1/me", Some(access)).await.assert_error(401, "invalid_token");
    assert!(
        count(&db, "select count(*) from audit_events where action = 'session.revoke_all' and ip is not null").await
            == 2
    );
    assert_eq!(
        count(&db, "select count(*) from audit_events where action = 'session.revoke' and ip is not null").await,
        1
    );
}

/// Pairs a device for `user` as `latchkey login` does; returns its PAT.
pub async fn pair_device(api: &Api, user: &User, machine: &str) -> String {
    let started = Api::read(
        api.client
            .post(format!("{}/oauth/device_authorization", api.base))
            .header("user-agent", format!("latchkey/9.9.9 ({machine})"))
            .form(&[("client_id", "latchkey-agent")]),
    )
    .await
    .ok(200);
    api.post("/v1/devices/approve", Some(&user.access), json!({"user_code": started["user_code"]})).await.ok(204);
    let token = Api::read(api.client.post(format!("{}/oauth/token", api.base)).form(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", started["device_code"].as_str().unwrap()),
        ("client_id", "latchkey-agent"),
    ]))
    .await
    .ok(200);
    token["access_token"].as_str().unwrap().to_owned()
}

/// The token a tokens page shows once.
fn shown_token(html: &str) -> String {
    text_by_id(html, "new-token").expect("the new token is shown").trim().to_owned()
}

async fn tokens_devices_and_activity_through_the_pages(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let base = api.base.clone();
    let org = SandboxOrg::with_member_connected(&api).await;
    let member = Browser::new();
    member.login(&base, &org.member).await;

    // The form: `connections:token` is offered but never preselected.
    let page = member.get(&format!("{base}/account/tokens")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("id=\"scope_connections_token\" name=\"scope_connections_token\">"), "unchecked");
    assert!(page.text.contains("id=\"scope_connections_read\" name=\"scope_connections_read\" checked>"));
    assert!(page.text.contains("<option value=\"acme\">"));
    let fields = |extra: &[(&str, &str)]| form_fields(&page.text, extra);
    // Refusals: no scope, a bad expiry, an org the member is not in.
    let none = member.post_form(&base, "/account/tokens", &fields(&[("name", "x"), ("expires_in_days", "")])).await;
    assert_eq!(none.status, 400);
    let bad = member
        .post_form(
            &base,
            "/account/tokens",
            &fields(&[("name", "x"), ("scope_connections_read", "on"), ("expires_in_days", "0")]),
        )
        .await;
    assert_eq!(bad.status, 400);
    member
        .post_form(
            &base,
            "/account/tokens",
            &fields(&[("name", "x"), ("scope_connections_read", "on"), ("org", "nowhere")]),
        )
        .await
        .assert_page_error(404);
    assert_eq!(count(&db, "select count(*) from pats").await, 0);

    let created = member
        .post_form(
            &base,
            "/account/tokens",
            &fields(&[
                ("name", "ci box"),
                ("scope_connections_read", "on"),
                ("scope_connections_token", "on"),
                ("org", "acme"),
                ("expires_in_days", "30"),
            ]),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let token = shown_token(&created.text);
    assert!(token.starts_with("lk_pat_"), "{token}");
    assert_eq!(created.header("cache-control"), Some("no-store"));
    api.get("/v1/me", Some(&token)).await.ok(200);
    api.post("/oauth/connection-token", Some(&token), json!({"org": "acme", "connector_key": "sandbox"})).await.ok(200);
    // Listed with its org and last use, never the token again.
    let listed = member.get(&format!("{base}/account/tokens")).await;
    assert!(listed.text.contains("ci box") && listed.text.contains("<td>acme</td>"), "{}", listed.text);
    assert!(!listed.text.contains(&token), "the token is shown once only");
    assert!(listed.text.contains("from 127.0.0.1"), "last used from: {}", listed.text);

    // A paired device, used, then unpaired in the page: its PAT ends at once.
    let device = pair_device(&api, &org.member, "build-server").await;
    api.post("/oauth/connection-token", Some(&device), json!({"org": "acme", "connector_key": "sandbox"}))
        .await
        .ok(200);
    let devices = member.get(&format!("{base}/account/devices")).await;
    assert!(devices.text.contains("build-server") && devices.text.contains("127.0.0.1"), "{}", devices.text);
    let listing = api.get("/v1/devices", Some(&org.member.access)).await.ok(200);
    let device_id = listing[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listing[0]["last_used_ip"], "127.0.0.1");
    assert_eq!(listing[0]["paired_ip"], "127.0.0.1");

    // Activity: which token or device fetched which connection's token, from where.
    let activity = member.get(&format!("{base}/account/activity")).await;
    assert_eq!(activity.status, 200);
    assert!(
        activity.text.contains("fetched a connection&#x27;s token")
            || activity.text.contains("fetched a connection's token")
    );
    assert!(activity.text.contains("token “ci box”"), "{}", activity.text);
    assert!(activity.text.contains("build-server"), "{}", activity.text);
    assert!(activity.text.contains("<td>acme</td>") && activity.text.contains("<code>sandbox</code>"));
    // Paging: one event per page through the API's cursor.
    let first = api.get("/v1/me/audit?limit=1", Some(&org.member.access)).await.ok(200);
    let cursor = first[0]["id"].as_str().unwrap();
    let second = api.get(&format!("/v1/me/audit?limit=1&before={cursor}"), Some(&org.member.access)).await.ok(200);
    assert_ne!(second[0]["id"], first[0]["id"]);
    assert!(second[0]["created_at"].as_str() <= first[0]["created_at"].as_str());

    let unpaired =
        member.post_form(&base, &format!("/account/devices/{device_id}/unpair"), &hidden_fields(&devices.text)).await;
    assert_eq!(unpaired.status, 303, "{}", unpaired.text);
    api.get("/v1/me", Some(&device)).await.assert_error(401, "invalid_token");

    // Revoke the token in the page: 401 from then on.
    let pat_id = api.get("/v1/tokens", Some(&org.member.access)).await.ok(200)[0]["id"].as_str().unwrap().to_owned();
    let revoked =
        member.post_form(&base, &format!("/account/tokens/{pat_id}/revoke"), &hidden_fields(&listed.text)).await;
    assert_eq!(revoked.status, 303, "{}", revoked.text);
    api.get("/v1/me", Some(&token)).await.assert_error(401, "invalid_token");
    for action in ["pat.create", "pat.revoke", "device.revoke"] {
        let n = count(&db, &format!("select count(*) from audit_events where action = '{action}' and ip is not null"))
            .await;
        assert_eq!(n, 1, "{action}");
    }
}

async fn cross_site_posts_to_the_account_forms_change_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let base = api.base.clone();
    let carol = api.user("carol").await;
    let (pat_id, pat) = api.pat(&carol, &["connections:read"]).await;
    let device = pair_device(&api, &carol, "laptop").await;
    let device_id = api.get("/v1/devices", Some(&carol.access)).await.ok(200)[0]["id"].as_str().unwrap().to_owned();
    let session_id = api.get("/v1/sessions", Some(&carol.access)).await.ok(200)[0]["id"].as_str().unwrap().to_owned();
    let victim = Browser::new();
    victim.login(&base, &carol).await;
    let page = victim.get(&format!("{base}/account")).await;
    let csrf = hidden_fields(&page.text);
    let strong = "nine brave walruses sing at dawn";

    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/account/password".into(),
            vec![("current_password", carol.password.as_str()), ("password", strong), ("confirm", strong)],
        ),
        (format!("/account/sessions/{session_id}/revoke"), vec![]),
        ("/account/sessions/revoke-all".into(), vec![]),
        ("/account/tokens".into(), vec![("name", "evil"), ("scope_connections_token", "on")]),
        (format!("/account/tokens/{pat_id}/revoke"), vec![]),
        (format!("/account/devices/{device_id}/unpair"), vec![]),
    ];
    let evil = "http://127.0.0.1:1";
    for (path, extra) in &forms {
        let mut with_token = csrf.clone();
        with_token.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        // Another site's page, even with a stolen token: refused.
        let cross =
            Api::read(victim.client.post(format!("{base}{path}")).header("origin", evil).form(&with_token)).await;
        cross.assert_page_error(403);
        // Our origin but no token: refused.
        let without: Vec<(String, String)> = with_token.iter().filter(|(k, _)| k != "csrf").cloned().collect();
        victim.post_form(&base, path, &without).await.assert_page_error(403);
    }
    // The sign-up form from another site.
    let anon = Browser::new();
    let signup = anon.get(&format!("{base}/signup")).await;
    let fields = form_fields(
        &signup.text,
        &[("username", "mallory"), ("email", "m@example.test"), ("password", strong), ("confirm", strong)],
    );
    Api::read(anon.client.post(format!("{base}/signup")).header("origin", evil).form(&fields))
        .await
        .assert_page_error(403);

    // Nothing changed.
    api.get("/v1/me", Some(&carol.access)).await.ok(200);
    api.get("/v1/me", Some(&pat)).await.ok(200);
    api.get("/v1/me", Some(&device)).await.ok(200);
    assert_eq!(victim.get(&format!("{base}/account")).await.status, 200);
    assert_eq!(count(&db, "select count(*) from pats").await, 2);
    assert_eq!(count(&db, "select count(*) from users").await, 1);
    api.post("/v1/auth/login", None, json!({"email": carol.email, "password": carol.password})).await.ok(200);
}

// ---- Chromium ----

async fn text_of(browser: &Client, id: &str) -> String {
    browser.find(Locator::Id(id)).await.unwrap().text().await.unwrap_or_default()
}

async fn path_of(browser: &Client) -> String {
    let url = browser.current_url().await.unwrap();
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

async fn type_into(browser: &Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

async fn click(browser: &Client, id: &str) {
    browser.find(Locator::Id(id)).await.unwrap().click().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_up_in_chromium_lands_signed_in() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start(&db).await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;
    browser.goto(&format!("{}/login?next=%2Faccount", cloud.base)).await.unwrap();
    driver.check_page(&browser, "account-sign-in").await;
    click(&browser, "to-sign-up").await;
    browser.wait().for_element(Locator::Id("sign-up")).await.unwrap();
    assert!(text_of(&browser, "password-rules").await.contains("At least 10 characters"));
    driver.check_page(&browser, "account-sign-up").await;
    type_into(&browser, "username", "dora").await;
    type_into(&browser, "email", "dora@example.test").await;
    type_into(&browser, "password", "abc").await;
    assert!(text_of(&browser, "strength").await.contains("Too short"));
    type_into(&browser, "password", "marble giraffes whisper over the harbour").await;
    assert!(text_of(&browser, "strength").await.contains("strong"), "{}", text_of(&browser, "strength").await);
    type_into(&browser, "confirm", "marble giraffes").await;
    assert!(text_of(&browser, "confirm-note").await.contains("differ"));
    type_into(&browser, "confirm", "marble giraffes whisper over the harbour").await;
    driver.check_page(&browser, "account-sign-up-filled").await;
    click(&browser, "sign-up").await;
    browser.wait().for_element(Locator::Id("profile-username")).await.unwrap();
    assert_eq!(path_of(&browser).await, "/account");
    assert_eq!(text_of(&browser, "signed-in-as").await, "dora");
    driver.check_page(&browser, "account-profile").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_pages_in_chromium() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::with_member_connected(&api).await;
    let other = Browser {
        client: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0")
            .build()
            .unwrap(),
    };
    other.login(&api.base, &org.member).await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;
    chrome::sign_in(&browser, &api.base, &org.member.email, &org.member.password, "/account/sessions", "sessions")
        .await;
    driver.check_page(&browser, "account-sessions").await;
    assert!(text_of(&browser, "this-browser").await.contains("this browser"));
    assert!(text_of(&browser, "sessions").await.contains("Firefox on Windows"));

    // Revoke the other browser's session from the page: its login ends.
    let sessions = api.get("/v1/sessions", Some(&org.member.access)).await.ok(200);
    let other_id = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["device"] == "Firefox on Windows")
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .unwrap();
    assert_eq!(other.get(&format!("{}/account", api.base)).await.status, 200);
    click(&browser, &format!("revoke-{other_id}")).await;
    browser.wait().for_element(Locator::Id("notice-flash")).await.unwrap();
    assert!(to_sign_in(&other.get(&format!("{}/account", api.base)).await));

    // Tokens: create with connections:token ticked by hand, see it once, copy, use it.
    browser.goto(&format!("{}/account/tokens", api.base)).await.unwrap();
    driver.check_page(&browser, "account-tokens").await;
    assert!(!browser.find(Locator::Id("scope_connections_token")).await.unwrap().is_selected().await.unwrap());
    type_into(&browser, "token-name", "laptop script").await;
    click(&browser, "scope_connections_token").await;
    click(&browser, "create-token").await;
    browser.wait().for_element(Locator::Id("new-token")).await.unwrap();
    driver.check_page(&browser, "account-token-created").await;
    let token = text_of(&browser, "new-token").await.trim().to_owned();
    api.get("/v1/me", Some(&token)).await.ok(200);
    api.post("/oauth/connection-token", Some(&token), json!({"org": "acme", "connector_key": "sandbox"})).await.ok(200);
    click(&browser, "copy-token").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!text_of(&browser, "copy-status").await.is_empty());

    // Activity shows the fetch by name.
    browser.goto(&format!("{}/account/activity", api.base)).await.unwrap();
    let table = text_of(&browser, "activity").await;
    assert!(table.contains("token “laptop script”") && table.contains("sandbox") && table.contains("acme"), "{table}");
    driver.check_page(&browser, "account-activity").await;

    // Devices: pair one, see it, unpair it (confirming), its PAT ends.
    let device = pair_device(&api, &org.member, "workstation").await;
    browser.goto(&format!("{}/account/devices", api.base)).await.unwrap();
    driver.check_page(&browser, "account-devices").await;
    let id = api.get("/v1/devices", Some(&org.member.access)).await.ok(200)[0]["id"].as_str().unwrap().to_owned();
    click(&browser, &format!("unpair-{id}")).await;
    browser.accept_alert().await.unwrap();
    browser.wait().for_element(Locator::Id("no-devices")).await.unwrap();
    api.get("/v1/me", Some(&device)).await.assert_error(401, "invalid_token");

    // Revoke the PAT from its page (confirming): 401 from then on.
    browser.goto(&format!("{}/account/tokens", api.base)).await.unwrap();
    let pat_id = api.get("/v1/tokens", Some(&org.member.access)).await.ok(200)[0]["id"].as_str().unwrap().to_owned();
    click(&browser, &format!("revoke-{pat_id}")).await;
    browser.accept_alert().await.unwrap();
    browser.wait().for_element(Locator::Id("no-tokens")).await.unwrap();
    api.get("/v1/me", Some(&token)).await.assert_error(401, "invalid_token");

    // The profile page: change the password in the page.
    browser.goto(&format!("{}/account", api.base)).await.unwrap();
    driver.check_page(&browser, "account-password").await;
    let new = "velvet comets hum beneath old bridges";
    type_into(&browser, "current-password", &org.member.password).await;
    type_into(&browser, "password", new).await;
    type_into(&browser, "confirm", new).await;
    click(&browser, "change-password").await;
    browser.wait().for_element(Locator::Id("notice-flash")).await.unwrap();
    assert!(text_of(&browser, "notice-flash").await.contains("other session"));
    driver.check_page(&browser, "account-password-changed").await;
    api.get("/v1/me", Some(&org.member.access)).await.assert_error(401, "invalid_token");
}

/// Starts pairing, for a real `/device?user_code=…` to come back to.
async fn pending_code(api: &Api) -> String {
    let started = Api::read(
        api.client.post(format!("{}/oauth/device_authorization", api.base)).form(&[("client_id", "latchkey-agent")]),
    )
    .await
    .ok(200);
    started["user_code"].as_str().unwrap().to_owned()
}

/// Opens `wanted` with a dead session: sign-in first, then back to `wanted`.
async fn comes_back_after_sign_in(browser: &Client, base: &str, user: &User, wanted: &str) {
    browser.goto(&format!("{base}{wanted}")).await.unwrap();
    browser.wait().for_element(Locator::Id("sign-in")).await.unwrap();
    assert!(path_of(browser).await.starts_with("/login?next="), "{}", path_of(browser).await);
    type_into(browser, "email", &user.email).await;
    type_into(browser, "password", &user.password).await;
    click(browser, "sign-in").await;
    browser.wait().for_element(Locator::Id("signed-in-as")).await.unwrap();
    assert_eq!(path_of(browser).await, wanted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_sessions_land_on_sign_in_and_come_back() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start_with(&db, |c| c.session_secs = Some(4)).await;
    let api = cloud.api();
    let user = api.user("erin").await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;

    // Revoked elsewhere (from the API, as another device would).
    chrome::sign_in(&browser, &api.base, &user.email, &user.password, "/account", "profile").await;
    let login = api.post("/v1/auth/login", None, json!({"email": user.email, "password": user.password})).await.ok(200);
    let access = login["access_token"].as_str().unwrap().to_owned();
    let sessions = api.get("/v1/sessions", Some(&access)).await.ok(200);
    for s in sessions.as_array().unwrap().iter().filter(|s| s["current"] == false) {
        api.delete(&format!("/v1/sessions/{}", s["id"].as_str().unwrap()), Some(&access)).await.ok(204);
    }
    let wanted = format!("/device?user_code={}", pending_code(&api).await);
    comes_back_after_sign_in(&browser, &api.base, &user, &wanted).await;
    driver.check_page(&browser, "account-stale-revoked").await;

    // Expired: the login outlives its 4 seconds.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let wanted = "/account/tokens";
    comes_back_after_sign_in(&browser, &api.base, &user, wanted).await;

    // A form posted with an expired login: sign-in, then back to the form's page.
    type_into(&browser, "token-name", "too late").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    click(&browser, "create-token").await;
    browser.wait().for_element(Locator::Id("sign-in")).await.unwrap();
    assert_eq!(path_of(&browser).await, "/login?next=%2Faccount%2Ftokens");

    // A restarted cloud: the same database keeps the login…
    let port = cloud.addr.port();
    cloud.stop().await;
    let cloud = Cloud::start_on(&db, port, |c| c.session_secs = Some(600)).await;
    chrome::sign_in(&browser, &cloud.base, &user.email, &user.password, "/account", "profile").await;
    cloud.stop().await;
    let cloud = Cloud::start_on(&db, port, |_| {}).await;
    browser.goto(&format!("{}/account/devices", cloud.base)).await.unwrap();
    browser.wait().for_element(Locator::Id("no-devices")).await.unwrap();
    // …and one that came back on a fresh database (a reset dev cloud) knows none.
    cloud.stop().await;
    let fresh = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start_on(&fresh, port, |_| {}).await;
    let api = cloud.api();
    let user = api.user("erin").await;
    let wanted = format!("/device?user_code={}", pending_code(&api).await);
    comes_back_after_sign_in(&browser, &api.base, &user, &wanted).await;
    driver.check_page(&browser, "account-stale-restarted").await;
}
