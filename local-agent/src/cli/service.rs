//! `latchkey service install | uninstall`: `latchkey run` as a user service — a systemd user
//! unit on Linux, a launchd agent on macOS — made from the files in `deploy/` (compiled in),
//! with this binary, config file and data dir filled in, so that the service uses exactly
//! what the member paired and configured with.
//!
//! `--print` prints instead of writing; `--no-enable` writes without asking the service
//! manager to load it (tests use both, so no systemctl is needed).

use super::Paths;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The systemd user unit in `deploy/`, whose content the installed unit reuses.
const SYSTEMD_TEMPLATE: &str = include_str!("../../../deploy/systemd/latchkey-agent.service");
/// The launchd agent in `deploy/`.
const LAUNCHD_TEMPLATE: &str = include_str!("../../../deploy/launchd/dev.latchkey.agent.plist");
const SYSTEMD_UNIT: &str = "latchkey-agent.service";
const LAUNCHD_LABEL: &str = "dev.latchkey.agent";

/// A service manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Manager {
    /// A systemd user unit (Linux).
    Systemd,
    /// A launchd user agent (macOS).
    Launchd,
}

impl Manager {
    fn of_this_platform() -> Result<Self> {
        if cfg!(target_os = "macos") {
            Ok(Manager::Launchd)
        } else if cfg!(target_os = "linux") {
            Ok(Manager::Systemd)
        } else {
            Err(Error::Usage(
                "`latchkey service` knows systemd (Linux) and launchd (macOS); on this platform, run \
                 `latchkey run` with your service manager (see deploy/ for examples)"
                    .into(),
            ))
        }
    }

    /// Where the file goes.
    fn path(self) -> Result<PathBuf> {
        let base = directories::BaseDirs::new()
            .ok_or_else(|| Error::Usage("cannot tell where your home directory is; set HOME".into()))?;
        Ok(match self {
            Manager::Systemd => base.config_dir().join("systemd").join("user").join(SYSTEMD_UNIT),
            Manager::Launchd => {
                base.home_dir().join("Library").join("LaunchAgents").join(format!("{LAUNCHD_LABEL}.plist"))
            }
        })
    }
}

