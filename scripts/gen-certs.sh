#!/bin/bash
# gen-certs.sh DIR NAME...: a throw-away PKI for tests and the demo.
#
# Makes (once) a CA in DIR (ca.pem, ca.key) and, for each NAME, NAME.pem and
# NAME.key signed by it.  Every leaf certificate carries
#   subjectAltName   = IP:127.0.0.1, DNS:localhost, DNS:NAME
#   extendedKeyUsage = serverAuth, clientAuth
# so one certificate serves as a gRPC server certificate and as a mutual-TLS
# client certificate.  Keys are ECDSA P-256 (made in milliseconds, unlike
# RSA), certificates valid 30 days.
#
# Idempotent: an existing CA in DIR is reused and an existing NAME.pem that
# this CA signed is kept, so concurrent users of one DIR agree on the CA.
# For refusal tests, run it on another DIR: that makes a second, unrelated
# CA whose leaves the first CA's servers and clients reject.
#
# These keys protect nothing real: never use them outside tests and demos.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 DIR [NAME...]" >&2
    exit 2
fi
dir=$1
shift
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

for name in "$@"; do
    case $name in
    ''|*/*|ca) echo "gen-certs: bad name '$name'" >&2; exit 2 ;;
    esac
    if [ -s "$dir/$name.pem" ] && [ -s "$dir/$name.key" ] &&
        openssl verify -CAfile "$dir/ca.pem" "$dir/$name.pem" >/dev/null 2>&1; then
        continue
    fi
    tmp=$(mktemp -d "$dir/.gen.XXXXXX")
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth,clientAuth" \
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:$name" >"$tmp/ext"
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
