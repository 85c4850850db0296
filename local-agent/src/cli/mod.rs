//! The command line: `latchkey init | login | logout | status | connect | disconnect | sync |
//! run | events | token | service`. Each command has a module here that wires config, PAT, cloud client,
//! token cache and store together; the work itself lives in the modules it calls.
//!
//! Exit codes: 0 ok, 1 failure, 2 usage or config error. Summaries and data go to stdout,
//! progress and errors to stderr.

mod connect;
mod disconnect;
mod events;
mod init;
mod login;
mod logout;
mod outage;
mod prompt;
mod run;
mod service;
mod status;
mod sync;
mod token;

use crate::cloud::CloudClient;
use crate::config::{self, Config, Transport};
use crate::error::{Error, Result};
use crate::pat_store::{self, PatSource, PatStore};
use crate::starter::{Starter, StarterKind};
use crate::store::{EventFilter, Store};
use crate::sync::SyncOptions;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

const EXAMPLES: &str = "\
Getting started:
  latchkey init --cloud-url https://latchkey.example.com --org acme --connector spotify
  latchkey login                  # pair this machine: approve the code on the cloud's page
  latchkey connect spotify        # consent at the provider, through the cloud's page, then sync
  latchkey sync spotify           # sync it again
  latchkey run                    # keep syncing every connector on its schedule
  latchkey service install        # run `latchkey run` as a user service (systemd or launchd)
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

    /// Allow plain http:// URLs to other machines, whose traffic (this machine's token,
    /// access tokens) anyone on the network can read: only for a test setup on a network
    /// you trust. Without it, URLs must be https:// unless the host is localhost or
    /// 127.0.0.1
    #[arg(long, global = true)]
    pub insecure: bool,

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

    /// Connect a connector on the cloud (consent at the provider), then sync it once.
    #[command(after_long_help = "Examples:\n  \
latchkey connect spotify\n  \
latchkey connect spotify --no-browser --no-sync\n  \
latchkey connect github --add --label personal    # another account on the same connector")]
    Connect {
        /// The connector's `name` in the config.
        name: String,
        /// Do not open a browser; just print the URL.
        #[arg(long)]
        no_browser: bool,
        /// Do not run the first sync once connected.
        #[arg(long)]
        no_sync: bool,
        /// Connect another account when you already have one on this connector (without a
        /// terminal to ask you on, this is the only way to say so).
        #[arg(long)]
        add: bool,
        /// Name the new connection (the cloud's default is the provider's account name).
        #[arg(long, value_name = "LABEL")]
        label: Option<String>,
    },

    /// Disconnect a connector on the cloud, which revokes the grant at the provider.
    #[command(
        after_long_help = "Examples:\n  latchkey disconnect spotify\n  latchkey disconnect spotify --yes   # no question (scripts)"
    )]
    Disconnect {
        /// The connector's `name` in the config.
        name: String,
        /// Do not ask for confirmation (needed without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
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

    /// Sync every connector on its schedule, following config and cloud changes, until SIGINT or SIGTERM.
    #[command(after_long_help = "Examples:\n  \
latchkey run              # Ctrl-C finishes the page in hand, then exits\n  \
kill -HUP <pid>           # reload the config now (it is also reloaded when the file changes)")]
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

    /// Install `latchkey run` as a user service (systemd on Linux, launchd on macOS).
    #[command(
        subcommand,
        after_long_help = "Examples:\n  \
latchkey service install\n  \
latchkey service install --print            # show the unit instead of writing it\n  \
latchkey service uninstall"
    )]
    Service(ServiceCommand),
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Write the service file for this machine's config and data dir, and start it.
    #[command(after_long_help = "Examples:\n  latchkey service install\n  latchkey service install --print\n  \
