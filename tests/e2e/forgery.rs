//! Cross-site request forgery against the page forms and the connect flow: a hostile page
//! on another origin (here another port of 127.0.0.1, which is the same *site*, so
//! SameSite cookies ride along) must not sign the victim's browser into the attacker's
//! account, start a consent in the victim's name, or sign the victim out; and a cookie
//! without `Origin` or `Referer` must not change anything.

use fantoccini::{Client, Locator};
use latchkey_e2e::chrome::{self, chromedriver, ChromeDriver};
use latchkey_e2e::{backend_tests, hidden_fields, json, Api, Backend, Browser, Cloud, SandboxOrg, TestDb};
use std::time::Duration;

backend_tests!(
    a_login_post_without_the_form_token_is_refused,
    a_link_to_connect_shows_a_confirm_page_and_starts_no_consent,
    a_cookie_request_without_origin_or_referer_is_refused,
    a_cross_site_logout_post_is_refused
);

async fn count(db: &TestDb, table: &str) -> i64 {
    let raw = db.raw().await;
    let n: i64 = sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(&raw).await.unwrap();
    raw.close().await;
    n
}

/// The attacker's site: its pages, served on another loopback port.
async fn hostile_site(pages: Vec<(&'static str, String)>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = pages.into_iter().fold(axum::Router::new(), |app, (path, page)| {
        app.route(path, axum::routing::get(move || async move { axum::response::Html(page) }))
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, task)
}

/// A page that posts `fields` to `action` as soon as it loads.
fn auto_submit(action: &str, fields: &[(&str, &str)]) -> String {
    let inputs: String =
        fields.iter().map(|(k, v)| format!(r#"<input type="hidden" name="{k}" value="{v}">"#)).collect();
    format!(
        r#"<!doctype html><title>Win a prize</title>
<form id="f" method="post" action="{action}">{inputs}</form>
<script>
  // Cookie tossing: a sibling origin may write cookies for the cloud's host.
  document.cookie = "latchkey_login_csrf=tossed; path=/login";
  document.getElementById("f").submit();
</script>"#
    )
}

async fn session_cookie(browser: &Client) -> String {
    browser.get_named_cookie("latchkey_session").await.expect("the victim's session cookie").value().to_owned()
}

/// Lets the hostile page do its work: the form posts, and any redirects after it run out.
async fn visit(browser: &Client, url: &str) {
    browser.goto(url).await.unwrap();
    let mut last = String::new();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        if now == last && !now.starts_with(url) {
            break;
        }
        last = now;
    }
}

/// A sandbox cloud with the `acme` org, and its member signed in on the org page in
/// Chromium. (Fields drop in order: the browser before the cloud before the database.)
struct Victim {
    browser: Client,
    _driver: ChromeDriver,
    api: Api,
    _cloud: Cloud,
    db: TestDb,
}

impl Victim {
    async fn signed_in() -> Self {
        let db = TestDb::new(Backend::Sqlite).await;
        let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
        let api = cloud.api();
        let org = SandboxOrg::setup(&api).await;
        SandboxOrg::faults(&api, json!({"auto_approve": true})).await;
        let driver = chromedriver().await;
        let browser = driver.browser().await;
        let (email, password) = (&org.member.email, &org.member.password);
        chrome::sign_in(&browser, &api.base, email, password, "/orgs/acme", "connect-sandbox").await;
        Victim { browser, _driver: driver, api, _cloud: cloud, db }
    }
}

/// The issue's attack: the victim is signed in; a page on another origin auto-submits the
/// cloud's login form with the attacker's credentials and `next=/connect/…`, so that the
/// victim's provider grant would land under the attacker's account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_login_post_is_refused() {
    let Victim { browser, _driver, api, _cloud, db } = Victim::signed_in().await;
    let attacker = api.user("attacker").await;
    api.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&attacker.access), None).await.ok(200);
    let victims = session_cookie(&browser).await;

    let page = auto_submit(
        &format!("{}/login", api.base),
        &[
            ("email", &attacker.email),
            ("password", &attacker.password),
            ("next", "/connect/acme/sandbox"),
            ("csrf", "tossed"),
        ],
    );
    let (hostile, server) = hostile_site(vec![("/", page)]).await;
    visit(&browser, &format!("{hostile}/")).await;

    assert_eq!(session_cookie(&browser).await, victims, "the victim's session cookie was replaced");
    assert_eq!(count(&db, "consent_states").await, 0, "a consent started");
    let at = browser.current_url().await.unwrap().to_string();
    assert!(!at.contains("/sandbox/") && !at.contains("/oauth/callback"), "the browser went on to the provider: {at}");
    assert_eq!(count(&db, "connections").await, 0, "a grant was stored");
    // Still the victim's own login.
    browser.goto(&format!("{}/orgs/acme", api.base)).await.unwrap();
    browser.wait().for_element(Locator::Id("connect-sandbox")).await.unwrap();
    assert!(
        browser.source().await.unwrap().contains("id=\"signed-in-as\">member<"),
        "the page is no longer the victim's"
    );
    server.abort();
    browser.close().await.unwrap();
}

