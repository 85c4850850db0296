//! Benchmark: how fast `latchkey sync` ingests, and how much memory it needs.
//!
//! Starts a cloud with the sandbox provider in this process (SQLite, loopback), sets up an
//! org with a connected member, serves 100,000 items (or `--items N`), and runs
//! `latchkey sync sandbox` as a child process with a fresh data dir. Prints events per
//! second (wall time of the child, start-up and token fetch included) and the child's peak
//! resident memory (`VmHWM` from `/proc/<pid>/status`, sampled while it runs), then a
//! second sync that finds nothing new.
//!
//! Aims: more than 50,000 events/s and less than 50 MiB.
//!
//! ```sh
//! cargo build --release -p latchkey-agent -p latchkey-e2e --bin agent-ingest
//! target/release/agent-ingest            # or: --items 250000
//! ```
#![forbid(unsafe_code)]

use anyhow::{anyhow, bail, Context, Result};
use latchkey_e2e::{consent, json, Backend, Cloud, SandboxOrg, TestDb};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AIM_EVENTS_PER_SEC: f64 = 50_000.0;
const AIM_PEAK_MIB: f64 = 50.0;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let items = items_from_args()?;
    let agent = agent_binary()?;
    let db = TestDb::new(Backend::Sqlite).await;
    let cloud = Cloud::start_with(&db, |c| {
        c.sandbox = true;
        c.token_rate_limit = 0;
    })
    .await;
    let api = cloud.api();
    let org = SandboxOrg::setup(&api).await;
    let (_, page) = consent(&api, &org.member, "acme", "sandbox").await;
    if page.status != 200 {
        bail!("consent failed: {} {}", page.status, page.text);
    }
    let set = api.put("/sandbox/admin/items", None, json!({"count": items})).await;
    if !set.status.is_success() {
        bail!("PUT /sandbox/admin/items failed: {} {}", set.status, set.text);
    }
    let (_, pat) = api.pat(&org.member, &["connections:token", "connections:read"]).await;

    let home = tempfile::tempdir()?;
    let config = home.path().join("latchkey.toml");
    std::fs::write(
        &config,
        format!(
            "cloud_url = \"{}\"\n\n[[connector]]\nname = \"sandbox\"\nkind = \"sandbox\"\norg = \"acme\"\nconnector_key = \"sandbox\"\n",
            api.base
        ),
    )?;
    let data = home.path().join("data");

    println!("latchkey sync: {items} sandbox items, agent {}", agent.display());
    let first = run_sync(&agent, &config, &data, &pat).await?;
    let stored = stored_events(&data).await?;
    if stored != items as i64 {
        bail!("the agent stored {stored} events, expected {items}\n{}", first.output);
    }
    let rate = items as f64 / first.elapsed.as_secs_f64();
    let peak_mib = first.peak_kib as f64 / 1024.0;
    println!("  agent says:  {}", first.output.trim());
    println!("  wall time:   {:.2} s", first.elapsed.as_secs_f64());
    println!(
        "  throughput:  {rate:.0} events/s   (aim > {AIM_EVENTS_PER_SEC:.0}: {})",
        verdict(rate > AIM_EVENTS_PER_SEC)
    );
    println!("  peak RSS:    {peak_mib:.1} MiB      (aim < {AIM_PEAK_MIB:.0}: {})", verdict(peak_mib < AIM_PEAK_MIB));

    let again = run_sync(&agent, &config, &data, &pat).await?;
    println!("re-sync, nothing new:");
    println!("  agent says:  {}", again.output.trim());
    println!("  wall time:   {:.2} s, peak RSS {:.1} MiB", again.elapsed.as_secs_f64(), again.peak_kib as f64 / 1024.0);

    cloud.stop().await;
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

fn items_from_args() -> Result<usize> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(100_000),
        [flag, n] if flag == "--items" => n.parse().with_context(|| format!("--items {n}: not a number")),
        _ => bail!("usage: agent-ingest [--items N]"),
    }
}

/// `latchkey`, built next to this program (same profile).
fn agent_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| anyhow!("no directory for {}", exe.display()))?;
    let path = dir.join(format!("latchkey{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        bail!("{} is missing; build it with the same profile: cargo build --release -p latchkey-agent", path.display());
    }
    Ok(path)
}

struct SyncRun {
    elapsed: Duration,
    peak_kib: u64,
    output: String,
}

/// Runs `latchkey sync sandbox`, sampling its peak RSS until it exits.
async fn run_sync(agent: &Path, config: &Path, data: &Path, pat: &str) -> Result<SyncRun> {
    let started = Instant::now();
    let mut child = Command::new(agent)
        .args(["sync", "sandbox"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LATCHKEY_CONFIG", config)
        .env("LATCHKEY_DATA_DIR", data)
        .env("LATCHKEY_PAT", pat)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning latchkey")?;
    let pid = child.id();
    // Drain the pipes so the child never blocks on them.
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let mut peak_kib = 0;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let elapsed = started.elapsed();
    let output = stdout.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    let errors = stderr.map(|h| h.join().unwrap_or_default()).unwrap_or_default();
    if !status.success() {
        bail!("latchkey sync failed ({status}):\n{output}\n{errors}");
    }
    Ok(SyncRun { elapsed, peak_kib, output })
}

fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The `VmHWM` (peak resident set) of a running process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How many events the agent stored.
async fn stored_events(data: &Path) -> Result<i64> {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(data.join("latchkey.db"));
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
    let n: i64 = sqlx::query_scalar("select count(*) from events").fetch_one(&pool).await?;
    pool.close().await;
    Ok(n)
}
