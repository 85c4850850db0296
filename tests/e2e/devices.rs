//! Device pairing under attack: a phishing link to `/device?user_code=…` shows what asked
//! and approves nothing without an explicit "Yes, this is my device" (in headless
//! Chromium), wrong tries burn the code they aim at and lock the guesser, user codes are
//! stored only as hashes, and polling too fast raises the interval for good.

use fantoccini::{Client, Locator};
use latchkey_e2e::chrome::{self, chromedriver};
use latchkey_e2e::{backend_tests, json, Api, Backend, Cloud, Reply, TestDb};
use std::time::Duration;

backend_tests!(
    a_phishing_link_shows_the_device_and_approves_nothing_without_confirmation,
    five_wrong_tries_against_a_code_burn_it,
    five_wrong_codes_lock_the_guessers_approvals,
    user_codes_are_stored_only_as_hashes,
    polling_faster_than_the_interval_raises_it_for_good,
);

/// The agent's first request, as a machine named in its `User-Agent` sends it.
async fn start_pairing(api: &Api, machine: &str) -> serde_json::Value {
    Api::read(
        api.client
            .post(format!("{}/oauth/device_authorization", api.base))
            .header("user-agent", format!("latchkey/9.9.9 ({machine})"))
            .form(&[("client_id", "latchkey-agent")]),
    )
    .await
    .ok(200)
}

/// One poll of `/oauth/token`, as the agent makes it.
async fn poll(api: &Api, started: &serde_json::Value) -> Reply {
    let device_code = started["device_code"].as_str().unwrap();
    Api::read(api.client.post(format!("{}/oauth/token", api.base)).form(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("device_code", device_code),
        ("client_id", "latchkey-agent"),
    ]))
    .await
}

fn user_code(started: &serde_json::Value) -> String {
    started["user_code"].as_str().unwrap().to_owned()
}

/// `code` with one character of the given half changed: the same selector (first half)
/// with a wrong second half, or an unknown selector.
fn wrong_code(code: &str, position: usize, n: usize) -> String {
    const ALPHABET: &[u8] = b"CDFGHJKMNPQRTVWX";
    let mut bytes = code.as_bytes().to_vec();
    let at = ALPHABET.iter().position(|c| *c == bytes[position]).unwrap();
    bytes[position] = ALPHABET[(at + 1 + n) % ALPHABET.len()];
    String::from_utf8(bytes).unwrap()
}

async fn text_of(browser: &Client, id: &str) -> String {
    browser.find(Locator::Id(id)).await.unwrap().text().await.unwrap_or_default()
}

async fn wait_for_result(browser: &Client, starts_with: &str) -> String {
    for _ in 0..50 {
        let text = text_of(browser, "result").await;
        if text.starts_with(starts_with) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    text_of(browser, "result").await
}

async fn a_phishing_link_shows_the_device_and_approves_nothing_without_confirmation(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let victim = api.user("victim").await;
    api.org(&victim, "acme", "private").await;
    api.org(&victim, "beta-labs", "public").await;
    let driver = chromedriver().await;
    let browser = driver.browser().await;
    chrome::sign_in(&browser, &api.base, &victim.email, &victim.password, "/device", "user_code").await;
    driver.check_page(&browser, &format!("device-enter-{backend:?}")).await;

    // Mallory starts pairing on her own machine and sends the victim the link.
    let bait = start_pairing(&api, "mallory-box").await;
    browser.goto(bait["verification_uri_complete"].as_str().unwrap()).await.unwrap();
    let page = browser.find(Locator::Css("main")).await.unwrap().text().await.unwrap();
    assert!(text_of(&browser, "device-name").await.contains("mallory-box"), "the device's own name is shown:\n{page}");
    assert_eq!(text_of(&browser, "device-ip").await, "127.0.0.1", "{page}");
    assert!(text_of(&browser, "device-time").await.contains("ago"), "{page}");
    let scopes = text_of(&browser, "device-scopes").await;
    assert!(
        scopes.contains("connections:token")
            && scopes.contains("connections:read")
            && scopes.contains("connections:delete"),
        "{page}"
    );
    let orgs = text_of(&browser, "device-orgs").await;
    assert!(orgs.contains("All your orgs") && orgs.contains("acme") && orgs.contains("beta-labs"), "{page}");
    assert!(text_of(&browser, "warning").await.contains("Approve only a code you started yourself"), "{page}");
    assert_eq!(text_of(&browser, "code").await, user_code(&bait));
    assert_eq!(text_of(&browser, "confirm").await, "Yes, this is my device");
    assert!(browser.find(Locator::Id("approve")).await.is_err(), "no one-click Approve next to a pre-filled code");
    driver.check_page(&browser, &format!("device-review-{backend:?}")).await;

    // Opening the link approved nothing; Cancel denies the code for good.
    poll(&api, &bait).await.assert_error(400, "authorization_pending");
    browser.find(Locator::Id("cancel")).await.unwrap().click().await.unwrap();
    assert!(wait_for_result(&browser, "Cancelled").await.starts_with("Cancelled"));
    poll(&api, &bait).await.assert_error(400, "access_denied");

    // The member's own machine: the same page, then "Yes, this is my device".
    let own = start_pairing(&api, "victims-laptop").await;
    browser.goto(own["verification_uri_complete"].as_str().unwrap()).await.unwrap();
    assert!(text_of(&browser, "device-name").await.contains("victims-laptop"));
    browser.find(Locator::Id("confirm")).await.unwrap().click().await.unwrap();
    assert!(wait_for_result(&browser, "Approved").await.starts_with("Approved"));
    let token = poll(&api, &own).await.ok(200);
    assert!(token["access_token"].as_str().unwrap().starts_with("lk_pat_"));
    browser.close().await.unwrap();
}

async fn five_wrong_tries_against_a_code_burn_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let victim = api.user("victim").await;
    let mallory = api.user("mallory").await;
    let eve = api.user("eve").await;
    let started = start_pairing(&api, "victims-laptop").await;
    let code = user_code(&started);

    // Five wrong second halves for the code's first half, from two guessers (so neither
    // reaches their own limit): the code is burned.
    for (n, guesser) in [&mallory, &mallory, &mallory, &eve, &eve].into_iter().enumerate() {
        let guess = wrong_code(&code, 8, n);
        let tried = api.post("/v1/devices/approve", Some(&guesser.access), json!({"user_code": guess})).await;
        tried.assert_error(400, "invalid_request");
    }
    let late = api.post("/v1/devices/approve", Some(&victim.access), json!({"user_code": code})).await;
    late.assert_error(400, "invalid_request");
    let description = poll(&api, &started).await.assert_error(400, "access_denied");
    assert!(description.contains("wrong codes"), "{description}");
}

