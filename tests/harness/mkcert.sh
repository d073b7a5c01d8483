#!/usr/bin/env bash
# mkcert.sh DIR — throwaway certificates for the HTTPS fakes (tests/fakes/).
#
#   DIR/ca.crt  ca.key          a test CA (what tls_ca_file names)
#   DIR/server.crt server.key   signed by it, for 127.0.0.1 and localhost
#   DIR/client.crt client.key   a self-signed client certificate: the Entra
#                               certificate credential (the app registration
#                               holds client.crt, idsyncd signs with client.key)
#   DIR/other-ca.crt            a CA that signed nothing here (wrong-CA tests)
#   DIR/wronghost.crt .key      signed by the CA, for other.example only
#   DIR/expired.crt .key        signed by the CA for 127.0.0.1, expired in 2020
#   DIR/pgserver.crt .key       the test PostgreSQL's (pg.sh): localhost,
#                               db.idsyncd.test, 127.0.0.1, 127.0.0.2
#   DIR/pgclient.crt .key       a client certificate for the PostgreSQL role
#                               idsync_cert (CN), signed by the CA
#
# RSA 2048 everywhere (what Entra and Google accept), private keys mode 600
# (idsyncd refuses secret files that others can read).  Regenerates
# everything on each call; nothing outside DIR is touched.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: mkcert.sh DIR" >&2; exit 2; }
D=$1
mkdir -p "$D"
cd "$D"
umask 077

key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }

# a CA: self-signed, CA:true, allowed to sign certificates
ca() {
	key "$1.key"
	openssl req -x509 -new -key "$1.key" -out "$1.crt" -days 3650 -subj "/CN=idsyncd test $1" \
		-addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# leaf NAME SAN [openssl ca date options...]: a server certificate signed by
# ca.key through `openssl ca`, which (unlike `x509 -req` in OpenSSL 3.0)
# can set a validity period in the past
leaf() {
	local name=$1 san=$2
	shift 2
	key "$name.key"
	openssl req -new -key "$name.key" -out "$name.csr" -subj "/CN=${CN:-$name}" 2>/dev/null
	mkdir -p ca.db
	: >ca.db/index.txt
	[ -f ca.db/serial ] || echo 1000 >ca.db/serial
	cat >ca.db/ca.cnf <<-EOF
	[ca]
	default_ca = test
	[test]
	database = ca.db/index.txt
	serial = ca.db/serial
	new_certs_dir = ca.db
	certificate = ca.crt
	private_key = ca.key
	default_md = sha256
	default_days = 3650
	policy = any
	unique_subject = no
	copy_extensions = none
	[any]
	commonName = supplied
	[ext]
	basicConstraints = critical,CA:false
	keyUsage = critical,digitalSignature,keyEncipherment
	extendedKeyUsage = ${EKU:-serverAuth}
	subjectAltName = $san
	EOF
	openssl ca -batch -notext -config ca.db/ca.cnf -extensions ext -in "$name.csr" -out "$name.crt" "$@" \
		2>/dev/null
	rm -f "$name.csr"
}

rm -rf ca.db
ca ca
ca other-ca
rm -f other-ca.key
leaf server "IP:127.0.0.1,DNS:localhost"
leaf wronghost "DNS:other.example"
leaf expired "IP:127.0.0.1,DNS:localhost" -startdate 20200101000000Z -enddate 20200102000000Z
leaf pgserver "DNS:localhost,DNS:db.idsyncd.test,IP:127.0.0.1,IP:127.0.0.2"
# PostgreSQL's cert authentication takes the role from the CN
EKU=clientAuth CN=idsync_cert leaf pgclient "email:idsync_cert@example.org"
rm -rf ca.db

# the client credential: self-signed, as the Entra portal expects one
key client.key
openssl req -x509 -new -key client.key -out client.crt -days 365 -subj "/CN=idsyncd test client" 2>/dev/null

chmod 644 ./*.crt
chmod 600 ./*.key
