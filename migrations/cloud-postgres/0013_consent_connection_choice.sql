-- A consent carries the member's choice to its callback: the connection to reconnect
-- (its id), or "add another account". Neither: a plain connect.
alter table consent_states add column connection_id text;
alter table consent_states add column add_account bigint not null default 0;
