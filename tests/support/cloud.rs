//! The cloud under test: in this process on a loopback listener, or as a real
//! `latchkey-cloud` process.

use crate::*;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

/// Settings a test may change before starting a cloud.
#[derive(Clone, Debug, Default)]
pub struct CloudOptions {
    pub env: Vec<(String, String)>,
}

/// A cloud serving in this process on a loopback port.
pub struct Cloud {
    pub base: String,
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Cloud {
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Starts with a config adjusted by `tweak`.
    pub async fn start_with(db: &TestDb, tweak: impl FnOnce(&mut latchkey_cloud::config::Config)) -> Self {
        Self::start_on(db, 0, tweak).await
    }

    /// Starts on a given port (0: any), for when the public URL must be known first.
    pub async fn start_on(db: &TestDb, port: u16, tweak: impl FnOnce(&mut latchkey_cloud::config::Config)) -> Self {
        // The cloud's logs, shown with a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ))
            .with_test_writer()
            .try_init();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut config = latchkey_cloud::config::Config {
            listen: addr,
            data_dir: db.dir.path().to_path_buf(),
            database_url: Some(db.url.clone()),
            master_key: Some(TEST_MASTER_KEY.into()),
            sandbox_admin_secret: Some(SANDBOX_ADMIN_SECRET.into()),
            database_max_connections: 8,
            // Tests stop clouds often; a drain test sets its own.
            drain_secs: Some(0),
            ..Default::default()
        };
        tweak(&mut config);
        let state = latchkey_cloud::server::build_state(config).await.expect("cloud state");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = latchkey_cloud::server::serve(state, listener, async move {
                let _ = rx.await;
            })
            .await;
        });
        Cloud { base: format!("http://{addr}"), addr, shutdown: Some(tx), task: Some(task) }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Path of a workspace binary built next to this test binary.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // Test binaries live in target/<profile>/deps, programs in target/<profile>.
    let dir = exe.parent().expect("exe dir");
    let dir = if dir.ends_with("deps") { dir.parent().expect("target dir") } else { dir };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; run the suite with `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// A `latchkey-cloud` command against the test database (for `migrate`, `keys …`).
pub fn cloud_command(db: &TestDb, extra_env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(binary("latchkey-cloud"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LATCHKEY_DATA_DIR", db.dir.path())
        .env("DATABASE_URL", &db.url)
        .env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
        .env("RUST_LOG", "warn");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd
}

/// A real `latchkey-cloud` process.
pub struct CloudProcess {
    pub base: String,
    child: Child,
    pub log: PathBuf,
}

impl CloudProcess {
    pub async fn spawn(db: &TestDb, extra_env: &[(&str, &str)]) -> Self {
        Self::try_spawn(db, extra_env)
            .await
            .unwrap_or_else(|log| panic!("latchkey-cloud did not become ready; log:\n{log}"))
    }

    /// Starts a process; `Err` carries its log when it exits or never becomes ready.
    pub async fn try_spawn(db: &TestDb, extra_env: &[(&str, &str)]) -> Result<Self, String> {
        Self::try_spawn_on(db, free_port(), extra_env).await
    }

    /// Starts a process on a given port (when the public URL must be known before).
    pub async fn spawn_on(db: &TestDb, port: u16, extra_env: &[(&str, &str)]) -> Self {
        Self::try_spawn_on(db, port, extra_env)
            .await
            .unwrap_or_else(|log| panic!("latchkey-cloud did not become ready; log:\n{log}"))
    }

    async fn try_spawn_on(db: &TestDb, port: u16, extra_env: &[(&str, &str)]) -> Result<Self, String> {
        let log = db.dir.path().join(format!("cloud-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = std::process::Command::new(binary("latchkey-cloud"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LATCHKEY_LISTEN", format!("127.0.0.1:{port}"))
            .env("LATCHKEY_DATA_DIR", db.dir.path())
            .env("DATABASE_URL", &db.url)
            .env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
            .env("LATCHKEY_SANDBOX_ADMIN_SECRET", SANDBOX_ADMIN_SECRET)
            .env("RUST_LOG", "info")
            // Tests stop processes often; a drain test passes its own.
            .env("LATCHKEY_DRAIN_SECS", "0")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn latchkey-cloud");
        let mut proc = CloudProcess { base: format!("http://127.0.0.1:{port}"), child, log };
        if proc.wait_ready().await {
            Ok(proc)
        } else {
            Err(proc.log_text())
        }
    }

    async fn wait_ready(&mut self) -> bool {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return true;
                }
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process dies mid-whatever, as a crashed replica does.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status code.
    pub fn terminate(mut self) -> Option<i32> {
        self.send_term();
        self.child.wait().ok().and_then(|s| s.code())
    }

    /// Sends SIGTERM and returns at once (a drain test watches what the process does next).
    pub fn send_term(&self) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
    }

    /// Waits up to `limit` for the process to exit: its exit code, `Some(None)` when a
    /// signal killed it, `None` when it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<Option<i32>> {
        let until = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code());
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for CloudProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}
