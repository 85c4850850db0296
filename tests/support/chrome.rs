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

/// Signs in on the cloud's login page, typing as a person would, and waits for the page
/// at `next` to show the element `ready`.
pub async fn sign_in(browser: &Client, base: &str, email: &str, password: &str, next: &str, ready: &str) {
    browser.goto(&format!("{base}/login?next={next}")).await.expect("the login page");
    browser.find(Locator::Id("email")).await.expect("email field").send_keys(email).await.expect("type email");
    browser.find(Locator::Id("password")).await.expect("password field").send_keys(password).await.expect("type");
    browser.find(Locator::Id("sign-in")).await.expect("sign-in button").click().await.expect("click sign in");
    browser.wait().for_element(Locator::Id(ready)).await.expect("the page after signing in");
}
