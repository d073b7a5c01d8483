-- 013_threshold_counts.sql — the thresholds' bases of an incremental run
-- (issue 14, docs/changes.md "The thresholds' bases without a scan").
--
-- A run that re-plans only the users its changes reach still needs, for
-- the deactivation and grant-removal thresholds, the number of the
-- connector's active users and of its grant rows on them.  These indexes
-- make both counts index-only scans of the connector's own entries (its
-- source leads), instead of reading every grant row of the company and
-- its tenants: exact whoever wrote the rows (a hand edit included), and
-- nothing to keep in step, which a counter would be.

CREATE INDEX app_user_source_active_idx ON app_user (source, company_id, id) WHERE active;
CREATE INDEX tenant_role_source_idx ON tenant_role (source, user_id);
CREATE INDEX channel_grant_source_idx ON channel_grant (source, user_id);
CREATE INDEX slot_limit_source_idx ON slot_limit (source, user_id);
CREATE INDEX operator_group_member_source_idx ON operator_group_member (source, user_id);
