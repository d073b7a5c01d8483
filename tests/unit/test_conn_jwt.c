/* test_conn_jwt.c — base64url, JWT signing (RS256, PS256) and certificate
 * thumbprints (jwt.h).  Signatures are checked with OpenSSL's verify side
 * and the public key of a certificate made with the openssl CLI; the
 * thumbprints were computed with `openssl x509 -fingerprint` and
 * `basenc --base64url`, not by this code. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "ids/jwt.h"

#define CERT "data/entra/client.crt"
#define KEY_PKCS8 "data/entra/client.key"
#define KEY_PKCS1 "data/entra/client_pkcs1.key"
#define KEY_EC "data/entra/ec.key"

static char *slurp(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *p = malloc(65536);
	assert_non_null(p);
	size_t n = fread(p, 1, 65535, f);
	fclose(f);
	p[n] = '\0';
	*ret_len = n;
	return p;
}

static char *b64u(const void *s, size_t n)
{
	struct ids_buf b = {0};
	assert_int_equal(ids_base64url(&b, s, n), 0);
	return ids_buf_steal(&b);
}

/* RFC 4648 section 10 vectors, in the URL alphabet without padding. */
static void test_base64url_vectors(void **state)
{
	static const struct {
		const char *in, *out;
	} v[] = {
	    {"", ""},		{"f", "Zg"},	      {"fo", "Zm8"},	      {"foo", "Zm9v"},
	    {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char *s = b64u(v[i].in, strlen(v[i].in));
		assert_string_equal(s, v[i].out);
		free(s);
	}
	/* 0xfb 0xff is "+/8=" in standard base64: here '-' and '_', no '=' */
	char *s = b64u("\xfb\xff", 2);
	assert_string_equal(s, "-_8");
	free(s);
	/* RFC 7515 A.1's protected header, CR LF included */
	const char *hdr = "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
	s = b64u(hdr, strlen(hdr));
	assert_string_equal(s, "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9");
	free(s);
}

/* Decodes base64url (test helper; no padding). */
static unsigned char *unb64u(const char *s, size_t n, size_t *ret_len)
{
	char *std = malloc(n + 4);
	assert_non_null(std);
	for (size_t i = 0; i < n; i++)
		std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	size_t m = n;
	while (m % 4)
		std[m++] = '=';
	unsigned char *out = malloc(m);
	assert_non_null(out);
	int k = EVP_DecodeBlock(out, (unsigned char *)std, (int)m);
	assert_true(k >= 0);
	size_t pad = m - n;
	*ret_len = (size_t)k - pad;
	free(std);
	return out;
}

static EVP_PKEY *cert_pubkey(void)
{
	FILE *f = fopen(CERT, "r");
	assert_non_null(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	EVP_PKEY *k = X509_get_pubkey(x);
	X509_free(x);
	assert_non_null(k);
	return k;
}

/* Verifies jwt's signature with the certificate's key; salt_len < 0 = RS256. */
static bool verify(const char *jwt, int salt_len)
{
	const char *dot2 = strrchr(jwt, '.');
	assert_non_null(dot2);
	size_t siglen;
	unsigned char *sig = unb64u(dot2 + 1, strlen(dot2 + 1), &siglen);
	EVP_PKEY *k = cert_pubkey();
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	assert_int_equal(EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL, k), 1);
	if (salt_len >= 0) {
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, salt_len), 1);
	}
	int ok = EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt, (size_t)(dot2 - jwt));
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	free(sig);
	return ok == 1;
}

static const char *HDR = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
static const char *CLAIMS = "{\"iss\":\"me\",\"exp\":1}";

static char *sign_with(const char *alg, const char *keyfile)
{
	size_t n;
	char *pem = slurp(keyfile, &n);
	char *jwt = NULL;
	struct ids_error e = {0};
	int r = ids_jwt_sign(alg, HDR, CLAIMS, pem, n, &jwt, &e);
	assert_int_equal(r, 0);
	assert_null(e.msg);
	free(pem);
	return jwt;
}

