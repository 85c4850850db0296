//! Configuration: built-in defaults, then the TOML file, then environment variables, then
//! command-line flags; each later source wins. Every setting is documented in
//! `latchkey-cloud.example.toml` (printed by `latchkey-cloud example-config`).

use crate::crypto::{self, KeyRing};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use latchkey_shared::secret::SecretString;
use serde::{Deserialize, Deserializer, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The commented example configuration, compiled in.
pub const EXAMPLE: &str = include_str!("../latchkey-cloud.example.toml");

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// One master key of the ring, as written in the config file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterKeyEntry {
    pub version: u32,
    /// Base64 of 32 bytes.
    #[serde(default)]
    pub key: Option<SecretString>,
    /// Or a file holding it.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// The URL people and providers see; defaults to `http://{listen}`.
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// `postgres://…` or `sqlite://…`; unset: SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    /// How long a request waits for a database connection before it is answered 503, in
    /// milliseconds: short, so an unreachable database fails requests fast.
    pub database_acquire_timeout_ms: u64,
    /// SQLite only: how long a write waits for another writer's lock before it fails (503),
    /// in milliseconds.
    pub sqlite_busy_timeout_ms: u64,
    /// After the first SIGTERM or SIGINT, keep serving (with `Connection: close`, `/readyz`
    /// 503) this many seconds so load balancers move away; unset: 5, or 0 in dev mode.
    pub drain_secs: Option<u64>,
    /// Then, at most this many seconds for in-flight requests, background work and the
    /// audit queue to finish before the process exits anyway.
    pub shutdown_timeout_secs: u64,
    /// Base64 master key, or `version:base64,version:base64` with the active one first.
    pub master_key: Option<SecretString>,
    pub master_key_file: Option<PathBuf>,
    /// The key ring, when it is kept in this file: `[[master_keys]]` entries.
    #[serde(default)]
    pub master_keys: Vec<MasterKeyEntry>,
    /// The version that encrypts; defaults to the highest configured.
    pub active_key_version: Option<u32>,
    #[serde(deserialize_with = "flag")]
    pub dev: bool,
    #[serde(deserialize_with = "flag")]
    pub sandbox: bool,
    /// The secret the sandbox's admin hooks require (`X-Sandbox-Admin`); unset or empty:
    /// a random one, printed at start.
    pub sandbox_admin_secret: Option<SecretString>,
    /// Timeout of every call to a provider, in seconds.
    pub provider_timeout_secs: u64,
    /// A token expiring within this many seconds is refreshed before it is handed out.
    pub refresh_window_secs: i64,
    /// How long a request waits for another task's or replica's refresh, in seconds.
    pub refresh_wait_secs: u64,
    /// How long a refresh keeps retrying to save the provider's new tokens while the
    /// database fails, in seconds; the rotated refresh token is lost after that.
    pub refresh_save_retry_secs: u64,
    /// A refresh holds its connection's cross-replica lease this long, renewed every third
    /// of it while the holder works; a dead holder blocks the connection at most this long.
    pub refresh_lease_secs: u64,
    /// The background refresher looks for expiring tokens this often, in seconds.
    pub refresher_interval_secs: u64,
    /// …and renews those expiring within this many seconds.
    pub refresher_lead_secs: i64,
    /// …with at most this many refreshes at once per replica.
    pub refresher_concurrency: usize,
    /// Refresh calls in flight to one provider from this replica, on demand and background
    /// together; more wait their turn. A provider's 429 `Retry-After` pauses them all.
    pub refresh_provider_concurrency: usize,
    /// A failing connection becomes `exhausted` (no more refresh attempts until the
    /// member reconnects) after this many refreshes in a row failed; 0: never by count.
    pub refresh_exhaust_after_failures: u32,
    /// …or once it has been failing this many seconds; 0: never by time.
    pub refresh_exhaust_after_secs: u64,
    /// Audit events the connection-token endpoint may queue before it refuses with 503.
    pub audit_queue: usize,
    pub log_format: LogFormat,
    /// Connection-token requests per minute per PAT; 0 disables the limit.
    pub token_rate_limit: u32,
    /// Failed logins per account per 15 minutes before login is refused.
    pub login_failures_per_account: u32,
    /// Login attempts per client IP per 15 minutes.
    pub login_attempts_per_ip: u32,
    /// How long a login lasts (its refresh tokens and browser cookie), in days.
    pub session_days: u32,
    /// Registration attempts per client IP per hour.
    pub registrations_per_ip: u32,
    /// Whether anyone may create an account (`POST /v1/auth/register`, `/signup`); off
    /// for invite-only deployments.
    pub open_registration: bool,
    /// A login's lifetime in seconds, instead of `session_days` when set (short-lived
    /// logins for strict deployments, and tests of expiry).
    pub session_secs: Option<u64>,
    /// Argon2id hashes (registrations, logins) running at once per replica.
    pub password_hash_concurrency: usize,
    /// …and how many more may wait for one; beyond that the request answers 503.
    pub password_hash_queue: usize,
    /// Proxies in front of the cloud that each append to `X-Forwarded-For`. The client IP
    /// is the entry this many places from the right; 0 uses the socket's peer address.
    pub trusted_proxy_hops: u32,
    /// Webhooks may go to private, loopback, link-local and other internal addresses, and
    /// over plain http (for receivers inside the operator's own network). Off: only public
    /// addresses over https (and, in dev mode, http to loopback).
    #[serde(deserialize_with = "flag")]
    pub webhook_allow_private_targets: bool,
    /// The first retry of a failed webhook delivery waits this long, in milliseconds; each
    /// later one twice as long (with jitter).
    pub webhook_retry_base_ms: u64,
    /// Retries of a delivery stop (it is marked failed) once it is this old, in seconds,
    /// and at least five attempts were made.
    pub webhook_retry_max_age_secs: u64,
    /// How often the webhook worker looks for due deliveries that another replica
    /// published, in milliseconds (this replica's own are sent at once).
    pub webhook_poll_interval_ms: u64,
    /// Operator providers and overrides of built-ins: `[providers.<name>]` tables.
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, toml::Value>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            data_dir: PathBuf::from("latchkey-data"),
            database_url: None,
            database_max_connections: 16,
            database_acquire_timeout_ms: 1000,
            sqlite_busy_timeout_ms: 10_000,
            drain_secs: None,
            shutdown_timeout_secs: 10,
            master_key: None,
            master_key_file: None,
            master_keys: Vec::new(),
            active_key_version: None,
            dev: false,
            sandbox: false,
            sandbox_admin_secret: None,
            provider_timeout_secs: 10,
            refresh_window_secs: 60,
            refresh_wait_secs: 15,
            refresh_save_retry_secs: 60,
            refresh_lease_secs: 5,
            refresher_interval_secs: 15,
            refresher_lead_secs: 300,
            refresher_concurrency: 8,
            refresh_provider_concurrency: 8,
            refresh_exhaust_after_failures: 10,
            refresh_exhaust_after_secs: 86_400,
            audit_queue: 10_000,
            log_format: LogFormat::Human,
            token_rate_limit: 600,
            login_failures_per_account: 10,
            login_attempts_per_ip: 100,
            session_days: 30,
            registrations_per_ip: 20,
            open_registration: true,
            session_secs: None,
            password_hash_concurrency: 4,
            password_hash_queue: 64,
            trusted_proxy_hops: 0,
            webhook_allow_private_targets: false,
            webhook_retry_base_ms: 30_000,
            webhook_retry_max_age_secs: 86_400,
            webhook_poll_interval_ms: 2_000,
            providers: std::collections::BTreeMap::new(),
        }
    }
}

