-- 004_approve.sql — held plans (`idsyncd approve`) and the daemon's
-- heartbeat (`idsyncd status`), issue 17 parts 3 and 4.
--
-- idsyncd's own bookkeeping, like sync_run: the platform never reads it.

-- A run that a safety threshold stopped keeps its plan here, so that a
-- person can review it and `idsyncd approve RUN_ID` applies exactly that
-- plan: approve plans again and applies only when the new plan has the
-- same digest (sha256 of the canonical text plan, which is sorted and has
-- no timings).  A held plan is pending until it is approved, superseded
-- (a later run of the connector held a different plan) or expired.
CREATE TABLE held_plan (
  run_id         bigint PRIMARY KEY REFERENCES sync_run,
  connector      text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL,
  digest         text NOT NULL,               -- hex sha256 of plan
  reason         text NOT NULL,               -- "612 deactivations over the limit of 500"
  plan           text NOT NULL,               -- the canonical text plan, for review and the diff
  approved_run   bigint REFERENCES sync_run,  -- the run that applied it
  superseded_by  bigint REFERENCES sync_run,  -- the run that held a different plan since
  CONSTRAINT held_plan_once CHECK (approved_run IS NULL OR superseded_by IS NULL)
);

-- `status` and every hold look for the pending plan of a connector.
CREATE INDEX held_plan_pending_idx ON held_plan (connector)
  WHERE approved_run IS NULL AND superseded_by IS NULL;

-- One row per running daemon (host:pid), refreshed at least every minute
-- and at each run, deleted at a clean stop: `status` tells "a daemon is
-- running" from "no daemon heartbeat for 10 min".  Per instance rather
-- than a column of connector_schedule, whose rows belong to whichever
-- instance runs a connector next: a standby would be invisible there.
CREATE TABLE daemon_heartbeat (
  instance      text PRIMARY KEY,             -- host:pid
  started_at    timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now(),
  running       text                          -- the connector it is syncing, NULL when idle
);
