//! Opening a URL in the member's browser, where there is one. Only cloud pages are opened
//! (the device page, the consent page); no token is ever part of such a URL.
//!
//! A page is a cloud page when its origin (scheme, host, port) is the configured cloud
//! URL's. The device authorization answer names the page to open; were it believed
//! wherever it pointed, whoever could change that answer could send the member to a
//! look-alike page that collects the code or the member's password.

use std::process::{Command, Stdio};
use url::Url;

/// Whether this session can show a browser at all.
pub fn available() -> bool {
    if std::env::var_os("BROWSER").is_some_and(|b| !b.is_empty()) {
        return true;
    }
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return true;
    }
    // Elsewhere (Linux, the BSDs): only with a graphical session.
    ["DISPLAY", "WAYLAND_DISPLAY"].iter().any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

/// Whether `page` is on the origin of the cloud at `cloud`.
pub fn is_cloud_page(cloud: &Url, page: &str) -> bool {
    Url::parse(page).is_ok_and(|page| page.origin() == cloud.origin())
}

/// Tries to open `url`, a page of the cloud at `cloud`; `false` when it is not one, or when
/// no browser could be started.
pub fn open(cloud: &Url, url: &str) -> bool {
    if !is_cloud_page(cloud, url) || !available() {
        return false;
    }
    let mut command = match std::env::var("BROWSER")
        .ok()
        .and_then(|b| b.split(':').next().map(str::to_owned))
        .filter(|b| !b.is_empty())
    {
        Some(browser) => Command::new(browser),
        None if cfg!(target_os = "macos") => Command::new("open"),
        None if cfg!(target_os = "windows") => {
            let mut c = Command::new("rundll32");
            c.arg("url.dll,FileProtocolHandler");
            c
        }
        None => Command::new("xdg-open"),
    };
    command.arg(url).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    match command.spawn() {
        Ok(mut child) => {
            // Reap it without waiting for it.
            std::thread::spawn(move || child.wait());
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pages_on_the_clouds_origin_are_cloud_pages() {
        let cloud = Url::parse("https://cloud.example.com").unwrap_or_else(|e| panic!("{e}"));
        for page in
            ["https://cloud.example.com/device?user_code=ABCD-EFGH", "https://cloud.example.com:443/connect/a/b"]
        {
            assert!(is_cloud_page(&cloud, page), "{page}");
        }
        for page in [
            "http://cloud.example.com/device",
            "https://cloud.example.com:8443/device",
            "https://evil.example/device",
            "https://cloud.example.com.evil.example/device",
            "https://cloud.example.com@evil.example/device",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "/device",
            "",
        ] {
            assert!(!is_cloud_page(&cloud, page), "{page}");
        }
    }
}
