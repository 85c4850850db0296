-- Accounts, login sessions (one per login: the refresh-token family), orgs, memberships,
-- personal access tokens, shared rate-limit counters and the audit log.
-- Ids are UUIDv7 text; times are unix seconds (BIGINT) so both backends read them alike.

create table users (
    id            text primary key,
    email         text not null,
    username      text not null,
    password_hash text not null,
    created_at    bigint not null,
    updated_at    bigint not null,
    constraint users_email_key unique (email),
    constraint users_username_key unique (username)
);

create table sessions (
    id            text primary key,
    user_id       text not null constraint sessions_user_fk references users (id) on delete cascade,
    cookie_hash   text not null constraint sessions_cookie_hash_key unique,
    user_agent    text,
    ip            text,
    expires_at    bigint not null,
    revoked_at    bigint,
    last_used_at  bigint not null,
    created_at    bigint not null,
    updated_at    bigint not null
);
create index sessions_user_idx on sessions (user_id);

create table refresh_tokens (
    id          text primary key,
    session_id  text not null constraint refresh_tokens_session_fk references sessions (id) on delete cascade,
    token_hash  text not null constraint refresh_tokens_token_hash_key unique,
    used_at     bigint,
    expires_at  bigint not null,
    created_at  bigint not null,
    updated_at  bigint not null
);
create index refresh_tokens_session_idx on refresh_tokens (session_id);

create table orgs (
    id          text primary key,
    slug        text not null constraint orgs_slug_key unique,
    name        text not null,
    visibility  text not null constraint orgs_visibility_check check (visibility in ('public', 'private')),
    created_at  bigint not null,
    updated_at  bigint not null
);

create table memberships (
    org_id      text not null constraint memberships_org_fk references orgs (id) on delete cascade,
    user_id     text not null constraint memberships_user_fk references users (id) on delete cascade,
    role        text not null constraint memberships_role_check check (role in ('owner', 'admin', 'member')),
    created_at  bigint not null,
    updated_at  bigint not null,
    constraint memberships_pkey primary key (org_id, user_id)
);
create index memberships_user_idx on memberships (user_id);

create table pats (
    id            text primary key,
    user_id       text not null constraint pats_user_fk references users (id) on delete cascade,
    name          text not null,
    prefix        text not null,
    token_hash    text not null constraint pats_token_hash_key unique,
    scopes        text not null,
    org_id        text constraint pats_org_fk references orgs (id) on delete cascade,
    expires_at    bigint,
    revoked_at    bigint,
    last_used_at  bigint,
    created_at    bigint not null,
    updated_at    bigint not null
);
create index pats_user_idx on pats (user_id);

create table rate_limits (
    key           text primary key,
    window_start  bigint not null,
    hits          bigint not null,
    created_at    bigint not null,
    updated_at    bigint not null
);

create table audit_events (
    id           text primary key,
    org_id       text,
    actor_id     text,
    pat_id       text,
    action       text not null,
    target       text,
    outcome      text not null,
    ip           text,
    user_agent   text,
    detail       text,
    created_at   bigint not null,
    updated_at   bigint not null
);
create index audit_events_org_idx on audit_events (org_id, created_at);
create index audit_events_actor_idx on audit_events (actor_id, created_at);
