-- When a connection's access token was last handed out by the connection-token endpoint,
-- for the admins' connection health view. Stamped at most once a minute per connection
-- (`access::LAST_USED_GRANULARITY_SECS`), so the hot path rarely writes.

alter table connections add column last_token_at bigint;
