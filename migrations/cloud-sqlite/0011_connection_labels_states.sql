-- Several connections (accounts) per member and connector, told apart by a label unique
-- per member and connector; one connection per provider account, so reconnecting an
-- account updates it. Two more states: `failing` (refreshes failing, the token may still
-- be valid) and `exhausted` (retrying given up until the member reconnects).
--
-- SQLite cannot change a constraint in place, so the table is rebuilt; no table refers
-- to connections, so dropping the old one breaks no foreign key.

create table connections_new (
    id                   text primary key,
    org_id               text not null constraint connections_org_fk references orgs (id) on delete cascade,
    connector_key        text not null,
    user_id              text not null constraint connections_user_fk references users (id) on delete cascade,
    provider             text not null,
    app_id               text not null constraint connections_app_fk references managed_apps (id) on delete cascade,
    account_id           text not null,
    account_name         text,
    label                text not null,
    scopes               text not null,
    status               text not null constraint connections_status_check
                             check (status in ('active', 'failing', 'needs_reauth', 'exhausted', 'revoked')),
    consent_only         integer not null,
    access_token_ct      blob not null,
    refresh_token_ct     blob,
    token_type           text not null,
    expires_at           integer,
    key_version          integer not null,
    refresh_lock_owner   text,
    refresh_lock_until   integer,
    failure_count        integer not null default 0,
    last_error           text,
    next_attempt_at      integer,
    failing_since        integer,
    last_refreshed_at    integer,
    last_token_at        integer,
    connected_at         integer not null,
    created_at           integer not null,
    updated_at           integer not null,
    constraint connections_label_key unique (org_id, connector_key, user_id, label),
    constraint connections_account_key unique (org_id, connector_key, user_id, provider, account_id)
);

insert into connections_new (id, org_id, connector_key, user_id, provider, app_id, account_id, account_name, label,
    scopes, status, consent_only, access_token_ct, refresh_token_ct, token_type, expires_at, key_version,
    refresh_lock_owner, refresh_lock_until, failure_count, last_error, next_attempt_at, failing_since,
    last_refreshed_at, last_token_at, connected_at, created_at, updated_at)
select id, org_id, connector_key, user_id, provider, app_id, account_id, account_name,
    substr(coalesce(nullif(account_name, ''), account_id), 1, 64),
    scopes, status, consent_only, access_token_ct, refresh_token_ct, token_type, expires_at, key_version,
    refresh_lock_owner, refresh_lock_until, failure_count, last_error, next_attempt_at, null,
    last_refreshed_at, last_token_at, connected_at, created_at, updated_at
from connections;

drop table connections;
alter table connections_new rename to connections;
create index connections_user_idx on connections (user_id);
create index connections_app_idx on connections (app_id);
create index connections_expires_idx on connections (status, expires_at);
