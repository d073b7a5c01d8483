-- 007_changes.sql — change feeds (issue 14): where each connector's feed
-- stands, and whether a run read everything or only what changed.
--
-- idsyncd's own bookkeeping, like sync_run.  The cursor is written in the
-- transaction that applies the changes it produced (store/apply.c): a run
-- that fails, is cancelled or is held by a safety guard leaves the old one,
-- so a change is never lost nor applied twice.

CREATE TABLE connector_feed (
  connector            text PRIMARY KEY,
  cursor               bytea,              -- syncrepl or DirSync cookie; NULL: none (the next run reads everything)
  cursor_server        text,               -- DirSync: dnsHostName of the domain controller that issued it
  cursor_invocation_id text,               -- DirSync: that controller's invocationId (a restore changes it)
  cursor_at            timestamptz,        -- when the cursor was committed
  last_full_at         timestamptz,        -- start of the last committed full read
  resets               integer NOT NULL DEFAULT 0,  -- fallbacks from the feed to a full read
  last_reset_reason    text,
  last_reset_at        timestamptz,
  CONSTRAINT connector_feed_issuer_check
    CHECK ((cursor_server IS NULL) = (cursor_invocation_id IS NULL))
);

-- NULL for the rows of runs before this migration and for retire's, which
-- read no directory.
ALTER TABLE sync_run ADD COLUMN read_kind text
  CONSTRAINT sync_run_read_kind_check CHECK (read_kind IN ('full', 'incremental'));
