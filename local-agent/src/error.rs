//! The agent's one error type. Every message says what went wrong and what to do next;
//! none carries a PAT or an access token.

use std::path::PathBuf;

/// `Result` with the agent's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file is wrong. The message names the file, the key and the fix.
    #[error("{0}")]
    Config(String),

    /// The command line asks for something that cannot be (an unknown connector, a bad date).
    #[error("{0}")]
    Usage(String),

    /// No PAT in the data dir, `LATCHKEY_PAT` or the config.
    #[error("this machine is not paired with the Latchkey cloud; run `latchkey login`")]
    NotLoggedIn,

    /// The cloud answered 401 to the PAT.
    #[error(
        "the cloud at {cloud} does not accept this machine's token (it was revoked or has expired); \
         run `latchkey login` to pair again"
    )]
    PatRejected { cloud: String },

    /// The PAT lacks a scope for what was asked.
    #[error("this machine's token is not allowed to {what}; run `latchkey login` to pair again")]
    PatScope { what: String },

    /// The member is not in the connector's org.
    #[error(
        "you are not a member of org `{org}` on the cloud; join it on the cloud's page, \
         then run `latchkey connect {name}`"
    )]
    NotAMember { name: String, org: String },

    /// No active connection for the connector.
    #[error(
        "connector `{name}` is not connected (org `{org}`, connector `{connector_key}`); \
         run `latchkey connect {name}`"
    )]
    NotConnected { name: String, org: String, connector_key: String },

    /// The connector's org does not exist, or is private and the member is not in it.
    #[error(
        "connector `{name}`: the cloud has no org `{org}` that you can see{}\n  fix: correct `org` of the \
         [[connector]] named \"{name}\" in {file}",
        suggest("orgs you are in", .suggestions)
    )]
    UnknownOrg { name: String, org: String, suggestions: Vec<String>, file: String },

    /// The org exists, but has no connector by that key.
    #[error(
        "connector `{name}`: org `{org}` has no connector `{connector_key}`{}\n  fix: correct `connector_key` \
         of the [[connector]] named \"{name}\" in {file}",
        suggest("its connectors", .available)
    )]
    UnknownConnector { name: String, org: String, connector_key: String, available: Vec<String>, file: String },

    /// The config names a connection (label or id) the member does not hold.
    #[error(
        "connector `{name}`: you have no connection `{connection}` on it; yours are: {}\n  fix: set \
         `connection` of the [[connector]] named \"{name}\" in {file} to one of them",
        .labels.join(", ")
    )]
    UnknownConnection { name: String, connection: String, labels: Vec<String>, file: String },

    /// The member holds several connections on the connector and the config names none.
    #[error(
        "connector `{name}`: you have {} connections (accounts) on it: {}; the cloud will not guess which \
         one to use\n  fix: add this line to the [[connector]] named \"{name}\" in {file}:\n    connection = \"{}\"",
        .labels.len(),
        .labels.join(", "),
        .labels.first().map(String::as_str).unwrap_or("LABEL")
    )]
    AmbiguousConnection { name: String, labels: Vec<String>, file: String },

    /// The provider grant is gone: the member must consent again.
    #[error("connector `{name}` must be reconnected: open {connect_url} or run `latchkey connect {name}`")]
    ReauthRequired { name: String, connect_url: String },

    /// The cloud is rate-limiting this PAT.
    #[error("the cloud is rate-limiting this machine; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },

    /// The cloud could not be reached at all (after retries where they apply).
    #[error("could not reach the cloud at {url}: {reason}; check `cloud_url` in your config and that the cloud is up")]
    CloudUnreachable { url: String, reason: String },

    /// The cloud answered, but with a server error (5xx) even after retries: it is
    /// restarting, draining, or its database is away.
    #[error(
        "the cloud at {url} is not serving right now (it answered {status}{}); it was retried; \
         try again in a minute, or ask its operators if it lasts",
        if .description.is_empty() { String::new() } else { format!(": {}", .description) }
    )]
    CloudUnavailable { url: String, status: u16, description: String },

    /// Any other answer from the cloud that we cannot act on.
    #[error("the cloud answered {status} to {what}: {code}: {description}")]
    Cloud { what: String, status: u16, code: String, description: String },

    /// Pairing (`latchkey login`) ended without a token.
    #[error("{0}")]
    Pairing(String),

    /// The provider refused the access token, even a freshly fetched one.
    #[error(
        "{connector}: the provider refused the access token (401) even after a fresh one was fetched; \
         run `latchkey connect {connector}` to reconnect"
    )]
    ProviderUnauthorized { connector: String },

    /// The provider answered with an error status.
    #[error("{connector}: the provider answered {status} to {url}: {detail}")]
    Provider { connector: String, status: u16, url: String, detail: String },

    /// The provider could not be reached.
    #[error("{connector}: could not reach {url}: {reason}")]
    ProviderUnreachable { connector: String, url: String, reason: String },

    /// The provider's answer is not what the connector understands.
    #[error("{connector}: {message}")]
    Connector { connector: String, message: String },

    /// The local SQLite database failed.
    #[error("the local database {path} failed: {source}; check the disk, or move the file away to start afresh")]
    Store {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },

    /// A migration of the local database failed.
    #[error("could not prepare the local database {path}: {source}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `; {what}: a, b` or nothing when there is nothing to suggest.
fn suggest(what: &str, names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!("; {what}: {}", names.join(", "))
    }
}

impl Error {
    /// The process exit code: 2 for config and usage errors, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// Whether the cloud is away (unreachable, or answering 5xx) rather than refusing
    /// something: a still-valid cached token may then be used, and the next try may work.
    pub fn is_cloud_outage(&self) -> bool {
        matches!(self, Error::CloudUnreachable { .. } | Error::CloudUnavailable { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
