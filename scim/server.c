/* server.c — the SCIM listener (scim_server.h): HTTP through
 * libmicrohttpd, one internal polling thread, one database connection
 * used by that thread alone.
 *
 * A request goes: route (/scim/v2/<connector>/<resource>[/<id>]) and
 * authenticate on the headers, before any body is read (a client without
 * the token never makes us buffer a megabyte); gather the body up to
 * BODY_MAX; then one handler per method, whose writes commit before the
 * answer is queued.  Failures answer in the SCIM error schema (RFC 7644
 * §3.12).  Nothing of a request body or a token reaches a log line. */
#include "ids/scim_server.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "ids/log.h"
#include "ids/scim.h"
#include "ids/scim_store.h"
#include "ids/secret.h"
#include "ids/store.h"
#include "ids/util.h"

#define BODY_MAX (1u << 20) /* 413 beyond: no real resource comes near */
#define JSON_DEPTH_MAX 32   /* a SCIM resource nests four levels at most */
#define TLS_CHAIN_MAX 16    /* certificates in tls_cert_file */
#define PAGE_DEFAULT 100    /* list count when the client names none */
#define PAGE_MAX 1000	    /* and the most it may ask for */
#define RETRY_AFTER 5	    /* seconds, while the database is away */
#define SCHEMA_USER "urn:ietf:params:scim:schemas:core:2.0:User"
#define SCHEMA_GROUP "urn:ietf:params:scim:schemas:core:2.0:Group"
#define SCHEMA_LIST "urn:ietf:params:scim:api:messages:2.0:ListResponse"
#define SCHEMA_ERROR "urn:ietf:params:scim:api:messages:2.0:Error"
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* A certificate chain and its key as GnuTLS holds them.  A reload puts
 * a new one in front and keeps the old: a handshake in progress may
 * still hold its pointers (freed when the listener stops). */
struct tls_cred {
	gnutls_pcert_st pc[TLS_CHAIN_MAX];
	unsigned n;
	gnutls_privkey_t key;
	struct tls_cred *prev;
};

/* A connection, for the reaper: since when it has owed us a request. */
struct conn {
	int fd;
	int64_t since; /* monotonic usec: the connection's start or its last answer; INT64_MAX: cut;
			* INT64_MAX - 1: being answered */
	struct conn *next, **pprev;
};

struct ids_scim_server {
	/* Guarded by lock: the MHD thread holds it for reading in each of
	 * its callbacks, a reload (the main thread) for writing when it
	 * swaps the configuration and the certificate. */
	pthread_rwlock_t lock;
	const struct ids_config *cfg;
	unsigned gen;	       /* bumped by each reload: a request's connector is looked up again */
	struct tls_cred *cred; /* the certificate served; NULL: plaintext */
	struct ids_store *st;  /* the MHD thread's; NULL until needed or after a loss */
	struct MHD_Daemon *mhd;
	int efd;	    /* eventfd: written after a committed write */
	int lfd;	    /* our listening socket (unix socket), -1 when MHD binds */
	pthread_mutex_t mu; /* guards dirty */
	bool *dirty;	    /* per cfg->connectors index */
	bool tls;
	struct ids_scim_bucket *budget; /* per cfg->connectors index: the rate limit (MHD thread only) */
	/* the reaper: a thread that cuts connections slower than timeout */
	pthread_mutex_t cmu; /* guards conns, reaper_stop */
	pthread_cond_t ccv;
	struct conn *conns;
	pthread_t reaper;
	bool reaper_on, reaper_stop;
	int64_t timeout; /* usec: cfg->scim.timeout (a change restarts the listener) */
	void (*observe)(void *ud, const char *connector, unsigned status, double seconds);
	void *observe_ud;
};

/* One request's state across MHD's calls. */
struct req {
	const struct ids_connector_cfg *cc; /* of the configuration of generation gen */
	char *name;			    /* new: the connector's name, to find it after a reload */
	unsigned gen;
	int64_t t0; /* monotonic usec: the headers arrived */
	struct ids_buf body;
	bool too_big;
};

/* What a handler answers. */
struct answer {
	unsigned status;
	json_t *body; /* new; NULL: no body */
	char etag[32];
	char *location;	 /* new; NULL: none */
	int retry_after; /* seconds for Retry-After; 0: none */
};

/* ---------------- answers ---------------- */

static void fail(struct answer *a, unsigned status, const char *scim_type, const char *detail)
{
	char st[16];
	snprintf(st, sizeof(st), "%u", status);
	a->status = status;
	json_decref(a->body);
	a->body = json_pack("{s:[s],s:s,s:s}", "schemas", SCHEMA_ERROR, "status", st, "detail", detail);
	if (a->body && scim_type)
		json_object_set_new(a->body, "scimType", json_string(scim_type));
}

static void fail_fault(struct answer *a, const struct ids_scim_fault *f)
{
	fail(a, (unsigned)(f->status ? f->status : 400), f->scim_type, f->detail);
}

/* A store error as the client should see it; a lost database also drops
 * the connection, for the next request to open afresh. */
static void fail_store(struct ids_scim_server *s, struct answer *a, int r, const struct ids_error *e,
		       const char *conn)
{
	if (r == -ENOENT) {
		fail(a, 404, NULL, "resource not found");
		return;
	}
	if (r == -EEXIST) {
		fail(a, 409, "uniqueness", "userName is already taken in this connector");
		return;
	}
	if (r == -ESTALE) {
		fail(a, 412, NULL, "If-Match: the resource has changed");
		return;
	}
	if (r == IDS_E_INVALID) {
		fail(a, 400, "invalidValue", ids_error_text(e));
		return;
	}
	ids_log(IDS_LOG_WARNING, conn, 0, NULL, "scim: database: %s", ids_error_text(e));
	if (r == IDS_E_DB_LOST || r == IDS_E_CONNECT || r == IDS_E_TLS || r == IDS_E_AUTH) {
		ids_store_close(s->st);
		s->st = NULL;
		a->retry_after = RETRY_AFTER;
		fail(a, 503, NULL, "the database is unavailable; retry later");
		return;
	}
	fail(a, 500, NULL, "internal error");
}

