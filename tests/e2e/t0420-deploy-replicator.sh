#!/bin/bash
# t0420-deploy-replicator: deploy/replicator/region-{a,b}.yaml are usable.
#  - every flag the replicator container passes is one that
#    `tandem-replicator --help` documents;
#  - the replicator really starts with exactly those arguments (paths and
#    addresses mapped to a scratch dir and loopback), and tandemctl reaches
#    it through the admin socket the manifest shares with its tandemctl
#    container (TANDEM_ADMIN), and over mutual TLS on the admin port;
#  - identities: the admin port serves the operators' certificate (URI
#    spiffe://tandem.local/tandem/admin) and refuses the replicator's own
#    (PERMISSION_DENIED); the admin socket is mode 0600 and tandemctl run
#    as another user says "permission denied" at once;
#  - the two regions' manifests differ only in the region names;
#  - the TLS files and ConfigMap the flags name are mounted (Secret keys,
#    the region map ConfigMap of the CSI manifests when they exist).
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
BIN=${TANDEM_BIN:-$ROOT/build}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
for p in tandem-replicator tandemctl; do
    [ -x "$BIN/$p" ] || { echo "not ok 1 - $BIN/$p not built"; exit 1; }
done
TMP=$(mktemp -d "${TANDEM_TEST_TMP:-/tmp}/t0420.XXXXXX") || exit 1
PID=""
cleanup() {
    [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
nok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }

# The args of the replicator container: the "- --flag=value" lines after
# `command: ["tandem-replicator"]` up to the next non-list line.
replicator_args() {
    awk '/command: \["tandem-replicator"\]/ { on = 1; next }
         on && /^ *args:/ { inargs = 1; next }
         inargs && /^ *- --/ { sub(/^ *- /, ""); print; next }
         inargs { exit }' "$1"
}

"$BIN/tandem-replicator" --help >"$TMP/help" 2>&1
for r in a b; do
    f=deploy/replicator/region-$r.yaml
    [ -f "$f" ] || { nok "$f exists"; continue; }
    replicator_args "$f" >"$TMP/args-$r"
    if [ "$(wc -l <"$TMP/args-$r")" -lt 5 ]; then
        nok "$f: replicator args found"
        continue
    fi
    bad=""
    while IFS= read -r a; do
        flag=${a%%=*}
        grep -q -- "$flag\b" "$TMP/help" || bad="$bad $flag"
    done <"$TMP/args-$r"
    [ -z "$bad" ] && ok "$f: every flag is in tandem-replicator --help" ||
        nok "$f: flags missing from tandem-replicator --help:$bad"
    grep -qx -- "--region=$r" "$TMP/args-$r" && ok "$f: --region=$r" ||
        nok "$f: --region=$r"
done

# Region b's manifest is region a's with the names swapped.
if diff <(grep -v '^#' deploy/replicator/region-a.yaml |
    sed -e 's/region: a$/region: X/' -e 's/--region=a/--region=X/' -e 's/--peer-region=b/--peer-region=Y/' \
        -e "s/region a's/region X's/") \
    <(grep -v '^#' deploy/replicator/region-b.yaml |
        sed -e 's/region: b$/region: X/' -e 's/--region=b/--region=X/' -e 's/--peer-region=a/--peer-region=Y/' \
            -e "s/region b's/region X's/") >"$TMP/diff"; then
    ok "region-a.yaml and region-b.yaml differ only in region names"
else
    nok "region-a.yaml and region-b.yaml differ beyond region names: $(head -5 "$TMP/diff" | tr '\n' ' ')"
fi

f=deploy/replicator/region-a.yaml
# TLS files named by flags are keys of the mounted Secret.
tlsdir=$(awk '/mountPath: .*tls/ { print $2; exit }' "$f")
bad=""
for k in $(sed -n 's/^--\(admin-\)\{0,1\}tls-[a-z]*=//p' "$TMP/args-a"); do
    [ "$(dirname "$k")" = "$tlsdir" ] || bad="$bad $k(dir)"
    grep -q "^  $(basename "$k"):" "$f" || bad="$bad $k(key)"
done
[ -z "$bad" ] && ok "TLS flags point at the mounted Secret's keys" || nok "TLS flags vs Secret:$bad"
# The admin socket dir is shared with the tandemctl container.
sock=$(sed -n 's|^--admin=unix://||p' "$TMP/args-a")
env_admin=$(grep -A1 'name: TANDEM_ADMIN' "$f" | sed -n 's/^ *value: unix:\/\///p')
if [ -n "$sock" ] && [ "$sock" = "$env_admin" ] &&
    [ "$(grep -c "mountPath: $(dirname "$sock")\$" "$f")" -ge 2 ]; then
    ok "admin socket $sock is shared with the tandemctl container (TANDEM_ADMIN)"
else
    nok "admin socket '$sock' vs TANDEM_ADMIN '$env_admin' and mounts"
fi
# The region map ConfigMap is the CSI manifests' one (if they exist yet).
cm=$(grep -A2 'configMap:' "$f" | sed -n 's/^ *name: //p' | head -1)
csi_files=$(grep -l 'kind: ConfigMap' deploy/*.yaml deploy/*/*.yaml 2>/dev/null | grep -v '^deploy/replicator/')
if [ -z "$csi_files" ]; then
    ok "# SKIP region map ConfigMap '$cm': no CSI manifests in deploy/ yet"
elif grep -A3 'kind: ConfigMap' $csi_files | grep -q "name: $cm\$"; then
    ok "ConfigMap $cm is defined by the CSI manifests"
else
    nok "ConfigMap $cm is not defined by the CSI manifests ($csi_files)"
fi
ns=$(sed -n 's/^  namespace: //p' "$f" | sort -u)
if [ -n "$csi_files" ] && ! grep -q "namespace: $ns\$" $csi_files; then
    nok "namespace $ns differs from the CSI manifests'"
else
    ok "one namespace: $ns"
fi

# Start the replicator with the manifest's own arguments, mapped locally.
scripts/gen-certs.sh "$TMP/certs" replicator-a tandemctl >/dev/null || { nok "certs"; exit 1; }
mkdir -p "$TMP/etc/tls" "$TMP/run"
cp "$TMP/certs/ca.pem" "$TMP/etc/tls/ca.pem"
cp "$TMP/certs/replicator-a.pem" "$TMP/etc/tls/tls.crt"
cp "$TMP/certs/replicator-a.key" "$TMP/etc/tls/tls.key"
cp "$TMP/certs/ca.pem" "$TMP/etc/tls/admin-ca.pem"
port() { echo $((20000 + RANDOM % 40000)); }
LP=$(port) AP=$(port) MP=$(port)
cat >"$TMP/etc/tandem.conf" <<CONF
[tandem]
default_region = a
[region a]
backend = sqlite
db_path = $TMP/a.db
replicator = 127.0.0.1:$LP
[region b]
backend = sqlite
db_path = $TMP/b-placeholder.db
replicator = 127.0.0.1:1
CONF
mapfile -t ARGS < <(sed -e "s|/etc/tandem/|$TMP/etc/|g" -e "s|/etc/tandem-tls/|$TMP/etc/tls/|g" -e "s|/run/tandem-admin/|$TMP/run/|g" \
    -e "s|0.0.0.0:7001|127.0.0.1:$LP|" -e "s|0.0.0.0:7002|127.0.0.1:$AP|" \
    -e "s|0.0.0.0:9101|127.0.0.1:$MP|" "$TMP/args-a")
"$BIN/tandem-replicator" "${ARGS[@]}" >"$TMP/replicator.log" 2>&1 &
PID=$!
deadline=$((SECONDS + 20))
while [ ! -S "$TMP/run/admin.sock" ] && kill -0 $PID 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    sleep 0.1
done
if "$BIN/tandemctl" --admin "unix://$TMP/run/admin.sock" status >"$TMP/st" 2>&1; then
    ok "tandem-replicator starts with region-a.yaml's arguments; tandemctl status over the socket"
else
    nok "replicator with the manifest's args: $(tail -3 "$TMP/replicator.log" | tr '\n' ' ') / $(cat "$TMP/st")"
fi
if "$BIN/tandemctl" --admin "127.0.0.1:$AP" --tls-ca "$TMP/certs/ca.pem" \
    --tls-cert "$TMP/certs/tandemctl.pem" --tls-key "$TMP/certs/tandemctl.key" \
    status >"$TMP/st" 2>&1; then
    ok "tandemctl status over the admin port with mutual TLS"
    mtls_ok=1
else
    nok "tandemctl over mTLS admin port: $(cat "$TMP/st")"
    mtls_ok=0
fi
# A client certificate from another CA must be refused by the server.
scripts/gen-certs.sh "$TMP/other" tandemctl >/dev/null
# (Only meaningful while the port serves the right certificate.)
if [ "$mtls_ok" != 1 ]; then
    nok "certificate of another CA: cannot tell, the admin port does not work"
elif "$BIN/tandemctl" --admin "127.0.0.1:$AP" --tls-ca "$TMP/certs/ca.pem" \
    --tls-cert "$TMP/other/tandemctl.pem" --tls-key "$TMP/other/tandemctl.key" \
    status >"$TMP/st" 2>&1; then
    nok "admin port accepted a client certificate of another CA"
else
    ok "admin port refuses a client certificate of another CA ($(sed 's/.*(\([A-Z_]*\))$/\1/' "$TMP/st"))"
fi
# Identities on the admin port: the replicator's own certificate (same CA)
# is not an operator's.
if "$BIN/tandemctl" --admin "127.0.0.1:$AP" --tls-ca "$TMP/certs/ca.pem" \
    --tls-cert "$TMP/certs/replicator-a.pem" --tls-key "$TMP/certs/replicator-a.key" \
    status >"$TMP/st" 2>&1; then
    nok "admin port accepted the replicator's certificate"
elif grep -q "PERMISSION_DENIED" "$TMP/st" && grep -q "tandem/admin" "$TMP/st"; then
    ok "admin port refuses the replicator's certificate (PERMISSION_DENIED)"
else
    nok "admin port, replicator's certificate: $(cat "$TMP/st")"
fi
grep -q 'event=rep.admin_denied.*identity="spiffe://tandem.local/tandem/region/a"' "$TMP/replicator.log" &&
    ok "the refusal is logged with the caller's identity" ||
    nok "no rep.admin_denied line naming the identity: $(grep admin_denied "$TMP/replicator.log" | head -2)"
mode=$(stat -c %a "$TMP/run/admin.sock" 2>/dev/null)
[ "$mode" = 600 ] && ok "admin socket is mode 0600" || nok "admin socket mode $mode"
# Another user: one clear line, at once (not a deadline).
if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
    chmod 755 "$TMP" "$TMP/run"
    t0=$SECONDS
    if setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$BIN/tandemctl" --admin "unix://$TMP/run/admin.sock" status >"$TMP/st" 2>&1; then
        nok "another user ran status through a 0600 socket"
    elif grep -q "permission denied on unix://$TMP/run/admin.sock" "$TMP/st" &&
        [ $((SECONDS - t0)) -le 3 ]; then
        ok "another user is told 'permission denied' at once"
    else
        nok "another user: $(cat "$TMP/st")"
    fi
else
    ok "# SKIP another user's access: needs root and setpriv"
fi
if ! kill -TERM $PID 2>/dev/null; then
    nok "replicator was not running at the end"
    PID=""
    echo "# $n checks, $failed failed"
    exit 1
fi
deadline=$((SECONDS + 15))
while kill -0 $PID 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
if kill -0 $PID 2>/dev/null; then
    nok "replicator did not stop on SIGTERM"
else
    ok "replicator stops on SIGTERM"
fi
wait $PID 2>/dev/null
PID=""
echo "# $n checks, $failed failed"
[ $failed -eq 0 ]
