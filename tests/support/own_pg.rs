//! A PostgreSQL server the test owns: its own data directory and loopback port, so a test
//! can stop and start it under a running cloud. The server binaries come from Debian's
//! `/usr/lib/postgresql/<version>/bin` (or `PATH`); initdb and postgres refuse to run as
//! root, so as root they run as the `postgres` OS user.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct OwnPg {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl OwnPg {
    /// A fresh cluster, started, with trust authentication for `postgres`. `None` when the
    /// server binaries are missing on a developer machine; under `CI` that fails loudly.
    pub fn start() -> Option<Self> {
        let Some(bin) = server_binaries() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL's server binaries (initdb, pg_ctl) are required under CI and are not installed \
                 (looked in /usr/lib/postgresql/*/bin and on PATH)"
            );
            eprintln!("SKIPPING a test that runs its own PostgreSQL: initdb and pg_ctl are not installed");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("latchkey-own-pg-").tempdir().expect("temp dir");
        if as_root() {
            let ok = Command::new("chown").arg("postgres:").arg(dir.path()).status().is_ok_and(|s| s.success());
            assert!(ok, "could not hand {} to the postgres user", dir.path().display());
        }
        let pg = OwnPg { port: crate::free_port(), dir, bin };
        pg.run("initdb", &["-D", &pg.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
        pg.start_again();
        Some(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server the way an operator's restart does: clients are cut off.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// Starts (or restarts) the server on its port and waits until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &options, "-w", "start"]);
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `program` of the server binaries, as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut cmd = if as_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        };
        cmd.current_dir(self.dir.path());
        cmd
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.command(program).args(args).output().expect("run a PostgreSQL server binary");
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
        );
    }
}

impl Drop for OwnPg {
    fn drop(&mut self) {
        let _ = self.command("pg_ctl").args(["-D", &self.data(), "-m", "immediate", "-w", "stop"]).output();
    }
}

/// The directory holding `initdb` and `pg_ctl`: the newest Debian version, else `PATH`'s.
fn server_binaries() -> Option<PathBuf> {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| has_tools(bin))
        .collect();
    debian.sort_by_key(|bin| bin.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()));
    debian.pop().or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).find(|dir| has_tools(dir)))
}

fn has_tools(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

fn as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
