-- Device pairing (RFC 8628): pending device codes, and PATs that are paired devices.

alter table pats add column kind text not null default 'token';

create table device_codes (
    id                 text primary key,
    device_code_hash   text not null constraint device_codes_device_code_hash_key unique,
    user_code          text not null constraint device_codes_user_code_key unique,
    client_id          text not null,
    status             text not null constraint device_codes_status_check check (status in ('pending', 'approved', 'denied', 'consumed')),
    user_id            text constraint device_codes_user_fk references users (id) on delete cascade,
    device_name        text,
    interval_secs      bigint not null,
    last_polled_at     bigint,
    expires_at         bigint not null,
    created_at         bigint not null,
    updated_at         bigint not null
);
create index device_codes_expires_idx on device_codes (expires_at);