static enum MHD_Result send_answer(struct MHD_Connection *c, struct answer *a)
{
	char *text = a->body ? json_dumps(a->body, JSON_COMPACT) : NULL;
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(text ? strlen(text) : 0, text ? text : (void *)"",
					    text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	enum MHD_Result r = MHD_NO;
	if (resp) {
		if (text)
			MHD_add_response_header(resp, "Content-Type", "application/scim+json");
		if (a->etag[0])
			MHD_add_response_header(resp, "ETag", a->etag);
		if (a->location)
			MHD_add_response_header(resp, "Location", a->location);
		char ra[16];
		snprintf(ra, sizeof(ra), "%d", a->retry_after);
		if (a->retry_after)
			MHD_add_response_header(resp, "Retry-After", ra);
		if (a->status == 401)
			MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"idsyncd\"");
		r = MHD_queue_response(c, a->status, resp);
		MHD_destroy_response(resp);
	} else {
		free(text);
	}
	json_decref(a->body);
	free(a->location);
	return r;
}

/* ---------------- resources ---------------- */

/* The stored row as the SCIM resource clients read: what they pushed,
 * plus id, schemas, meta (version as a weak ETag) and a group's members. */
static json_t *resource_of(const struct ids_scim_row *row, const char *base, bool members)
{
	json_t *r = json_loads(row->resource, 0, NULL);
	bool group = !strcmp(row->kind, "Group");
	char ver[32];
	if (!json_is_object(r)) {
		json_decref(r);
		return NULL;
	}
	snprintf(ver, sizeof(ver), "W/\"%lld\"", (long long)row->version);
	json_object_set_new(r, "id", json_string(row->id));
	if (!json_is_array(json_object_get(r, "schemas")))
		json_object_set_new(r, "schemas", json_pack("[s]", group ? SCHEMA_GROUP : SCHEMA_USER));
	if (group && members && row->members)
		json_object_set_new(r, "members", json_loads(row->members, 0, NULL));
	json_object_set_new(r, "meta",
			    json_pack("{s:s,s:s,s:s,s:s,s:s++}", "resourceType", row->kind, "created",
				      row->created, "lastModified", row->modified, "version", ver, "location",
				      base, group ? "Groups/" : "Users/", row->id));
	return r;
}

/* The base URL of the connector's endpoint, from the Host header. */
static char *base_url(struct ids_scim_server *s, struct MHD_Connection *c, const char *conn)
{
	const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
	char *u = NULL;
	if (asprintf(&u, "%s://%s/scim/v2/%s/", s->tls ? "https" : "http", host ? host : "localhost", conn) <
	    0)
		return NULL;
	return u;
}

static void answer_row(struct answer *a, const struct ids_scim_row *row, const char *base, unsigned status,
		       bool members)
{
	a->status = status;
	a->body = resource_of(row, base, members);
	snprintf(a->etag, sizeof(a->etag), "W/\"%lld\"", (long long)row->version);
	if (status == 201 && asprintf(&a->location, "%s%s/%s", base,
				      !strcmp(row->kind, "Group") ? "Groups" : "Users", row->id) < 0)
		a->location = NULL;
	if (!a->body)
		fail(a, 500, NULL, "stored resource is not a JSON object");
}

/* ---------------- the database and the loop ---------------- */

static int store(struct ids_scim_server *s, struct ids_error *e)
{
	if (s->st)
		return 0;
	return ids_store_open(s->cfg, &s->st, e);
}

/* Tells the main loop that connector cc was written (committed). */
static void written(struct ids_scim_server *s, const struct ids_connector_cfg *cc)
{
	uint64_t one = 1;
	pthread_mutex_lock(&s->mu);
	s->dirty[cc - s->cfg->connectors] = true;
	pthread_mutex_unlock(&s->mu);
	/* an eventfd's counter only saturates: a failed write loses nothing */
	if (write(s->efd, &one, sizeof(one)) < 0)
		(void)0;
}

/* If-Match: W/"N" or "N" -> N; absent or * -> 0 (any).  -1: malformed. */
static long long if_match(struct MHD_Connection *c)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-Match");
	if (!v || !strcmp(v, "*"))
		return 0;
	if (!strncmp(v, "W/", 2))
		v += 2;
	char *end = NULL;
	long long n = *v == '"' ? strtoll(v + 1, &end, 10) : -1;
	return end && end[0] == '"' && !end[1] && n > 0 ? n : -1;
}

/* ---------------- handlers ---------------- */

/* Everything a handler needs about its request. */
struct call {
	struct ids_scim_server *s;
	struct MHD_Connection *c;
	const struct ids_connector_cfg *cc;
	const char *kind; /* "User" | "Group" */
	const char *id;	  /* NULL: the collection */
	const char *body;
	size_t len;
	char *base;
	struct answer *a;
	bool in_tx;	   /* a PATCH's: the commit, and the loop's notice, come after */
	const char *scope; /* a group PATCH's: the members it is about (ids_scim_write) */
	bool no_members;   /* the answer leaves the members out */
};

/* The request body as a JSON object, or a 400 answered. */
static json_t *body_json(struct call *k)
{
	json_error_t je;
	if (!ids_scim_json_depth_ok(k->body ? k->body : "", k->len, JSON_DEPTH_MAX)) {
		fail(k->a, 400, "invalidSyntax", "the body nests deeper than 32 levels");
		return NULL;
	}
	json_t *j = json_loadb(k->body ? k->body : "", k->len, JSON_REJECT_DUPLICATES, &je);
	if (!json_is_object(j)) {
		json_decref(j);
		fail(k->a, 400, "invalidSyntax", "the body is not a JSON object");
		return NULL;
	}
	return j;
}

