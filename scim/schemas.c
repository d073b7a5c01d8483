/* schemas.c — the Schema resources served at /Schemas (RFC 7643 §7, the
 * definitions of §8.7.1 for User and Group and §4.3's enterprise
 * extension).  Clients read them to learn what the server keeps: Entra's
 * validator checks userName's uniqueness ("server") and each attribute's
 * mutability.  Attributes idsyncd stores but never maps (phoneNumbers,
 * addresses, ...) are listed too: they are kept as pushed and rules read
 * them; only what the server refuses to keep is marked (password:
 * writeOnly, returned never — it is dropped before storing). */
#include "ids/scim.h"

/* What differs between attributes; the rest is RFC 7643's default. */
struct adef {
	const char *name, *type; /* type: string boolean complex reference dateTime ... */
	unsigned flags;
	const char *mutability; /* NULL: readWrite */
	const char *returned;	/* NULL: default */
	const char *desc;
};

enum {
	MULTI = 1,     /* multiValued */
	REQ = 2,       /* required */
	EXACT = 4,     /* caseExact */
	UNIQUE = 8,    /* uniqueness server */
	REF_USER = 16, /* referenceTypes [User, Group] */
	REF_EXT = 32,  /* referenceTypes [external] */
};

/* One attribute (new); subs (stolen) its subAttributes or NULL. */
static json_t *attr(const struct adef *d, json_t *subs)
{
	json_t *a = json_pack(
	    "{s:s,s:s,s:b,s:s,s:b,s:b,s:s,s:s,s:s}", "name", d->name, "type", d->type, "multiValued",
	    (d->flags & MULTI) != 0, "description", d->desc, "required", (d->flags & REQ) != 0, "caseExact",
	    (d->flags & EXACT) != 0, "mutability", d->mutability ? d->mutability : "readWrite", "returned",
	    d->returned ? d->returned : "default", "uniqueness", (d->flags & UNIQUE) ? "server" : "none");
	if (a && subs)
		json_object_set_new(a, "subAttributes", subs);
	else
		json_decref(subs);
	if (a && (d->flags & (REF_USER | REF_EXT)))
		json_object_set_new(a, "referenceTypes",
				    (d->flags & REF_USER) ? json_pack("[s,s]", "User", "Group")
							  : json_pack("[s]", "external"));
	return a;
}