async fn five_wrong_codes_lock_the_guessers_approvals(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let victim = api.user("victim").await;
    let mallory = api.user("mallory").await;
    let victims = start_pairing(&api, "victims-laptop").await;

    // Five codes that name no pending code.
    for n in 0..5 {
        let guess = wrong_code(&user_code(&victims), 0, n);
        let tried = api.post("/v1/devices/approve", Some(&mallory.access), json!({"user_code": guess})).await;
        tried.assert_error(400, "invalid_request");
    }
    // Now even a right code is refused to her for a while, and the refusal says when.
    let hers = start_pairing(&api, "mallory-box").await;
    let refused = api.post("/v1/devices/approve", Some(&mallory.access), json!({"user_code": user_code(&hers)})).await;
    refused.assert_error(429, "rate_limited");
    assert!(refused.header("retry-after").is_some());
    poll(&api, &hers).await.assert_error(400, "authorization_pending");
    // Others are not locked out by her guessing.
    api.post("/v1/devices/approve", Some(&victim.access), json!({"user_code": user_code(&victims)})).await.ok(204);
    poll(&api, &victims).await.ok(200);
}

async fn user_codes_are_stored_only_as_hashes(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let started = start_pairing(&api, "victims-laptop").await;
    let shown = user_code(&started);
    let bare = shown.replace('-', "");

    let raw = db.raw().await;
    let columns_sql = match backend {
        Backend::Sqlite => "select name from pragma_table_info('device_codes')",
        Backend::Postgres => {
            "select column_name::text from information_schema.columns where table_name = 'device_codes'"
        }
    };
    let columns: Vec<String> = sqlx::query_scalar(columns_sql).fetch_all(&raw).await.unwrap();
    let every_column = columns.iter().map(|c| format!("coalesce(cast({c} as text), '')")).collect::<Vec<_>>();
    let sql = format!("select {} from device_codes", every_column.join(" || '|' || "));
    let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&raw).await.unwrap();
    raw.close().await;
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].contains(&bare) && !rows[0].contains(&shown), "the user code is stored as it is: {}", rows[0]);
}

async fn polling_faster_than_the_interval_raises_it_for_good(backend: Backend) {
    let db = TestDb::new(backend).await;
    let cloud = Cloud::start(&db).await;
    let api = cloud.api();
    let started = start_pairing(&api, "victims-laptop").await;
    assert_eq!(started["interval"], 5);

    poll(&api, &started).await.assert_error(400, "authorization_pending");
    poll(&api, &started).await.assert_error(400, "slow_down");
    // The interval is 10 s now: a poll 7 s later, slower than the old 5 s, is still too fast.
    tokio::time::sleep(Duration::from_secs(7)).await;
    poll(&api, &started).await.assert_error(400, "slow_down");
    let raw = db.raw().await;
    let interval: i64 = sqlx::query_scalar("select interval_secs from device_codes").fetch_one(&raw).await.unwrap();
    raw.close().await;
    assert_eq!(interval, 15, "each slow_down adds 5 s to the stored interval");
}
