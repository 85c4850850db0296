-- The admin console's managed apps and connectors: who last configured an app, and the
-- name members see for a connector (empty: the provider's name).
alter table managed_apps add column updated_by text;
alter table connectors add column display_name text not null default '';
