#!/bin/bash
# t0420-deploy-replicator: the replicator of every rendered overlay
# (deploy/regions/R through `kubectl kustomize`) is usable.
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
#  - the two regions' replicators differ only in the region names;
#  - the TLS files and ConfigMap the flags name are mounted (keys the
#    Secret volume projects, the region map ConfigMap of the same overlay).
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

# The rendered overlays (tests/e2e/lib-deploy.sh), then from each the
# replicator container's facts (tests/e2e/deploy_lib.py), one per line:
#   arg ARG        its args, $(VAR)s expanded from its env
#   tlsdir DIR     where the Secret volume of the TLS files is mounted
#   tlskey KEY     a key that volume projects (its items)
#   secret NAME    that volume's Secret
#   admin ARG      the tandemctl container's TANDEM_ADMIN
#   adminmount DIR the tandemctl container's mounts
#   configmap NAME the ConfigMap volume of the region map
#   ns NS          each namespace of the overlay's namespaced objects
#   cmdefined NAME each ConfigMap the overlay defines
. tests/e2e/lib-deploy.sh
if ! python3 -c 'import yaml' 2>/dev/null; then
    nok "python3-yaml missing (scripts/install-deps.sh installs it)"
    echo "# $n checks, $failed failed"
    exit 1
fi
if ! deploy_render "$TMP/render"; then
    nok "$deploy_err"
    echo "# $n checks, $failed failed"
    exit 1
fi
ok "rendered deploy/regions/{${DEPLOY_REGIONS// /,}} with $DEPLOY_RENDERER"
replicator_facts() { # OVERLAY.yaml
    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=tests/e2e python3 - "$1" <<'PY'
import sys
from deploy_lib import load, find, one, containers, env_of, args_of
docs = load(sys.argv[1])
dep = one(docs, 'Deployment', 'tandem-replicator')
cs = {c['name']: c for c in containers(dep)}
rep, ctl = cs['replicator'], cs['tandemctl']
assert rep['command'] == ['tandem-replicator'], rep['command']
for a in args_of(rep, docs):
    print('arg', a)
vols = {v['name']: v for v in dep['spec']['template']['spec']['volumes']}
for m in rep['volumeMounts']:
    v = vols[m['name']]
    if 'secret' in v and 'tls' in m['name']:
        print('tlsdir', m['mountPath'])
        print('secret', v['secret']['secretName'])
        for it in v['secret'].get('items', []):
            assert it['key'] == it['path'], it
            print('tlskey', it['key'])
    if 'configMap' in v:
        print('configmap', v['configMap']['name'])
print('admin', env_of(ctl, docs).get('TANDEM_ADMIN', ''))
for m in ctl['volumeMounts']:
    print('adminmount', m['mountPath'])
for ns in sorted({d['metadata'].get('namespace', '') for d in docs} - {''}):
    print('ns', ns)
for d in find(docs, 'ConfigMap'):
    print('cmdefined', d['metadata']['name'])
PY
}

"$BIN/tandem-replicator" --help >"$TMP/help" 2>&1
for r in $DEPLOY_REGIONS; do
    f=deploy/regions/$r
    if ! replicator_facts "$TMP/render/$r.yaml" >"$TMP/facts-$r"; then
        nok "$f: no replicator Deployment with a replicator and a tandemctl container"
        continue
    fi
    sed -n 's/^arg //p' "$TMP/facts-$r" >"$TMP/args-$r"
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
    peer=$(sed -n 's/^--peer-region=//p' "$TMP/args-$r")
    if grep -qx -- "--region=$r" "$TMP/args-$r" && [ -n "$peer" ] && [ "$peer" != "$r" ]; then
        ok "$f: --region=$r --peer-region=$peer"
    else
        nok "$f: want --region=$r and another --peer-region: $(grep region "$TMP/args-$r" | tr '\n' ' ')"
    fi
done

# Region b's replicator is region a's with the names swapped.
if [ -f "$TMP/args-a" ] && [ -f "$TMP/args-b" ] &&
    diff <(sed -e 's/^--region=a$/--region=X/' -e 's/^--peer-region=b$/--peer-region=Y/' "$TMP/args-a") \
        <(sed -e 's/^--region=b$/--region=X/' -e 's/^--peer-region=a$/--peer-region=Y/' "$TMP/args-b") >"$TMP/diff"; then
    ok "regions a and b: the replicators' args differ only in the region names"
else
    nok "regions a and b: replicator args differ beyond region names: $(head -5 "$TMP/diff" 2>/dev/null | tr '\n' ' ')"
fi

facts=$TMP/facts-a
# TLS files named by flags are keys the mounted Secret volume projects (the
# Secret itself is the operator's: not in the render).
tlsdir=$(sed -n 's/^tlsdir //p' "$facts")
bad=""
for k in $(sed -n 's/^--\(admin-\)\{0,1\}tls-[a-z]*=//p' "$TMP/args-a"); do
    [ "$(dirname "$k")" = "$tlsdir" ] || bad="$bad $k(dir)"
    grep -qx "tlskey $(basename "$k")" "$facts" || bad="$bad $k(key)"
done
[ -n "$tlsdir" ] && [ -z "$bad" ] &&
    ok "TLS flags point at keys of the mounted Secret $(sed -n 's/^secret //p' "$facts")" ||
    nok "TLS flags vs the Secret volume (mounted at '$tlsdir'):$bad"
# The admin socket dir is shared with the tandemctl container.
sock=$(sed -n 's|^--admin=unix://||p' "$TMP/args-a")
env_admin=$(sed -n 's|^admin unix://||p' "$facts")
if [ -n "$sock" ] && [ "$sock" = "$env_admin" ] &&
    grep -qx "adminmount $(dirname "$sock")" "$facts"; then
    ok "admin socket $sock is shared with the tandemctl container (TANDEM_ADMIN)"
else
    nok "admin socket '$sock' vs TANDEM_ADMIN '$env_admin' and mounts"
fi
# The region map ConfigMap is defined in the same install (the base's).
cm=$(sed -n 's/^configmap //p' "$facts" | head -1)
if [ -n "$cm" ] && grep -qx "cmdefined $cm" "$facts"; then
    ok "ConfigMap $cm is defined by the same overlay"
else
    nok "ConfigMap '$cm' is not defined by the overlay"
fi
ns=$(sed -n 's/^ns //p' "$facts")
if [ "$(echo "$ns" | wc -l)" -eq 1 ] && [ -n "$ns" ]; then
    ok "one namespace: $ns"
else
    nok "namespaces: $(echo $ns)"
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
    ok "tandem-replicator starts with region a's rendered arguments; tandemctl status over the socket"
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
