//! The command line: `latchkey init | login | logout | status | connect | sync | run |
//! events | token`. Each command is a function here that wires config, PAT, cloud client,
//! token cache and store together; the work itself lives in the modules it calls.
//!
//! Exit codes: 0 ok, 1 failure, 2 usage or config error. Summaries and data go to stdout,
//! progress and errors to stderr.

use crate::cloud::CloudClient;
use crate::config::{self, Config};
use crate::error::{Error, Result};
use crate::pat_store::{self, PatSource, PatStore};
use crate::progress::Progress;
use crate::shutdown::Shutdown;
use crate::starter::{Starter, StarterKind};
use crate::store::{EventFilter, Store};
use crate::sync::{self, Outcome, SyncContext, SyncOptions};
use crate::token_client::TokenClient;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EXAMPLES: &str = "\
Getting started:
  latchkey init --cloud-url https://latchkey.example.com --org acme --connector spotify
  latchkey login                  # pair this machine: approve the code on the cloud's page
  latchkey connect spotify        # consent at the provider, through the cloud's page
  latchkey sync spotify           # sync it once
  latchkey run                    # keep syncing every connector on its schedule
  latchkey events --connector spotify --since 2024-01-01 --json | jq .payload

Trying the demo cloud (`latchkey-cloud demo`): use --org demo --connector sandbox.

Files:
  config  --config / LATCHKEY_CONFIG, default $XDG_CONFIG_HOME/latchkey/latchkey.toml
  data    --data-dir / LATCHKEY_DATA_DIR, default $XDG_DATA_HOME/latchkey
          (latchkey.db: synced events; pat: this machine's token, mode 0600)
  LATCHKEY_PAT overrides the stored token.

Exit codes: 0 ok, 1 failure, 2 usage or config error.";

/// Latchkey local agent: pairs with the Latchkey cloud, fetches short-lived access
/// tokens and syncs your data into a local database that never leaves this machine.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, after_long_help = EXAMPLES, arg_required_else_help = true)]
pub struct Cli {
    /// The config file [default: $XDG_CONFIG_HOME/latchkey/latchkey.toml]
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The data directory (database and token) [default: $XDG_DATA_HOME/latchkey]
    #[arg(long, global = true, env = "LATCHKEY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter config file, optionally with connectors ready to sync.
    #[command(after_long_help = "Examples:\n  \
latchkey init --cloud-url https://latchkey.example.com\n  \
latchkey init --cloud-url http://127.0.0.1:8080 --org demo --connector sandbox   # the demo cloud\n  \
latchkey init --org acme --connector github --connector spotify\n  \
latchkey init --print > my.toml")]
    Init {
        /// The cloud URL to put in the file [default: http://127.0.0.1:8080].
        #[arg(long, value_name = "URL")]
        cloud_url: Option<String>,
        /// The cloud org (slug) whose connectors --connector adds.
        #[arg(long, value_name = "ORG")]
        org: Option<String>,
        /// Add a ready-to-use [[connector]] named after its kind (repeatable); needs --org.
        #[arg(long = "connector", value_name = "KIND", value_enum)]
        connectors: Vec<StarterKind>,
        /// Replace an existing config file.
        #[arg(long, conflicts_with = "print")]
        force: bool,
        /// Print the starter file instead of writing it.
        #[arg(long)]
        print: bool,
    },

    /// Pair this machine with the cloud: show a code to approve on the cloud's page.
    #[command(
        after_long_help = "Examples:\n  latchkey login\n  latchkey login --no-browser    # on a server: open the URL elsewhere"
    )]
    Login {
        /// Do not open a browser; just print the URL and the code.
        #[arg(long)]
        no_browser: bool,
    },

    /// Revoke this machine's token at the cloud and forget it.
    #[command(after_long_help = "Example:\n  latchkey logout")]
    Logout,

    /// Show the cloud, the pairing, and each connector's connection and last sync.
    #[command(after_long_help = "Example:\n  latchkey status")]
    Status,

    /// Open the cloud's consent page for a connector and wait until it is connected.
    #[command(after_long_help = "Examples:\n  latchkey connect spotify\n  latchkey connect spotify --no-browser")]
    Connect {
        /// The connector's `name` in the config.
        name: String,
        /// Do not open a browser; just print the URL.
        #[arg(long)]
        no_browser: bool,
    },

    /// Sync one connector (or every connector) once.
    #[command(
        after_long_help = "Examples:\n  latchkey sync           # every connector\n  latchkey sync spotify\n  latchkey sync spotify --full   # walk every page even when up to date"
    )]
    Sync {
        /// The connector's `name`; all connectors when left out.
        name: Option<String>,
        /// Walk every page, even once caught up with what is stored.
        #[arg(long)]
        full: bool,
    },

    /// Sync every connector on its schedule until SIGINT or SIGTERM.
    #[command(after_long_help = "Example:\n  latchkey run    # Ctrl-C finishes the page in hand, then exits")]
    Run,

    /// List synced events from the local database, newest first.
    #[command(
        after_long_help = "Examples:\n  latchkey events --limit 20\n  latchkey events --connector spotify --since 2024-05-01 --until 2024-06-01\n  latchkey events --json | jq -r .external_id"
    )]
    Events {
        /// Only this connector's events.
        #[arg(long, value_name = "NAME")]
        connector: Option<String>,
        /// Only events at or after this time (RFC 3339, or a date YYYY-MM-DD in UTC).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only events before this time (RFC 3339, or a date YYYY-MM-DD in UTC).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// At most this many events.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },

    /// Print a fresh access token for a connector (for scripts, like `gh auth token`).
    #[command(
        after_long_help = "Example:\n  curl -H \"Authorization: Bearer $(latchkey token spotify)\" https://api.spotify.com/v1/me"
    )]
    Token {
        /// The connector's `name` in the config.
        name: String,
    },
}

