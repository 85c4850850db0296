-- Device codes as a member reviews them: the user code kept only as a hash (its first
-- half, the selector, names the code so wrong tries can be counted against it), the
-- requesting IP, and the wrong tries so far. Pending codes live ten minutes, so the
-- table is recreated rather than migrated: a pairing in progress starts over.

drop table device_codes;

create table device_codes (
    id                 text primary key,
    device_code_hash   text not null constraint device_codes_device_code_hash_key unique,
    user_code_hash     text not null constraint device_codes_user_code_hash_key unique,
    user_code_selector text not null,
    client_id          text not null,
    status             text not null constraint device_codes_status_check check (status in ('pending', 'approved', 'denied', 'consumed', 'burned')),
    user_id            text constraint device_codes_user_fk references users (id) on delete cascade,
    device_name        text,
    request_ip         text,
    failed_attempts    bigint not null default 0,
    interval_secs      bigint not null,
    last_polled_at     bigint,
    expires_at         bigint not null,
    created_at         bigint not null,
    updated_at         bigint not null
);
create index device_codes_expires_idx on device_codes (expires_at);
create unique index device_codes_pending_selector_key on device_codes (user_code_selector) where status = 'pending';
