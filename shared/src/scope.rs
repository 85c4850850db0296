//! PAT scopes and their defaults (docs/api.md, "Scopes").

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a PAT may do. A PAT never acts beyond its user's rights whatever its scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    #[serde(rename = "connections:read")]
    ConnectionsRead,
    #[serde(rename = "connections:create")]
    ConnectionsCreate,
    #[serde(rename = "connections:delete")]
    ConnectionsDelete,
    /// Fetch access tokens. Never a default: it must be asked for by name.
    #[serde(rename = "connections:token")]
    ConnectionsToken,
    #[serde(rename = "apps:read")]
    AppsRead,
    #[serde(rename = "apps:write")]
    AppsWrite,
    #[serde(rename = "orgs:read")]
    OrgsRead,
    #[serde(rename = "orgs:write")]
    OrgsWrite,
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::ConnectionsRead,
        Scope::ConnectionsCreate,
        Scope::ConnectionsDelete,
        Scope::ConnectionsToken,
        Scope::AppsRead,
        Scope::AppsWrite,
        Scope::OrgsRead,
        Scope::OrgsWrite,
        Scope::AuditRead,
    ];

    /// Scopes a new PAT gets when none are asked for.
    pub const DEFAULTS: [Scope; 1] = [Scope::ConnectionsRead];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ConnectionsRead => "connections:read",
            Scope::ConnectionsCreate => "connections:create",
            Scope::ConnectionsDelete => "connections:delete",
            Scope::ConnectionsToken => "connections:token",
            Scope::AppsRead => "apps:read",
            Scope::AppsWrite => "apps:write",
            Scope::OrgsRead => "orgs:read",
            Scope::OrgsWrite => "orgs:write",
            Scope::AuditRead => "audit:read",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown scope name.
#[derive(Debug, thiserror::Error)]
#[error("unknown scope `{0}`")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

/// A set of scopes, stored space-separated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet(std::collections::BTreeSet<Scope>);

impl ScopeSet {
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self(scopes.into_iter().collect())
    }

    pub fn defaults() -> Self {
        Self::new(Scope::DEFAULTS)
    }

    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    pub fn to_vec(&self) -> Vec<Scope> {
        self.0.iter().copied().collect()
    }

    /// Space-separated, the stored form.
    pub fn to_db(&self) -> String {
        self.0.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
    }

    pub fn from_db(s: &str) -> Result<Self, UnknownScope> {
        s.split_whitespace().map(Scope::from_str).collect::<Result<_, _>>().map(Self)
    }
}
