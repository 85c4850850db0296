-- Orgs get a description (shown in the directory), and invitations: single-use links to
-- join an org, public or private. Only the SHA-256 hash of an invitation's token is
-- kept; accepting one sets `accepted_at` in one conditional update, so two accepts of the
-- same link (on any replica) cannot both succeed.

alter table orgs add column description text not null default '';

create table invitations (
    id           text primary key,
    org_id       text not null constraint invitations_org_fk references orgs (id) on delete cascade,
    token_hash   text not null constraint invitations_token_hash_key unique,
    email        text,
    role         text not null constraint invitations_role_check check (role in ('admin', 'member')),
    created_by   text constraint invitations_created_by_fk references users (id) on delete set null,
    expires_at   bigint not null,
    accepted_at  bigint,
    accepted_by  text constraint invitations_accepted_by_fk references users (id) on delete set null,
    revoked_at   bigint,
    created_at   bigint not null,
    updated_at   bigint not null
);
create index invitations_org_idx on invitations (org_id, created_at);
