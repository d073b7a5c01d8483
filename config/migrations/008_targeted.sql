-- 008_targeted.sql — `idsyncd sync --user` (issue 17 part 2): a run that
-- read one person records read_kind 'user'.  Such a run is not a
-- successful sync of the connector: `status --max-age` and the last
-- successful run ignore it (store/held.c), so one person's sign-in cannot
-- hide a connector whose full runs fail.
ALTER TABLE sync_run DROP CONSTRAINT sync_run_read_kind_check;
ALTER TABLE sync_run ADD CONSTRAINT sync_run_read_kind_check
  CHECK (read_kind IN ('full', 'incremental', 'user'));
