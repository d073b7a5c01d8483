-- 006_scim.sql — what identity providers push to the SCIM endpoint
-- (issue 16): the source of every `type: scim` connector.
--
-- A pull-connector's directory lives elsewhere; a scim connector's lives
-- here, because the identity provider sends each change once and never
-- again: it must survive restarts and be shared by every instance behind
-- a load balancer.  Written by the SCIM listener, one transaction per
-- request, committed before the answer; read by the connector's run as
-- its snapshot.  The platform never reads these tables.

CREATE TABLE scim_resource (
  connector     text NOT NULL,
  id            uuid NOT NULL DEFAULT gen_random_uuid(),  -- the SCIM id: the user's external_id
  kind          text NOT NULL CHECK (kind IN ('User', 'Group')),
  name          text NOT NULL,        -- userName, or a group's displayName
  external_id   text,                 -- the client's externalId
  active        boolean NOT NULL DEFAULT true,
  -- a DELETEd user is kept (deactivated as deleted_in_source, and a POST
  -- of its userName brings the same row back); groups are deleted for real
  deleted_at    timestamptz,
  resource      jsonb NOT NULL,       -- as pushed, minus id, meta, members and password
  version       bigint NOT NULL DEFAULT 1,   -- the ETag, W/"version"
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (connector, id)
);

-- userName is unique per connector, case-insensitively (RFC 7643 says
-- userName is case-insensitive; a 409 beats a second account)
CREATE UNIQUE INDEX scim_resource_user_name_key ON scim_resource (connector, lower(name))
  WHERE kind = 'User';
CREATE INDEX scim_resource_external_id ON scim_resource (connector, external_id);

CREATE TABLE scim_member (
  connector   text NOT NULL,
  group_id    uuid NOT NULL,
  member_id   uuid NOT NULL,       -- a user or a group of the same connector
  PRIMARY KEY (connector, group_id, member_id),
  FOREIGN KEY (connector, group_id) REFERENCES scim_resource ON DELETE CASCADE,
  FOREIGN KEY (connector, member_id) REFERENCES scim_resource ON DELETE CASCADE
);
CREATE INDEX scim_member_member ON scim_member (connector, member_id);
