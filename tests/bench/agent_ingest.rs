//! Benchmark: how fast `latchkey sync` ingests, and how much memory it needs, against a
//! reference that does only the unavoidable work.
//!
//! Starts a cloud with the sandbox provider in this process (SQLite, loopback), sets up an
//! org with a connected member, serves 100,000 items (or `--items N`), and then, `--runs`
//! times (default 3), one after the other so that they share the machine's conditions:
//!
//! * **serving**: fetches every page (same page size) and throws the bodies away: what the
//!   sandbox and loopback HTTP cost, which no client can go below;
//! * **reference**: a minimal client (its own thread and single-threaded runtime, like the
//!   agent) that fetches the same pages, reads each item's id and time, and writes them
//!   into a SQLite file with the agent's schema and durability settings (WAL,
//!   `synchronous = NORMAL`), one transaction per page with its cursor, writing a page
//!   while the next is fetched;
//! * **agent**: `latchkey sync sandbox` as a child process with a fresh data dir (wall
//!   time of the child: start-up, migrations and token fetch included), and the child's
//!   peak resident memory (`VmHWM` from `/proc/<pid>/status`, sampled while it runs).
//!
//! Prints each run, the medians, and the agent's rate as a share of the reference's; then
//! a sync that finds nothing new.
//!
//! Aims: more than 100,000 events/s and less than 30 MiB.
//!
//! ```sh
//! cargo build --release -p latchkey-agent -p latchkey-e2e --bin agent-ingest
//! target/release/agent-ingest            # or: --items 250000 --runs 5
//! AGENT_INGEST_WRAP="perf record -g -o agent.perf --" target/release/agent-ingest --runs 1
//! ```
#![forbid(unsafe_code)]

use anyhow::{anyhow, bail, Context, Result};
use latchkey_e2e::{consent, json, Backend, Cloud, SandboxOrg, TestDb};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AIM_EVENTS_PER_SEC: f64 = 100_000.0;
const AIM_PEAK_MIB: f64 = 30.0;
/// The agent's page size (the sandbox's maximum).
const PAGE_SIZE: usize = 500;
/// The agent's schema, so the reference maintains the same indexes.
const SCHEMA: &str = include_str!("../../migrations/agent-sqlite/0001_local_store.sql");

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse()?;
    let items = args.items;
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
    let token = provider_token(&api.base, &pat).await?;
    let items_url = format!("{}/sandbox/api/items", api.base.trim_end_matches('/'));

    let home = tempfile::tempdir()?;
    let config = home.path().join("latchkey.toml");
    std::fs::write(
        &config,
        format!(
            "cloud_url = \"{}\"\n\n[[connector]]\nname = \"sandbox\"\nkind = \"sandbox\"\norg = \"acme\"\nconnector_key = \"sandbox\"\n",
            api.base
        ),
    )?;

    println!(
        "latchkey sync: {items} sandbox items, pages of {PAGE_SIZE}, {} runs, {} cores, agent {}",
        args.runs,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        agent.display()
    );
    let mut serving = Vec::new();
    let mut reference = Vec::new();
    let mut agent_rates = Vec::new();
    let mut agent_peaks = Vec::new();
    let mut last_data = None;
    for run in 1..=args.runs {
        let served = fetch_only(&items_url, &token, items).await?;
        let referenced = reference_ingest(&items_url, &token, &home.path().join(format!("reference-{run}.db")), items)?;
        let data = home.path().join(format!("data-{run}"));
        let first = run_sync(&agent, &config, &data, &pat).await?;
        let stored = stored_events(&data).await?;
        if stored != items as i64 {
            bail!("the agent stored {stored} events, expected {items}\n{}", first.output);
        }
        let rate = items as f64 / first.elapsed.as_secs_f64();
        let peak_mib = first.peak_kib as f64 / 1024.0;
        println!(
            "run {run}: serving {:>7.0}/s  reference {:>7.0}/s  agent {rate:>7.0}/s, peak RSS {peak_mib:.1} MiB   (agent says: {})",
            items as f64 / served.as_secs_f64(),
            items as f64 / referenced.as_secs_f64(),
            first.output.trim()
        );
        serving.push(items as f64 / served.as_secs_f64());
        reference.push(items as f64 / referenced.as_secs_f64());
        agent_rates.push(rate);
        agent_peaks.push(peak_mib);
        last_data = Some(data);
    }
    let (serving, reference, rate, peak_mib) =
        (median(&mut serving), median(&mut reference), median(&mut agent_rates), median(&mut agent_peaks));
    println!("medians of {} runs:", args.runs);
    println!("  serving alone (sandbox + HTTP, bodies dropped): {serving:.0} items/s");
    println!("  reference (fetch, parse, SQLite per page):     {reference:.0} events/s");
    println!(
        "  agent throughput:  {rate:.0} events/s = {:.2} x reference   (aim > {AIM_EVENTS_PER_SEC:.0}: {})",
        rate / reference,
        verdict(rate > AIM_EVENTS_PER_SEC)
    );
    println!(
        "  agent peak RSS:    {peak_mib:.1} MiB   (aim < {AIM_PEAK_MIB:.0}: {})",
        verdict(peak_mib < AIM_PEAK_MIB)
    );

    if let Some(data) = last_data {
        let again = run_sync(&agent, &config, &data, &pat).await?;
        println!("re-sync, nothing new:");
        println!("  agent says:  {}", again.output.trim());
        println!(
            "  wall time:   {:.2} s, peak RSS {:.1} MiB",
            again.elapsed.as_secs_f64(),
            again.peak_kib as f64 / 1024.0
        );
    }

    cloud.stop().await;
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// A provider access token for the member's sandbox connection, as the agent gets one.
async fn provider_token(base: &str, pat: &str) -> Result<String> {
    let resp = reqwest::Client::new()
        .post(format!("{}/oauth/connection-token", base.trim_end_matches('/')))
        .bearer_auth(pat)
        .json(&json!({"org": "acme", "connector_key": "sandbox"}))
        .send()
        .await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("POST /oauth/connection-token: {status} {body}"))
}

