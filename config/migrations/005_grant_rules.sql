-- 005_grant_rules.sql — provenance of managed grants (issue 17 part 1):
-- the names of the rules that produce each grant row, sorted, as the plan
-- and the audit name them.  `idsyncd explain` and anyone reading the
-- tables can then say why a grant exists without replaying the rules.
--
-- A column on each grant table, not one provenance table: the names ride
-- in the row the apply writes anyway (no second row, no second index, no
-- join on every read), and a grant's provenance goes when the grant goes.
-- NULL: a row made by hand (source NULL), or a managed row written before
-- this migration; the next run of its connector fills it in (the diff sees
-- the rules differ and updates the row: a one-time write).

ALTER TABLE tenant_role ADD COLUMN rules text[];
ALTER TABLE channel_grant ADD COLUMN rules text[];
ALTER TABLE slot_limit ADD COLUMN rules text[];
ALTER TABLE operator_group_member ADD COLUMN rules text[];