/* res checked and stored: a create (id NULL) or a replace of k->id at
 * version ver (0: any). */
static void put_resource(struct call *k, json_t *res, long long ver)
{
	struct ids_scim_fault f = {0};
	struct ids_scim_row row = {0};
	struct ids_error e = {0};
	struct ids_scim_write w = {.kind = k->kind, .members_scope = k->scope};
	char *members = NULL, *text = NULL;
	int r = ids_scim_normalize(res, !strcmp(k->kind, "Group"), &w.name, &w.external_id, &w.active,
				   &members, &f);
	if (r < 0) {
		fail_fault(k->a, &f);
		return;
	}
	w.members = members;
	if (!(text = json_dumps(res, JSON_COMPACT))) {
		free(members);
		fail(k->a, 500, NULL, "out of memory");
		return;
	}
	w.resource = text;
	if ((r = store(k->s, &e)) >= 0)
		r = k->id ? ids_scim_store_replace(k->s->st, k->cc->name, k->id, ver, &w, &row, &e)
			  : ids_scim_store_create(k->s->st, k->cc->name, &w, &row, &e);
	if (r < 0) {
		fail_store(k->s, k->a, r, &e, k->cc->name);
	} else {
		if (!k->in_tx)
			written(k->s, k->cc);
		answer_row(k->a, &row, k->base, k->id ? 200 : 201, !k->no_members);
	}
	ids_scim_row_clear(&row);
	ids_error_clear(&e);
	free(members);
	free(text);
}

static void h_create_or_put(struct call *k)
{
	long long ver = if_match(k->c);
	json_t *res = ver < 0 ? NULL : body_json(k);
	if (ver < 0) {
		fail(k->a, 400, "invalidSyntax", "If-Match: expected an ETag");
		return;
	}
	if (res)
		put_resource(k, res, ver);
	json_decref(res);
}

/* The stored resource with its members as the PATCH sees them. */
static json_t *patchable(const struct ids_scim_row *row)
{
	json_t *res = json_loads(row->resource, 0, NULL), *m, *ids = NULL;
	size_t i;
	if (!json_is_object(res) || !row->members)
		return res;
	/* [{"value": id, "type": T}] as stored, "type" dropped: clients send
	 * members as values */
	ids = json_loads(row->members, 0, NULL);
	json_array_foreach(ids, i, m) json_object_del(m, "type");
	json_object_set_new(res, "members", ids ? ids : json_array());
	return res;
}

/* How a group's PATCH answers (RFC 7644 §3.5.2): 204 No Content unless
 * the client asks for attributes (then 200 and the resource, which
 * excludedAttributes=members leaves without members).  Entra and Okta
 * send member changes one PATCH at a time, ask for nothing and accept
 * 204; 200 would mean reading and sending the whole member list.  Sets
 * k->scope (new) when the PATCH can read only the members it names. */
static bool group_patch_204(struct call *k, const json_t *body, char **scope)
{
	const char *at = MHD_lookup_connection_value(k->c, MHD_GET_ARGUMENT_KIND, "attributes");
	const char *ex = MHD_lookup_connection_value(k->c, MHD_GET_ARGUMENT_KIND, "excludedAttributes");
	*scope = NULL;
	if (strcmp(k->kind, "Group") != 0)
		return false;
	k->no_members = !at && ex && strcasestr(ex, "members");
	if ((!at && !ex) || k->no_members)
		k->scope = ids_scim_patch_member_scope(body, scope) ? *scope : NULL;
	return !at && !ex;
}

static void h_patch(struct call *k)
{
	struct ids_scim_row row = {0};
	struct ids_scim_fault f = {0};
	struct ids_error e = {0};
	long long ver = if_match(k->c);
	json_t *body = ver < 0 ? NULL : body_json(k), *res = NULL;
	char *scope = NULL;
	bool no_content = body && group_patch_204(k, body, &scope);
	int r;
	if (ver < 0)
		fail(k->a, 400, "invalidSyntax", "If-Match: expected an ETag");
	if (!body)
		return;
	/* read, patch and write back in one transaction: two PATCHes of one
	 * group (Entra sends them in parallel) must not lose a member */
	if ((r = store(k->s, &e)) >= 0 && (r = ids_scim_store_begin(k->s->st, &e)) >= 0)
		r = k->scope ? ids_scim_store_get_scoped(k->s->st, k->cc->name, k->id, k->scope, &row, &e)
			     : ids_scim_store_get(k->s->st, k->cc->name, k->kind, k->id, true, &row, &e);
	if (r >= 0 && ver && row.version != ver)
		r = -ESTALE;
	if (r < 0) {
		fail_store(k->s, k->a, r, &e, k->cc->name);
	} else if (!(res = patchable(&row))) {
		fail(k->a, 500, NULL, "stored resource is not a JSON object");
	} else if (ids_scim_patch(res, body, &f) < 0) {
		fail_fault(k->a, &f);
	} else {
		k->in_tx = true;
		put_resource(k, res, row.version);
		if (k->a->status < 300 && (r = ids_scim_store_commit(k->s->st, &e)) < 0)
			fail_store(k->s, k->a, r, &e, k->cc->name);
		else if (k->a->status < 300)
			written(k->s, k->cc);
	}
	if (no_content && k->a->status == 200) {
		k->a->status = 204;
		json_decref(k->a->body);
		k->a->body = NULL;
	}
	if (k->s->st)
		ids_scim_store_rollback(k->s->st);
	ids_scim_row_clear(&row);
	ids_error_clear(&e);
	json_decref(res);
	json_decref(body);
	free(scope);
}

static void h_get(struct call *k)
{
	struct ids_scim_row row = {0};
	struct ids_error e = {0};
	const char *ex = MHD_lookup_connection_value(k->c, MHD_GET_ARGUMENT_KIND, "excludedAttributes");
	int r = store(k->s, &e);
	if (r >= 0)
		r = ids_scim_store_get(k->s->st, k->cc->name, k->kind, k->id, false, &row, &e);
	if (r < 0)
		fail_store(k->s, k->a, r, &e, k->cc->name);
	else
		answer_row(k->a, &row, k->base, 200, !(ex && strcasestr(ex, "members")));
	ids_scim_row_clear(&row);
	ids_error_clear(&e);
}

