//! Orgs and memberships: creating and changing orgs, joining and leaving, roles, and an
//! org's audit log. Who may see and change an org is decided in `crate::access::org`.

use crate::access::{authorize, ClientMeta, Principal};
pub use crate::access::{Need, Org, Role, Visibility};
use crate::audit;
use crate::cascade;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{new_id, now, rfc3339, unique_violation};
use crate::webhooks::{self, EventType};
use latchkey_shared::{ErrorCode, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// 2–32 characters of a-z, 0-9 and `-`, not starting or ending with `-`.
    #[schema(min_length = 2, max_length = 32, pattern = "^[a-z0-9][a-z0-9-]{0,30}[a-z0-9]$")]
    pub slug: String,
    /// 1 to 100 printable characters.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: String,
    /// What the org is for: at most 500 characters, no control characters but newlines.
    #[schema(max_length = 500, pattern = r"^[^\u0000-\u0009\u000b-\u001f\u007f-\u009f]*$")]
    #[serde(default)]
    pub description: Option<String>,
    pub visibility: Visibility,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    pub name: Option<String>,
    /// At most 500 characters, no control characters but newlines; empty clears it.
    #[schema(max_length = 500, pattern = r"^[^\u0000-\u0009\u000b-\u001f\u007f-\u009f]*$")]
    pub description: Option<String>,
    /// Owners only.
    pub visibility: Option<Visibility>,
}

/// An org in a listing: what the directory shows.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OrgEntry {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub visibility: Visibility,
    /// The caller's role; null for a public org they have not joined.
    pub role: Option<Role>,
    /// The providers the org offers: those of its connectors whose managed app is configured.
    pub providers: Vec<OfferedProvider>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct OfferedProvider {
    pub name: String,
    pub display_name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub user_id: String,
    pub username: String,
    pub email: String,
    pub role: Role,
    pub joined_at: String,
}

/// An org's audit events (owners and admins), newest first.
pub async fn audit(
    state: &AppState,
    principal: &Principal,
    org_ref: &str,
    filter: &audit::Filter,
) -> Result<(Org, audit::AuditPage)> {
    principal.require(Scope::AuditRead)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    let page = audit::list(&state.store, None, Some(&org.id), filter).await?;
    Ok((org, page))
}

/// The org's slug, for links back to it.
pub async fn slug_of(state: &AppState, org_id: &str) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("select slug from orgs where id = $1")
        .bind(org_id)
        .fetch_optional(state.store.pool())
        .await?)
}