static void test_rs256(void **state)
{
	char *a = sign_with("RS256", KEY_PKCS8);
	/* the first two parts are the inputs, base64url */
	char *h = b64u(HDR, strlen(HDR)), *c = b64u(CLAIMS, strlen(CLAIMS));
	char *prefix = NULL;
	assert_true(asprintf(&prefix, "%s.%s.", h, c) > 0);
	assert_memory_equal(a, prefix, strlen(prefix));
	assert_true(verify(a, -1));
	/* a 2048-bit signature is 256 bytes: 342 base64url characters */
	assert_int_equal(strlen(strrchr(a, '.') + 1), 342);
	/* PKCS#1 v1.5 is deterministic, and the PKCS#1 PEM is the same key */
	char *b = sign_with("RS256", KEY_PKCS1);
	assert_string_equal(a, b);
	/* a changed payload no longer verifies */
	char *pos = strchr(a, '.') + 2;
	*pos = *pos == 'A' ? 'B' : 'A';
	assert_false(verify(a, -1));
	free(a);
	free(b);
	free(h);
	free(c);
	free(prefix);
}

static void test_ps256(void **state)
{
	char *a = sign_with("PS256", KEY_PKCS8);
	char *b = sign_with("PS256", KEY_PKCS1);
	/* RFC 7518 3.5: salt length = hash length (32 for SHA-256) */
	assert_true(verify(a, 32));
	assert_true(verify(b, 32));
	assert_false(verify(a, 20));
	/* PSS is not PKCS#1 v1.5 */
	assert_false(verify(a, -1));
	/* randomized: two signatures of the same input differ */
	assert_string_not_equal(strrchr(a, '.'), strrchr(b, '.'));
	free(a);
	free(b);
}

static void test_sign_errors(void **state)
{
	struct ids_error e = {0};
	char *jwt = (char *)0x1; /* must stay untouched on failure */
	size_t n;
	char *pem = slurp(KEY_PKCS8, &n);

	assert_int_equal(ids_jwt_sign("HS256", HDR, CLAIMS, pem, n, &jwt, &e), -EINVAL);
	assert_ptr_equal(jwt, (char *)0x1);
	ids_error_clear(&e);

	/* a certificate is not a private key */
	size_t cn;
	char *cert = slurp(CERT, &cn);
	assert_int_equal(ids_jwt_sign("RS256", HDR, CLAIMS, cert, cn, &jwt, &e), IDS_E_CONFIG);
	assert_non_null(strstr(e.msg, "cannot read the private key"));
	ids_error_clear(&e);

	/* a truncated key */
	assert_int_equal(ids_jwt_sign("RS256", HDR, CLAIMS, pem, n / 2, &jwt, &e), IDS_E_CONFIG);
	ids_error_clear(&e);

	/* an EC key cannot sign RS256/PS256 */
	size_t en;
	char *ec = slurp(KEY_EC, &en);
	assert_int_equal(ids_jwt_sign("PS256", HDR, CLAIMS, ec, en, &jwt, &e), IDS_E_CONFIG);
	assert_non_null(strstr(e.msg, "RSA"));
	ids_error_clear(&e);
	assert_ptr_equal(jwt, (char *)0x1);
	free(pem);
	free(cert);
	free(ec);
}

static void test_thumbprint(void **state)
{
	struct ids_error e = {0};
	char *t = NULL;
	/* `openssl x509 -fingerprint -sha256 | xxd -r -p | basenc --base64url` */
	assert_int_equal(ids_jwt_thumbprint(CERT, true, &t, &e), 0);
	assert_string_equal(t, "JRYMqyhaRBcK78ozD8z-4baMqm4ba2k8jMs_iVMlumA");
	free(t);
	assert_int_equal(ids_jwt_thumbprint(CERT, false, &t, &e), 0);
	assert_string_equal(t, "ugFG-TPYoOOFoqzg9_dO2hPbL6o");
	free(t);
	t = NULL;
	assert_true(ids_jwt_thumbprint("data/entra/missing.crt", true, &t, &e) < 0);
	assert_non_null(strstr(e.msg, "missing.crt"));
	ids_error_clear(&e);
	assert_int_equal(ids_jwt_thumbprint(KEY_PKCS8, true, &t, &e), IDS_E_CONFIG);
	ids_error_clear(&e);
	assert_null(t);
}

static void test_jti(void **state)
{
	char *a = NULL, *b = NULL;
	assert_int_equal(ids_jwt_jti(&a), 0);
	assert_int_equal(ids_jwt_jti(&b), 0);
	assert_int_equal(strlen(a), 32);
	assert_int_equal(strspn(a, "0123456789abcdef"), 32);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base64url_vectors),
	    cmocka_unit_test(test_rs256),
	    cmocka_unit_test(test_ps256),
	    cmocka_unit_test(test_sign_errors),
	    cmocka_unit_test(test_thumbprint),
	    cmocka_unit_test(test_jti),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
