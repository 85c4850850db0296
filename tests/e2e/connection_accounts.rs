//! Several accounts on one connector (issue 14): each connection has a label, requests
//! name one by label or id, several and none named is 409 `ambiguous_connection` with the
//! labels, reconnecting an account updates its connection, labels can be renamed, and one
//! account is disconnected without touching the other. Over HTTP on both backends, and the
//! org page in Chromium.

use fantoccini::{Client, Locator};
use latchkey_e2e::chrome::{self, chromedriver};
use latchkey_e2e::{backend_tests, hidden_fields, json, Api, Backend, Browser, Cloud, Reply, SandboxOrg, TestDb};
use serde_json::Value;
use std::time::Duration;

backend_tests!(two_accounts_on_one_connector, rename_conflicts_and_bad_choices);

/// A consent from the confirm page (`query` carries the choice) on, as sandbox user
/// `sandbox_user` (the sandbox's `login_hint`, with `auto_approve` on): the callback page.
pub(crate) async fn connect_as(api: &Api, browser: &Browser, query: &str, sandbox_user: &str) -> Reply {
    let path = format!("/connect/acme/sandbox{query}");
    let page = browser.get(&format!("{}{path}", api.base)).await;
    assert_eq!(page.status, 200, "the confirm page of {path}: {}", page.text);
    let start = browser.post_form(&api.base, &path, &hidden_fields(&page.text)).await;
    let provider = start.header("location").unwrap_or_else(|| panic!("no redirect: {} {}", start.status, start.text));
    let (_, callback) = browser.follow(&format!("{provider}&login_hint={sandbox_user}")).await;
    assert_eq!(callback.status, 200, "consent as {sandbox_user}: {}", callback.text);
    callback
}

async fn token(api: &Api, pat: &str, connection: Option<&str>) -> Reply {
    let mut body = json!({"org": "acme", "connector_key": "sandbox"});
    if let Some(c) = connection {
        body["connection"] = json!(c);
    }
    api.post("/oauth/connection-token", Some(pat), body).await
}

/// The sandbox user an access token belongs to, as the provider's own API says.
pub(crate) async fn owner_of(api: &Api, access_token: &str) -> String {
    let me = Api::read(api.client.get(format!("{}/sandbox/userinfo", api.base)).bearer_auth(access_token)).await;
    me.ok(200)["name"].as_str().unwrap().to_owned()
}

/// A token for `connection`, checked to belong to sandbox user `user`; the token.
async fn token_of(api: &Api, pat: &str, connection: Option<&str>, user: &str) -> String {
    let access = token(api, pat, connection).await.ok(200)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(owner_of(api, &access).await, user, "the token for {connection:?} belongs to {user}");
    access
}

async fn mine(api: &Api, member: &latchkey_e2e::User) -> Vec<Value> {
    api.get("/v1/orgs/acme/connections", Some(&member.access)).await.ok(200).as_array().unwrap().clone()
}

fn labels(connections: &[Value]) -> Vec<&str> {
    connections.iter().map(|c| c["label"].as_str().unwrap()).collect()
}

fn id_of<'a>(connections: &'a [Value], label: &str) -> &'a str {
    connections.iter().find(|c| c["label"] == label).unwrap()["id"].as_str().unwrap()
}

/// An org whose member is signed in (a browser) with the sandbox approving at once.
async fn signed_in(db: &TestDb) -> (Cloud, Api, SandboxOrg, Browser, String) {
    let cloud = Cloud::start_with(db, |c| c.sandbox = true).await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let browser = Browser::new();
    assert!(browser.login(&api.base, &org.member).await.status.is_redirection());
    SandboxOrg::faults(&api, json!({"auto_approve": true})).await;
    let (_, pat) = api.pat(&org.member, &["connections:token"]).await;
    (cloud, api, org, browser, pat)
}

