/* jwt.c — compact JWS signing with OpenSSL 3 (jwt.h).
 *
 * Only what OAuth client assertions need: RS256 and PS256 over RSA keys,
 * the certificate thumbprints Entra wants in the header, and random jtis.
 * Keys come from memory so that the caller decides how long the secret
 * lives (it wipes it); OpenSSL's error queue is drained into our messages
 * and cleared, so a failure here never shows up later in someone else's
 * error. */
#include "ids/jwt.h"

#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ids_base64url(struct ids_buf *b, const void *s, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *p = s;
	char q[4];
	int r = 0;
	size_t i = 0;
	for (; r >= 0 && i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		q[0] = tab[v >> 18];
		q[1] = tab[(v >> 12) & 63];
		q[2] = tab[(v >> 6) & 63];
		q[3] = tab[v & 63];
		r = ids_buf_add(b, q, 4);
	}
	if (r < 0)
		return r;
	/* the tail: 1 byte -> 2 characters, 2 bytes -> 3; no '=' padding (RFC 7515) */
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		q[0] = tab[v >> 18];
		q[1] = tab[(v >> 12) & 63];
		r = ids_buf_add(b, q, 2);
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		q[0] = tab[v >> 18];
		q[1] = tab[(v >> 12) & 63];
		q[2] = tab[(v >> 6) & 63];
		r = ids_buf_add(b, q, 3);
	} else {
		r = ids_buf_add(b, "", 0); /* b is a string even for n == 0 */
	}
	return r;
}

/* OpenSSL's most recent reason, for a message; clears the queue. */
static const char *ossl_reason(char *buf, size_t n)
{
	unsigned long e = ERR_peek_last_error();
	if (!e)
		snprintf(buf, n, "no detail");
	else
		ERR_error_string_n(e, buf, n);
	ERR_clear_error();
	return buf;
}

/* Refuses to ask for a passphrase: OpenSSL would otherwise prompt on the
 * controlling terminal, and a daemon must fail, not hang. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return 0;
}

/* The RSA private key in key_pem.  *ret new.  IDS_E_CONFIG when it is
 * not one (alg names what needs it, in the message). */
static int load_key(const char *key_pem, size_t key_len, const char *alg, EVP_PKEY **ret,
		    struct ids_error *err)
{
	char why[256];
	EVP_PKEY *pkey = NULL;
	/* BIO_new_mem_buf takes an int length */
	if (key_len > INT_MAX)
		return ids_error_set(err, IDS_E_CONFIG, "JWT: private key too large");
	/* PEM_read_bio_PrivateKey reads PKCS#1 ("RSA PRIVATE KEY") and
	 * PKCS#8 ("PRIVATE KEY") alike */
	BIO *bio = BIO_new_mem_buf(key_pem, (int)key_len);
	if (!bio || !(pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL))) {
		BIO_free(bio);
		return ids_error_set(
		    err, IDS_E_CONFIG,
		    "JWT: cannot read the private key (PEM, unencrypted, PKCS#1 or PKCS#8 expected): %s",
		    ossl_reason(why, sizeof(why)));
	}
	BIO_free(bio);
	/* RS256 and PS256 are RSA only; an EC key would "work" with
	 * EVP_DigestSign and give a signature nobody can verify as RS256 */
	if (!EVP_PKEY_is_a(pkey, "RSA")) {
		int r = ids_error_set(
		    err, IDS_E_CONFIG, "JWT: %s needs an RSA private key, this one is %s", alg,
		    EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "of another type");
		EVP_PKEY_free(pkey);
		return r;
	}
	*ret = pkey;
	return 0;
}

int ids_jwt_sign(const char *alg, const char *header_json, const char *claims_json, const char *key_pem,
		 size_t key_len, char **ret, struct ids_error *err)
{
	struct ids_buf out = {0};
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *md = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	char why[256];
	int r;
	bool pss = alg && !strcmp(alg, "PS256");

	if (!alg || (!pss && strcmp(alg, "RS256"))) {
		r = ids_error_set(err, -EINVAL, "JWT: unsupported algorithm %s", alg ? alg : "(none)");
		goto out;
	}
	if ((r = ids_base64url(&out, header_json, strlen(header_json))) < 0 ||
	    (r = ids_buf_putc(&out, '.')) < 0 ||
	    (r = ids_base64url(&out, claims_json, strlen(claims_json))) < 0) {
		ids_error_set(err, r, "out of memory");
		goto out;
	}

	if ((r = load_key(key_pem, key_len, alg, &pkey, err)) < 0)
		goto out;

	EVP_PKEY_CTX *pctx = NULL; /* owned by md */
	if (!(md = EVP_MD_CTX_new()) || EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, pkey) != 1 ||
	    (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
		     /* RFC 7518 3.5: the salt is as long as the hash */
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1)) ||
	    EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)out.p, out.len) != 1 ||
	    !(sig = malloc(siglen)) ||
	    EVP_DigestSign(md, sig, &siglen, (const unsigned char *)out.p, out.len) != 1) {
		r = ids_error_set(err, IDS_E_INVALID, "JWT: %s signing failed: %s", alg,
				  ossl_reason(why, sizeof(why)));
		goto out;
	}
	if ((r = ids_buf_putc(&out, '.')) < 0 || (r = ids_base64url(&out, sig, siglen)) < 0) {
		ids_error_set(err, r, "out of memory");
		goto out;
	}
	*ret = ids_buf_steal(&out);
	r = 0;