#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct RawItem<'a> {
    id: &'a str,
    played_at: Option<&'a str>,
}

/// GETs the page at `cursor` and returns its body.
async fn get_page(client: &reqwest::Client, url: &str, token: &str, cursor: Option<&str>) -> Result<bytes::Bytes> {
    let limit = PAGE_SIZE.to_string();
    let mut query = vec![("limit", limit.as_str())];
    query.extend(cursor.map(|c| ("cursor", c)));
    let resp = client.get(url).bearer_auth(token).query(&query).send().await?;
    if !resp.status().is_success() {
        bail!("GET {url}: {}", resp.status());
    }
    Ok(resp.bytes().await?)
}

/// Walks every page, reading only the cursor: the sandbox's and HTTP's share of a sync.
async fn fetch_only(url: &str, token: &str, items: usize) -> Result<Duration> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut cursor: Option<String> = None;
    let mut seen = 0;
    loop {
        let body = get_page(&client, url, token, cursor.as_deref()).await?;
        let page: RawPage<'_> = serde_json::from_slice(&body)?;
        seen += page.items.len();
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    if seen != items {
        bail!("serving: {seen} items fetched, expected {items}");
    }
    Ok(started.elapsed())
}

/// One page as the reference writes it: (id, played_at, payload) and the cursor after it.
type RefPage = (Vec<(String, Option<String>, String)>, Option<String>);

/// The reference ingest, on its own thread with a single-threaded runtime (like the agent);
/// a second thread writes each page while the next is fetched.
fn reference_ingest(url: &str, token: &str, db: &Path, items: usize) -> Result<Duration> {
    let (url, token, db) = (url.to_owned(), token.to_owned(), db.to_owned());
    std::thread::spawn(move || -> Result<Duration> {
        let started = Instant::now();
        let (pages, inbox) = std::sync::mpsc::sync_channel::<RefPage>(1);
        let writer = std::thread::spawn(move || write_pages(&db, &inbox));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let fetched = runtime.block_on(async {
            let client = reqwest::Client::new();
            let mut cursor: Option<String> = None;
            loop {
                let body = get_page(&client, &url, &token, cursor.as_deref()).await?;
                let page: RawPage<'_> = serde_json::from_slice(&body)?;
                let mut rows = Vec::with_capacity(page.items.len());
                for raw in page.items {
                    let item: RawItem<'_> = serde_json::from_str(raw.get())?;
                    rows.push((item.id.to_owned(), item.played_at.map(str::to_owned), raw.get().to_owned()));
                }
                cursor = page.next_cursor;
                let last = cursor.is_none();
                if pages.send((rows, cursor.clone())).is_err() || last {
                    break;
                }
            }
            drop(pages);
            anyhow::Ok(())
        });
        let written = writer.join().map_err(|_| anyhow!("the reference writer panicked"))??;
        fetched?;
        if written != items {
            bail!("reference: {written} events stored, expected {items}");
        }
        Ok(started.elapsed())
    })
    .join()
    .map_err(|_| anyhow!("the reference panicked"))?
}

/// Writes each page and its cursor in one transaction; returns how many events were new.
fn write_pages(db: &Path, inbox: &std::sync::mpsc::Receiver<RefPage>) -> Result<usize> {
    let mut conn = rusqlite::Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(SCHEMA)?;
    let mut written = 0;
    for (rows, cursor) in inbox {
        let synced_at = "2026-01-01T00:00:00.000Z";
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "insert into events (connector, external_id, occurred_at, payload, synced_at) \
                 values ('sandbox', ?1, ?2, ?3, ?4) on conflict (connector, external_id) do nothing",
            )?;
            for (id, at, payload) in &rows {
                written += insert.execute(rusqlite::params![id, at, payload, synced_at])?;
            }
            match &cursor {
                Some(c) => tx.execute(
                    "insert into cursors (connector, cursor, updated_at) values ('sandbox', ?1, ?2) \
                     on conflict (connector) do update set cursor = excluded.cursor, updated_at = excluded.updated_at",
                    rusqlite::params![c, synced_at],
                )?,
                None => tx.execute("delete from cursors where connector = 'sandbox'", [])?,
            };
        }
        tx.commit()?;
    }
    Ok(written)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

struct Args {
    items: usize,
    runs: usize,
}

impl Args {
    fn parse() -> Result<Args> {
        let mut args = Args { items: 100_000, runs: 3 };
        let mut rest = std::env::args().skip(1);
        while let Some(flag) = rest.next() {
            let value = rest.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
            let n: usize = value.parse().with_context(|| format!("{flag} {value}: not a number"))?;
            match flag.as_str() {
                "--items" => args.items = n,
                "--runs" if n > 0 => args.runs = n,
                _ => bail!("usage: agent-ingest [--items N] [--runs N]"),
            }
        }
        Ok(args)
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
    // A profiler goes in front of the agent, e.g. `AGENT_INGEST_WRAP="perf record -g --"`
    // (the peak RSS is then the profiler's).
    let wrap = std::env::var("AGENT_INGEST_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut c = Command::new(program);
            c.args(words).arg(agent);
            c
        }
        None => Command::new(agent),
    };
    let mut child = command
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