static void h_delete(struct call *k)
{
	struct ids_error e = {0};
	long long ver = if_match(k->c);
	int r = ver < 0 ? -EINVAL : store(k->s, &e);
	if (ver < 0) {
		fail(k->a, 400, "invalidSyntax", "If-Match: expected an ETag");
		return;
	}
	if (r >= 0)
		r = ids_scim_store_delete(k->s->st, k->cc->name, k->kind, k->id, ver, &e);
	if (r < 0) {
		fail_store(k->s, k->a, r, &e, k->cc->name);
	} else {
		written(k->s, k->cc);
		k->a->status = 204;
	}
	ids_error_clear(&e);
}

/* A query parameter as a number in [lo, hi]; def when absent.  -1: bad. */
static long arg_long(struct MHD_Connection *c, const char *name, long def, long lo, long hi)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
	char *end = NULL;
	if (!v)
		return def;
	long n = strtol(v, &end, 10);
	if (!*v || *end)
		return -1;
	return n < lo ? lo : n > hi ? hi : n;
}

static void h_list(struct call *k)
{
	const char *fs = MHD_lookup_connection_value(k->c, MHD_GET_ARGUMENT_KIND, "filter");
	const char *ex = MHD_lookup_connection_value(k->c, MHD_GET_ARGUMENT_KIND, "excludedAttributes");
	long start = arg_long(k->c, "startIndex", 1, 1, 1L << 40),
	     count = arg_long(k->c, "count", PAGE_DEFAULT, 0, PAGE_MAX);
	struct ids_scim_filter flt = {0};
	struct ids_scim_fault f = {0};
	struct ids_scim_row *rows = NULL;
	struct ids_error e = {0};
	size_t n = 0;
	long total = 0;
	int r;
	if (start < 0 || count < 0) {
		fail(k->a, 400, "invalidValue", "startIndex and count: expected integers");
		return;
	}
	if (fs && ids_scim_filter_parse(fs, &flt, &f) < 0) {
		fail_fault(k->a, &f);
		return;
	}
	if ((r = store(k->s, &e)) >= 0)
		r = ids_scim_store_list(k->s->st, k->cc->name, k->kind, flt.c, flt.n, start, count, &rows, &n,
					&total, &e);
	if (r < 0) {
		fail_store(k->s, k->a, r, &e, k->cc->name);
	} else {
		json_t *res = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(
			    res, resource_of(&rows[i], k->base, !(ex && strcasestr(ex, "members"))));
		k->a->status = 200;
		k->a->body = json_pack("{s:[s],s:I,s:I,s:I,s:o}", "schemas", SCHEMA_LIST, "totalResults",
				       (json_int_t)total, "startIndex", (json_int_t)start, "itemsPerPage",
				       (json_int_t)n, "Resources", res);
	}
	ids_scim_rows_free(rows, n);
	ids_scim_filter_clear(&flt);
	ids_error_clear(&e);
}

/* ---------------- discovery (RFC 7644 §4) ---------------- */

static void h_config(struct call *k)
{
	k->a->status = 200;
	k->a->body = json_pack(
	    "{s:[s],s:{s:b},s:{s:b,s:i,s:i},s:{s:b,s:i},s:{s:b},s:{s:b},s:{s:b},s:[{s:s,s:s,s:s,s:b}]}",
	    "schemas", "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig", "patch", "supported", 1,
	    "bulk", "supported", 0, "maxOperations", 0, "maxPayloadSize", 0, "filter", "supported", 1,
	    "maxResults", PAGE_MAX, "changePassword", "supported", 0, "sort", "supported", 0, "etag",
	    "supported", 1, "authenticationSchemes", "type", "oauthbearertoken", "name", "OAuth Bearer Token",
	    "description", "the connector's token_file", "primary", 1);
}

static json_t *resource_type(const char *name, const char *schema)
{
	json_t *t = json_pack("{s:[s],s:s,s:s,s:s++,s:s}", "schemas",
			      "urn:ietf:params:scim:schemas:core:2.0:ResourceType", "id", name, "name", name,
			      "endpoint", "/", name, "s", "schema", schema);
	/* the enterprise extension rides on User (RFC 7643 §6) */
	if (t && !strcmp(name, "User"))
		json_object_set_new(t, "schemaExtensions",
				    json_pack("[{s:s,s:b}]", "schema", IDS_SCIM_ENTERPRISE, "required", 0));
	return t;
}

/* /Schemas and /ResourceTypes: the list, or one by id (404 if none). */
static void h_types(struct call *k, bool schemas, const char *id)
{
	json_t *l = schemas ? ids_scim_schemas(k->base) : json_array(), *e;
	size_t i;
	if (!schemas) {
		json_array_append_new(l, resource_type("User", SCHEMA_USER));
		json_array_append_new(l, resource_type("Group", SCHEMA_GROUP));
	}
	if (id) {
		json_array_foreach(l, i, e) if (!strcmp(json_string_value(json_object_get(e, "id")), id))
		{
			k->a->status = 200;
			k->a->body = json_incref(e);
		}
		json_decref(l);
		if (!k->a->status)
			fail(k->a, 404, NULL, schemas ? "no such schema" : "no such resource type");
		return;
	}
	k->a->status = 200;
	k->a->body = json_pack("{s:[s],s:I,s:I,s:I,s:o}", "schemas", SCHEMA_LIST, "totalResults",
			       (json_int_t)json_array_size(l), "startIndex", (json_int_t)1, "itemsPerPage",
			       (json_int_t)json_array_size(l), "Resources", l);
}

/* ---------------- routing ---------------- */