/// What the service runs: absolute paths, since a service starts elsewhere.
struct Setup {
    binary: PathBuf,
    config: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Setup {
    fn of(paths: &Paths) -> Result<Self> {
        let binary = std::env::current_exe().map_err(|e| Error::io("the latchkey binary", e))?;
        let absolute = |p: &Path| std::path::absolute(p).map_err(|e| Error::io(p, e));
        let home = directories::BaseDirs::new().map(|b| b.home_dir().to_path_buf()).unwrap_or_default();
        Ok(Setup {
            binary,
            config: absolute(&paths.config)?,
            data_dir: absolute(&paths.data_dir)?,
            log: home.join("Library").join("Logs").join("latchkey-agent.log"),
        })
    }
}

pub(super) fn install(paths: &Paths, manager: Option<Manager>, print: bool, no_enable: bool) -> Result<ExitCode> {
    let manager = manager.map_or_else(Manager::of_this_platform, Ok)?;
    let setup = Setup::of(paths)?;
    let text = match manager {
        Manager::Systemd => systemd_unit(&setup)?,
        Manager::Launchd => launchd_plist(&setup),
    };
    if print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let path = manager.path()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(&path, &text).map_err(|e| Error::io(&path, e))?;
    println!("Wrote {}.", path.display());
    if !paths.data_dir.join("pat").exists() {
        println!(
            "Note: this machine is not paired yet (no token in {}); run `latchkey login` so that the service can sync.",
            paths.data_dir.display()
        );
    }
    if no_enable {
        println!("Not enabled (--no-enable). {}", manual_start(manager, &path));
        return Ok(ExitCode::SUCCESS);
    }
    match manager {
        Manager::Systemd => {
            run_tool("systemctl", &["--user", "daemon-reload"])?;
            run_tool("systemctl", &["--user", "enable", "--now", SYSTEMD_UNIT])?;
            println!("Enabled and started. Its log: `journalctl --user -u {SYSTEMD_UNIT} -f`.");
        }
        Manager::Launchd => {
            let domain = gui_domain()?;
            // A previous version may be loaded; replacing it is what "install" means.
            let _ = run_tool("launchctl", &["bootout", &format!("{domain}/{LAUNCHD_LABEL}")]);
            run_tool("launchctl", &["bootstrap", &domain, &path.display().to_string()])?;
            println!("Loaded and started. Its log: {}.", setup.log.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn uninstall(manager: Option<Manager>, no_enable: bool) -> Result<ExitCode> {
    let manager = manager.map_or_else(Manager::of_this_platform, Ok)?;
    let path = manager.path()?;
    if !no_enable {
        // It may not be loaded; what matters is that it is not afterwards.
        let stopped = match manager {
            Manager::Systemd => run_tool("systemctl", &["--user", "disable", "--now", SYSTEMD_UNIT]),
            Manager::Launchd => gui_domain()
                .and_then(|domain| run_tool("launchctl", &["bootout", &format!("{domain}/{LAUNCHD_LABEL}")])),
        };
        if let Err(e) = stopped {
            eprintln!("warning: {e}");
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => println!("Removed {}.", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("{} is not there; nothing to remove.", path.display())
        }
        Err(e) => return Err(Error::io(&path, e)),
    }
    if !no_enable && manager == Manager::Systemd {
        run_tool("systemctl", &["--user", "daemon-reload"])?;
    }
    Ok(ExitCode::SUCCESS)
}

fn manual_start(manager: Manager, path: &Path) -> String {
    match manager {
        Manager::Systemd => {
            format!("Start it with `systemctl --user daemon-reload && systemctl --user enable --now {SYSTEMD_UNIT}`.")
        }
        Manager::Launchd => format!("Load it with `launchctl bootstrap gui/$(id -u) {}`.", path.display()),
    }
}

/// The deploy unit with this machine's binary, config and data dir. The data dir may be
/// outside the unit's StateDirectory, so it is made writable under `ProtectSystem=strict`.
fn systemd_unit(setup: &Setup) -> Result<String> {
    let mut out = format!(
        "# Written by `latchkey service install` from deploy/systemd/{SYSTEMD_UNIT}; `latchkey service install`\n\
         # again rewrites it, `latchkey service uninstall` removes it.\n"
    );
    let (mut exec, mut env) = (false, false);
    let body = SYSTEMD_TEMPLATE.find("[Unit]").map_or(SYSTEMD_TEMPLATE, |at| &SYSTEMD_TEMPLATE[at..]);
    for line in body.lines() {
        if line.starts_with("ExecStart=") {
            out.push_str(&format!("ExecStart={} run\n", systemd_quote(&setup.binary)));
            exec = true;
        } else if line.starts_with("Environment=LATCHKEY_DATA_DIR=") {
            let (data, config) = (systemd_value(&setup.data_dir), systemd_value(&setup.config));
            out.push_str(&format!("Environment=\"LATCHKEY_DATA_DIR={data}\"\n"));
            out.push_str(&format!("Environment=\"LATCHKEY_CONFIG={config}\"\n"));
            out.push_str(&format!("ReadWritePaths=-{}\n", systemd_quote(&setup.data_dir)));
            env = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if exec && env {
        Ok(out)
    } else {
        // Only a changed deploy/ file can get here, and the unit tests catch that first.
        Err(Error::Usage(format!("deploy/systemd/{SYSTEMD_UNIT} lacks its ExecStart= or Environment= line")))
    }
}

/// A path as one systemd word: `%` is a specifier there, `\` and `"` escape.
fn systemd_value(path: &Path) -> String {
    path.display().to_string().replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%")
}

fn systemd_quote(path: &Path) -> String {
    format!("\"{}\"", systemd_value(path))
}

/// The deploy plist with this machine's binary, config, data dir and log.
fn launchd_plist(setup: &Setup) -> String {
    let log = xml(&setup.log);
    LAUNCHD_TEMPLATE
        .replace("<string>/usr/local/bin/latchkey</string>", &format!("<string>{}</string>", xml(&setup.binary)))
        .replace(
            "<string>/Users/you/Library/Application Support/latchkey/latchkey.toml</string>",
            &format!("<string>{}</string>", xml(&setup.config)),
        )
        .replace(
            "<string>/Users/you/Library/Application Support/latchkey</string>",
            &format!("<string>{}</string>", xml(&setup.data_dir)),
        )
        .replace("<string>/Users/you/Library/Logs/latchkey-agent.log</string>", &format!("<string>{log}</string>"))
}

fn xml(path: &Path) -> String {
    path.display().to_string().replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `gui/<uid>`, the member's login session's launchd domain.
fn gui_domain() -> Result<String> {
    let out = std::process::Command::new("id").arg("-u").output().map_err(|e| Error::io("id -u", e))?;
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if uid.is_empty() || !uid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Usage("cannot tell your user id (`id -u`)".into()));
    }
    Ok(format!("gui/{uid}"))
}

/// Runs `tool args…`, failing with its output when it fails.
fn run_tool(tool: &str, args: &[&str]) -> Result<()> {
    let line = format!("{tool} {}", args.join(" "));
    let out = std::process::Command::new(tool).args(args).output().map_err(|e| {
        Error::Usage(format!("could not run `{line}`: {e}; write the file with --no-enable and load it yourself"))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(Error::Usage(format!("`{line}` failed ({}): {said}", out.status)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            binary: PathBuf::from("/opt/my tools/latchkey"),
            config: PathBuf::from("/home/m/.config/latchkey/latchkey.toml"),
            data_dir: PathBuf::from("/home/m/100%/latchkey"),
            log: PathBuf::from("/Users/m/Library/Logs/latchkey-agent.log"),
        }
    }

    #[test]
    fn the_systemd_unit_is_the_deploy_one_with_this_machines_paths() {
        let unit = systemd_unit(&setup()).unwrap();
        assert!(unit.contains("ExecStart=\"/opt/my tools/latchkey\" run\n"), "{unit}");
        assert!(unit.contains("Environment=\"LATCHKEY_DATA_DIR=/home/m/100%%/latchkey\"\n"), "{unit}");
        assert!(unit.contains("Environment=\"LATCHKEY_CONFIG=/home/m/.config/latchkey/latchkey.toml\"\n"), "{unit}");
        assert!(unit.contains("ReadWritePaths=-\"/home/m/100%%/latchkey\"\n"), "{unit}");
        assert!(!unit.contains("%h/.local/bin"), "{unit}");
        for kept in ["[Unit]", "Restart=on-failure", "NoNewPrivileges=yes", "UMask=0077", "WantedBy=default.target"] {
            assert!(unit.contains(kept), "{kept} in {unit}");
        }
    }

    #[test]
    fn the_launchd_plist_is_the_deploy_one_with_this_machines_paths() {
        let mut s = setup();
        s.config = PathBuf::from("/Users/m/a&b/latchkey.toml");
        let plist = launchd_plist(&s);
        assert!(plist.contains("<string>/opt/my tools/latchkey</string>\n    <string>run</string>"), "{plist}");
        assert!(plist.contains("<string>/Users/m/a&amp;b/latchkey.toml</string>"), "{plist}");
        assert!(plist.contains("<string>/home/m/100%/latchkey</string>"), "{plist}");
        assert!(plist.contains("<string>/Users/m/Library/Logs/latchkey-agent.log</string>"), "{plist}");
        assert!(!plist.contains("<string>/Users/you"), "every placeholder is filled in: {plist}");
        assert!(plist.contains("<string>dev.latchkey.agent</string>"));
    }
}
