-- The local agent's store: synced events, resume cursors and the record of sync runs.
-- Times are RFC 3339 UTC text of fixed width (2024-01-02T03:04:05.000Z), so text order
-- is time order.

create table events (
    connector   text not null,
    external_id text not null,
    occurred_at text,
    payload     text not null,
    synced_at   text not null,
    constraint events_connector_external_id_key unique (connector, external_id)
);

create index events_occurred_at_idx on events (occurred_at);

-- Where an unfinished walk resumes; no row means "start from the newest".
create table cursors (
    connector  text primary key not null,
    cursor     text not null,
    updated_at text not null
);

create table sync_runs (
    id          integer primary key autoincrement,
    connector   text not null,
    started_at  text not null,
    finished_at text,
    status      text not null default 'running'
                constraint sync_runs_status_check check (status in ('running', 'completed', 'failed', 'interrupted')),
    items_added integer not null default 0,
    error       text
);

create index sync_runs_connector_idx on sync_runs (connector, id);
