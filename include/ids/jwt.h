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

/* What check-config asks of credentials, without signing anything:
 * key_pem is an unencrypted RSA private key (PEM, PKCS#1 or PKCS#8).
 * IDS_E_CONFIG otherwise; the message quotes nothing of the key. */
int ids_jwt_check_key(const char *key_pem, size_t key_len, struct ids_error *err);

/* The Entra certificate credential: the first PEM certificate of
 * cert_path is valid now (not expired, not before its start), and key_pem
 * (read from key_path, named in messages) is an RSA private key whose
 * public half is the certificate's.  IDS_E_CONFIG naming the file at
 * fault; never a byte of the key. */
int ids_jwt_check_pair(const char *cert_path, const char *key_path, const char *key_pem, size_t key_len,
		       struct ids_error *err);

/* A random 128-bit id in hex (jti).  *ret new. */
int ids_jwt_jti(char **ret);

#endif
