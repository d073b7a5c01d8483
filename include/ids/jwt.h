/* jwt.h — JSON Web Tokens signed with OpenSSL, for OAuth client assertions
 * (Entra certificate credentials: PS256 + x5t#S256, or RS256 + x5t) and
 * Google service-account grants (RS256 + kid). */
#ifndef IDS_JWT_H
#define IDS_JWT_H

#include <stdbool.h>
#include <stddef.h>

#include "ids/error.h"
#include "ids/util.h"

/* Appends s[0..n) base64url-encoded without padding. */
int ids_base64url(struct ids_buf *b, const void *s, size_t n);

/* Signs base64url(header_json) "." base64url(claims_json) with the PEM
 * private key (PKCS#1 or PKCS#8, RSA), alg "RS256" or "PS256" (salt length
 * = digest length, as RFC 7518 requires).  *ret is new: the compact JWT. */
int ids_jwt_sign(const char *alg, const char *header_json, const char *claims_json, const char *key_pem,
		 size_t key_len, char **ret, struct ids_error *err);

/* The base64url SHA-1 (x5t) or SHA-256 (x5t#S256) thumbprint of the DER
 * form of the first certificate in a PEM file.  *ret new. */
int ids_jwt_thumbprint(const char *cert_pem_path, bool sha256, char **ret, struct ids_error *err);

/* A random 128-bit id in hex (jti).  *ret new. */
int ids_jwt_jti(char **ret);

#endif
