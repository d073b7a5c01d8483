-- 003_licences.sql — the seat book of licences (issue 20): who the rules
-- entitle to a licensed role, since which run, and who holds a seat since
-- which run.  The order of the waiting (earliest entitlement first) and
-- which seats a lowered licence takes (the most recently granted) need
-- both to outlive the run; the grants themselves stay in tenant_role.
--
-- idsyncd's own bookkeeping, like sync_run: the platform never reads it.
-- Keyed by (source, external_id), as users are, so that a user the run
-- creates has a row before it has an id.  Rewritten for one connector and
-- company after every committed run.

CREATE TABLE licence_entitlement (
  company_id    bigint NOT NULL REFERENCES company,
  role          text   NOT NULL,
  source        text   NOT NULL,
  external_id   text   NOT NULL,
  entitled_run  bigint NOT NULL,           -- sync_run id in which the rules first granted it
  seat_run      bigint,                    -- sync_run id that gave the seat (0: held before the book); NULL: waiting
  PRIMARY KEY (company_id, role, source, external_id)
);