pub async fn create(state: &AppState, principal: &Principal, meta: &ClientMeta, req: CreateOrg) -> Result<Org> {
    principal.require(Scope::OrgsWrite)?;
    if principal.pat_id().is_some() && !principal.allows_org("") {
        return Err(Error::forbidden("a token bound to an org cannot create orgs"));
    }
    let slug = validate_slug(&req.slug)?;
    let name = validate_name(&req.name)?;
    let description = validate_description(req.description.as_deref().unwrap_or_default())?;
    let id = new_id();
    let now = now();
    let mut tx = state.store.pool().begin().await?;
    let inserted = sqlx::query(
        "insert into orgs (id, slug, name, description, visibility, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(&id)
    .bind(&slug)
    .bind(&name)
    .bind(&description)
    .bind(req.visibility.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await;
    if let Err(err) = inserted {
        return Err(match unique_violation(&err) {
            Some(_) => Error::conflict(ErrorCode::SlugTaken, format!("the slug `{slug}` is taken")),
            None => err.into(),
        });
    }
    sqlx::query(
        "insert into memberships (org_id, user_id, role, created_at, updated_at) values ($1, $2, 'owner', $3, $3)",
    )
    .bind(&id)
    .bind(&principal.user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    audit_org(state, principal, meta, &id, "org.create", None).await?;
    Ok(Org { id, slug, name, description, visibility: req.visibility, role: Some(Role::Owner) })
}

/// The caller's orgs, or with `public` every public org, with the providers each offers.
pub async fn list(state: &AppState, principal: &Principal, public: bool) -> Result<Vec<OrgEntry>> {
    principal.require(Scope::OrgsRead)?;
    let sql = if public {
        "select o.id, o.slug, o.name, o.description, o.visibility, m.role from orgs o \
         left join memberships m on m.org_id = o.id and m.user_id = $1 \
         where o.visibility = 'public' or m.role is not null order by o.slug"
    } else {
        "select o.id, o.slug, o.name, o.description, o.visibility, m.role from orgs o \
         join memberships m on m.org_id = o.id and m.user_id = $1 order by o.slug"
    };
    let rows: Vec<(String, String, String, String, String, Option<String>)> =
        sqlx::query_as(sql).bind(&principal.user_id).fetch_all(state.store.pool()).await?;
    // Every provider offered by an org this caller may see, in one query.
    let offered: Vec<(String, String)> = sqlx::query_as(
        "select distinct c.org_id, c.provider from connectors c \
         join managed_apps a on a.org_id = c.org_id and a.provider = c.provider \
         join orgs o on o.id = c.org_id \
         left join memberships m on m.org_id = o.id and m.user_id = $1 \
         where o.visibility = 'public' or m.role is not null order by c.provider",
    )
    .bind(&principal.user_id)
    .fetch_all(state.store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter(|(id, ..)| principal.allows_org(id))
        .map(|(id, slug, name, description, visibility, role)| OrgEntry {
            providers: offered
                .iter()
                .filter(|(org_id, _)| *org_id == id)
                .filter_map(|(_, provider)| {
                    state
                        .providers
                        .get(provider)
                        .map(|p| OfferedProvider { name: provider.clone(), display_name: p.display_name.clone() })
                })
                .collect(),
            id,
            slug,
            name,
            description,
            visibility: Visibility::parse(&visibility),
            role: role.as_deref().map(Role::parse),
        })
        .collect())
}

pub async fn get(state: &AppState, principal: &Principal, org_ref: &str) -> Result<Org> {
    principal.require(Scope::OrgsRead)?;
    authorize(state, principal, org_ref, Need::Visible).await
}

/// Renames or describes an org (owners and admins), or changes its visibility (owners).
pub async fn update(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    req: UpdateOrg,
) -> Result<Org> {
    principal.require(Scope::OrgsWrite)?;
    let mut org = authorize(state, principal, org_ref, Need::Admin).await?;
    if let Some(name) = req.name {
        org.name = validate_name(&name)?;
    }
    if let Some(description) = req.description {
        org.description = validate_description(&description)?;
    }
    if let Some(visibility) = req.visibility {
        if visibility != org.visibility && org.role != Some(Role::Owner) {
            return Err(Error::forbidden("only the org's owners can change its visibility"));
        }
        org.visibility = visibility;
    }
    sqlx::query("update orgs set name = $1, description = $2, visibility = $3, updated_at = $4 where id = $5")
        .bind(&org.name)
        .bind(&org.description)
        .bind(org.visibility.as_str())
        .bind(now())
        .bind(&org.id)
        .execute(state.store.pool())
        .await?;
    audit_org(state, principal, meta, &org.id, "org.update", None).await?;
    Ok(org)
}

/// Deletes an org (owners): every member's connections are revoked at the provider first
/// (`cascade::org_deleted`), then the org and everything in it goes.
pub async fn delete(state: &AppState, principal: &Principal, meta: &ClientMeta, org_ref: &str) -> Result<()> {
    principal.require(Scope::OrgsWrite)?;
    let org = authorize(state, principal, org_ref, Need::Owner).await?;
    cascade::org_deleted(state, &org.id, &principal.user_id, meta).await?;
    sqlx::query("delete from orgs where id = $1").bind(&org.id).execute(state.store.pool()).await?;
    let detail = Some(serde_json::json!({ "slug": org.slug }));
    let event = audit::Event { target: Some(&org.id), detail, ..principal.org_event(meta, &org.id, "org.delete") };
    audit::record(&state.store, event).await
}

/// Joins a public org as a member; joining again changes nothing.
pub async fn join(state: &AppState, principal: &Principal, meta: &ClientMeta, org_ref: &str) -> Result<Org> {
    principal.require(Scope::OrgsWrite)?;
    let mut org = authorize(state, principal, org_ref, Need::Visible).await?;
    if org.role.is_some() {
        return Ok(org);
    }
    let joined = sqlx::query(
        "insert into memberships (org_id, user_id, role, created_at, updated_at) values ($1, $2, 'member', $3, $3) \
         on conflict (org_id, user_id) do nothing",
    )
    .bind(&org.id)
    .bind(&principal.user_id)
    .bind(now())
    .execute(state.store.pool())
    .await?;
    audit_org(state, principal, meta, &org.id, "org.join", Some(&principal.user_id)).await?;
    if joined.rows_affected() == 1 {
        webhooks::publish_member(state, &org.id, EventType::MemberJoined, &principal.user_id, Role::Member.as_str())
            .await;
    }
    org.role = Some(Role::Member);
    Ok(org)
}

/// Owners and admins see the member list.
pub async fn members(state: &AppState, principal: &Principal, org_ref: &str) -> Result<Vec<Member>> {
    principal.require(Scope::OrgsRead)?;
    let org = authorize(state, principal, org_ref, Need::Admin).await?;
    let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
        "select u.id, u.username, u.email, m.role, m.created_at from memberships m \
         join users u on u.id = m.user_id where m.org_id = $1 order by m.created_at, u.username",
    )
    .bind(&org.id)
    .fetch_all(state.store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, username, email, role, joined)| Member {
            user_id,
            username,
            email,
            role: Role::parse(&role),
            joined_at: rfc3339(joined),
        })
        .collect())
}