/// Flags set on the command line; `None` leaves the lower sources alone.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_proxy_hops: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_save_retry_secs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
    #[error(
        "no master key configured.\n  Latchkey encrypts client secrets and grants with it. Make one with\n    \
         latchkey-cloud keys generate   (or: openssl rand -base64 32)\n  and set LATCHKEY_MASTER_KEY to it \
         (or master_key_file in the config file).\n  For a throwaway local setup, run with --dev instead."
    )]
    NoMasterKey,
    #[error("master key: {0}")]
    Key(#[from] crypto::CryptoError),
    #[error("cannot read or write {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

impl Config {
    /// Defaults ← file ← environment ← flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Invalid(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment
            .merge(Env::prefixed("LATCHKEY_").ignore(&["CONFIG"]).only(&ENV_KEYS))
            .merge(Env::raw().only(&["DATABASE_URL"]))
            .merge(Serialized::defaults(overrides));
        // The old switch trusted the leftmost, client-written entry; silently ignoring it
        // would leave an operator believing the proxy's address is used.
        if figment.contains(REPLACED_FORWARDED_FOR) {
            return Err(ConfigError::Invalid(
                "trust_forwarded_for (LATCHKEY_TRUST_FORWARDED_FOR) was replaced by trusted_proxy_hops \
                 (LATCHKEY_TRUSTED_PROXY_HOPS): the number of proxies in front of the cloud; remove it"
                    .into(),
            ));
        }
        let config: Config = figment.extract().map_err(|e| ConfigError::Parse(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let public = self.public_url();
        if !(public.starts_with("http://") || public.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "public_url `{public}` must start with http:// or https:// (LATCHKEY_PUBLIC_URL)"
            )));
        }
        self.provider_registry()?;
        if self.session_days == 0 {
            return Err(ConfigError::Invalid("session_days must be at least 1".into()));
        }
        if self.session_secs == Some(0) {
            return Err(ConfigError::Invalid("session_secs must be at least 1 (or left out)".into()));
        }
        if self.webhook_retry_base_ms == 0 || self.webhook_poll_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "webhook_retry_base_ms and webhook_poll_interval_ms must be at least 1".into(),
            ));
        }
        if self.refresh_lease_secs < 3 {
            return Err(ConfigError::Invalid(
                "refresh_lease_secs must be at least 3 (its heartbeat renews it every third)".into(),
            ));
        }
        if self.database_acquire_timeout_ms == 0 {
            return Err(ConfigError::Invalid("database_acquire_timeout_ms must be at least 1".into()));
        }
        if self.password_hash_concurrency == 0 {
            return Err(ConfigError::Invalid("password_hash_concurrency must be at least 1".into()));
        }
        Ok(())
    }

    /// How long a stopping replica keeps serving before it stops accepting: `drain_secs`,
    /// else 5 s, or none in dev mode (where Ctrl-C should stop at once).
    pub fn drain_period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.drain_secs.unwrap_or(if self.dev { 0 } else { 5 }))
    }

    /// The database pool's limits and waits.
    pub fn pool_settings(&self) -> crate::store::PoolSettings {
        crate::store::PoolSettings {
            max_connections: self.database_max_connections,
            acquire_timeout: std::time::Duration::from_millis(self.database_acquire_timeout_ms),
            sqlite_busy_timeout: std::time::Duration::from_millis(self.sqlite_busy_timeout_ms),
        }
    }

    /// The public URL without a trailing slash.
    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen)).trim_end_matches('/').to_owned()
    }

    /// How long a login lasts, in seconds: `session_secs`, else `session_days`.
    pub fn session_lifetime_secs(&self) -> i64 {
        match self.session_secs {
            Some(secs) => i64::try_from(secs).unwrap_or(i64::MAX / 2).min(i64::from(u32::MAX) * 86_400),
            None => i64::from(self.session_days) * 86_400,
        }
    }

    /// Secure cookies whenever people reach us over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url().starts_with("https://")
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| crate::store::Store::sqlite_url_for(&self.data_dir))
    }

    /// The built-in providers with this file's additions and overrides.
    pub fn provider_registry(&self) -> Result<crate::providers::ProviderRegistry, ConfigError> {
        crate::providers::ProviderRegistry::with_config(self.providers.clone())
            .map_err(|e| ConfigError::Invalid(format!("[providers]: {e}")))
    }

    /// Builds the key ring from the configured keys. In dev mode with none configured,
    /// generates one into the data directory (0600) and reuses it on later starts.
    pub fn key_ring(&self) -> Result<(KeyRing, KeySource), ConfigError> {
        let mut keys: Vec<(u32, SecretString)> = Vec::new();
        for entry in &self.master_keys {
            let key = match (&entry.key, &entry.key_file) {
                (Some(k), None) => k.clone(),
                (None, Some(path)) => read_key_file(path)?,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "master_keys version {}: give exactly one of `key` or `key_file`",
                        entry.version
                    )))
                }
            };
            keys.push((entry.version, key));
        }
        if let Some(spec) = &self.master_key {
            keys.extend(parse_key_spec(spec.expose())?);
        }
        if let Some(path) = &self.master_key_file {
            keys.push((1, read_key_file(path)?));
        }
        let mut source = KeySource::Configured;
        if keys.is_empty() {
            if !self.dev {
                return Err(ConfigError::NoMasterKey);
            }
            let (key, generated) = dev_key(&self.data_dir)?;
            keys.push((1, key));
            source = if generated { KeySource::DevGenerated } else { KeySource::DevFile };
        }
        let active = match (self.active_key_version, &self.master_key) {
            (Some(v), _) => v,
            // In `v2:…,v1:…` the first one is active.
            (None, Some(spec)) if spec.expose().contains(':') => keys
                .iter()
                .find(|(v, _)| spec.expose().trim().starts_with(&format!("{v}:")))
                .map(|(v, _)| *v)
                .unwrap_or(1),
            _ => keys.iter().map(|(v, _)| *v).max().unwrap_or(1),
        };
        Ok((KeyRing::new(active, &keys)?, source))
    }
}