latchkey service install --kind launchd --print   # a macOS plist, from any machine")]
    Install {
        /// Print the service file instead of writing it.
        #[arg(long)]
        print: bool,
        /// Write the file, but do not ask systemd or launchd to load and start it.
        #[arg(long)]
        no_enable: bool,
        /// The service manager [default: this platform's].
        #[arg(long, value_enum)]
        kind: Option<service::Manager>,
    },
    /// Stop the service and remove its file.
    #[command(after_long_help = "Example:\n  latchkey service uninstall")]
    Uninstall {
        /// Only remove the file; do not ask systemd or launchd to stop it.
        #[arg(long)]
        no_enable: bool,
        /// The service manager [default: this platform's].
        #[arg(long, value_enum)]
        kind: Option<service::Manager>,
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
    let transport = if cli.insecure { Transport::Insecure } else { Transport::Secure };
    let paths = Paths::resolve(cli.config, cli.data_dir, transport)?;
    match cli.command {
        Command::Init { cloud_url, org, connectors, force, print } => {
            let starter =
                Starter { cloud_url: cloud_url.as_deref(), org: org.as_deref(), connectors: &connectors, transport };
            init::init(&paths, &starter, force, print)
        }
        Command::Login { no_browser } => login::login(&paths, no_browser).await,
        Command::Logout => logout::logout(&paths).await,
        Command::Status => status::status(&paths).await,
        Command::Connect { name, no_browser, no_sync, add, label } => {
            let options = connect::Options { no_browser, no_sync, add, label };
            connect::connect(&paths, &name, options).await
        }
        Command::Disconnect { name, yes } => disconnect::disconnect(&paths, &name, yes).await,
        Command::Sync { name, full } => sync::sync_command(&paths, name.as_deref(), SyncOptions { full }).await,
        Command::Run => run::run_forever(&paths).await,
        Command::Events { connector, since, until, limit, json } => {
            let filter = EventFilter {
                connector,
                since: since.as_deref().map(|t| events::parse_time("--since", t)).transpose()?,
                until: until.as_deref().map(|t| events::parse_time("--until", t)).transpose()?,
                limit,
            };
            events::events(&paths, &filter, json).await
        }
        Command::Token { name } => token::token(&paths, &name).await,
        Command::Service(ServiceCommand::Install { print, no_enable, kind }) => {
            service::install(&paths, kind, print, no_enable)
        }
        Command::Service(ServiceCommand::Uninstall { no_enable, kind }) => service::uninstall(kind, no_enable),
    }
}

/// Where the config file and the data dir are, and how the config's URLs are checked.
pub struct Paths {
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub transport: Transport,
}

impl Paths {
    fn resolve(config: Option<PathBuf>, data_dir: Option<PathBuf>, transport: Transport) -> Result<Self> {
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
        Ok(Paths { config, data_dir, transport })
    }

    /// The config, with a warning on stderr for each URL only `--insecure` let through.
    fn load_config(&self) -> Result<Config> {
        let config = Config::load(&self.config, self.transport)?;
        for (key, url) in config.plain_http_urls() {
            eprintln!(
                "warning: --insecure: {key} ({}) is plain http:// to another machine; the tokens sent \
                 there can be read and changed by anyone on the network",
                url.origin().ascii_serialization()
            );
        }
        Ok(config)
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
        let config = paths.load_config()?;
        let pat = pat_store::resolve(std::env::var(pat_store::ENV).ok(), config.pat.as_ref(), &paths.pat_store())?;
        let (pat, pat_source) = match pat {
            Some((pat, source)) => (Some(pat), Some(source)),
            None => (None, None),
        };
        let cloud = Arc::new(CloudClient::new(config.cloud_url.clone(), pat)?.with_config_file(&config.path));
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

    /// Fails with "add a [[connector]]" when none is configured.
    fn require_connectors(&self) -> Result<()> {
        if self.config.connectors.is_empty() {
            Err(Error::Usage(format!(
                "no connectors are configured; add a [[connector]] to {}",
                self.config.path.display()
            )))
        } else {
            Ok(())
        }
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
    fn usage_errors_exit_2() {
        let e = Cli::try_parse_from(["latchkey", "sync", "--bogus"]).err().map(|e| e.exit_code());
        assert_eq!(e, Some(2));
        let e = Cli::try_parse_from(["latchkey", "token"]).err().map(|e| e.exit_code());
        assert_eq!(e, Some(2));
    }
}
