//! Opening a URL in the member's browser, where there is one. Only cloud pages are opened
//! (the device page, the consent page); no token is ever part of such a URL.

use std::process::{Command, Stdio};

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

/// Tries to open `url`; `false` when no browser could be started.
pub fn open(url: &str) -> bool {
    if !available() {
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
