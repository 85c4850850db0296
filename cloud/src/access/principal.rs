//! The verified caller, and what its credential lets it do.

use super::ClientMeta;
use crate::audit;
use crate::error::{Error, Result};
use latchkey_shared::{Scope, ScopeSet};

/// A verified caller.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: String,
    pub via: Via,
}

#[derive(Clone, Debug)]
pub enum Via {
    /// A login: cookie or access JWT. Acts with all of the user's rights.
    Session { session_id: String },
    /// A PAT: only its scopes, and only in its org when bound to one.
    Pat { pat_id: String, scopes: ScopeSet, org_id: Option<String> },
}

impl Principal {
    /// A successful change this caller made in an org, from where it came: the audit
    /// event every org action records. Callers add `target` and `detail`.
    pub fn org_event<'a>(&'a self, meta: &'a ClientMeta, org_id: &'a str, action: &'a str) -> audit::Event<'a> {
        audit::Event {
            org_id: Some(org_id),
            actor_id: Some(&self.user_id),
            pat_id: self.pat_id(),
            action,
            outcome: "success",
            ip: Some(&meta.ip),
            user_agent: meta.user_agent.as_deref(),
            ..Default::default()
        }
    }

    /// A PAT must carry `scope`; a login always may.
    pub fn require(&self, scope: Scope) -> Result<()> {
        match &self.via {
            Via::Pat { scopes, .. } if !scopes.contains(scope) => Err(Error::insufficient_scope(scope)),
            _ => Ok(()),
        }
    }

    /// A PAT bound to an org may act only there.
    pub fn allows_org(&self, org_id: &str) -> bool {
        match &self.via {
            Via::Pat { org_id: Some(bound), .. } => bound == org_id,
            _ => true,
        }
    }

    /// The org a PAT is bound to: listings across orgs show only that one.
    pub fn bound_org(&self) -> Option<&str> {
        match &self.via {
            Via::Pat { org_id: Some(bound), .. } => Some(bound),
            _ => None,
        }
    }

    pub fn session_id(&self) -> Option<&str> {
        match &self.via {
            Via::Session { session_id } => Some(session_id),
            Via::Pat { .. } => None,
        }
    }

    pub fn pat_id(&self) -> Option<&str> {
        match &self.via {
            Via::Pat { pat_id, .. } => Some(pat_id),
            Via::Session { .. } => None,
        }
    }

    /// Some actions (making PATs, managing logins) need a login, not a PAT.
    pub fn require_login(&self) -> Result<&str> {
        self.session_id()
            .ok_or_else(|| Error::forbidden("this action needs a login session, not a personal access token"))
    }
}