/// A hostile page that posts the confirm page's form itself, and one that sends the
/// browser to `/connect/…` (which, before the confirm page, started the consent at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_page_starts_no_consent() {
    let Victim { browser, _driver, api, _cloud, db } = Victim::signed_in().await;
    let connect = format!("{}/connect/acme/sandbox", api.base);
    let link = format!(r#"<!doctype html><script>location.href = "{connect}";</script>"#);
    let (hostile, server) = hostile_site(vec![("/", auto_submit(&connect, &[])), ("/link", link)]).await;

    visit(&browser, &format!("{hostile}/")).await;
    assert_eq!(count(&db, "consent_states").await, 0, "a cross-site post started a consent");
    visit(&browser, &format!("{hostile}/link")).await;
    assert_eq!(count(&db, "consent_states").await, 0, "a cross-site link started a consent");
    let at = browser.current_url().await.unwrap().to_string();
    assert_eq!(at, connect, "the link did not stop at the confirm page");
    assert_eq!(count(&db, "connections").await, 0, "a grant was stored");

    // The confirm page starts the consent only when the member presses its button.
    let confirm = browser.wait().for_element(Locator::Id("confirm-connect")).await.unwrap();
    confirm.click().await.unwrap();
    browser.wait().for_element(Locator::Id("result")).await.unwrap();
    assert_eq!(count(&db, "connections").await, 1);
    server.abort();
    browser.close().await.unwrap();
}

async fn a_login_post_without_the_form_token_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let user = api.user("visitor").await;
    let sessions = count(&db, "sessions").await;
    let creds = [("email", user.email.as_str()), ("password", user.password.as_str()), ("next", "/")];
    let no_session = |r: &latchkey_e2e::Reply| {
        r.headers.get_all("set-cookie").iter().all(|c| !c.to_str().unwrap_or_default().starts_with("latchkey_session="))
    };

    // No token at all, from our own origin.
    let browser = Browser::new();
    let fields: Vec<(String, String)> = creds.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    let r = browser.post_form(&api.base, "/login", &fields).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(no_session(&r) && r.text.contains("expired"), "{}", r.text);
    // A token that is not this browser's cookie.
    let page = Browser::new().get(&format!("{}/login", api.base)).await;
    let mut forged = latchkey_e2e::form_fields(&page.text, &creds);
    let r = browser.post_form(&api.base, "/login", &forged).await;
    assert_eq!(r.status, 403, "{}", r.text);
    // The right pair, but from another origin, or from nowhere.
    let own = browser.get(&format!("{}/login", api.base)).await;
    forged = latchkey_e2e::form_fields(&own.text, &creds);
    for origin in [Some("http://127.0.0.1:1"), Some("null"), None] {
        let mut req = browser.client.post(format!("{}/login", api.base)).form(&forged);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = Api::read(req).await;
        r.assert_page_error(403);
        assert!(no_session(&r));
    }
    assert_eq!(count(&db, "sessions").await, sessions, "a login session was made");

    // The form as our page serves it signs in; the JSON API for scripts needs no token.
    let r = browser.login(&api.base, &user).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert!(!no_session(&r));
    api.post("/v1/auth/login", None, json!({"email": user.email, "password": user.password})).await.ok(200);
}

