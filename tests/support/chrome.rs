//! Headless Chromium through Debian's chromedriver for the page tests (`.ci/run`
//! installs `chromium` and `chromium-driver`; `CHROMEDRIVER` / `CHROMIUM` point elsewhere).

use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running chromedriver; each [`ChromeDriver::browser`] is a fresh, empty profile.
pub struct ChromeDriver {
    child: Child,
    port: u16,
    profiles: tempfile::TempDir,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver on a free loopback port; fails loudly when it is not installed.
pub async fn chromedriver() -> ChromeDriver {
    let exe = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    assert!(
        std::path::Path::new(&exe).exists(),
        "{exe} is missing: install Debian's chromium and chromium-driver (`bash .ci/run` does), or set CHROMEDRIVER"
    );
    let port = crate::free_port();
    let child = Command::new(exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ChromeDriver { child, port, profiles: tempfile::tempdir().expect("profiles") }
}

impl ChromeDriver {
    /// A fresh browser with its own empty profile.
    pub async fn browser(&self) -> Client {
        // reqwest and fantoccini bring different rustls providers; pick one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let profile = self.profiles.path().join(uuid::Uuid::new_v4().simple().to_string());
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let caps = serde_json::json!({
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-popup-blocking", "--window-size=1100,800", format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let caps = caps.as_object().cloned().unwrap_or_default();
        ClientBuilder::rustls()
            .expect("tls")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl ChromeDriver {
    /// What every page test checks on each page it shows: no serious or critical
    /// accessibility violation (axe-core, injected into the page), no error in the
    /// browser's console since the last check, and a screenshot written to
    /// `tests/screenshots/<name>.png` (the admin guide's pictures come from there).
    pub async fn check_page(&self, browser: &Client, name: &str) {
        let url = browser.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        let violations = axe_violations(browser).await;
        assert!(
            violations.as_array().is_some_and(Vec::is_empty),
            "{name} ({url}) has serious accessibility violations: {violations:#}"
        );
        let errors = self.console_errors(browser).await;
        assert!(errors.is_empty(), "{name} ({url}) logged console errors: {errors:#?}");
        let png = browser.screenshot().await.expect("a screenshot");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("screenshots");
        std::fs::create_dir_all(&dir).expect("tests/screenshots");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write the screenshot");
    }

    /// The console's errors (level SEVERE) since the last read; reading drains the log.
    pub async fn console_errors(&self, browser: &Client) -> Vec<String> {
        let session = browser.session_id().await.ok().flatten().expect("a WebDriver session");
        let log: serde_json::Value = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/session/{session}/se/log", self.port))
            .json(&serde_json::json!({ "type": "browser" }))
            .send()
            .await
            .expect("chromedriver's log endpoint")
            .json()
            .await
            .expect("chromedriver's log as JSON");
        log["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// The page's serious and critical accessibility violations, as axe-core reports them.
/// axe-core comes from npm (`tests/a11y`, installed by `.ci/run`); the check fails loudly
/// when it is missing rather than passing unchecked.
pub async fn axe_violations(browser: &Client) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("a11y/node_modules/axe-core/axe.min.js");
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{} is missing ({e}): run `npm ci --prefix tests/a11y` (`bash .ci/run` does)", path.display())
    });
    browser.execute(&format!("{source}\nreturn true;"), vec![]).await.expect("inject axe-core");
    let script = r#"
        const done = arguments[arguments.length - 1];
        axe.run(document, { resultTypes: ["violations"] })
          .then(r => done(r.violations
            .filter(v => v.impact === "serious" || v.impact === "critical")
            .map(v => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ")) }))))
          .catch(e => done([{ id: "axe-failed", help: String(e) }]));
    "#;
    browser.execute_async(script, vec![]).await.expect("run axe-core")
}

/// Signs in on the cloud's login page, typing as a person would, and waits for the page
/// at `next` to show the element `ready`.
pub async fn sign_in(browser: &Client, base: &str, email: &str, password: &str, next: &str, ready: &str) {
    browser.goto(&format!("{base}/login?next={next}")).await.expect("the login page");
    browser.find(Locator::Id("email")).await.expect("email field").send_keys(email).await.expect("type email");
    browser.find(Locator::Id("password")).await.expect("password field").send_keys(password).await.expect("type");
    browser.find(Locator::Id("sign-in")).await.expect("sign-in button").click().await.expect("click sign in");
    browser.wait().for_element(Locator::Id(ready)).await.expect("the page after signing in");
}