/// Where the key ring came from, for the start-up message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    Configured,
    DevGenerated,
    DevFile,
}

/// The setting `trusted_proxy_hops` replaced; still read, to refuse it.
const REPLACED_FORWARDED_FOR: &str = "trust_forwarded_for";

const ENV_KEYS: [&str; 43] = [
    "LISTEN",
    "PUBLIC_URL",
    "DATA_DIR",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_ACQUIRE_TIMEOUT_MS",
    "SQLITE_BUSY_TIMEOUT_MS",
    "DRAIN_SECS",
    "SHUTDOWN_TIMEOUT_SECS",
    "REFRESH_LEASE_SECS",
    "MASTER_KEY",
    "MASTER_KEY_FILE",
    "ACTIVE_KEY_VERSION",
    "DEV",
    "SANDBOX",
    "SANDBOX_ADMIN_SECRET",
    "PROVIDER_TIMEOUT_SECS",
    "REFRESH_WINDOW_SECS",
    "REFRESH_WAIT_SECS",
    "REFRESH_SAVE_RETRY_SECS",
    "REFRESHER_INTERVAL_SECS",
    "REFRESHER_LEAD_SECS",
    "REFRESHER_CONCURRENCY",
    "REFRESH_PROVIDER_CONCURRENCY",
    "REFRESH_EXHAUST_AFTER_FAILURES",
    "REFRESH_EXHAUST_AFTER_SECS",
    "AUDIT_QUEUE",
    "LOG_FORMAT",
    "TOKEN_RATE_LIMIT",
    "LOGIN_FAILURES_PER_ACCOUNT",
    "LOGIN_ATTEMPTS_PER_IP",
    "SESSION_DAYS",
    "REGISTRATIONS_PER_IP",
    "OPEN_REGISTRATION",
    "SESSION_SECS",
    "PASSWORD_HASH_CONCURRENCY",
    "PASSWORD_HASH_QUEUE",
    "TRUSTED_PROXY_HOPS",
    "TRUST_FORWARDED_FOR",
    "WEBHOOK_ALLOW_PRIVATE_TARGETS",
    "WEBHOOK_RETRY_BASE_MS",
    "WEBHOOK_RETRY_MAX_AGE_SECS",
    "WEBHOOK_POLL_INTERVAL_MS",
    "DATABASE_URL",
];

