#!/bin/bash
# t0320-link-trust: the peer link and the admin port authorize on the
# identity in the caller's certificate (issue 8), with two real
# replicators over mutual TLS on loopback and certificates of one CA
# (scripts/gen-certs.sh: regions a, b, a third region c, admin; plus one
# without a URI SAN).
#  - an independent client (tests/node/link-trust.js, @grpc/grpc-js)
#    replays the attacks: DeleteReplica at epoch 2^64-1, CopyRegions of
#    4 KiB of 'A' at epoch 1000, a ShipBatch probe at epoch 1000 (as c,
#    admin, no-URI, all claiming to be a); ReadRegions / GetVolume /
#    JournalRegions of a volume that is not replicated (as c and as b,
#    a's real peer); a Hello naming another region -- all
#    PERMISSION_DENIED, each logged with the identity quoted;
#  - nothing changed: b's replica is a secondary at epoch 1 equal to a's
#    primary byte for byte, a's primary is still primary at epoch 1 (not
#    fenced), and replication goes on;
#  - the admin port: the peer replicator's certificate cannot run status,
#    a third region's cannot promote --force (the replica stays
#    secondary), the admin certificate can; the admin socket is 0600.
set -u
cd "$(dirname "$0")/../.."
. tests/e2e/lib-rep.sh
command -v node >/dev/null || { echo "not ok 1 - node not found (scripts/install-deps.sh)"; exit 1; }
rep_setup t0320
scripts/gen-certs.sh "$tmp/pki" c >/dev/null || fail "gen-certs c"
# A certificate of the same CA without a URI SAN (gen-certs.sh always
# adds one).
(
    cd "$tmp/pki" &&
        printf '%s\n' basicConstraints=critical,CA:FALSE keyUsage=critical,digitalSignature \
            extendedKeyUsage=serverAuth,clientAuth subjectAltName=IP:127.0.0.1,DNS:localhost >nouri.ext &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=a \
            -keyout nouri.key -out nouri.csr 2>/dev/null &&
        openssl x509 -req -in nouri.csr -CA ca.pem -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" \
            -days 1 -extfile nouri.ext -out nouri.pem 2>/dev/null
) || fail "certificate without a URI"
if [ ! -d tests/node/node_modules/@grpc/grpc-js ] || [ ! -d tests/node/node_modules/@grpc/proto-loader ]; then
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error) >"$tmp/npm.log" 2>&1 ||
        fail "npm ci in tests/node: $(tail -3 "$tmp/npm.log")"
fi
write_config sqlite
APA=$(free_port)
APB=$(free_port)
start_rep a b --admin-tcp "127.0.0.1:$APA"
start_rep b a --admin-tcp "127.0.0.1:$APB"
ok "two replicators up with mTLS and admin TCP"

V=v-$$
P=priv-$$
"$TOOL" create "$CONF" a "$V" 8M --peer b --object-size 1M || fail "create $V"
"$TOOL" write "$CONF" a "$V" --log "$tmp/v.wlog" --count 60 --seed 7 >/dev/null || fail "write $V"
"$TOOL" wait-sync "$CONF" a b "$V" --timeout 60 >/dev/null || fail "$V did not replicate"
"$TOOL" create "$CONF" a "$P" 8M --object-size 1M || fail "create $P"
"$TOOL" fill "$CONF" a "$P" 1M >/dev/null || fail "fill $P"
sa=$("$TOOL" stat "$CONF" a "$V")
sb=$("$TOOL" stat "$CONF" b "$V")
ok "a's $V replicated to b; a's $P is not replicated"

# ---- the attacks, from an independent client
node tests/node/link-trust.js "$tmp/pki" "127.0.0.1:$PORT_A" "127.0.0.1:$PORT_B" "$V" "$P" \
    >"$tmp/node.out" 2>"$tmp/node.log"
rc=$?
while IFS= read -r line; do
    case $line in
    "ok - "*) ok "${line#ok - }" ;;
    "not ok - "*) fail "${line#not ok - }" ;;
    esac
done <"$tmp/node.out"
[ $rc -eq 0 ] || fail "link-trust.js exited $rc: $(tail -3 "$tmp/node.log")"
# An independent client that printed nothing checked nothing.
n_attacks=$(grep -c '^ok - ' "$tmp/node.out")
[ "$n_attacks" -ge 10 ] || fail "link-trust.js reported $n_attacks checks: $(tail -3 "$tmp/node.log")"

