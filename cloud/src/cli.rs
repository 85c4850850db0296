//! The `latchkey-cloud` command line.

use crate::config::{Config, LogFormat, Overrides};
use crate::server;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

const SETTINGS_HELP: &str = "\
Settings (environment wins over the config file; flags win over both):
  LATCHKEY_CONFIG            path of the TOML config file (--config)
  LATCHKEY_LISTEN            listen address [default: 127.0.0.1:8080]
  LATCHKEY_PUBLIC_URL        URL people and providers see [default: http://{listen}]
  LATCHKEY_DATA_DIR          where latchkey.db and the dev-mode key live [default: ./latchkey-data]
  DATABASE_URL               postgres://… or sqlite://…; unset: SQLite in the data dir
  LATCHKEY_MASTER_KEY        base64 of 32 bytes, or a ring \"2:<b64>,1:<b64>\" (first encrypts)
  LATCHKEY_MASTER_KEY_FILE   file holding the master key
  LATCHKEY_DEV=1             dev mode: generated master key, plain-http cookies, loud warning
  LATCHKEY_SANDBOX=1         serve the sandbox OAuth provider (dev mode, or loopback listen and public URL)
  LATCHKEY_SANDBOX_ADMIN_SECRET  secret of the sandbox's admin hooks (X-Sandbox-Admin);
                             unset: a random one, printed at start
  LATCHKEY_PROVIDER_TIMEOUT_SECS  timeout of calls to providers [default: 10]
  LATCHKEY_DRAIN_SECS        on SIGTERM, serve on this long (/readyz 503, Connection: close)
                             [default: 5; 0 in dev mode]; then LATCHKEY_SHUTDOWN_TIMEOUT_SECS
                             for in-flight work [default: 10]; a second signal exits at once
  LATCHKEY_REFRESH_SAVE_RETRY_SECS  how long a refresh retries saving a provider's new
                             tokens while the database fails (--refresh-save-retry-secs) [default: 60]
  LATCHKEY_REFRESH_EXHAUST_AFTER_FAILURES  failed refreshes in a row after which a connection is
                             `exhausted` and no longer retried until reconnected [default: 10; 0: off]
  LATCHKEY_REFRESH_EXHAUST_AFTER_SECS  …or seconds since its first failure [default: 86400; 0: off]
  LATCHKEY_LOG_FORMAT        human | json
  LATCHKEY_TOKEN_RATE_LIMIT  connection-token requests per minute per PAT (0 = no limit)
  LATCHKEY_TRUSTED_PROXY_HOPS  proxies in front that append to X-Forwarded-For; the client IP
                             is the entry that many from the right [default: 0: the socket's peer]
  LATCHKEY_REGISTRATIONS_PER_IP  registration attempts per client IP per hour [default: 20]
  LATCHKEY_PASSWORD_HASH_CONCURRENCY  password hashes at once [default: 4]; up to
                             LATCHKEY_PASSWORD_HASH_QUEUE more wait [default: 64], then 503
  RUST_LOG                   log filter [default: info]
Every setting, with comments: `latchkey-cloud example-config`.

Examples:
  latchkey-cloud demo                                   # try it: seeded demo with the sandbox
  latchkey-cloud --dev                                  # an empty dev cloud: SQLite, generated key
  DATABASE_URL=postgres://… LATCHKEY_MASTER_KEY=… latchkey-cloud serve
  latchkey-cloud migrate                                # run migrations and exit";

/// Latchkey cloud: holds managed OAuth app secrets and members' grants, and hands local
/// agents short-lived access tokens.
#[derive(Debug, Parser)]
#[command(name = "latchkey-cloud", version, after_long_help = SETTINGS_HELP, after_help = "Run with --help for every setting.")]
pub struct Cli {
    /// TOML config file.
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address.
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// URL people and providers see.
    #[arg(long, global = true, value_name = "URL")]
    public_url: Option<String>,
    /// Data directory (SQLite file, dev-mode key).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (postgres://… or sqlite://…).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Dev mode: generated master key, plain-http cookies. Never in production.
    #[arg(long, global = true)]
    dev: bool,
    /// Serve the sandbox OAuth provider.
    #[arg(long, global = true)]
    sandbox: bool,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    /// Proxies in front that append to X-Forwarded-For (0: use the socket's peer address).
    #[arg(long, global = true, value_name = "N")]
    trusted_proxy_hops: Option<u32>,
    /// How long a refresh retries saving a provider's new tokens while the database fails.
    #[arg(long, global = true, value_name = "SECS")]
    refresh_save_retry_secs: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API and the pages (the default when no command is given).
    #[command(after_long_help = "Examples:\n  \
latchkey-cloud --dev                       # try it locally: SQLite, generated key\n  \
LATCHKEY_MASTER_KEY=... DATABASE_URL=postgres://... latchkey-cloud serve")]
    Serve,
    /// Run the database migrations and exit (serve also runs them at start).
    #[command(
        after_long_help = "Example:\n  DATABASE_URL=postgres://... latchkey-cloud migrate   # e.g. a deploy's migration job"
    )]
    Migrate,
    /// Generate, rotate or verify the master keys that encrypt secrets at rest.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print a commented config file with every setting.
    #[command(after_long_help = "Example:\n  latchkey-cloud example-config > latchkey-cloud.toml")]
    ExampleConfig,
    /// Try Latchkey: dev mode, the sandbox provider and a fresh database with demo data.
    #[command(after_long_help = "\
Seeds an admin and a member (their logins are printed), a public org `demo` with a
managed sandbox app and a `sandbox` connector, and prints the agent commands to run
next. The data dir is a fresh temporary directory unless --data-dir is given.

Examples:
  latchkey-cloud demo
  latchkey-cloud demo --listen 127.0.0.1:9090 --items 1000")]
    Demo {
        /// How many items the sandbox's data API serves each user.
        #[arg(long, default_value_t = 300, value_name = "N")]
        items: usize,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Print a new random master key (base64 of 32 bytes).
    #[command(after_long_help = "Example:\n  export LATCHKEY_MASTER_KEY=\"$(latchkey-cloud keys generate)\"")]
    Generate,
    /// Re-encrypt every secret under the active key, online; report what older keys still hold.
    #[command(after_long_help = "\
Put the new key first in the ring, keep the old ones after it, run this, and retire an
old version once nothing is left under it.

Example:
  LATCHKEY_MASTER_KEY=\"2:$(latchkey-cloud keys generate),1:$OLD_KEY\" latchkey-cloud keys rotate")]
    Rotate,
    /// Decrypt every secret with the configured key ring and report any that fail.
    #[command(after_long_help = "Example:\n  latchkey-cloud keys verify   # exits 1 when a secret does not decrypt")]
    Verify,
}

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            public_url: self.public_url.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            dev: self.dev.then_some(true),
            sandbox: self.sandbox.then_some(true),
            log_format: self.log_json.then_some(LogFormat::Json),
            trusted_proxy_hops: self.trusted_proxy_hops,
            refresh_save_retry_secs: self.refresh_save_retry_secs,
        }
    }
}