async fn a_link_to_connect_shows_a_confirm_page_and_starts_no_consent(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let browser = Browser::new();
    browser.login(&api.base, &org.member).await;

    // A bare GET, as a link or a redirect from another site makes it: a page, no consent.
    let page = browser.get(&format!("{}/connect/acme/sandbox", api.base)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    for shown in ["acme", "sandbox", "Sandbox", "member", &org.member.email, "id=\"confirm-connect\""] {
        assert!(page.text.contains(shown), "the confirm page does not show {shown:?}: {}", page.text);
    }
    assert!(page.header("location").is_none());
    assert_eq!(count(&db, "consent_states").await, 0, "a GET started a consent");
    let path = "/connect/acme/sandbox";

    // Its button without the token, with another login's token, or from another origin.
    let r = browser.post_form(&api.base, path, &[]).await;
    r.assert_page_error(403);
    let other = Browser::new();
    other.login(&api.base, &org.member).await;
    let others = hidden_fields(&other.get(&format!("{}{path}", api.base)).await.text);
    browser.post_form(&api.base, path, &others).await.assert_page_error(403);
    let mine = hidden_fields(&page.text);
    let cross = Api::read(
        browser.client.post(format!("{}{path}", api.base)).header("origin", "http://127.0.0.1:1").form(&mine),
    )
    .await;
    cross.assert_page_error(403);
    assert_eq!(count(&db, "consent_states").await, 0, "a refused post started a consent");

    // The button from our own page: to the provider.
    let r = browser.post_form(&api.base, path, &mine).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert!(r.header("location").unwrap().starts_with(&format!("{}/sandbox/authorize?", api.base)));
    assert_eq!(count(&db, "consent_states").await, 1);

    // Signed out: the page sends the browser to sign in and come back to it.
    let r = Browser::new().get(&format!("{}{path}", api.base)).await;
    assert_eq!(r.header("location"), Some("/login?next=%2Fconnect%2Facme%2Fsandbox"));
}

async fn a_cookie_request_without_origin_or_referer_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let owner = api.user("owner").await;
    api.org(&owner, "open", "public").await;
    let joiner = api.user("joiner").await;
    let browser = Browser::new();
    browser.login(&api.base, &joiner).await;
    let join = format!("{}/v1/orgs/open/join", api.base);

    // The session cookie alone, no Origin and no Referer: refused, nothing changes.
    Api::read(browser.client.post(&join)).await.assert_error(403, "forbidden");
    api.get("/v1/orgs/open", Some(&joiner.access)).await.ok(200)["role"].is_null().then_some(()).expect("not joined");
    // A Referer from another origin is no better.
    Api::read(browser.client.post(&join).header("referer", "http://127.0.0.1:1/")).await.assert_error(403, "forbidden");
    // A Referer from our own pages is enough when a browser leaves Origin out.
    Api::read(browser.client.post(&join).header("referer", format!("{}/orgs/open", api.base))).await.ok(200);
    // A bearer credential is not a cookie: scripts are unaffected.
    api.send(reqwest::Method::POST, "/v1/orgs/open/join", Some(&joiner.access), None).await.ok(200);
}

async fn a_cross_site_logout_post_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let user = api.user("leaver").await;
    let browser = Browser::new();
    browser.login(&api.base, &user).await;
    let me = || async { Api::read(browser.client.get(format!("{}/v1/me", api.base))).await.status.as_u16() };
    assert_eq!(me().await, 200);

    // From our own origin without the form's token, and from another origin with it.
    browser.post_form(&api.base, "/logout", &[]).await.assert_page_error(403);
    assert_eq!(me().await, 200, "a sign-out without the form's token ended the login");
    let home = browser.get(&format!("{}/", api.base)).await;
    let token = hidden_fields(&home.text);
    assert!(token.iter().any(|(k, _)| k == "csrf"), "the home page has a sign-out form: {}", home.text);
    let cross = Api::read(
        browser.client.post(format!("{}/logout", api.base)).header("origin", "http://127.0.0.1:1").form(&token),
    )
    .await;
    cross.assert_page_error(403);
    assert_eq!(me().await, 200, "a cross-site sign-out ended the login");

    // The page's own sign-out button.
    let r = browser.post_form(&api.base, "/logout", &token).await;
    assert_eq!(r.header("location"), Some("/login"), "{}", r.text);
    assert_eq!(me().await, 401);
}
