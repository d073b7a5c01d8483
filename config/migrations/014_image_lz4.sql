-- 014_image_lz4.sql — the change feed's image compressed with lz4 (issue 14).
--
-- A churn run rewrites most group records (syncrepl sends a changed group
-- whole): 27 MB of them at bench tier M, 270 MB at L.  PostgreSQL's
-- default compression, pglz, costs 0.2 s of the apply at M (2,000 group
-- records), lz4 0.04 s, for about the same size (3.3 MB against 3.7 MB
-- stored).  store/image.c stages the records in a table made LIKE this one
-- INCLUDING COMPRESSION: a compressed value is copied as it is from one
-- table into another, so the staging table's method is the one that counts.
--
-- A server built without lz4 keeps pglz: the records are the same bytes
-- either way, only slower to write.
DO $$
BEGIN
  ALTER TABLE connector_image ALTER COLUMN record SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
  RAISE NOTICE 'connector_image.record keeps pglz: this server has no lz4';
END
$$;
