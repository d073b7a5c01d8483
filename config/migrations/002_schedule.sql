-- 002_schedule.sql — when the daemon expects to run each connector next,
-- for `idsyncd status` (service.md): a monitor can tell "the last run
-- failed" from "nothing has run for too long" without knowing the config.
--
-- idsyncd's own bookkeeping, like sync_run: the platform never reads it.
-- One row per connector, written by `idsyncd run` after every run (or
-- skipped tick).  With several instances the earliest upcoming time wins;
-- a row whose time has passed is anyone's to replace (its writer may be
-- dead: that is what "overdue" in the status output shows).

CREATE TABLE connector_schedule (
  connector    text PRIMARY KEY,
  next_run_at  timestamptz NOT NULL,
  instance     text NOT NULL,              -- host:pid of the daemon that wrote it
  updated_at   timestamptz NOT NULL DEFAULT now()
);