async fn two_accounts_on_one_connector(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, org, browser, pat) = signed_in(&db).await;

    // One account: the token needs no name, and the connection is labelled after it.
    connect_as(&api, &browser, "", "alice").await;
    token_of(&api, &pat, None, "alice").await;
    // "Add another account" as bob: a second connection.
    connect_as(&api, &browser, "?add=1", "bob").await;
    let two = mine(&api, &org.member).await;
    assert_eq!(labels(&two), ["alice", "bob"], "{two:?}");
    let (alice_id, bob_id) = (id_of(&two, "alice").to_owned(), id_of(&two, "bob").to_owned());
    assert_eq!(two[0]["account_name"], "alice");

    // Several and none named: 409 with both labels, never a guess.
    let ambiguous = token(&api, &pat, None).await;
    ambiguous.assert_error(409, "ambiguous_connection");
    assert_eq!(ambiguous.json()["connections"], json!(["alice", "bob"]));
    // By label and by id, each token belongs to its own sandbox user.
    let alice_token = token_of(&api, &pat, Some("alice"), "alice").await;
    token_of(&api, &pat, Some(&bob_id), "bob").await;
    token_of(&api, &pat, Some("bob"), "bob").await;
    // A name that matches none of the caller's connections is row 6's 404.
    token(&api, &pat, Some("carol")).await.assert_error(404, "not_found");
    // Another member cannot reach them by id either.
    let other = api.user("other").await;
    api.send(reqwest::Method::POST, "/v1/orgs/acme/join", Some(&other.access), None).await.ok(200);
    let (_, other_pat) = api.pat(&other, &["connections:token"]).await;
    token(&api, &other_pat, Some(&alice_id)).await.assert_error(404, "not_found");

    // The same rules for reading one connection.
    let r = api.get("/v1/orgs/acme/connections/sandbox", Some(&org.member.access)).await;
    r.assert_error(409, "ambiguous_connection");
    assert_eq!(r.json()["connections"], json!(["alice", "bob"]));
    let bob = api.get("/v1/orgs/acme/connections/sandbox?connection=bob", Some(&org.member.access)).await.ok(200);
    assert_eq!((bob["id"].as_str(), bob["label"].as_str()), (Some(bob_id.as_str()), Some("bob")));
    api.get("/v1/orgs/acme/connections/sandbox?connection=carol", Some(&org.member.access))
        .await
        .assert_error(404, "not_found");

    // Reconnecting the same sandbox account updates its connection, even when asked to
    // add one: still two, same id, a new token that works, the old one revoked.
    connect_as(&api, &browser, "?add=1", "alice").await;
    let after = mine(&api, &org.member).await;
    assert_eq!(labels(&after), ["alice", "bob"], "{after:?}");
    assert_eq!(id_of(&after, "alice"), alice_id);
    let new_alice = token_of(&api, &pat, Some("alice"), "alice").await;
    assert_ne!(new_alice, alice_token, "the reconnect stored a new grant");
    let old = Api::read(api.client.get(format!("{}/sandbox/userinfo", api.base)).bearer_auth(&alice_token)).await;
    assert_eq!(old.status, 401, "the replaced grant was revoked at the provider");
    // A plain connect with several connections and a known account updates it too.
    connect_as(&api, &browser, "", "bob").await;
    assert_eq!(labels(&mine(&api, &org.member).await), ["alice", "bob"]);
    // Reconnecting a named connection with another account replaces its grant and
    // account; the label stays.
    connect_as(&api, &browser, &format!("?connection={bob_id}"), "carol").await;
    let replaced = mine(&api, &org.member).await;
    assert_eq!(labels(&replaced), ["alice", "bob"]);
    assert_eq!(id_of(&replaced, "bob"), bob_id);
    assert_eq!(replaced[1]["account_name"], "carol");
    token_of(&api, &pat, Some("bob"), "carol").await;

    // Rename, then use the new label.
    let patch = |body: Value| {
        api.send(reqwest::Method::PATCH, "/v1/orgs/acme/connections/sandbox", Some(&org.member.access), Some(body))
    };
    let renamed = patch(json!({"connection": "alice", "label": "  work "})).await.ok(200);
    assert_eq!((renamed["label"].as_str(), renamed["id"].as_str()), (Some("work"), Some(alice_id.as_str())));
    token_of(&api, &pat, Some("work"), "alice").await;
    token(&api, &pat, Some("alice")).await.assert_error(404, "not_found");
    // A label another of the member's connections has: 409 conflict, nothing changed.
    patch(json!({"connection": "work", "label": "bob"})).await.assert_error(409, "conflict");
    assert_eq!(labels(&mine(&api, &org.member).await), ["bob", "work"]);

    // Disconnect one by label: the other keeps working, and now needs no name.
    api.delete("/v1/orgs/acme/connections/sandbox", Some(&org.member.access))
        .await
        .assert_error(409, "ambiguous_connection");
    let gone = api.delete("/v1/orgs/acme/connections/sandbox?connection=bob", Some(&org.member.access)).await;
    assert_eq!(gone.status, 204, "{}", gone.text);
    assert_eq!(labels(&mine(&api, &org.member).await), ["work"]);
    token_of(&api, &pat, None, "alice").await;
    token(&api, &pat, Some("bob")).await.assert_error(404, "not_found");

    // Audited: two created, reconnects, one rename.
    let count =
        |action: &str| format!("select count(*) from audit_events where action = '{action}' and outcome = 'success'");
    assert_eq!(db.count(&count("connection.create")).await, 2);
    assert_eq!(db.count(&count("connection.reconnect")).await, 3);
    assert_eq!(db.count(&count("connection.relabel")).await, 1);
}