/* Dispatches "/<resource>[/<id>]" (rest, after the connector) by method. */
static void dispatch(struct call *k, const char *method, const char *rest)
{
	char res[32];
	size_t n = strcspn(rest, "/");
	const char *id = rest[n] == '/' && rest[n + 1] ? rest + n + 1 : NULL;
	if (n >= sizeof(res) || (id && strchr(id, '/'))) {
		fail(k->a, 404, NULL, "no such endpoint");
		return;
	}
	memcpy(res, rest, n);
	res[n] = '\0';
	bool get = !strcmp(method, "GET");
	if (!strcmp(res, "ServiceProviderConfig") && get && !id) {
		h_config(k);
		return;
	}
	if ((!strcmp(res, "ResourceTypes") || !strcmp(res, "Schemas")) && get) {
		h_types(k, res[0] == 'S', id);
		return;
	}
	if (strcmp(res, "Users") != 0 && strcmp(res, "Groups") != 0) {
		fail(k->a, 404, NULL, "no such endpoint");
		return;
	}
	k->kind = res[0] == 'U' ? "User" : "Group";
	k->id = id;
	if (get) {
		if (id)
			h_get(k);
		else
			h_list(k);
		return;
	}
	if (!strcmp(method, "POST") && !id) {
		h_create_or_put(k);
		return;
	}
	if (!strcmp(method, "PUT") && id) {
		h_create_or_put(k);
		return;
	}
	if (!strcmp(method, "PATCH") && id) {
		h_patch(k);
		return;
	}
	if (!strcmp(method, "DELETE") && id) {
		h_delete(k);
		return;
	}
	fail(k->a, 405, NULL, "method not allowed here");
}

/* Same length and bytes, in time that depends on the length only. */
static bool token_equal(const char *a, size_t an, const char *b, size_t bn)
{
	unsigned char d = an != bn;
	for (size_t i = 0; i < an; i++)
		d |= (unsigned char)(a[i] ^ b[i % (bn ? bn : 1)]);
	return bn && !d;
}

/* The first call of a request: which connector, and whether the client
 * may speak to it at all.  0: go on; else the status answered. */
static unsigned admit(struct ids_scim_server *s, struct MHD_Connection *c, const char *url,
		      const char *method, struct req *q, struct answer *a)
{
	/* the prefix first: a shorter path has nothing after it to read */
	if (strncmp(url, "/scim/v2/", 9) != 0)
		return fail(a, 404, NULL, "no such endpoint"), 404;
	const char *name = url + 9;
	size_t n = strcspn(name, "/");
	if (name[n] != '/')
		return fail(a, 404, NULL, "no such endpoint"), 404;
	for (size_t i = 0; i < s->cfg->nconnectors && !q->cc; i++) {
		const struct ids_connector_cfg *cc = &s->cfg->connectors[i];
		if (cc->type == IDS_CONN_SCIM && strlen(cc->name) == n && !strncmp(cc->name, name, n))
			q->cc = cc;
	}
	if (!q->cc)
		return fail(a, 404, NULL, "no such connector"), 404;
	if (!(q->name = strdup(q->cc->name)))
		return fail(a, 500, NULL, "out of memory"), 500;
	q->gen = s->gen;
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	const char *tok = auth && !strncasecmp(auth, "Bearer ", 7) ? auth + 7 : "";
	if (!token_equal(tok, strlen(tok), q->cc->scim.token, strlen(q->cc->scim.token)))
		return fail(a, 401, NULL, "a valid bearer token is required"), 401;
	/* the budget is spent by authenticated requests only: a stranger
	 * cannot exhaust a connector's */
	const struct ids_scim_cfg *sc = &q->cc->scim;
	int wait = sc->rate_limit ? ids_scim_bucket_take(&s->budget[q->cc - s->cfg->connectors],
							 ids_mono_usec(), sc->rate_limit, sc->rate_limit)
				  : 0;
	if (wait > 0) {
		a->retry_after = wait;
		return fail(a, 429, NULL, "over the request rate limit of this connector"), 429;
	}
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	if (cl && strtoull(cl, NULL, 10) > BODY_MAX)
		return fail(a, 413, NULL, "the body is over 1 MiB"), 413;
	const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	bool body = !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH");
	if (body && (!ct || (strncasecmp(ct, "application/scim+json", 21) != 0 &&
			     strncasecmp(ct, "application/json", 16) != 0)))
		return fail(a, 415, NULL, "expected application/scim+json"), 415;
	return 0;
}

/* The connection's request is in our hands: the reaper leaves it alone
 * until the answer. */
static void serving(struct ids_scim_server *s, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn *cn = ci ? ci->socket_context : NULL;
	if (cn) {
		pthread_mutex_lock(&s->cmu);
		if (cn->since != INT64_MAX)
			cn->since = INT64_MAX - 1;
		pthread_mutex_unlock(&s->cmu);
	}
}

/* The answer queued, and the connection's clock restarted: the reaper
 * counts the next request's time from here. */
static enum MHD_Result respond(struct ids_scim_server *s, struct MHD_Connection *c, const struct req *q,
			       struct answer *a)
{
	if (s->observe)
		s->observe(s->observe_ud, q->name, a->status, (double)(ids_mono_usec() - q->t0) / 1e6);
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn *cn = ci ? ci->socket_context : NULL;
	if (cn) {
		pthread_mutex_lock(&s->cmu);
		if (cn->since != INT64_MAX)
			cn->since = ids_mono_usec();
		pthread_mutex_unlock(&s->cmu);
	}
	return send_answer(c, a);
}

/* A request that spans a reload finds its connector in the new
 * configuration (gone: 404). */
static bool refind(struct ids_scim_server *s, struct req *q)
{
	if (q->gen == s->gen)
		return true;
	q->cc = NULL;
	for (size_t i = 0; i < s->cfg->nconnectors && !q->cc; i++)
		if (s->cfg->connectors[i].type == IDS_CONN_SCIM &&
		    !strcmp(s->cfg->connectors[i].name, q->name))
			q->cc = &s->cfg->connectors[i];
	q->gen = s->gen;
	return q->cc != NULL;
}