/* The attributes of defs[0..n) as a JSON array (new). */
static json_t *attrs(const struct adef *defs, size_t n)
{
	json_t *l = json_array();
	for (size_t i = 0; l && i < n; i++)
		json_array_append_new(l, attr(&defs[i], NULL));
	return l;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* value/display/type/primary: the sub-attributes of RFC 7643's plain
 * multi-valued attributes (emails, phoneNumbers, roles, ...). */
static json_t *multi_subs(const char *what)
{
	const struct adef s[] = {
	    {"value", "string", 0, NULL, NULL, what},
	    {"display", "string", 0, NULL, NULL, "a human-readable name, for display"},
	    {"type", "string", 0, NULL, NULL, "a label: work, home, other, ..."},
	    {"primary", "boolean", 0, NULL, NULL, "the primary value of the attribute"},
	};
	return attrs(s, N(s));
}

static json_t *multi(const char *name, const char *desc)
{
	const struct adef d = {name, "complex", MULTI, NULL, NULL, desc};
	return attr(&d, multi_subs(desc));
}

static json_t *user_attrs(void)
{
	const struct adef simple[] = {
	    {"userName", "string", REQ | UNIQUE, NULL, NULL,
	     "the user's name at the client; unique in this connector, case-insensitively"},
	    {"displayName", "string", 0, NULL, NULL, "the name to display"},
	    {"nickName", "string", 0, NULL, NULL, "the casual name"},
	    {"profileUrl", "reference", REF_EXT, NULL, NULL, "the user's online profile"},
	    {"title", "string", 0, NULL, NULL, "the user's title"},
	    {"userType", "string", 0, NULL, NULL, "the relation to the organization"},
	    {"preferredLanguage", "string", 0, NULL, NULL, "RFC 7231 Accept-Language form"},
	    {"locale", "string", 0, NULL, NULL, "the user's locale"},
	    {"timezone", "string", 0, NULL, NULL, "IANA time zone name"},
	    {"active", "boolean", 0, NULL, NULL, "false deactivates the user (disabled_in_source)"},
	    {"password", "string", 0, "writeOnly", "never",
	     "accepted and dropped: never stored, never returned, never logged"},
	};
	const struct adef name[] = {
	    {"formatted", "string", 0, NULL, NULL, "the full name"},
	    {"familyName", "string", 0, NULL, NULL, "the family name"},
	    {"givenName", "string", 0, NULL, NULL, "the given name"},
	    {"middleName", "string", 0, NULL, NULL, "the middle name"},
	    {"honorificPrefix", "string", 0, NULL, NULL, "e.g. Ms."},
	    {"honorificSuffix", "string", 0, NULL, NULL, "e.g. III"},
	};
	const struct adef group[] = {
	    {"value", "string", 0, "readOnly", NULL, "the group's id"},
	    {"$ref", "reference", REF_USER, "readOnly", NULL, "the group's URI"},
	    {"display", "string", 0, "readOnly", NULL, "the group's displayName"},
	    {"type", "string", 0, "readOnly", NULL, "direct or indirect"},
	};
	const struct adef name_d = {"name", "complex", 0, NULL, NULL, "the components of the user's name"},
			  groups_d = {
			      "groups", "complex",
			      MULTI,	"readOnly",
			      NULL,	"the groups the user is in (set through the groups' members)"};
	json_t *l = attrs(simple, N(simple));
	json_array_insert_new(l, 1, attr(&name_d, attrs(name, N(name))));
	json_array_append_new(
	    l, multi("emails", "e-mail addresses; the primary, else the work one, is the user's"));
	json_array_append_new(l, multi("phoneNumbers", "phone numbers"));
	json_array_append_new(l, multi("ims", "instant messaging addresses"));
	json_array_append_new(l, multi("photos", "URLs of photos"));
	json_array_append_new(l, multi("addresses", "physical addresses"));
	json_array_append_new(l, attr(&groups_d, attrs(group, N(group))));
	json_array_append_new(l, multi("entitlements", "entitlements"));
	json_array_append_new(l, multi("roles", "roles"));
	json_array_append_new(l, multi("x509Certificates", "certificates"));
	return l;
}

static json_t *group_attrs(void)
{
	const struct adef top[] = {
	    {"displayName", "string", REQ, NULL, NULL, "the group's name: what rules match (member_of)"},
	};
	const struct adef member[] = {
	    {"value", "string", 0, "immutable", NULL, "the id of a user or group of this connector"},
	    {"$ref", "reference", REF_USER, "immutable", NULL, "the member's URI"},
	    {"type", "string", 0, "immutable", NULL, "User or Group"},
	};
	const struct adef members_d = {
	    "members", "complex", MULTI, NULL, NULL, "the members: users and groups (nesting resolved)"};
	json_t *l = attrs(top, N(top));
	json_array_append_new(l, attr(&members_d, attrs(member, N(member))));
	return l;
}

static json_t *enterprise_attrs(void)
{
	const struct adef top[] = {
	    {"employeeNumber", "string", 0, NULL, NULL, "the employee number"},
	    {"costCenter", "string", 0, NULL, NULL, "the cost center"},
	    {"organization", "string", 0, NULL, NULL, "the organization"},
	    {"division", "string", 0, NULL, NULL, "the division"},
	    {"department", "string", 0, NULL, NULL, "the department"},
	};
	const struct adef mgr[] = {
	    {"value", "string", 0, NULL, NULL, "the manager's id"},
	    {"$ref", "reference", REF_USER, NULL, NULL, "the manager's URI"},
	    {"displayName", "string", 0, "readOnly", NULL, "the manager's displayName"},
	};
	const struct adef mgr_d = {"manager", "complex", 0, NULL, NULL, "the user's manager"};
	json_t *l = attrs(top, N(top));
	json_array_append_new(l, attr(&mgr_d, attrs(mgr, N(mgr))));
	return l;
}

static json_t *schema(const char *id, const char *name, const char *desc, json_t *attributes,
		      const char *base)
{
	return json_pack("{s:[s],s:s,s:s,s:s,s:o,s:{s:s,s:s++}}", "schemas",
			 "urn:ietf:params:scim:schemas:core:2.0:Schema", "id", id, "name", name,
			 "description", desc, "attributes", attributes, "meta", "resourceType", "Schema",
			 "location", base, "Schemas/", id);
}

json_t *ids_scim_schemas(const char *base)
{
	json_t *l = json_array();
	json_array_append_new(l, schema("urn:ietf:params:scim:schemas:core:2.0:User", "User", "User Account",
					user_attrs(), base));
	json_array_append_new(
	    l, schema("urn:ietf:params:scim:schemas:core:2.0:Group", "Group", "Group", group_attrs(), base));
	json_array_append_new(
	    l, schema(IDS_SCIM_ENTERPRISE, "EnterpriseUser", "Enterprise User", enterprise_attrs(), base));
	return l;
}
