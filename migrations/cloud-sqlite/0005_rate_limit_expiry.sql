-- When each rate-limit window ends, so ended windows can be swept (ratelimit::hit).
-- Rows from before this migration get the longest window in use (an hour) from their
-- start: kept no shorter than they count.
alter table rate_limits add column expires_at integer not null default 0;
update rate_limits set expires_at = window_start + 3600;
create index rate_limits_expires_idx on rate_limits (expires_at);
