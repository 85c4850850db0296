-- The consent flow's short-lived state (hashed; PKCE verifier sealed), and connections:
-- a member's grant for one connector of one org, tokens sealed, owned by the member.

create table consent_states (
    id                 text primary key,
    state_hash         text not null constraint consent_states_state_hash_key unique,
    user_id            text not null constraint consent_states_user_fk references users (id) on delete cascade,
    session_id         text,
    org_id             text not null constraint consent_states_org_fk references orgs (id) on delete cascade,
    connector_key      text not null,
    provider           text not null,
    pkce_verifier_ct   bytea,
    nonce              text,
    redirect_uri       text not null,
    return_to          text,
    expires_at         bigint not null,
    consumed_at        bigint,
    key_version        bigint not null,
    created_at         bigint not null,
    updated_at         bigint not null
);
create index consent_states_expires_idx on consent_states (expires_at);

create table connections (
    id                   text primary key,
    org_id               text not null constraint connections_org_fk references orgs (id) on delete cascade,
    connector_key        text not null,
    user_id              text not null constraint connections_user_fk references users (id) on delete cascade,
    provider             text not null,
    app_id               text not null constraint connections_app_fk references managed_apps (id) on delete cascade,
    account_id           text not null,
    account_name         text,
    scopes               text not null,
    status               text not null constraint connections_status_check check (status in ('active', 'needs_reauth', 'revoked')),
    consent_only         bigint not null,
    access_token_ct      bytea not null,
    refresh_token_ct     bytea,
    token_type           text not null,
    expires_at           bigint,
    key_version          bigint not null,
    refresh_lock_owner   text,
    refresh_lock_until   bigint,
    failure_count        bigint not null default 0,
    last_error           text,
    next_attempt_at      bigint,
    last_refreshed_at    bigint,
    connected_at         bigint not null,
    created_at           bigint not null,
    updated_at           bigint not null,
    constraint connections_org_connector_user_key unique (org_id, connector_key, user_id)
);
create index connections_user_idx on connections (user_id);
create index connections_app_idx on connections (app_id);
create index connections_expires_idx on connections (status, expires_at);
