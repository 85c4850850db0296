-- Several connections (accounts) per member and connector, told apart by a label unique
-- per member and connector; one connection per provider account, so reconnecting an
-- account updates it. Two more states: `failing` (refreshes failing, the token may still
-- be valid) and `exhausted` (retrying given up until the member reconnects).

alter table connections add column label text;
update connections set label = left(coalesce(nullif(account_name, ''), account_id), 64);
alter table connections alter column label set not null;
-- When the current run of failed refreshes began (null while refreshes succeed).
alter table connections add column failing_since bigint;

alter table connections drop constraint connections_status_check;
alter table connections add constraint connections_status_check
    check (status in ('active', 'failing', 'needs_reauth', 'exhausted', 'revoked'));

alter table connections drop constraint connections_org_connector_user_key;
alter table connections add constraint connections_label_key unique (org_id, connector_key, user_id, label);
alter table connections add constraint connections_account_key
    unique (org_id, connector_key, user_id, provider, account_id);