/// Runs the command line and turns the result into an exit code.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    let paths = Paths::resolve(cli.config, cli.data_dir)?;
    match cli.command {
        Command::Init { cloud_url, org, connectors, force, print } => {
            let starter = Starter { cloud_url: cloud_url.as_deref(), org: org.as_deref(), connectors: &connectors };
            init(&paths, &starter, force, print)
        }
        Command::Login { no_browser } => login(&paths, no_browser).await,
        Command::Logout => logout(&paths).await,
        Command::Status => status(&paths).await,
        Command::Connect { name, no_browser } => connect(&paths, &name, no_browser).await,
        Command::Sync { name, full } => sync_command(&paths, name.as_deref(), SyncOptions { full }).await,
        Command::Run => run_forever(&paths).await,
        Command::Events { connector, since, until, limit, json } => {
            let filter = EventFilter {
                connector,
                since: since.as_deref().map(|t| parse_time("--since", t)).transpose()?,
                until: until.as_deref().map(|t| parse_time("--until", t)).transpose()?,
                limit,
            };
            events(&paths, &filter, json).await
        }
        Command::Token { name } => token(&paths, &name).await,
    }
}

/// Where the config file and the data dir are.
pub struct Paths {
    pub config: PathBuf,
    pub data_dir: PathBuf,
}