# ---- the refusals are logged, naming the identity
grep -q 'event=rep.link_denied method=/tandem.repl.v1.Link/DeleteReplica identity="spiffe://tandem.local/tandem/region/c"' "$tmp/b.log" ||
    fail "b's log lacks the refusal naming c: $(grep link_denied "$tmp/b.log" | head -2)"
grep -q 'event=rep.link_denied method=/tandem.repl.v1.Link/ReadRegions identity="spiffe://tandem.local/tandem/region/b"' "$tmp/a.log" ||
    fail "a's log lacks the refusal naming b"
grep -q 'event=rep.link_denied .*identity="" .*no URI SAN' "$tmp/b.log" ||
    fail "b's log lacks the refusal of the certificate without a URI"
ok "each refusal is logged with the caller's identity quoted"

# ---- nothing changed on either side
for f in role epoch applied; do
    [ "$(echo "$sb" | tr ' ' '\n' | grep "^$f=")" = "$(stat_field b "$V" "$f" | sed "s/^/$f=/")" ] ||
        fail "b's $V $f changed: $sb / $("$TOOL" stat "$CONF" b "$V")"
    [ "$(echo "$sa" | tr ' ' '\n' | grep "^$f=")" = "$(stat_field a "$V" "$f" | sed "s/^/$f=/")" ] ||
        fail "a's $V $f changed: $sa / $("$TOOL" stat "$CONF" a "$V")"
done
[ "$(stat_field a "$V" role)" = primary ] && [ "$(stat_field a "$V" epoch)" = 1 ] ||
    fail "a's primary was fenced or demoted: $("$TOOL" stat "$CONF" a "$V")"
[ "$(stat_field b "$V" role)" = secondary ] && [ "$(stat_field b "$V" epoch)" = 1 ] ||
    fail "b's replica: $("$TOOL" stat "$CONF" b "$V")"
out=$("$TOOL" cmp "$CONF" a b "$V") || fail "b's replica differs from a's primary: $out"
[ -z "$("$TOOL" stat "$CONF" a "$V" --meta rep.split_brain 2>/dev/null)" ] || fail "a's $V marked split-brain"
"$TOOL" stat "$CONF" a "$P" | grep -q "exists=1" || fail "$P is gone"
"$TOOL" stat "$CONF" b "$V" | grep -q "exists=1" || fail "b's replica is gone"
ok "nothing changed: roles, epochs, positions, bytes on both sides"
"$TOOL" write "$CONF" a "$V" --log "$tmp/v.wlog" --count 20 --seed 8 >/dev/null || fail "write $V again"
"$TOOL" wait-sync "$CONF" a b "$V" --timeout 60 >/dev/null || fail "$V stopped replicating"
out=$("$TOOL" verify "$CONF" b "$V" --log "$tmp/v.wlog") || fail "$V: $out"
ok "replication goes on, replica exact"

# ---- the admin port and socket
ctl_tcp() { # PORT WHO ARGS...
    local port=$1 who=$2
    shift 2
    "$B/tandemctl" --admin "127.0.0.1:$port" --tls-ca "$tmp/pki/ca.pem" \
        --tls-cert "$tmp/pki/$who.pem" --tls-key "$tmp/pki/$who.key" "$@"
}
out=$(ctl_tcp "$APB" a status 2>&1) && fail "b's admin port ran status for a's replicator: $out"
echo "$out" | grep -q PERMISSION_DENIED || fail "status with a's certificate: $out"
out=$(ctl_tcp "$APB" c promote "$V" --force 2>&1) && fail "a third region promoted $V: $out"
echo "$out" | grep -q PERMISSION_DENIED || fail "promote --force with c's certificate: $out"
out=$(ctl_tcp "$APB" nouri status 2>&1) && fail "a certificate without a URI ran status: $out"
echo "$out" | grep -q PERMISSION_DENIED || fail "status with a certificate without a URI: $out"
[ "$(stat_field b "$V" role)" = secondary ] || fail "b's $V was promoted"
ok "admin port refuses the peer replicator (status) and a third region (promote --force)"
out=$(ctl_tcp "$APB" admin status "$V" 2>&1) || fail "admin certificate: $out"
echo "$out" | grep -q secondary || fail "admin status: $out"
ok "admin port serves the admin certificate"
grep -q 'event=rep.admin_denied method=/tandem.admin.v1.Admin/Promote identity="spiffe://tandem.local/tandem/region/c"' "$tmp/b.log" ||
    fail "b's log lacks the admin refusal naming c"
for r in a b; do
    m=$(stat -c %a "$tmp/$r.sock")
    [ "$m" = 600 ] || fail "$r's admin socket is mode $m"
done
ok "admin refusals logged; admin sockets are 0600"
