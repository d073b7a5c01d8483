-- 012_persist.sql — persistent change feeds (issue 14 `changes.persist`,
-- issue 19's placement): one row per connector whose refreshAndPersist
-- doorbell some daemon holds or held (daemon/persist.c, docs/changes.md).
--
-- The holder is the only daemon that keeps the connector's persistent
-- search open: it takes the row (a lease, like connector_schedule's) before
-- it connects and renews it while the search is up.  A holder that dies
-- stops renewing; once lease_until has passed any daemon may take the row
-- over.  `status` reads state and since from here: whether the search is
-- up, and since when, or reconnecting, and why.  Times are the database's.

CREATE TABLE persist_feed (
  connector   text PRIMARY KEY,
  holder      text,                       -- host:pid of the daemon holding it; NULL: nobody
  lease_until timestamptz,                -- past: the holder is gone, anyone may take it
  state       text NOT NULL CONSTRAINT persist_feed_state_check
                CHECK (state IN ('connecting', 'up', 'reconnecting', 'waiting')),
  since       timestamptz NOT NULL DEFAULT now(),   -- when state began
  error       text,                       -- why it is reconnecting or waiting; NULL when up
  reconnects  bigint NOT NULL DEFAULT 0,  -- outages since the row was made
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT persist_feed_lease_check CHECK ((holder IS NULL) = (lease_until IS NULL))
);

-- a daemon counts the feeds it holds (the placement bound)
CREATE INDEX persist_feed_holder_idx ON persist_feed (holder);