/// `base64` (version 1) or `2:base64,1:base64`.
fn parse_key_spec(spec: &str) -> Result<Vec<(u32, SecretString)>, ConfigError> {
    let spec = spec.trim();
    if !spec.contains(':') {
        return Ok(vec![(1, SecretString::new(spec.to_owned()))]);
    }
    spec.split(',')
        .map(|part| {
            let (v, key) = part
                .trim()
                .split_once(':')
                .ok_or_else(|| ConfigError::Invalid("LATCHKEY_MASTER_KEY: expected `version:base64` entries".into()))?;
            let version = v
                .parse::<u32>()
                .map_err(|_| ConfigError::Invalid(format!("LATCHKEY_MASTER_KEY: `{v}` is not a key version number")))?;
            Ok((version, SecretString::new(key.to_owned())))
        })
        .collect()
}

fn read_key_file(path: &Path) -> Result<SecretString, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| SecretString::new(s.trim().to_owned()))
        .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })
}

/// The dev-mode key: `data_dir/master.key`, created 0600 on first use.
fn dev_key(data_dir: &Path) -> Result<(SecretString, bool), ConfigError> {
    let path = data_dir.join("master.key");
    if path.exists() {
        return Ok((read_key_file(&path)?, false));
    }
    let io = |source| ConfigError::Io { path: path.display().to_string(), source };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let key = crypto::generate_master_key();
    write_private(&path, key.expose()).map_err(io)?;
    Ok((key, true))
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")
}

/// Accepts `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, as environment variables
/// are usually written.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Int(i64),
        Str(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bool(b) => Ok(b),
        Raw::Int(i) => Ok(i != 0),
        Raw::Str(s) => match s.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!("`{other}` is not true or false"))),
        },
    }
}
