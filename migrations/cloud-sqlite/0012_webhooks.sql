-- Webhooks: an org's endpoints, the outbox of deliveries (one row per event per
-- endpoint) and the log of delivery attempts.
--
-- Times of the outbox that drive retries and leases are unix milliseconds (`_ms`):
-- retry delays are short at first and tests shorten them further. Everything else is
-- unix seconds, as in the rest of the schema.

create table webhook_endpoints (
    id           text primary key,
    org_id       text not null constraint webhook_endpoints_org_fk references orgs (id) on delete cascade,
    url          text not null,
    -- Subscribed event types, separated by spaces.
    events       text not null,
    description  text not null default '',
    -- The signing secret, sealed with the key ring (`crate::sealed::webhook_secret`).
    secret_ct    blob not null,
    key_version  integer not null,
    created_by   text constraint webhook_endpoints_creator_fk references users (id) on delete set null,
    created_at   integer not null,
    updated_at   integer not null
);
create index webhook_endpoints_org on webhook_endpoints (org_id);

create table webhook_deliveries (
    id               text primary key,
    endpoint_id      text not null constraint webhook_deliveries_endpoint_fk
                         references webhook_endpoints (id) on delete cascade,
    -- The same for every endpoint the event goes to, and on every retry.
    event_id         text not null,
    event_type       text not null,
    -- The exact body sent (built once, when the event was published).
    body             text not null,
    state            text not null constraint webhook_deliveries_state_check
                         check (state in ('pending', 'delivering', 'delivered', 'failed')),
    attempts         integer not null default 0,
    next_attempt_ms  integer not null,
    -- Retries stop once this is a day old (reset by a resend).
    retry_from_ms    integer not null,
    lease_owner      text,
    lease_until_ms   integer,
    last_status_code integer,
    last_latency_ms  integer,
    last_error       text,
    last_attempt_at  integer,
    created_at       integer not null,
    updated_at       integer not null,
    constraint webhook_deliveries_event_key unique (endpoint_id, event_id)
);
create index webhook_deliveries_due on webhook_deliveries (state, next_attempt_ms);
create index webhook_deliveries_endpoint on webhook_deliveries (endpoint_id, created_at);

create table webhook_attempts (
    id           text primary key,
    delivery_id  text not null constraint webhook_attempts_delivery_fk
                     references webhook_deliveries (id) on delete cascade,
    attempt      integer not null,
    -- The receiver's status code; null when no answer came (see error_class).
    status_code  integer,
    latency_ms   integer not null,
    -- null on success; else `http_status`, `redirect`, `timeout`, `connect`,
    -- `forbidden_address`, `invalid_url` or `request`.
    error_class  text,
    created_at   integer not null,
    updated_at   integer not null
);
create index webhook_attempts_delivery on webhook_attempts (delivery_id, attempt);