async fn rename_conflicts_and_bad_choices(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (_cloud, api, org, browser, _pat) = signed_in(&db).await;
    connect_as(&api, &browser, "", "octocat").await;
    // A new account whose name another connection already has as its label gets a suffix.
    let patch = |body: Value| {
        api.send(reqwest::Method::PATCH, "/v1/orgs/acme/connections/sandbox", Some(&org.member.access), Some(body))
    };
    patch(json!({"label": "hubot"})).await.ok(200);
    connect_as(&api, &browser, "?add=1", "hubot").await;
    assert_eq!(labels(&mine(&api, &org.member).await), ["hubot", "hubot-2"]);

    // Labels are validated: empty, too long, control characters, unknown fields.
    for bad in [
        json!({"connection": "hubot", "label": "   "}),
        json!({"connection": "hubot", "label": "x".repeat(65)}),
        json!({"connection": "hubot", "label": "a\u{0007}b"}),
        json!({"connection": "hubot", "label": "ok", "extra": 1}),
    ] {
        patch(bad.clone()).await.assert_error(400, "invalid_request");
    }
    // Several and none named, for a rename too.
    patch(json!({"label": "x"})).await.assert_error(409, "ambiguous_connection");

    // The consent's choice is checked before anything starts: an unknown connection, or
    // both a connection and "add".
    let start = |body: Value| api.post("/v1/orgs/acme/connectors/sandbox/authorize", Some(&org.member.access), body);
    start(json!({"connection": "nope"})).await.assert_error(404, "not_found");
    start(json!({"connection": "hubot", "add": true})).await.assert_error(400, "invalid_request");
    start(json!({"add": "yes"})).await.assert_error(400, "invalid_request");
    assert!(start(json!({"connection": "hubot-2"})).await.ok(200)["authorize_url"].is_string());
    // No body still starts a plain consent.
    let plain = api
        .send(reqwest::Method::POST, "/v1/orgs/acme/connectors/sandbox/authorize", Some(&org.member.access), None)
        .await;
    assert!(plain.ok(200)["authorize_url"].is_string());
    browser.get(&format!("{}/connect/acme/sandbox?connection=nope", api.base)).await.assert_page_error(404);
    browser.get(&format!("{}/connect/acme/sandbox?add=maybe", api.base)).await.assert_page_error(400);
}

// ---- The org page, in Chromium ----