/// Removes a member (owners and admins), or leaves (anyone, for themselves). Admins
/// cannot remove owners, and the last owner cannot go.
pub async fn remove_member(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    user_id: &str,
) -> Result<()> {
    principal.require(Scope::OrgsWrite)?;
    let leaving = user_id == principal.user_id;
    let org = authorize(state, principal, org_ref, if leaving { Need::Member } else { Need::Admin }).await?;
    let target_role = role_of(state, &org.id, user_id).await?.ok_or_else(|| Error::not_found("no such member"))?;
    if !leaving && target_role == Role::Owner && org.role != Some(Role::Owner) {
        return Err(Error::forbidden("only owners can remove an owner"));
    }
    if target_role == Role::Owner {
        ensure_another_owner(state, &org.id).await?;
    }
    // Leaving an org ends the member's connections there.
    cascade::member_removed(state, &org.id, user_id, &principal.user_id, meta).await?;
    let removed = sqlx::query("delete from memberships where org_id = $1 and user_id = $2")
        .bind(&org.id)
        .bind(user_id)
        .execute(state.store.pool())
        .await?;
    if removed.rows_affected() == 1 {
        webhooks::publish_member(state, &org.id, EventType::MemberRemoved, user_id, target_role.as_str()).await;
    }
    audit_org(state, principal, meta, &org.id, if leaving { "org.leave" } else { "org.remove_member" }, Some(user_id))
        .await
}

/// Owners change roles.
pub async fn set_role(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_ref: &str,
    user_id: &str,
    req: SetRole,
) -> Result<Member> {
    principal.require(Scope::OrgsWrite)?;
    let org = authorize(state, principal, org_ref, Need::Owner).await?;
    let current = role_of(state, &org.id, user_id).await?.ok_or_else(|| Error::not_found("no such member"))?;
    if current == Role::Owner && req.role != Role::Owner {
        ensure_another_owner(state, &org.id).await?;
    }
    sqlx::query("update memberships set role = $1, updated_at = $2 where org_id = $3 and user_id = $4")
        .bind(req.role.as_str())
        .bind(now())
        .bind(&org.id)
        .bind(user_id)
        .execute(state.store.pool())
        .await?;
    audit_org(state, principal, meta, &org.id, "org.set_role", Some(user_id)).await?;
    members(state, principal, &org.id)
        .await?
        .into_iter()
        .find(|m| m.user_id == user_id)
        .ok_or_else(|| Error::not_found("no such member"))
}

/// The member's role in the org, if they are one.
pub async fn role_of(state: &AppState, org_id: &str, user_id: &str) -> Result<Option<Role>> {
    let role: Option<String> = sqlx::query_scalar("select role from memberships where org_id = $1 and user_id = $2")
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(state.store.pool())
        .await?;
    Ok(role.as_deref().map(Role::parse))
}

async fn ensure_another_owner(state: &AppState, org_id: &str) -> Result<()> {
    let owners: i64 = sqlx::query_scalar("select count(*) from memberships where org_id = $1 and role = 'owner'")
        .bind(org_id)
        .fetch_one(state.store.pool())
        .await?;
    if owners <= 1 {
        return Err(Error::conflict(
            ErrorCode::Conflict,
            "an org needs at least one owner; make someone else owner first",
        ));
    }
    Ok(())
}

async fn audit_org(
    state: &AppState,
    principal: &Principal,
    meta: &ClientMeta,
    org_id: &str,
    action: &str,
    target: Option<&str>,
) -> Result<()> {
    let event = audit::Event { target: target.or(Some(org_id)), ..principal.org_event(meta, org_id, action) };
    audit::record(&state.store, event).await
}

fn validate_slug(raw: &str) -> Result<String> {
    let slug = raw.trim();
    let valid = (2..=32).contains(&slug.len())
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if valid {
        Ok(slug.to_owned())
    } else {
        Err(Error::bad_request("slug: 2 to 32 characters of a-z, 0-9 and -, not starting or ending with -"))
    }
}

fn validate_description(raw: &str) -> Result<String> {
    let description = raw.trim();
    if description.chars().count() > 500 || description.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::bad_request("description: at most 500 printable characters"));
    }
    Ok(description.to_owned())
}

fn validate_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::bad_request("name: 1 to 100 printable characters"));
    }
    Ok(name.to_owned())
}
