//! Who may see and act in an org, decided once (`check`), in the contract's order: an
//! unknown org, or a private one the caller is not a member of, does not exist for them
//! (404); a PAT bound to another org, or a non-member of a public org, is refused (403
//! `not_a_member`); then the role the action needs.

use super::Principal;
use crate::error::{Error, Result};
use crate::state::AppState;
use axum::http::StatusCode;
use latchkey_shared::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Role {
        match s {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            _ => Role::Member,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
        }
    }

    pub fn parse(s: &str) -> Visibility {
        if s == "public" {
            Visibility::Public
        } else {
            Visibility::Private
        }
    }
}

/// An org as its caller sees it; `role` is null for a public org the caller has not joined.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Org {
    pub id: String,
    pub slug: String,
    pub name: String,
    /// What the org is for, as its admins describe it (may be empty).
    pub description: String,
    pub visibility: Visibility,
    pub role: Option<Role>,
}

/// What the caller needs to be in the org for an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone who may see the org (public, or a member of a private one).
    Visible,
    Member,
    Admin,
    Owner,
}

/// Resolves `{org}` (slug or id) for `principal` and checks `need`.
pub async fn authorize(state: &AppState, principal: &Principal, org_ref: &str, need: Need) -> Result<Org> {
    let row: Option<(String, String, String, String, String, Option<String>)> = sqlx::query_as(
        "select o.id, o.slug, o.name, o.description, o.visibility, m.role from orgs o \
         left join memberships m on m.org_id = o.id and m.user_id = $2 \
         where o.id = $1 or o.slug = $1",
    )
    .bind(org_ref)
    .bind(&principal.user_id)
    .fetch_optional(state.store.pool())
    .await?;
    let org = row.map(|(id, slug, name, description, visibility, role)| Org {
        id,
        slug,
        name,
        description,
        visibility: Visibility::parse(&visibility),
        role: role.as_deref().map(Role::parse),
    });
    check(principal, org, need)
}

/// The one rule: may `principal` do what needs `need` in `org` (as found, with the
/// caller's role; `None` when no org matched)?
pub fn check(principal: &Principal, org: Option<Org>, need: Need) -> Result<Org> {
    let org = org.ok_or_else(org_not_found)?;
    if org.visibility == Visibility::Private && org.role.is_none() {
        return Err(org_not_found());
    }
    if !principal.allows_org(&org.id) {
        return Err(not_a_member("this token is bound to another org"));
    }
    match (need, org.role) {
        (Need::Visible, _) => Ok(org),
        (_, None) => Err(not_a_member("you are not a member of this org")),
        (Need::Member, Some(_)) => Ok(org),
        (Need::Admin, Some(r)) if r >= Role::Admin => Ok(org),
        (Need::Owner, Some(Role::Owner)) => Ok(org),
        (Need::Admin, _) => Err(Error::forbidden("only the org's owners and admins can do this")),
        (Need::Owner, _) => Err(Error::forbidden("only the org's owners can do this")),
    }
}

fn org_not_found() -> Error {
    Error::not_found("no such org")
}

fn not_a_member(why: &str) -> Error {
    Error::client(StatusCode::FORBIDDEN, ErrorCode::NotAMember, why)
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;
    use crate::access::Via;
    use latchkey_shared::ScopeSet;

    fn login() -> Principal {
        Principal { user_id: "u1".into(), via: Via::Session { session_id: "s1".into() } }
    }

    fn pat_bound_to(org_id: &str) -> Principal {
        Principal {
            user_id: "u1".into(),
            via: Via::Pat { pat_id: "p1".into(), scopes: ScopeSet::defaults(), org_id: Some(org_id.into()) },
        }
    }

    fn org(visibility: Visibility, role: Option<Role>) -> Option<Org> {
        Some(Org {
            id: "o1".into(),
            slug: "acme".into(),
            name: "Acme".into(),
            description: String::new(),
            visibility,
            role,
        })
    }

    /// The error code `check` answers with, or "ok".
    fn verdict(principal: &Principal, org: Option<Org>, need: Need) -> String {
        match check(principal, org, need) {
            Ok(_) => "ok".to_owned(),
            Err(Error::Client { status, code, .. }) => format!("{} {}", status.as_u16(), code.as_str()),
            Err(other) => panic!("not a client error: {other}"),
        }
    }

    /// The contract's order: hidden before bound-elsewhere before membership before role.
    #[test]
    fn org_access_follows_the_contracts_order() {
        use Visibility::{Private, Public};
        let cases = [
            (login(), None, Need::Visible, "404 not_found"),
            (login(), org(Private, None), Need::Visible, "404 not_found"),
            (pat_bound_to("o2"), org(Private, None), Need::Member, "404 not_found"),
            (pat_bound_to("o2"), org(Public, Some(Role::Owner)), Need::Visible, "403 not_a_member"),
            (pat_bound_to("o1"), org(Public, Some(Role::Member)), Need::Member, "ok"),
            (login(), org(Public, None), Need::Visible, "ok"),
            (login(), org(Public, None), Need::Member, "403 not_a_member"),
            (login(), org(Private, Some(Role::Member)), Need::Member, "ok"),
            (login(), org(Public, Some(Role::Member)), Need::Admin, "403 forbidden"),
            (login(), org(Public, Some(Role::Admin)), Need::Admin, "ok"),
            (login(), org(Public, Some(Role::Admin)), Need::Owner, "403 forbidden"),
            (login(), org(Public, Some(Role::Owner)), Need::Owner, "ok"),
        ];
        for (n, (principal, org, need, expected)) in cases.into_iter().enumerate() {
            assert_eq!(verdict(&principal, org, need), expected, "case {n}");
        }
    }
}
