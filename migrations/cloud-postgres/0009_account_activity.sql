-- The account pages: where a PAT or paired device was created from and last used from,
-- and the member's own activity (events of a PAT) found without a scan.
alter table pats add column created_ip text;
alter table pats add column last_used_ip text;
create index audit_events_pat_idx on audit_events (pat_id, created_at);
