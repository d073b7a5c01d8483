/* dn.h — LDAP distinguished names in one canonical form (RFC 4514), and
 * filter values escaped (RFC 4515).  Pure (libc only): the snapshot
 * builder and the rules compare DNs through it, connectors may build
 * filters with it. */
#ifndef IDS_DN_H
#define IDS_DN_H

#include <stddef.h>

#include "ids/util.h"

/* A normalized copy of dn: attribute types and values lower-cased (ASCII),
 * spaces around separators removed, escapes decoded and re-encoded in one
 * canonical form, multi-valued RDNs sorted.  Two DNs that name the same
 * entry normalize to the same string.  *ret is new (free()); -EINVAL for a
 * malformed DN. */
int ids_dn_normalize(const char *dn, size_t n, char **ret);

/* Appends v[0..n) to b escaped for an LDAP filter value (RFC 4515:
 * `*`, `(`, `)`, `\`, NUL as \2a \28 \29 \5c \00). */
int ids_dn_filter_escape(struct ids_buf *b, const char *v, size_t n);

#endif