async fn wait_until(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..secs * 10 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn shown_labels(browser: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for li in browser.find_all(Locator::Css("#accounts-sandbox li")).await.unwrap_or_default() {
        out.push(li.attr("data-label").await.ok().flatten().unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_org_page_shows_each_account_adds_disconnects_and_flags_a_dead_grant() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (_cloud, api, org, http, pat) = signed_in(&db).await;
    connect_as(&api, &http, "", "alice").await;
    connect_as(&api, &http, "?add=1", "bob").await;
    let bob_id = id_of(&mine(&api, &org.member).await, "bob").to_owned();
    // Bob's grant dies at the provider: the next refresh is refused (invalid_grant).
    SandboxOrg::faults(&api, json!({"refresh_invalid_grant": true, "auto_approve": false})).await;
    let raw = db.raw().await;
    sqlx::query("update connections set expires_at = 1 where label = 'bob'").execute(&raw).await.unwrap();
    raw.close().await;
    token(&api, &pat, Some("bob")).await.assert_error(409, "reauth_required");
    SandboxOrg::faults(&api, json!({"refresh_invalid_grant": false})).await;

    let driver = chromedriver().await;
    let browser = driver.browser().await;
    chrome::sign_in(&browser, &api.base, &org.member.email, &org.member.password, "/orgs/acme", "accounts-sandbox")
        .await;
    assert_eq!(shown_labels(&browser).await, ["alice", "bob"]);
    // The banner names bob's connection, with its reconnect button.
    let banner = browser.find(Locator::Id("attention")).await.unwrap().text().await.unwrap();
    assert!(
        banner.contains("bob") && banner.contains("Needs reauthorisation") && !banner.contains("alice"),
        "{banner}"
    );
    browser.find(Locator::Id(&format!("attention-reconnect-{bob_id}"))).await.unwrap();
    let bob_row = browser.find(Locator::Id(&format!("connection-{bob_id}"))).await.unwrap().text().await.unwrap();
    assert!(bob_row.contains("Needs reauthorisation"), "{bob_row}");
    driver.check_page(&browser, "org-accounts").await;

    // Add another account: the confirm page in a new tab, the sandbox's form as carol.
    let org_page = browser.window().await.unwrap();
    browser.find(Locator::Id("add-sandbox")).await.unwrap().click().await.unwrap();
    let mut tab = None;
    wait_until("the new tab", 5, async || {
        tab = browser.windows().await.unwrap().into_iter().find(|w| *w != org_page);
        tab.is_some()
    })
    .await;
    browser.switch_to_window(tab.unwrap()).await.unwrap();
    browser.wait().for_element(Locator::Id("confirm-connection")).await.unwrap();
    driver.check_page(&browser, "connect-add-account").await;
    browser.find(Locator::Id("confirm-connect")).await.unwrap().click().await.unwrap();
    let username = browser.wait().for_element(Locator::Id("username")).await.unwrap();
    username.clear().await.unwrap();
    username.send_keys("carol").await.unwrap();
    browser.find(Locator::Id("approve")).await.unwrap().click().await.unwrap();
    browser.switch_to_window(org_page).await.unwrap();
    // The page redraws itself with the third account.
    wait_until("three accounts on the page", 15, async || shown_labels(&browser).await.len() == 3).await;
    assert_eq!(shown_labels(&browser).await, ["alice", "bob", "carol"]);
    assert_eq!(labels(&mine(&api, &org.member).await), ["alice", "bob", "carol"]);

    // Disconnect alice from her own line: the others stay.
    let alice_row = browser.find(Locator::Css("#accounts-sandbox li[data-label='alice']")).await.unwrap();
    alice_row.find(Locator::Css("button.disconnect")).await.unwrap().click().await.unwrap();
    wait_until("alice gone from the page", 10, async || shown_labels(&browser).await == ["bob", "carol"]).await;
    assert_eq!(labels(&mine(&api, &org.member).await), ["bob", "carol"]);
    assert!(browser.find(Locator::Id("attention")).await.is_ok(), "bob still needs attention");
    driver.check_page(&browser, "org-accounts-after-disconnect").await;
    browser.close().await.unwrap();
}
