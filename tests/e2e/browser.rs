//! The org page in a real headless Chromium (Debian's chromium + chromedriver; `.ci/run`
//! installs them): Connect opens the cloud's confirm page in a new tab, its button the
//! sandbox, Approve lands on the callback page, and the card turns active through the
//! callback page's broadcast — or, when the consent finishes in a browser that shares
//! nothing with the page, through polling.

use fantoccini::{Client, Locator};
use latchkey_e2e::chrome::{self, chromedriver};
use latchkey_e2e::{Backend, Cloud, SandboxOrg, TestDb};
use std::time::Duration;

async fn sign_in(browser: &Client, base: &str, user: &latchkey_e2e::User) {
    chrome::sign_in(browser, base, &user.email, &user.password, "/orgs/acme", "connect-sandbox").await;
}

async fn text_of(browser: &Client, id: &str) -> String {
    browser.find(Locator::Id(id)).await.unwrap().text().await.unwrap_or_default()
}

/// Waits (up to `secs`) for an element's text.
async fn wait_for_text(browser: &Client, id: &str, expected: &str, secs: u64) -> bool {
    for _ in 0..secs * 10 {
        if text_of(browser, id).await == expected {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_on_the_org_page_turns_the_card_active_through_the_broadcast() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    SandboxOrg::faults(&api, serde_json::json!({"auto_approve": false})).await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;

    sign_in(&browser, &api.base, &org.member).await;
    driver.check_page(&browser, "org-page").await;
    assert_eq!(text_of(&browser, "status-sandbox").await, "Not connected");
    let org_page = browser.window().await.unwrap();
    browser.find(Locator::Id("connect-sandbox")).await.unwrap().click().await.unwrap();

    // The provider opens in a new tab; approve there.
    let mut tab = None;
    for _ in 0..50 {
        let windows = browser.windows().await.unwrap();
        if let Some(w) = windows.into_iter().find(|w| *w != org_page) {
            tab = Some(w);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.switch_to_window(tab.expect("Connect opened a new tab")).await.unwrap();
    // The cloud asks first; its button goes on to the provider.
    browser.wait().for_element(Locator::Id("confirm-connect")).await.unwrap();
    driver.check_page(&browser, "connect-confirm").await;
    browser.find(Locator::Id("confirm-connect")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("approve")).await.unwrap().click().await.unwrap();

    // Back on the org page: the card turns active, and the notice shows the callback's
    // message, which only a channel message (not polling) writes.
    browser.switch_to_window(org_page).await.unwrap();
    assert!(wait_for_text(&browser, "status-sandbox", "Active", 10).await, "the card did not turn active");
    assert!(wait_for_text(&browser, "notice", "Connected.", 5).await, "no message reached the org page");
    assert_eq!(text_of(&browser, "connect-sandbox").await, "Reconnect");
    assert_eq!(text_of(&browser, "account-sandbox").await, "sandbox-user");
    driver.check_page(&browser, "org-page-connected").await;

    // The callback tab closed itself.
    for _ in 0..30 {
        if browser.windows().await.unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser.windows().await.unwrap().len(), 1, "the callback tab did not close itself");

    // Disconnect from the page: it asks first.
    browser.find(Locator::Id("disconnect-sandbox")).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id("confirm-disconnect")).await.unwrap().click().await.unwrap();
    assert!(wait_for_text(&browser, "status-sandbox", "Not connected", 5).await);
    api.get("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await.assert_error(404, "not_found");
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_org_page_resolves_by_polling_when_no_message_can_reach_it() {
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start_with(&db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    SandboxOrg::faults(&api, serde_json::json!({"auto_approve": false})).await;
    let driver = chromedriver().await;
    let page_browser = driver.browser().await;

    sign_in(&page_browser, &api.base, &org.member).await;
    let org_page = page_browser.window().await.unwrap();
    page_browser.find(Locator::Id("connect-sandbox")).await.unwrap().click().await.unwrap();
    let mut provider_url = None;
    for _ in 0..50 {
        if let Some(w) = page_browser.windows().await.unwrap().into_iter().find(|w| *w != org_page) {
            page_browser.switch_to_window(w).await.unwrap();
            page_browser.wait().for_element(Locator::Id("confirm-connect")).await.unwrap().click().await.unwrap();
            page_browser.wait().for_element(Locator::Id("approve")).await.unwrap();
            provider_url = Some(page_browser.current_url().await.unwrap());
            // Close the provider tab: the page that opened it is left with nobody to talk to.
            page_browser.close_window().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    page_browser.switch_to_window(org_page).await.unwrap();
    let provider_url = provider_url.expect("Connect opened the provider");

    // Finish the consent in a second browser that shares no tab, storage or channel with
    // the org page — only the same login (its session cookie).
    let cookie = page_browser.get_named_cookie("latchkey_session").await.unwrap();
    let other = driver.browser().await;
    other.goto(&format!("{}/healthz", api.base)).await.unwrap();
    let copy = cookie.clone().into_owned();
    other.add_cookie(copy).await.unwrap();
    other.goto(provider_url.as_str()).await.unwrap();
    other.wait().for_element(Locator::Id("approve")).await.unwrap().click().await.unwrap();
    other.wait().for_element(Locator::Id("result")).await.unwrap();
    assert_eq!(text_of(&other, "result").await, "Connected");
    driver.check_page(&other, "callback").await;

    // The org page learns it by polling alone: its notice never got a message.
    assert!(
        wait_for_text(&page_browser, "status-sandbox", "Active", 10).await,
        "polling did not pick up the connection"
    );
    assert_eq!(text_of(&page_browser, "notice").await, "Waiting for the provider…");
    other.close().await.unwrap();
    page_browser.close().await.unwrap();
}
