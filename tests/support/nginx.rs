//! nginx from Debian in front of test replicas, running the SHIPPED
//! `deploy/nginx/latchkey.conf`: the test fills in only the upstream addresses and the
//! listen port, and wraps the file (an `http`-context include) in the skeleton an
//! unprivileged foreground nginx needs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const NGINX: &str = "/usr/sbin/nginx";

/// The upstream line of the shipped config that names the compose service.
const UPSTREAM_SERVER: &str = "server cloud:8080";
const LISTEN: &str = "listen 8080;";

pub struct Nginx {
    pub base: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx on `port` balancing over `upstreams` (`127.0.0.1:port` each). `None` when nginx
    /// is not installed on a developer machine; under `CI` that fails loudly.
    pub async fn start(port: u16, upstreams: &[String]) -> Option<Self> {
        if !Path::new(NGINX).is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "nginx is required under CI and is not installed at {NGINX} (apt-get install -y nginx)"
            );
            eprintln!("SKIPPING a test that runs nginx: {NGINX} is not installed (apt-get install -y nginx)");
            return None;
        }
        let dir = tempfile::Builder::new().prefix("latchkey-nginx-").tempdir().expect("temp dir");
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, wrapped(&shipped_with(port, upstreams), dir.path())).expect("write nginx.conf");
        let out = Command::new(NGINX).args(args(dir.path(), &conf)).arg("-t").output().expect("nginx -t");
        assert!(
            out.status.success(),
            "nginx rejects the shipped config: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&conf).unwrap_or_default()
        );
        let child = Command::new(NGINX)
            .args(args(dir.path(), &conf))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        let mut nginx = Nginx { base: format!("http://127.0.0.1:{port}"), child, dir };
        nginx.wait_listening(port).await;
        Some(nginx)
    }

    async fn wait_listening(&mut self, port: u16) {
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited with {status}:\n{}", self.error_log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nginx did not listen on {port}:\n{}", self.error_log());
    }

    /// nginx's error log: upstream errors and retries, shown when a test fails.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("nginx.conf")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // One process (`master_process off`): no worker outlives it holding the port.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn args(prefix: &Path, conf: &Path) -> Vec<String> {
    let p = prefix.display();
    vec![
        "-p".into(),
        format!("{p}/"),
        "-e".into(),
        format!("{p}/error.log"),
        "-c".into(),
        conf.display().to_string(),
        "-g".into(),
        format!("daemon off; master_process off; pid {p}/nginx.pid; error_log {p}/error.log warn;"),
    ]
}

/// `deploy/nginx/latchkey.conf` as shipped.
pub fn shipped_config() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/latchkey.conf");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The shipped config with its one `server cloud:8080 …;` line repeated for each upstream
/// address (its parameters kept) and its `listen 8080;` on a loopback port.
pub fn shipped_with(port: u16, upstreams: &[String]) -> String {
    let shipped = shipped_config();
    let mut servers = 0;
    let mut listens = 0;
    let mut out = String::new();
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        if let Some(params) = trimmed.strip_prefix(UPSTREAM_SERVER) {
            servers += 1;
            let indent = &line[..line.len() - trimmed.len()];
            for upstream in upstreams {
                out.push_str(&format!("{indent}server {upstream}{params}\n"));
            }
        } else if trimmed == LISTEN {
            listens += 1;
            out.push_str(&line.replace(LISTEN, &format!("listen 127.0.0.1:{port};")));
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(servers, 1, "the shipped config has one `{UPSTREAM_SERVER} …;` line:\n{shipped}");
    assert_eq!(listens, 1, "the shipped config has one `{LISTEN}` line:\n{shipped}");
    out
}

/// The `http`-context include inside the main context an nginx run as a test needs: its
/// temp and log paths in `dir`.
fn wrapped(http: &str, dir: &Path) -> String {
    let d = dir.display();
    format!(
        "events {{ worker_connections 1024; }}\n\
         http {{\n\
         access_log off;\n\
         client_body_temp_path {d}/client_body;\n\
         proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n\
         {http}\n\
         }}\n"
    )
}