static enum MHD_Result serve(struct ids_scim_server *s, struct MHD_Connection *c, const char *url,
			     const char *method, const char *upload, size_t *upload_size, void **con_cls)
{
	struct req *q = *con_cls;
	struct answer a = {0};
	if (!q) {
		if (!(q = calloc(1, sizeof(*q))))
			return MHD_NO;
		q->t0 = ids_mono_usec();
		*con_cls = q;
		/* refused on the headers: no body is read */
		return admit(s, c, url, method, q, &a) ? respond(s, c, q, &a) : MHD_YES;
	}
	if (!refind(s, q)) {
		fail(&a, 404, NULL, "no such connector");
		return respond(s, c, q, &a);
	}
	if (*upload_size) {
		if (q->body.len + *upload_size > BODY_MAX)
			q->too_big = true;
		else if (ids_buf_add(&q->body, upload, *upload_size) < 0)
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	if (q->too_big) {
		fail(&a, 413, NULL, "the body is over 1 MiB");
		return respond(s, c, q, &a);
	}
	/* received whole: the time it takes us is not the client's */
	serving(s, c);
	struct call k = {.s = s, .c = c, .cc = q->cc, .body = q->body.p, .len = q->body.len, .a = &a};
	if (!(k.base = base_url(s, c, q->cc->name)))
		return MHD_NO;
	dispatch(&k, method, url + strlen("/scim/v2/") + strlen(q->cc->name) + 1);
	free(k.base);
	if (!a.status)
		fail(&a, 500, NULL, "internal error");
	return respond(s, c, q, &a);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size,
				  void **con_cls)
{
	struct ids_scim_server *s = cls;
	pthread_rwlock_rdlock(&s->lock);
	enum MHD_Result r = serve(s, c, url, method, upload, upload_size, con_cls);
	pthread_rwlock_unlock(&s->lock);
	return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode t)
{
	struct req *q = *con_cls;
	if (q) {
		ids_buf_free(&q->body);
		free(q->name);
		free(q);
		*con_cls = NULL;
	}
}

/* ---------------- start and stop ---------------- */

/* A unix socket of our own: MHD binds only TCP.  A stale socket file of
 * an earlier run is replaced; group members may connect (a local proxy
 * in the daemon's group), others not. */
static int unix_listen(const char *path, struct ids_error *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0660) < 0 ||
	    listen(fd, 64) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return ids_error_set(err, IDS_E_CONNECT, "scim.listen: %s: %s", path, strerror(e));
	}
	return fd;
}

/* ---------------- TLS ---------------- */

static void tls_cred_free(struct tls_cred *t)
{
	while (t) {
		struct tls_cred *p = t->prev;
		for (unsigned i = 0; i < t->n; i++)
			gnutls_pcert_deinit(&t->pc[i]);
		if (t->key)
			gnutls_privkey_deinit(t->key);
		free(t);
		t = p;
	}
}

/* Whether key is the private half of the certificate's public key: a
 * mismatched pair would fail every handshake after a reload. */
static bool tls_pair(gnutls_privkey_t key, gnutls_pubkey_t cert_pub)
{
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t a = {0}, b = {0};
	bool same = gnutls_pubkey_init(&pub) >= 0 && gnutls_pubkey_import_privkey(pub, key, 0, 0) >= 0 &&
		    gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &a) >= 0 &&
		    gnutls_pubkey_export2(cert_pub, GNUTLS_X509_FMT_DER, &b) >= 0 && a.size == b.size &&
		    !memcmp(a.data, b.data, a.size);
	gnutls_free(a.data);
	gnutls_free(b.data);
	if (pub)
		gnutls_pubkey_deinit(pub);
	return same;
}

/* The PEM texts parsed into t, the key checked against the certificate. */
static int tls_parse(const struct ids_config *cfg, struct tls_cred *t, char *cert, size_t nc, char *key,
		     size_t nk, struct ids_error *err)
{
	gnutls_datum_t dc = {(unsigned char *)cert, (unsigned)nc}, dk = {(unsigned char *)key, (unsigned)nk};
	t->n = TLS_CHAIN_MAX;
	int g = gnutls_pcert_list_import_x509_raw(t->pc, &t->n, &dc, GNUTLS_X509_FMT_PEM, 0);
	if (g < 0 || !t->n) {
		t->n = 0;
		return ids_error_set(err, IDS_E_CONFIG, "scim.tls_cert_file: %s: %s", cfg->scim.tls_cert_file,
				     g < 0 ? gnutls_strerror(g) : "no certificate");
	}
	if ((g = gnutls_privkey_init(&t->key)) >= 0)
		g = gnutls_privkey_import_x509_raw(t->key, &dk, GNUTLS_X509_FMT_PEM, NULL, 0);
	if (g < 0)
		return ids_error_set(err, IDS_E_CONFIG, "scim.tls_key_file: %s: %s", cfg->scim.tls_key_file,
				     gnutls_strerror(g));
	if (!tls_pair(t->key, t->pc[0].pubkey))
		return ids_error_set(err, IDS_E_CONFIG, "scim.tls_key_file: %s is not the key of %s",
				     cfg->scim.tls_key_file, cfg->scim.tls_cert_file);
	return 0;
}

/* The certificate (public) and the key (a secret, through the one
 * secret reader, wiped after GnuTLS took it) as *ret (new). */
