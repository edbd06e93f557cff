#!/bin/bash
# gen-certs.sh DIR NAME[=ID]...: a throw-away PKI for tests and the demo.
#
# Makes (once) a CA in DIR (ca.pem, ca.key) and, for each NAME, NAME.pem and
# NAME.key signed by it, and always admin.pem and admin.key too (the
# operators' certificate; an admin=ID argument replaces it for that run).
# Every leaf certificate carries
#   subject          = CN=NAME
#   subjectAltName   = IP:127.0.0.1, DNS:localhost, DNS:NAME,
#                      URI:spiffe://TRUST_DOMAIN/tandem/ID
#   extendedKeyUsage = serverAuth, clientAuth
# so one certificate serves as a gRPC server certificate and as a mutual-TLS
# client certificate.  The URI is the SPIFFE-style identity that peers
# authorize on (rpc_ctx_peer_uri in proto/rpc.h): ID is
#   admin           for NAME "admin" or "tandemctl" (operators),
#   region/R        for NAME "replicator-R" (a region's replicator),
#   region/NAME     for any other NAME (tests name regions "a", "b"),
# or what NAME=ID says (ID "admin" or "region/R"; files still NAME.*).
# TRUST_DOMAIN is $TANDEM_TRUST_DOMAIN, default tandem.local.  Keys are
# ECDSA P-256 (made in milliseconds, unlike RSA), certificates valid 30
# days.
#
# Idempotent: an existing CA in DIR is reused and an existing NAME.pem that
# this CA signed and that carries the expected URI is kept (one without it,
# from an older version of this script, is reissued), so concurrent users
# of one DIR agree on the CA.
# For refusal tests, run it on another DIR: that makes a second, unrelated
# CA whose leaves the first CA's servers and clients reject.
#
# These keys protect nothing real: never use them outside tests and demos.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 DIR [NAME[=ID]...]" >&2
    exit 2
fi
dir=$1
shift
td=${TANDEM_TRUST_DOMAIN:-tandem.local}
case $td in
''|*[!a-z0-9._-]*) echo "gen-certs: bad trust domain '$td'" >&2; exit 2 ;;
esac
command -v openssl >/dev/null || { echo "gen-certs: openssl not found" >&2; exit 1; }
mkdir -p "$dir"
# Serialise concurrent runs on one DIR (two test scripts starting at once).
exec 9>"$dir/.lock"
flock 9

umask 077
if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca.key" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -nodes -days 30 \
        -subj "/CN=tandem-test-ca-$(basename "$dir")-$$" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$dir/ca.key.tmp" -out "$dir/ca.pem.tmp" 2>/dev/null
    mv "$dir/ca.key.tmp" "$dir/ca.key"
    chmod 644 "$dir/ca.pem.tmp"
    mv "$dir/ca.pem.tmp" "$dir/ca.pem"
fi

# has_uri FILE URI: the certificate's subjectAltName lists exactly URI.
has_uri() {
    openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null |
        tail -n +2 | tr ',' '\n' | sed 's/^ *//' | grep -qxF "URI:$2"
}

# The operators' certificate comes with every PKI, unless NAME=ID
# already says what admin.pem is.
extra=admin
for arg in "$@"; do
    [ "${arg%%=*}" != admin ] || extra=
done

for arg in "$@" $extra; do
    name=${arg%%=*}
    case $name in
    ''|*/*|ca) echo "gen-certs: bad name '$name'" >&2; exit 2 ;;
    esac
    if [ "$arg" != "$name" ]; then
        id=${arg#*=}
    else
        case $name in
        admin|tandemctl) id=admin ;;
        replicator-?*) id=region/${name#replicator-} ;;
        *) id=region/$name ;;
        esac
    fi
    case $id in
    admin) ;;
    region/*[!a-zA-Z0-9._-]*|region/) echo "gen-certs: bad identity '$id'" >&2; exit 2 ;;
    region/*) ;;
    *) echo "gen-certs: bad identity '$id' (admin or region/NAME)" >&2; exit 2 ;;
    esac
    uri=spiffe://$td/tandem/$id
    if [ -s "$dir/$name.pem" ] && [ -s "$dir/$name.key" ] &&
        openssl verify -CAfile "$dir/ca.pem" "$dir/$name.pem" >/dev/null 2>&1 &&
        has_uri "$dir/$name.pem" "$uri"; then
        continue
    fi
    tmp=$(mktemp -d "$dir/.gen.XXXXXX")
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:$name,URI:$uri" >"$tmp/ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=$name" \
        -keyout "$tmp/key" -out "$tmp/csr" 2>/dev/null
    openssl x509 -req -in "$tmp/csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 30 \
        -extfile "$tmp/ext" -out "$tmp/pem" 2>/dev/null
    mv "$tmp/key" "$dir/$name.key"
    chmod 644 "$tmp/pem"
    mv "$tmp/pem" "$dir/$name.pem"
    rm -rf "$tmp"
done