out:
	free(sig);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey); /* OpenSSL clears the key material it frees */
	ids_buf_free(&out);
	return r;
}

/* The first certificate of the PEM file at path.  *ret new.  The
 * certificate is public: read straight from its file; gone since the
 * config was loaded is still a configuration problem (IDS_E_CONFIG). */
static int read_cert(const char *path, X509 **ret, struct ids_error *err)
{
	char why[256];
	FILE *f = fopen(path, "re");
	if (!f)
		return ids_error_set(err, IDS_E_CONFIG, "%s: %s", path, strerror(errno));
	X509 *x = PEM_read_X509(f, NULL, no_passphrase, NULL);
	fclose(f);
	if (!x)
		return ids_error_set(err, IDS_E_CONFIG, "%s: no PEM certificate: %s", path,
				     ossl_reason(why, sizeof(why)));
	*ret = x;
	return 0;
}

int ids_jwt_thumbprint(const char *cert_pem_path, bool sha256, char **ret, struct ids_error *err)
{
	X509 *x = NULL;
	unsigned char *der = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	struct ids_buf out = {0};
	char why[256];
	int r;

	if ((r = read_cert(cert_pem_path, &x, err)) < 0)
		goto out;
	/* the thumbprint is over the DER encoding, as Entra computes it */
	int n = i2d_X509(x, &der);
	if (n <= 0 || EVP_Digest(der, (size_t)n, md, &mdlen, sha256 ? EVP_sha256() : EVP_sha1(), NULL) != 1) {
		r = ids_error_set(err, IDS_E_INVALID, "%s: cannot hash the certificate: %s", cert_pem_path,
				  ossl_reason(why, sizeof(why)));
		goto out;
	}
	if ((r = ids_base64url(&out, md, mdlen)) < 0) {
		ids_error_set(err, r, "out of memory");
		goto out;
	}
	*ret = ids_buf_steal(&out);
	r = 0;
out:
	X509_free(x);
	OPENSSL_free(der);
	ids_buf_free(&out);
	return r;
}

int ids_jwt_jti(char **ret)
{
	/* 128 random bits: Entra refuses a jti it has seen, so it must never repeat */
	unsigned char b[16];
	struct ids_buf out = {0};
	if (RAND_bytes(b, sizeof(b)) != 1) {
		ERR_clear_error();
		return -EIO;
	}
	for (size_t i = 0; i < sizeof(b); i++) {
		int r = ids_buf_printf(&out, "%02x", b[i]);
		if (r < 0) {
			ids_buf_free(&out);
			return r;
		}
	}
	*ret = ids_buf_steal(&out);
	return 0;
}

int ids_jwt_check_key(const char *key_pem, size_t key_len, struct ids_error *err)
{
	EVP_PKEY *pkey = NULL;
	int r = load_key(key_pem, key_len, "RS256", &pkey, err);
	EVP_PKEY_free(pkey);
	return r;
}

/* The certificate's validity now: 0, or IDS_E_CONFIG naming path and the
 * date it ends (or starts).  A certificate Entra has stopped accepting
 * fails every token request with an AADSTS code that does not say
 * "expired"; check-config says it in our words. */
static int check_validity(X509 *x, const char *path, struct ids_error *err)
{
	char when[64] = "?";
	const ASN1_TIME *end = X509_get0_notAfter(x), *start = X509_get0_notBefore(x);
	bool expired = X509_cmp_current_time(end) <= 0;
	if (!expired && X509_cmp_current_time(start) < 0)
		return 0;
	BIO *b = BIO_new(BIO_s_mem());
	if (b && ASN1_TIME_print(b, expired ? end : start) == 1) {
		int n = BIO_read(b, when, (int)sizeof(when) - 1);
		when[n > 0 ? n : 0] = '\0';
	}
	BIO_free(b);
	ERR_clear_error();
	return ids_error_set(err, IDS_E_CONFIG, "%s: the certificate %s %s", path,
			     expired ? "expired on" : "is not valid before", when);
}

int ids_jwt_check_pair(const char *cert_path, const char *key_path, const char *key_pem, size_t key_len,
		       struct ids_error *err)
{
	X509 *x = NULL;
	EVP_PKEY *pkey = NULL;
	int r;
	if ((r = read_cert(cert_path, &x, err)) < 0)
		goto out;
	if ((r = check_validity(x, cert_path, err)) < 0)
		goto out;
	if ((r = load_key(key_pem, key_len, "the client assertion", &pkey, err)) < 0) {
		ids_error_prefix(err, "%s", key_path);
		goto out;
	}
	/* the pair Entra checks: the assertion is verified with the
	 * registered certificate, so a key of another pair fails every run */
	if (EVP_PKEY_eq(X509_get0_pubkey(x), pkey) != 1) {
		ERR_clear_error();
		r = ids_error_set(err, IDS_E_CONFIG,
				  "%s: the private key does not belong to the certificate %s", key_path,
				  cert_path);
		goto out;
	}
	r = 0;
out:
	X509_free(x);
	EVP_PKEY_free(pkey);
	return r;
}
