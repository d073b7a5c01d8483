-- 010_feed_image.sql — the change feed's image (issue 14): the records a
-- connector's feed is applied to, kept next to its cursor so that a
-- restart or a one-shot `idsyncd sync` continues the feed instead of
-- reading the whole directory (docs/changes.md, "Where the image lives").
--
-- Written in the transaction that commits the run's changes and its
-- cursor (store/image.c): image, cursor and platform state never disagree.
-- A record is opaque to the database: its kind and the bytes
-- core/image.c encodes; keys are the feed's identities (entryUUID,
-- objectGUID, an Entra object id), opaque strings too.

CREATE TABLE connector_image (
  connector  text NOT NULL,
  key        text NOT NULL,
  kind       smallint NOT NULL CONSTRAINT connector_image_kind_check CHECK (kind IN (1, 2)),  -- 1 user, 2 group
  record     bytea NOT NULL,
  PRIMARY KEY (connector, key)
);

-- What the stored cursor and image were made with (a hash of the
-- connector's settings that shape records: bases, filters, attribute map,
-- the attributes the rules read).  Another fingerprint: both are
-- discarded and the next run reads everything (a feed reset, counted).
ALTER TABLE connector_feed ADD COLUMN fingerprint text;
-- How many records the stored image holds with this cursor: an image
-- found with another count (rows lost, a restore of one table) is not
-- the cursor's and is discarded like one made with other settings.
ALTER TABLE connector_feed ADD COLUMN image_records bigint;
