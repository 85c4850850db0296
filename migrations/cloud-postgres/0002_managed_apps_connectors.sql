-- Managed OAuth apps (client id and secret sealed with the master key ring), the
-- connectors an org publishes, and one check value per master key version so a wrong
-- key is caught at start-up instead of producing garbage later.

create table managed_apps (
    id                text primary key,
    org_id            text not null constraint managed_apps_org_fk references orgs (id) on delete cascade,
    provider          text not null,
    client_id_ct      bytea not null,
    client_secret_ct  bytea not null,
    client_id_hint    text not null,
    scopes            text not null,
    key_version       bigint not null,
    created_by        text,
    created_at        bigint not null,
    updated_at        bigint not null,
    constraint managed_apps_org_provider_key unique (org_id, provider)
);
create index managed_apps_key_version_idx on managed_apps (key_version);

create table connectors (
    id            text primary key,
    org_id        text not null constraint connectors_org_fk references orgs (id) on delete cascade,
    key           text not null,
    provider      text not null,
    scopes        text not null,
    consent_only  bigint not null,
    description   text not null,
    created_by    text,
    created_at    bigint not null,
    updated_at    bigint not null,
    constraint connectors_org_key_key unique (org_id, key)
);

create table key_checks (
    version     bigint primary key,
    check_ct    bytea not null,
    created_at  bigint not null,
    updated_at  bigint not null
);