/// Entry point of the binary. Returns the process exit code.
pub async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::ExampleConfig) => {
            print!("{}", crate::config::EXAMPLE);
            return std::process::ExitCode::SUCCESS;
        }
        Some(Command::Keys(KeysCommand::Generate)) => {
            println!("{}", crate::crypto::generate_master_key().expose());
            return std::process::ExitCode::SUCCESS;
        }
        _ => {}
    }
    let mut overrides = cli.overrides();
    // The demo starts from nothing: a fresh data directory unless one is given.
    if matches!(cli.command, Some(Command::Demo { .. }))
        && overrides.data_dir.is_none()
        && std::env::var_os("LATCHKEY_DATA_DIR").is_none()
    {
        let dir = std::env::temp_dir().join(format!("latchkey-demo-{}", uuid::Uuid::new_v4().simple()));
        overrides.data_dir = Some(dir);
    }
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("latchkey-cloud: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_tracing(config.log_format);
    let result = match cli.command {
        None | Some(Command::Serve) => run_serve(config).await,
        Some(Command::Migrate) => {
            server::open_store(&config).await.map(|_| tracing::info!("migrations are up to date"))
        }
        Some(Command::Demo { items }) => crate::demo::run(config, items).await,
        Some(Command::Keys(KeysCommand::Rotate)) => run_keys(config, true).await,
        Some(Command::Keys(KeysCommand::Verify)) => run_keys(config, false).await,
        Some(Command::Keys(KeysCommand::Generate)) | Some(Command::ExampleConfig) => Ok(()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("latchkey-cloud: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_serve(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let state = server::build_state(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e} (set LATCHKEY_LISTEN or --listen)"))?;
    server::serve(state, listener, server::shutdown_signal()).await
}

async fn run_keys(config: Config, rotate: bool) -> anyhow::Result<()> {
    let (keys, _) = config.key_ring()?;
    let store = server::open_store(&config).await?;
    crate::keys::verify_ring_against_store(&store, &keys).await?;
    let report =
        if rotate { crate::keys::rotate(&store, &keys).await? } else { crate::keys::verify(&store, &keys).await? };
    if rotate {
        println!("re-encrypted {} row(s) under master key version {}", report.rewritten, keys.active_version());
        for (table, left) in &report.left {
            println!("{table}: {left} row(s) left under older key versions");
        }
        if report.failures.is_empty() && report.left.values().all(|n| *n == 0) {
            println!("nothing is sealed with older key versions any more; they can be retired from the ring");
        }
    } else if report.failures.is_empty() {
        println!("every sealed value decrypts with the configured key ring");
    }
    for failure in &report.failures {
        eprintln!("FAILED: {failure}");
    }
    if report.failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} sealed value(s) could not be decrypted", report.failures.len())
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Colours only for a person at a terminal, not for a log file or a collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command's help is one line in the list, with an example in its long help.
    #[test]
    fn every_command_reads_well() {
        Cli::command().debug_assert();
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
                assert!(!about.is_empty() && !about.contains('\n') && about.len() <= 100, "{path}: one-line help");
                if sub.has_subcommands() {
                    walk(sub, &path);
                } else {
                    let long = sub.get_after_long_help().map(ToString::to_string).unwrap_or_default();
                    assert!(long.contains("latchkey-cloud"), "{path}: an example in the long help");
                }
            }
        }
        walk(&Cli::command(), "latchkey-cloud");
    }
}
