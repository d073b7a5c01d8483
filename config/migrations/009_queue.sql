-- 009_queue.sql — the schedule becomes a queue that every daemon shares
-- (issue 19): a due connector is claimed by exactly one daemon, which
-- holds a lease on it while the run goes on and renews it; a daemon that
-- dies stops renewing, and its connectors are anyone's once the lease has
-- run out.  Times are the database's (now()), never a daemon's clock:
-- daemons on several machines agree on what "due" and "expired" mean.
--
-- connector_schedule keeps its rows and meaning (the next run per
-- connector, for `status`); next_run_at becomes the due time of the queue,
-- written by whoever ran the connector last.

ALTER TABLE connector_schedule
  ADD COLUMN lease_owner text,              -- host:pid of the daemon running it now; NULL: nobody
  ADD COLUMN lease_until timestamptz,       -- past: the owner is gone, anyone may claim it
  ADD COLUMN backoff     integer NOT NULL DEFAULT 0,  -- seconds of the last failure's retry delay (0: none)
  ADD CONSTRAINT connector_schedule_lease_check
    CHECK ((lease_owner IS NULL) = (lease_until IS NULL));

-- a claim looks for the earliest due row
CREATE INDEX connector_schedule_due_idx ON connector_schedule (next_run_at);