static int tls_load(const struct ids_config *cfg, struct tls_cred **ret, struct ids_error *err)
{
	char *cert = NULL, *key = NULL;
	size_t nc = 0, nk = 0;
	struct tls_cred *t = calloc(1, sizeof(*t));
	int r =
	    t ? ids_secret_read(cfg->scim.tls_cert_file, IDS_SECRET_MAX * 4, true, &cert, &nc, err) : -ENOMEM;
	if (r >= 0)
		r = ids_secret_read(cfg->scim.tls_key_file, IDS_SECRET_MAX,
				    cfg->security.allow_readable_secrets, &key, &nk, err);
	if (r < 0 && t)
		ids_error_prefix(err, "scim");
	if (r >= 0)
		r = tls_parse(cfg, t, cert, nc, key, nk, err);
	free(cert);
	ids_secret_free(key);
	if (r < 0) {
		tls_cred_free(t);
		return r;
	}
	*ret = t;
	return 0;
}

/* MHD's certificate callback has no closure: the one listener of the
 * process (set while it runs). */
static struct ids_scim_server *tls_server;

/* GnuTLS asks for the certificate at each handshake: the newest loaded,
 * so a reload takes effect for the next connection without a restart. */
static int tls_pick(gnutls_session_t ses, const gnutls_datum_t *ca, int nca,
		    const gnutls_pk_algorithm_t *algos, int nalgos, gnutls_pcert_st **pc, unsigned int *npc,
		    gnutls_privkey_t *key)
{
	struct ids_scim_server *s = tls_server;
	if (!s)
		return -1;
	pthread_rwlock_rdlock(&s->lock);
	*pc = s->cred->pc;
	*npc = s->cred->n;
	*key = s->cred->key;
	pthread_rwlock_unlock(&s->lock);
	return 0;
}

/* ---------------- the reaper ---------------- */

/* MHD's own timeout counts silence only: a client that sends a byte a
 * second is never silent.  Each connection owes a whole request within
 * cfg->scim.timeout of its start or of its last answer; the reaper shuts
 * the socket of one that does not (MHD then sees the end of the stream
 * and closes it in its own thread). */
static void *reaper(void *arg)
{
	struct ids_scim_server *s = arg;
	pthread_mutex_lock(&s->cmu);
	while (!s->reaper_stop) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&s->ccv, &s->cmu, &ts);
		int64_t now = ids_mono_usec(), lim = s->timeout;
		for (struct conn *cn = s->conns; cn; cn = cn->next)
			if (cn->since < INT64_MAX - 1 && now - cn->since > lim) {
				cn->since = INT64_MAX;
				shutdown(cn->fd, SHUT_RDWR);
			}
	}
	pthread_mutex_unlock(&s->cmu);
	return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct ids_scim_server *s = cls;
	struct conn *cn = *socket_context;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		if (!ci || !(cn = calloc(1, sizeof(*cn))))
			return; /* not watched: MHD's silence timeout still applies */
		cn->fd = ci->connect_fd;
		cn->since = ids_mono_usec();
		pthread_mutex_lock(&s->cmu);
		if ((cn->next = s->conns))
			cn->next->pprev = &cn->next;
		cn->pprev = &s->conns;
		s->conns = cn;
		pthread_mutex_unlock(&s->cmu);
		*socket_context = cn;
	} else if (cn) {
		/* before MHD closes the socket: the reaper never shuts a
		 * number another connection got */
		pthread_mutex_lock(&s->cmu);
		if ((*cn->pprev = cn->next))
			cn->next->pprev = cn->pprev;
		pthread_mutex_unlock(&s->cmu);
		free(cn);
		*socket_context = NULL;
	}
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
	char m[512];
	vsnprintf(m, sizeof(m), fmt, ap);
	m[strcspn(m, "\n")] = '\0';
	ids_log(IDS_LOG_DEBUG, NULL, 0, NULL, "scim: %s", m);
}

/* MHD started on host:port, or on s->lfd. */
static int mhd_start(struct ids_scim_server *s, const char *host, int port, struct ids_error *err)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
	unsigned cap = (unsigned)s->cfg->scim.max_connections;
	if (host && inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		flags |= MHD_USE_IPv6;
	} else if (host) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, strcasecmp(host, "localhost") ? host : "127.0.0.1", &in4->sin_addr) !=
		    1)
			return ids_error_set(err, IDS_E_CONFIG, "scim.listen: bad address %s", host);
	}
	if (s->tls)
		flags |= MHD_USE_TLS;
	s->mhd = MHD_start_daemon(
	    flags, (uint16_t)port, NULL, NULL, on_request, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
	    /* per address only on TCP (a unix socket's peers have none):
	     * the unix case repeats the overall cap instead */
	    host ? MHD_OPTION_PER_IP_CONNECTION_LIMIT : MHD_OPTION_CONNECTION_LIMIT, host ? cap / 2 : cap,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg->scim.timeout, MHD_OPTION_CONNECTION_LIMIT, cap,
	    MHD_OPTION_EXTERNAL_LOGGER, log_mhd, s, host ? MHD_OPTION_SOCK_ADDR : MHD_OPTION_LISTEN_SOCKET,
	    host ? (void *)&ss : (void *)(intptr_t)s->lfd,
	    s->tls ? MHD_OPTION_HTTPS_CERT_CALLBACK : MHD_OPTION_END, tls_pick, MHD_OPTION_HTTPS_PRIORITIES,
	    TLS_PRIORITIES, MHD_OPTION_END);
	if (!s->mhd)
		return ids_error_set(err, IDS_E_CONNECT, "scim.listen: cannot listen on %s",
				     s->cfg->scim.listen);
	return 0;
}

/* The locks, the eventfd and the reaper of a new server. */
static int server_init(struct ids_scim_server *s, struct ids_error *err)
{
	pthread_condattr_t ca;
	pthread_rwlock_init(&s->lock, NULL);
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->cmu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* ids_mono_usec's clock */
	pthread_cond_init(&s->ccv, &ca);
	pthread_condattr_destroy(&ca);
	s->timeout = (int64_t)s->cfg->scim.timeout * 1000000;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0)
		return ids_error_set(err, -errno, "eventfd: %s", strerror(errno));
	int r = pthread_create(&s->reaper, NULL, reaper, s);
	if (r)
		return ids_error_set(err, -r, "scim: thread: %s", strerror(r));
	s->reaper_on = true;
	return 0;
}