impl Paths {
    fn resolve(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> Result<Self> {
        let config = config.or_else(config::default_config_path).ok_or_else(|| {
            Error::Usage(
                "cannot tell where your config dir is (no home directory); pass --config or set LATCHKEY_CONFIG".into(),
            )
        })?;
        let data_dir = data_dir.or_else(config::default_data_dir).ok_or_else(|| {
            Error::Usage(
                "cannot tell where your data dir is (no home directory); pass --data-dir or set LATCHKEY_DATA_DIR"
                    .into(),
            )
        })?;
        Ok(Paths { config, data_dir })
    }

    fn pat_store(&self) -> PatStore {
        PatStore::new(&self.data_dir)
    }

    async fn store(&self) -> Result<Store> {
        Store::open(&self.data_dir.join(crate::store::FILE_NAME)).await
    }
}

/// The config, the PAT (if any) and a cloud client carrying it.
struct Agent {
    config: Config,
    pat_source: Option<PatSource>,
    cloud: Arc<CloudClient>,
}

impl Agent {
    fn load(paths: &Paths) -> Result<Self> {
        let config = Config::load(&paths.config)?;
        let pat = pat_store::resolve(std::env::var(pat_store::ENV).ok(), config.pat.as_ref(), &paths.pat_store())?;
        let (pat, pat_source) = match pat {
            Some((pat, source)) => (Some(pat), Some(source)),
            None => (None, None),
        };
        let cloud = Arc::new(CloudClient::new(config.cloud_url.clone(), pat)?);
        Ok(Agent { config, pat_source, cloud })
    }

