-- 001_init.sql — the tables of spec/schema.md.
--
-- Runs inside one transaction with search_path set to the configured schema
-- (database.schema), so nothing here names a schema.  The store records the
-- migration in schema_migrations in the same transaction.

CREATE TABLE schema_migrations (
  version     integer PRIMARY KEY,
  name        text NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE company (
  id          bigserial PRIMARY KEY,
  slug        text NOT NULL UNIQUE,
  name        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tenant (
  id          bigserial PRIMARY KEY,
  company_id  bigint NOT NULL REFERENCES company,
  slug        text NOT NULL,
  name        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (company_id, slug)
);

CREATE TABLE app_user (
  id              bigserial PRIMARY KEY,
  company_id      bigint NOT NULL REFERENCES company,
  source          text,
  external_id     text,
  username        text NOT NULL,
  email           text,
  first_name      text,
  last_name       text,
  display_name    text,
  auth_method     text NOT NULL
                  CONSTRAINT app_user_auth_method_check
                  CHECK (auth_method IN ('activation_link', 'sso')),
  idp             text,
  company_admin   boolean NOT NULL DEFAULT false,
  active          boolean NOT NULL DEFAULT true,
  deactivated_at  timestamptz,
  deactivation_reason text
                  CONSTRAINT app_user_deactivation_reason_check
                  CHECK (deactivation_reason IN ('disabled_in_source', 'out_of_scope',
                                                 'deleted_in_source')),
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (source, external_id)
);

-- Case-insensitive uniqueness within a company.  An e-mail is only unique
-- among active users, so that a departed person's address can be reused.
-- The username index also serves every "users of company X" lookup (its
-- leading column), so app_user needs no separate index on company_id.
CREATE UNIQUE INDEX app_user_company_username_key ON app_user (company_id, lower(username));
CREATE UNIQUE INDEX app_user_company_email_key ON app_user (company_id, lower(email)) WHERE active;

CREATE TABLE tenant_role (
  user_id    bigint NOT NULL REFERENCES app_user,
  tenant_id  bigint NOT NULL REFERENCES tenant,
  role       text   NOT NULL,
  source     text,
  PRIMARY KEY (user_id, tenant_id, role)
);

CREATE TABLE channel_grant (
  user_id    bigint NOT NULL REFERENCES app_user,
  tenant_id  bigint NOT NULL REFERENCES tenant,
  channel    text   NOT NULL,
  source     text,
  PRIMARY KEY (user_id, tenant_id, channel)
);

CREATE TABLE slot_limit (
  user_id        bigint NOT NULL REFERENCES app_user,
  tenant_id      bigint NOT NULL REFERENCES tenant,
  channel_group  text   NOT NULL,
  slots          integer NOT NULL CHECK (slots BETWEEN 0 AND 1000),
  source         text,
  PRIMARY KEY (user_id, tenant_id, channel_group)
);

CREATE TABLE operator_group (
  id         bigserial PRIMARY KEY,
  tenant_id  bigint NOT NULL REFERENCES tenant,
  name       text NOT NULL,
  UNIQUE (tenant_id, name)
);

CREATE TABLE operator_group_member (
  group_id   bigint NOT NULL REFERENCES operator_group,
  user_id    bigint NOT NULL REFERENCES app_user,
  source     text,
  PRIMARY KEY (group_id, user_id)
);

-- The primary keys of tenant_role, channel_grant and slot_limit start with
-- user_id; group membership is read by user too.
CREATE INDEX operator_group_member_user_idx ON operator_group_member (user_id);
-- Foreign keys to tenant: keep a tenant's deletion (by the platform) and the
-- isolation triggers below from scanning whole tables.
CREATE INDEX tenant_role_tenant_idx ON tenant_role (tenant_id);
CREATE INDEX channel_grant_tenant_idx ON channel_grant (tenant_id);
CREATE INDEX slot_limit_tenant_idx ON slot_limit (tenant_id);

CREATE TABLE sync_run (
  id               bigserial PRIMARY KEY,
  connector        text NOT NULL,
  started_at       timestamptz NOT NULL,
  finished_at      timestamptz,
  status           text NOT NULL
                   CONSTRAINT sync_run_status_check
                   CHECK (status IN ('ok', 'failed', 'aborted_threshold', 'aborted_empty',
                                     'dry_run', 'skipped_locked')),
  users_seen       integer, created integer, updated integer, deactivated integer,
  reactivated      integer, grants_added integer, grants_removed integer,
  conflicts        integer, skipped_invalid integer,
  error            text
);

-- `idsyncd status`: the last run of each connector.
CREATE INDEX sync_run_connector_idx ON sync_run (connector, id DESC);

CREATE TABLE audit_log (
  id        bigserial PRIMARY KEY,
  run_id    bigint NOT NULL REFERENCES sync_run,
  at        timestamptz NOT NULL DEFAULT now(),
  user_id   bigint REFERENCES app_user,
  action    text NOT NULL
            CONSTRAINT audit_log_action_check
            CHECK (action IN ('create', 'update', 'deactivate', 'reactivate', 'adopt',
                              'conflict', 'grant', 'revoke', 'skip_invalid')),
  detail    jsonb NOT NULL
);

CREATE INDEX audit_log_run_idx ON audit_log (run_id);
CREATE INDEX audit_log_user_idx ON audit_log (user_id);

-- Company isolation, enforced by the database itself: whoever writes a
-- grant row (idsyncd or the platform's UI), its tenant must belong to the
-- company of its user.  The platform reads these tables as the spec fixes
-- them, so no company_id columns are added; triggers check instead.
--
-- SET search_path FROM CURRENT pins the schema of this migration, so that
-- the functions find their tables whatever search_path the writing session
-- (e.g. the platform) uses.

-- One check per statement over its transition table, not per row: an
-- initial sync inserts hundreds of thousands of grants, and a row trigger
-- doing two lookups each costs seconds; this is one hash join.
CREATE FUNCTION ids_check_grant_company() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  bad record;
BEGIN
  IF TG_TABLE_NAME = 'operator_group_member' THEN
    SELECT n.user_id, g.tenant_id, u.company_id AS uc, t.company_id AS tc INTO bad
      FROM ids_new_rows n JOIN operator_group g ON g.id = n.group_id
      JOIN tenant t ON t.id = g.tenant_id JOIN app_user u ON u.id = n.user_id
     WHERE u.company_id <> t.company_id LIMIT 1;
  ELSE
    -- the three tables share the (user_id, tenant_id) columns
    EXECUTE 'SELECT n.user_id, n.tenant_id, u.company_id AS uc, t.company_id AS tc
               FROM ids_new_rows n JOIN tenant t ON t.id = n.tenant_id
               JOIN app_user u ON u.id = n.user_id
              WHERE u.company_id <> t.company_id LIMIT 1' INTO bad;
  END IF;
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'company isolation: % row gives user % (company %) a grant in tenant % (company %)',
      TG_TABLE_NAME, bad.user_id, bad.uc, bad.tenant_id, bad.tc
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER tenant_role_company_insert AFTER INSERT ON tenant_role
  REFERENCING NEW TABLE AS ids_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ids_check_grant_company();
CREATE TRIGGER tenant_role_company_update AFTER UPDATE ON tenant_role
  REFERENCING NEW TABLE AS ids_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ids_check_grant_company();
CREATE TRIGGER channel_grant_company_insert AFTER INSERT ON channel_grant
  REFERENCING NEW TABLE AS ids_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ids_check_grant_company();
CREATE TRIGGER channel_grant_company_update AFTER UPDATE ON channel_grant
  REFERENCING NEW TABLE AS ids_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ids_check_grant_company();
CREATE TRIGGER slot_limit_company_insert AFTER INSERT ON slot_limit
  REFERENCING NEW TABLE AS ids_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ids_check_grant_company();
CREATE TRIGGER slot_limit_company_update AFTER UPDATE ON slot_limit
  REFERENCING NEW TABLE AS ids_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ids_check_grant_company();
CREATE TRIGGER operator_group_member_company_insert AFTER INSERT ON operator_group_member
  REFERENCING NEW TABLE AS ids_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ids_check_grant_company();
CREATE TRIGGER operator_group_member_company_update AFTER UPDATE ON operator_group_member
  REFERENCING NEW TABLE AS ids_new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION ids_check_grant_company();

-- The other way round a grant could cross companies: moving its user, its
-- tenant or its operator group after the fact.  Refused while any grant
-- would end up pointing into another company.
CREATE FUNCTION ids_check_move_company() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
  bad boolean;
BEGIN
  IF TG_TABLE_NAME = 'app_user' THEN
    SELECT EXISTS (SELECT 1 FROM tenant_role x JOIN tenant t ON t.id = x.tenant_id
                    WHERE x.user_id = NEW.id AND t.company_id <> NEW.company_id
                   UNION ALL
                   SELECT 1 FROM channel_grant x JOIN tenant t ON t.id = x.tenant_id
                    WHERE x.user_id = NEW.id AND t.company_id <> NEW.company_id
                   UNION ALL
                   SELECT 1 FROM slot_limit x JOIN tenant t ON t.id = x.tenant_id
                    WHERE x.user_id = NEW.id AND t.company_id <> NEW.company_id
                   UNION ALL
                   SELECT 1 FROM operator_group_member x
                     JOIN operator_group g ON g.id = x.group_id
                     JOIN tenant t ON t.id = g.tenant_id
                    WHERE x.user_id = NEW.id AND t.company_id <> NEW.company_id) INTO bad;
  ELSIF TG_TABLE_NAME = 'tenant' THEN
    SELECT EXISTS (SELECT 1 FROM tenant_role x JOIN app_user u ON u.id = x.user_id
                    WHERE x.tenant_id = NEW.id AND u.company_id <> NEW.company_id
                   UNION ALL
                   SELECT 1 FROM channel_grant x JOIN app_user u ON u.id = x.user_id
                    WHERE x.tenant_id = NEW.id AND u.company_id <> NEW.company_id
                   UNION ALL
                   SELECT 1 FROM slot_limit x JOIN app_user u ON u.id = x.user_id
                    WHERE x.tenant_id = NEW.id AND u.company_id <> NEW.company_id
                   UNION ALL
                   SELECT 1 FROM operator_group_member x
                     JOIN operator_group g ON g.id = x.group_id
                     JOIN app_user u ON u.id = x.user_id
                    WHERE g.tenant_id = NEW.id AND u.company_id <> NEW.company_id) INTO bad;
  ELSE -- operator_group moved to another tenant
    SELECT EXISTS (SELECT 1 FROM operator_group_member x
                     JOIN app_user u ON u.id = x.user_id
                     JOIN tenant t ON t.id = NEW.tenant_id
                    WHERE x.group_id = NEW.id AND u.company_id <> t.company_id) INTO bad;
  END IF;
  IF bad THEN
    RAISE EXCEPTION 'company isolation: moving % % would leave grants across companies',
      TG_TABLE_NAME, NEW.id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER app_user_company_move BEFORE UPDATE OF company_id ON app_user
  FOR EACH ROW WHEN (NEW.company_id IS DISTINCT FROM OLD.company_id)
  EXECUTE FUNCTION ids_check_move_company();
CREATE TRIGGER tenant_company_move BEFORE UPDATE OF company_id ON tenant
  FOR EACH ROW WHEN (NEW.company_id IS DISTINCT FROM OLD.company_id)
  EXECUTE FUNCTION ids_check_move_company();
CREATE TRIGGER operator_group_tenant_move BEFORE UPDATE OF tenant_id ON operator_group
  FOR EACH ROW WHEN (NEW.tenant_id IS DISTINCT FROM OLD.tenant_id)
  EXECUTE FUNCTION ids_check_move_company();