int ids_scim_server_start(const struct ids_config *cfg, struct ids_scim_server **ret, struct ids_error *err)
{
	struct ids_scim_server *s = NULL;
	char *host = NULL;
	int port = 0, r;
	bool loopback = false;
	*ret = NULL;
	if (!cfg->scim.listen)
		return 0;
	if (ids_config_scim_listen(cfg->scim.listen, &host, &port, &loopback) < 0)
		return ids_error_set(err, IDS_E_CONFIG, "scim.listen: invalid");
	if (!(s = calloc(1, sizeof(*s))) || !(s->dirty = calloc(cfg->nconnectors + 1, sizeof(bool))) ||
	    !(s->budget = calloc(cfg->nconnectors + 1, sizeof(*s->budget)))) {
		if (s)
			free(s->dirty);
		free(s);
		free(host);
		return -ENOMEM;
	}
	s->cfg = cfg;
	s->lfd = -1;
	r = server_init(s, err);
	if (r >= 0 && cfg->scim.tls_cert_file && (r = tls_load(cfg, &s->cred, err)) >= 0) {
		s->tls = true;
		tls_server = s;
	}
	if (r >= 0 && !host && (s->lfd = unix_listen(cfg->scim.listen, err)) < 0)
		r = s->lfd;
	if (r >= 0)
		r = mhd_start(s, host, port, err);
	free(host);
	if (r < 0) {
		ids_scim_server_stop(s);
		return r;
	}
	*ret = s;
	return 0;
}

/* The per-connector arrays of the new configuration, carried over by
 * connector name: a pending push still runs, a spent budget stays spent. */
static int carry(struct ids_scim_server *s, const struct ids_config *cfg)
{
	bool *dirty = calloc(cfg->nconnectors + 1, sizeof(bool));
	struct ids_scim_bucket *budget = calloc(cfg->nconnectors + 1, sizeof(*budget));
	if (!dirty || !budget) {
		free(dirty);
		free(budget);
		return -ENOMEM;
	}
	pthread_mutex_lock(&s->mu);
	for (size_t i = 0; i < cfg->nconnectors; i++)
		for (size_t j = 0; j < s->cfg->nconnectors; j++)
			if (!strcmp(cfg->connectors[i].name, s->cfg->connectors[j].name)) {
				dirty[i] = s->dirty[j];
				budget[i] = s->budget[j];
			}
	free(s->dirty);
	free(s->budget);
	s->dirty = dirty;
	s->budget = budget;
	s->cfg = cfg;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

int ids_scim_server_reload(struct ids_scim_server *s, const struct ids_config *cfg)
{
	const struct ids_config *o = s->cfg;
	struct tls_cred *t = NULL;
	struct ids_error e = {0};
	if (!cfg->scim.listen || strcmp(cfg->scim.listen, o->scim.listen) != 0 ||
	    !cfg->scim.tls_cert_file != !s->tls || cfg->scim.timeout != o->scim.timeout ||
	    cfg->scim.max_connections != o->scim.max_connections)
		return 1;
	if (s->tls && tls_load(cfg, &t, &e) < 0)
		ids_log(IDS_LOG_ERROR, NULL, 0, NULL,
			"scim: reload: the new key and certificate are refused, the previous ones stay: %s",
			ids_error_text(&e));
	ids_error_clear(&e);
	pthread_rwlock_wrlock(&s->lock);
	int r = carry(s, cfg);
	if (r >= 0 && t) {
		t->prev = s->cred;
		s->cred = t;
		t = NULL;
	}
	if (r >= 0) {
		/* the database settings may have changed: the next request
		 * connects with the new ones */
		ids_store_close(s->st);
		s->st = NULL;
		s->gen++;
	}
	pthread_rwlock_unlock(&s->lock);
	tls_cred_free(t);
	return r < 0 ? 1 : 0;
}

void ids_scim_server_observe(struct ids_scim_server *s,
			     void (*fn)(void *ud, const char *connector, unsigned status, double seconds),
			     void *ud)
{
	if (!s)
		return;
	pthread_rwlock_wrlock(&s->lock);
	s->observe = fn;
	s->observe_ud = ud;
	pthread_rwlock_unlock(&s->lock);
}

int ids_scim_server_fd(const struct ids_scim_server *s)
{
	return s ? s->efd : -1;
}

void ids_scim_server_drain(struct ids_scim_server *s, void (*fn)(void *ud, const char *name), void *ud)
{
	uint64_t v;
	if (!s)
		return;
	if (read(s->efd, &v, sizeof(v)) < 0)
		(void)0; /* nothing pending: EAGAIN */
	for (size_t i = 0; i < s->cfg->nconnectors; i++) {
		pthread_mutex_lock(&s->mu);
		bool d = s->dirty[i];
		s->dirty[i] = false;
		pthread_mutex_unlock(&s->mu);
		if (d)
			fn(ud, s->cfg->connectors[i].name);
	}
}

void ids_scim_server_stop(struct ids_scim_server *s)
{
	if (!s)
		return;
	if (s->mhd)
		MHD_stop_daemon(s->mhd);
	if (s->reaper_on) {
		pthread_mutex_lock(&s->cmu);
		s->reaper_stop = true;
		pthread_cond_signal(&s->ccv);
		pthread_mutex_unlock(&s->cmu);
		pthread_join(s->reaper, NULL);
	}
	if (tls_server == s)
		tls_server = NULL;
	if (s->lfd >= 0) {
		close(s->lfd);
		unlink(s->cfg->scim.listen);
	}
	if (s->efd >= 0)
		close(s->efd);
	ids_store_close(s->st);
	pthread_mutex_destroy(&s->mu);
	pthread_mutex_destroy(&s->cmu);
	pthread_cond_destroy(&s->ccv);
	pthread_rwlock_destroy(&s->lock);
	tls_cred_free(s->cred);
	free(s->dirty);
	free(s->budget);
	free(s);
}