    /// Fails with "run `latchkey login`" when there is no PAT.
    fn require_pat(&self) -> Result<()> {
        if self.cloud.is_paired() {
            Ok(())
        } else {
            Err(Error::NotLoggedIn)
        }
    }
}

fn init(paths: &Paths, starter: &Starter<'_>, force: bool, print: bool) -> Result<ExitCode> {
    let text = starter.render()?;
    if print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let path = &paths.config;
    if path.exists() && !force {
        return Err(Error::Usage(format!(
            "{} already exists; edit it, or run `latchkey init` again with --force to replace it",
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // It may come to hold a `pat`: private from the start.
    crate::private_file::write(path, &[text.as_bytes()])?;
    println!("Wrote {}.", path.display());
    if starter.connectors.is_empty() {
        println!("Next: check cloud_url, add a [[connector]] (examples are in the file), then run `latchkey login`.");
    } else {
        println!("Next: `latchkey login` to pair this machine with the cloud.");
    }
    Ok(ExitCode::SUCCESS)
}

async fn login(paths: &Paths, no_browser: bool) -> Result<ExitCode> {
    let config = Config::load(&paths.config)?;
    let cloud = CloudClient::new(config.cloud_url.clone(), None)?;
    let mut stdout = std::io::stdout();
    let pat = crate::pairing::login(&cloud, &mut stdout, !no_browser).await?;
    let store = paths.pat_store();
    store.save(&pat)?;
    println!("Paired. This machine's token is stored in {} (readable only by you).", store.path().display());
    if std::env::var_os(pat_store::ENV).is_some() {
        println!(
            "Note: {} is set in your environment and overrides the stored token; unset it to use this one.",
            pat_store::ENV
        );
    } else if config.pat.is_some() {
        println!("Note: `pat` in {} overrides the stored token; remove it to use this one.", config.path.display());
    }
    println!("Next: `latchkey connect NAME` for each connector, then `latchkey sync`.");
    Ok(ExitCode::SUCCESS)
}

async fn logout(paths: &Paths) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    let Some(source) = agent.pat_source.clone() else {
        println!("This machine is not paired; nothing to do.");
        return Ok(ExitCode::SUCCESS);
    };
    let revoked = agent.cloud.revoke().await;
    let deleted = paths.pat_store().delete()?;
    match &revoked {
        Ok(()) => println!("Revoked this machine's token at {}.", agent.cloud.base_display()),
        Err(e) => {
            eprintln!(
                "error: could not revoke the token at the cloud: {e}\n\
                 Unpair this machine on the cloud's Devices page to make sure it stops working."
            );
        }
    }
    if deleted {
        println!("Deleted {}.", paths.pat_store().path().display());
    }
    match source {
        PatSource::Env => println!("{} is still set in your environment; unset it.", pat_store::ENV),
        PatSource::Config => println!("Remove `pat` from {}.", agent.config.path.display()),
        PatSource::File(_) => {}
    }
    Ok(if revoked.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn status(paths: &Paths) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    let mut healthy = true;
    println!("config:     {}", agent.config.path.display());
    println!("data:       {}", paths.data_dir.display());
    let cloud = agent.cloud.base_display();
    let reachable = match agent.cloud.healthz().await {
        Ok(()) => {
            println!("cloud:      {cloud} (reachable)");
            true
        }
        Err(Error::CloudUnreachable { reason, .. }) => {
            println!("cloud:      {cloud} — NOT reachable: {reason}; check `cloud_url` and that the cloud is up");
            healthy = false;
            false
        }
        Err(e) => {
            println!("cloud:      {cloud} — not healthy: {e}");
            healthy = false;
            false
        }
    };
    match &agent.pat_source {
        Some(source) => println!("paired:     yes (token from {source})"),
        None => {
            println!("paired:     no — run `latchkey login`");
            healthy = false;
        }
    }
    let store = paths.store().await?;
    if agent.config.connectors.is_empty() {
        println!("connectors: none — add a [[connector]] to {}", agent.config.path.display());
    }
    for c in &agent.config.connectors {
        println!();
        println!(
            "{} ({}, org {}, connector {}, every {})",
            c.name,
            c.kind.as_str(),
            c.org,
            c.connector_key,
            c.schedule
        );
        let connection = if !reachable || !agent.cloud.is_paired() {
            "unknown (see above)".to_owned()
        } else {
            match agent.cloud.connection(c).await {
                Ok(Some(conn)) if conn.status == "active" => match &conn.account_name {
                    Some(account) => format!("active, as {account}"),
                    None => "active".to_owned(),
                },
                Ok(Some(conn)) => {
                    healthy = false;
                    format!("{} — run `latchkey connect {}`", conn.status, c.name)
                }
                Ok(None) => {
                    healthy = false;
                    format!("not connected — run `latchkey connect {}`", c.name)
                }
                Err(e) => {
                    healthy = false;
                    e.to_string()
                }
            }
        };
        println!("  connection: {connection}");
        let stored = store.count(&c.name).await?;
        match store.last_run(&c.name).await? {
            Some(run) => {
                let when = run.finished_at.as_deref().unwrap_or(&run.started_at);
                let mut line = format!("{} at {when}, {} new", run.status, run.items_added);
                if let Some(error) = &run.error {
                    line.push_str(&format!(" — {error}"));
                }
                println!("  last sync:  {line}");
            }
            None => println!("  last sync:  never — run `latchkey sync {}`", c.name),
        }
        println!("  stored:     {stored} event{}", if stored == 1 { "" } else { "s" });
    }
    store.close().await;
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// How often `connect` looks at the connection, and for how long.
const CONNECT_POLL: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(600);

async fn connect(paths: &Paths, name: &str, no_browser: bool) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    let c = agent.config.connector(name)?;
    agent.require_pat()?;
    let url = agent.cloud.connect_url(c);
    if let Some(conn) = agent.cloud.connection(c).await?.filter(|conn| conn.status == "active") {
        let account = conn.account_name.map(|a| format!(" as {a}")).unwrap_or_default();
        println!("{name} is already connected{account}. To connect it again, open {url}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("To connect {name}, open this page (sign in to the cloud if asked) and approve:\n\n    {url}\n");
    if !no_browser && crate::browser::open(url.as_str()) {
        println!("Your browser should have opened it.");
    }
    println!("Waiting for the connection (up to {} minutes)…", CONNECT_TIMEOUT.as_secs() / 60);
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        tokio::time::sleep(CONNECT_POLL).await;
        match agent.cloud.connection(c).await {
            Ok(Some(conn)) if conn.status == "active" => {
                let account = conn.account_name.map(|a| format!(" as {a}")).unwrap_or_default();
                println!("Connected{account}. Next: `latchkey sync {name}`.");
                return Ok(ExitCode::SUCCESS);
            }
            Ok(_) | Err(Error::CloudUnreachable { .. }) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(Error::Pairing(format!(
                "{name} was not connected within {} minutes; run `latchkey connect {name}` to try again",
                CONNECT_TIMEOUT.as_secs() / 60
            )));
        }
    }
}

async fn sync_command(paths: &Paths, name: Option<&str>, options: SyncOptions) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    let connectors = match name {
        Some(name) => vec![agent.config.connector(name)?.clone()],
        None if agent.config.connectors.is_empty() => {
            return Err(Error::Usage(format!(
                "no connectors are configured; add a [[connector]] to {}",
                agent.config.path.display()
            )))
        }
        None => agent.config.connectors.clone(),
    };
    agent.require_pat()?;
    let store = paths.store().await?;
    let tokens = TokenClient::new(agent.cloud.clone());
    let stop = Shutdown::on_signals("Stopping after the page in hand…");
    let ctx = SyncContext { cloud_url: &agent.config.cloud_url, tokens: &tokens, store: &store, stop: &stop };
    let mut failed = false;
    for c in &connectors {
        let mut progress = Progress::for_sync(&c.name);
        match sync::sync_once(&ctx, c, options, &mut progress).await {
            Ok(report) => {
                println!("{}", report.summary());
                if report.outcome == Outcome::Interrupted {
                    failed = true;
                    break;
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
        if stop.requested() {
            break;
        }
    }
    store.close().await;
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn run_forever(paths: &Paths) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    if agent.config.connectors.is_empty() {
        return Err(Error::Usage(format!(
            "no connectors are configured; add a [[connector]] to {}",
            agent.config.path.display()
        )));
    }
    agent.require_pat()?;
    let store = Arc::new(paths.store().await?);
    let tokens = Arc::new(TokenClient::new(agent.cloud.clone()));
    let stop = Shutdown::on_signals("Stopping: finishing the pages in hand…");
    let cloud_url = Arc::new(agent.config.cloud_url.clone());
    log(&format!(
        "running {} connector{} until SIGINT or SIGTERM",
        agent.config.connectors.len(),
        if agent.config.connectors.len() == 1 { "" } else { "s" }
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for c in agent.config.connectors.clone() {
        let (store, tokens, stop, cloud_url) = (store.clone(), tokens.clone(), stop.clone(), cloud_url.clone());
        tasks.spawn(async move {
            loop {
                let started = Instant::now();
                let ctx = SyncContext { cloud_url: &cloud_url, tokens: &tokens, store: &store, stop: &stop };
                match sync::sync_once(&ctx, &c, SyncOptions::default(), &mut Progress::Quiet).await {
                    Ok(report) => log(&report.summary()),
                    Err(e) => log(&format!("error: {e}")),
                }
                if stop.requested() {
                    break;
                }
                let wait = c.schedule.interval().saturating_sub(started.elapsed());
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.wait() => break,
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    store.close().await;
    log("stopped");
    Ok(ExitCode::SUCCESS)
}

fn log(line: &str) {
    let now = crate::store::fixed_utc(time::OffsetDateTime::now_utc());
    println!("{now} {line}");
}

/// One line of `latchkey events --json`.
#[derive(serde::Serialize)]
struct JsonEvent<'a> {
    connector: &'a str,
    external_id: &'a str,
    occurred_at: Option<&'a str>,
    synced_at: &'a str,
    payload: Payload<'a>,
}

/// The payload as the JSON it is (or as text, should a row hold something else).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Json(&'a serde_json::value::RawValue),
    Text(&'a str),
}

async fn events(paths: &Paths, filter: &EventFilter, json: bool) -> Result<ExitCode> {
    let store = paths.store().await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = store
        .for_each_event(filter, |e| {
            let written = if json {
                let payload = match serde_json::from_str::<&serde_json::value::RawValue>(&e.payload) {
                    Ok(raw) => Payload::Json(raw),
                    Err(_) => Payload::Text(&e.payload),
                };
                let line = JsonEvent {
                    connector: &e.connector,
                    external_id: &e.external_id,
                    occurred_at: e.occurred_at.as_deref(),
                    synced_at: &e.synced_at,
                    payload,
                };
                serde_json::to_writer(&mut out, &line).map_err(std::io::Error::from).and_then(|()| out.write_all(b"\n"))
            } else {
                let when = e.occurred_at.as_deref().map_or_else(|| "-".to_owned(), short_time);
                let text = crate::event_text::summary(&e.payload, &e.external_id);
                writeln!(out, "{when}  {}  {}  {text}", e.connector, e.external_id)
            };
            written.map_err(|source| Error::io("stdout", source))
        })
        .await;
    let flushed = out.flush().map_err(|source| Error::io("stdout", source));
    store.close().await;
    match result.and_then(|n| flushed.map(|()| n)) {
        Ok(0) if !json => {
            eprintln!("No events yet; run `latchkey sync`.");
            Ok(ExitCode::SUCCESS)
        }
        Ok(_) => Ok(ExitCode::SUCCESS),
        // `latchkey events | head`: the reader left; that is fine.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    }
}

async fn token(paths: &Paths, name: &str) -> Result<ExitCode> {
    let agent = Agent::load(paths)?;
    let c = agent.config.connector(name)?;
    agent.require_pat()?;
    let tokens = TokenClient::new(agent.cloud.clone());
    let token = tokens.fresh(c).await?;
    println!("{}", token.expose());
    Ok(ExitCode::SUCCESS)
}

/// `2023-01-03T01:52:41.000Z` as `2023-01-03 01:52:41Z`: still UTC, easier on the eye.
fn short_time(stored: &str) -> String {
    let whole_seconds = stored.strip_suffix(".000Z").map(|t| format!("{t}Z"));
    whole_seconds.as_deref().unwrap_or(stored).replacen('T', " ", 1)
}

/// `--since`/`--until`: RFC 3339, or `YYYY-MM-DD` meaning midnight UTC.
fn parse_time(flag: &str, text: &str) -> Result<String> {
    if let Some(t) = crate::connectors::normalize_time(text) {
        return Ok(t);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(text.trim(), &date_format) {
        Ok(date) => Ok(crate::store::fixed_utc(date.midnight().assume_utc())),
        Err(_) => Err(Error::Usage(format!(
            "{flag} {text:?} is not a time; use RFC 3339 like 2024-05-01T12:00:00Z, or a date like 2024-05-01"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        for sub in Cli::command().get_subcommands() {
            let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
            assert!(!about.is_empty() && !about.contains('\n'), "{}: one-line help", sub.get_name());
            assert!(sub.get_after_long_help().is_some(), "{}: examples in the long help", sub.get_name());
        }
    }

    #[test]
    fn times_on_the_command_line() {
        assert_eq!(parse_time("--since", "2024-05-01").ok().as_deref(), Some("2024-05-01T00:00:00.000Z"));
        assert_eq!(
            parse_time("--since", "2024-05-01T12:00:00+02:00").ok().as_deref(),
            Some("2024-05-01T10:00:00.000Z")
        );
        let e = parse_time("--until", "last tuesday").err().unwrap_or_else(|| panic!("an error"));
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--until"));
    }

    #[test]
    fn times_read_well() {
        assert_eq!(short_time("2023-01-03T01:52:41.000Z"), "2023-01-03 01:52:41Z");
        assert_eq!(short_time("2023-01-03T01:52:41.250Z"), "2023-01-03 01:52:41.250Z");
    }

    #[test]
    fn usage_errors_exit_2() {
        let e = Cli::try_parse_from(["latchkey", "sync", "--bogus"]).err().map(|e| e.exit_code());
        assert_eq!(e, Some(2));
        let e = Cli::try_parse_from(["latchkey", "token"]).err().map(|e| e.exit_code());
        assert_eq!(e, Some(2));
    }
}
