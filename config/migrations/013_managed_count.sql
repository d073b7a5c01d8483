-- 013_managed_count.sql — the thresholds' bases without a scan (issue 14):
-- per connector (source) and company, its active users and its grant rows
-- on them, kept exact by triggers (docs/changes.md, "The thresholds'
-- bases: a counter kept by triggers").
--
-- An incremental run loads only the users a change reaches, but the
-- deactivation and grant-removal thresholds are percentages of all the
-- connector's active users and of its grant rows on them.  Counting those
-- rows scans every grant (0.35 s at 100,000 users, 800,000 grant rows;
-- no index helps: every row is the connector's).  This table holds the
-- counts instead, per the definition store/load.c used to count:
--
--   active_users  app_user rows with this source and company, active;
--   grant_rows    rows of tenant_role, channel_grant, slot_limit and
--                 operator_group_member with this source, on those users.
--
-- Triggers, not the apply, keep it: whoever writes the rows (idsyncd, the
-- platform's UI, a hand edit in psql) is counted, which is what the
-- thresholds are there to see.  They are statement-level triggers over
-- transition tables (one aggregate a statement, as the isolation triggers
-- of migration 001): an initial sync COPYs hundreds of thousands of rows,
-- and a row trigger would cost seconds.  A statement changes the counter
-- only when its rows change a count, so the platform's edits of its own
-- rows (source NULL) and profile updates write nothing here; one row per
-- (company, source) means two connectors' applies never wait for each
-- other on it.
--
-- The trigger functions run as their owner (SECURITY DEFINER, search_path
-- pinned): the platform's roles write app_user and the grants, and need
-- no privilege on this table for it.  They choose their own join methods:
-- idsyncd's apply turns hash and merge joins off for its keyed statements
-- (store/apply.c, keyed_sql), and a trigger's join of two transition
-- tables (which have no index) would then be a nested loop — 1.3 s
-- instead of 6 ms for 2,500 users updated, a tier-M churn's apply doubled.
--
-- What they cannot see: rows written with triggers disabled (a restore
-- with --disable-triggers, session_replication_role = replica).  A read
-- of the whole state (a full read: full_every, --full) counts the rows
-- itself and corrects the counter in its apply (store/load.c,
-- store/apply.c).  TRUNCATE, which fires no row trigger, recounts at once.
-- Limitation: one query that writes app_user and a grant table together
-- (a writable CTE) is counted against the state at its end; the next
-- full read corrects that too.

CREATE TABLE managed_count (
  company_id    bigint NOT NULL,    -- no foreign key: a company's rows go when its users do
  source        text   NOT NULL,
  active_users  bigint NOT NULL DEFAULT 0,
  grant_rows    bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (company_id, source)
);

-- The counts as the tables have them now: the migration's first fill, a
-- TRUNCATE's recount and the tests' truth.
CREATE FUNCTION ids_managed_counted() RETURNS TABLE (company_id bigint, source text,
                                                      active_users bigint, grant_rows bigint)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
  SELECT u.company_id, u.source, count(*), coalesce(sum(g.n), 0)::bigint
    FROM app_user u
    LEFT JOIN (SELECT x.user_id, x.source, count(*) AS n
                 FROM (SELECT user_id, source FROM tenant_role
                       UNION ALL SELECT user_id, source FROM channel_grant
                       UNION ALL SELECT user_id, source FROM slot_limit
                       UNION ALL SELECT user_id, source FROM operator_group_member) x
                WHERE x.source IS NOT NULL GROUP BY 1, 2) g
      ON g.user_id = u.id AND g.source = u.source
   WHERE u.active AND u.source IS NOT NULL
   GROUP BY 1, 2
$$;

-- Adds the deltas (company_id, source, users, grants) to the counter, in
-- key order so that two statements touching the same rows lock them in
-- the same order.  Zero deltas write nothing.
CREATE FUNCTION ids_managed_add(d jsonb) RETURNS void
LANGUAGE sql SET search_path FROM CURRENT AS $$
  INSERT INTO managed_count AS m (company_id, source, active_users, grant_rows)
  SELECT x.company_id, x.source, x.users, x.grants
    FROM jsonb_to_recordset(d) AS x(company_id bigint, source text, users bigint, grants bigint)
   WHERE x.users <> 0 OR x.grants <> 0
   ORDER BY 1, 2
  ON CONFLICT (company_id, source) DO UPDATE
    SET active_users = m.active_users + EXCLUDED.active_users,
        grant_rows = m.grant_rows + EXCLUDED.grant_rows
$$;

-- The grant rows of user uid whose source is src (the primary keys of
-- three tables start with user_id; operator_group_member has an index).
CREATE FUNCTION ids_user_grant_rows(uid bigint, src text) RETURNS bigint
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
  SELECT (SELECT count(*) FROM tenant_role WHERE user_id = uid AND source = src)
       + (SELECT count(*) FROM channel_grant WHERE user_id = uid AND source = src)
       + (SELECT count(*) FROM slot_limit WHERE user_id = uid AND source = src)
       + (SELECT count(*) FROM operator_group_member WHERE user_id = uid AND source = src)
$$;

-- app_user: a user counts while active with a source; with him, his grant
-- rows of that source.  A new user has no grant rows yet (their foreign
-- keys need him first), a deleted one none left (the foreign keys are
-- checked at the end of the statement).
CREATE FUNCTION ids_managed_count_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
  SET enable_hashjoin = on SET enable_mergejoin = on SET enable_seqscan = on AS $$
DECLARE
  d jsonb;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT jsonb_agg(x) INTO d FROM (
      SELECT company_id, source, count(*) AS users, 0 AS grants FROM ids_new_rows
       WHERE active AND source IS NOT NULL GROUP BY 1, 2) x;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT jsonb_agg(x) INTO d FROM (
      SELECT company_id, source, -count(*) AS users, 0 AS grants FROM ids_old_rows
       WHERE active AND source IS NOT NULL GROUP BY 1, 2) x;
  ELSE
    -- only the rows whose (active, source, company) changed: the user
    -- leaves the old count with his rows of the old source, joins the new
    -- one with his rows of the new source (the grant tables as they are:
    -- this statement did not change them)
    SELECT jsonb_agg(x) INTO d FROM (
      SELECT company_id, source, sum(users) AS users, sum(grants) AS grants FROM (
        SELECT o.company_id, o.source, -1 AS users, -ids_user_grant_rows(o.id, o.source) AS grants
          FROM ids_old_rows o JOIN ids_new_rows n ON n.id = o.id
         WHERE o.active AND o.source IS NOT NULL
           AND (NOT n.active OR n.source IS DISTINCT FROM o.source OR n.company_id <> o.company_id)
        UNION ALL
        SELECT n.company_id, n.source, 1, ids_user_grant_rows(n.id, n.source)
          FROM ids_old_rows o JOIN ids_new_rows n ON n.id = o.id
         WHERE n.active AND n.source IS NOT NULL
           AND (NOT o.active OR o.source IS DISTINCT FROM n.source OR o.company_id <> n.company_id)
      ) c GROUP BY 1, 2) x;
  END IF;
  IF d IS NOT NULL THEN
    PERFORM ids_managed_add(d);
  END IF;
  RETURN NULL;
END
$$;

-- The four grant tables (each has user_id and source): a row counts when
-- its user, as app_user has him now, is active and has the row's source.
CREATE FUNCTION ids_managed_count_grant() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
  SET enable_hashjoin = on SET enable_mergejoin = on SET enable_seqscan = on AS $$
DECLARE
  d jsonb;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT jsonb_agg(x) INTO d FROM (
      SELECT u.company_id, u.source, 0 AS users, count(*) AS grants
        FROM ids_new_rows n JOIN app_user u ON u.id = n.user_id
       WHERE n.source IS NOT NULL AND u.source = n.source AND u.active GROUP BY 1, 2) x;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT jsonb_agg(x) INTO d FROM (
      SELECT u.company_id, u.source, 0 AS users, -count(*) AS grants
        FROM ids_old_rows o JOIN app_user u ON u.id = o.user_id
       WHERE o.source IS NOT NULL AND u.source = o.source AND u.active GROUP BY 1, 2) x;
  ELSE
    SELECT jsonb_agg(x) INTO d FROM (
      SELECT u.company_id, u.source, 0 AS users, sum(c.k) AS grants
        FROM (SELECT user_id, source, 1 AS k FROM ids_new_rows WHERE source IS NOT NULL
              UNION ALL
              SELECT user_id, source, -1 FROM ids_old_rows WHERE source IS NOT NULL) c
        JOIN app_user u ON u.id = c.user_id
       WHERE u.source = c.source AND u.active GROUP BY 1, 2) x;
  END IF;
  IF d IS NOT NULL THEN
    PERFORM ids_managed_add(d);
  END IF;
  RETURN NULL;
END
$$;

-- TRUNCATE fires no row or statement trigger of the kinds above: count
-- again, everything (rare; one scan).  The lock first, so that the count
-- sees every counter change committed before it and none after it
-- (those wait, then add their deltas to the fresh counts).
CREATE FUNCTION ids_managed_recount() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT
  SET enable_hashjoin = on SET enable_mergejoin = on SET enable_seqscan = on AS $$
BEGIN
  LOCK TABLE managed_count IN SHARE ROW EXCLUSIVE MODE;
  DELETE FROM managed_count;
  INSERT INTO managed_count (company_id, source, active_users, grant_rows)
    SELECT * FROM ids_managed_counted();
  RETURN NULL;
END
$$;

CREATE TRIGGER app_user_count_insert AFTER INSERT ON app_user
  REFERENCING NEW TABLE AS ids_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ids_managed_count_user();
CREATE TRIGGER app_user_count_update AFTER UPDATE ON app_user
  REFERENCING OLD TABLE AS ids_old_rows NEW TABLE AS ids_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ids_managed_count_user();
CREATE TRIGGER app_user_count_delete AFTER DELETE ON app_user
  REFERENCING OLD TABLE AS ids_old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ids_managed_count_user();
CREATE TRIGGER app_user_count_truncate AFTER TRUNCATE ON app_user
  FOR EACH STATEMENT EXECUTE FUNCTION ids_managed_recount();

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['tenant_role', 'channel_grant', 'slot_limit', 'operator_group_member'] LOOP
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS ids_new_rows'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION ids_managed_count_grant()', t || '_count_insert', t);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I'
                   ' REFERENCING OLD TABLE AS ids_old_rows NEW TABLE AS ids_new_rows'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION ids_managed_count_grant()', t || '_count_update', t);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS ids_old_rows'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION ids_managed_count_grant()', t || '_count_delete', t);
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION ids_managed_recount()', t || '_count_truncate', t);
  END LOOP;
END
$$;

-- The rows there are now (a database that synced before this migration).
INSERT INTO managed_count (company_id, source, active_users, grant_rows)
  SELECT * FROM ids_managed_counted();
