#!/bin/bash
# t0220-deploy-manifests: the CSI part of every rendered overlay
# (deploy/regions/R through `kubectl kustomize`, tests/e2e/lib-deploy.sh)
# agrees with the binary: driver name, socket paths shared by plugin and
# every sidecar, kubelet registration path, every tandem-csi flag accepted
# by `tandem-csi --help`, the sidecar flags WaitForFirstConsumer and
# snapshots need, the StorageClass's topology key and parameters (a real
# tandem-csi accepts them in CreateVolume), and the ConfigMap's region
# map loads.  (t0221 checks the overlays as a whole: kinds, RBAC, images,
# what differs between regions.)
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-deploy.sh"
csi=$B/tandem-csi
need_exe "$csi"
e2e_scratch t0220
"$csi" --help >"$tmp/help" || fail "tandem-csi --help failed"
"$csi" --version | grep -q '^tandem-csi ' || fail "tandem-csi --version"
ok "tandem-csi --help and --version"
# Bad flag values: one line naming the flag, exit 2, nothing started.
for bad in "--threads -3" "--threads 4x" "--max-volumes-per-node -1" "--mode nodes"; do
    out=$("$csi" --config /dev/null $bad 2>&1 >/dev/null); rc=$?
    [ $rc -eq 2 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] &&
        printf '%s' "$out" | grep -q -- "${bad%% *}" ||
        fail "tandem-csi $bad: want exit 2 and one line naming the flag, got $rc: $out"
done
ok "bad flag values: one line naming the flag, exit 2"
[ -f deploy/Dockerfile ] || fail "deploy/Dockerfile missing"
grep -q "tandem-csi" deploy/Dockerfile || fail "Dockerfile does not install tandem-csi"
python3 -c 'import yaml' 2>/dev/null ||
    fail "python3-yaml missing (scripts/install-deps.sh installs it)"
deploy_render "$tmp/render" || fail "$deploy_err"
ok "rendered deploy/regions/{${DEPLOY_REGIONS// /,}} with $DEPLOY_RENDERER"

PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=tests/e2e python3 - "$tmp" $DEPLOY_REGIONS <<'PY' || fail "manifest checks (see above)"
import json, os, re, sys
from deploy_lib import load, find, one, containers, env_of, args_of, flagmap
tmp, regions_rendered = sys.argv[1], sys.argv[2:]
help_text = open(os.path.join(tmp, 'help')).read()
m = re.search(r'--drivername NAME.*\(default ([^)]+)\)', help_text)
assert m, 'no default driver name in --help'
driver = m.group(1)
helpflags = set(re.findall(r'^\s*(--[a-z0-9-]+)', help_text, re.M))
# `--admin-tls-ca|-cert|-key FILE` documents --admin-tls-cert and
# --admin-tls-key too.
for flag, alts in re.findall(r'^\s*(--[a-z0-9-]+)((?:\|-[a-z0-9]+)+)', help_text, re.M):
    stem = flag.rsplit('-', 1)[0]
    helpflags |= {stem + a for a in alts.split('|')[1:]}

def check_overlay(region, docs):
    drv = one(docs, 'CSIDriver')
    assert drv['metadata']['name'] == driver, 'CSIDriver %s != %s' % (drv['metadata']['name'], driver)
    assert drv['spec']['attachRequired'] is False, 'attachRequired must be false'

    cm = one(docs, 'ConfigMap', 'tandem-config')
    conf = cm['data']['tandem.conf']
    rkey = re.search(r'topology_region_key\s*=\s*(\S+)', conf)
    rkey = rkey.group(1) if rkey else 'topology.tandem.csi.dev/region'
    regions = re.findall(r'^\[region (\S+)\]', conf, re.M)
    assert region in regions, 'overlay %s is not a region of the region map %s' % (region, regions)

    def check_pod(d, mode):
        spec = d['spec']['template']['spec']
        vols = {v['name']: v for v in spec['volumes']}
        cs = {c['name']: c for c in containers(d)}
        plug = cs['tandem-csi']
        assert plug['command'][-1] == '/usr/local/bin/tandem-csi', 'command %s' % plug['command']
        args = args_of(plug, docs)
        bad = [a.partition('=')[0] for a in args if a.partition('=')[0] not in helpflags]
        assert not bad, '%s: tandem-csi flags not in --help: %s' % (d['kind'], bad)
        left = [a for a in args if '$(' in a]
        assert not left, '%s: unexpanded args %s' % (d['kind'], left)
        fl = flagmap(args)
        assert fl.get('--mode') == mode, '%s: --mode %s' % (d['kind'], fl.get('--mode'))
        assert fl.get('--drivername', driver) == driver, 'drivername differs'
        assert fl.get('--region', region) == region, '%s: --region %s in overlay %s' % (
            d['kind'], fl.get('--region'), region)
        ep = fl['--endpoint']
        assert ep.startswith('unix:///'), 'endpoint %s' % ep
        sock = ep[len('unix://'):]
        sockdir = os.path.dirname(sock)
        mounts = {m['mountPath']: m for m in plug['volumeMounts']}
        assert sockdir in mounts, 'plugin does not mount its socket dir %s' % sockdir
        sockvol = mounts[sockdir]['name']
        cfgdir = os.path.dirname(fl['--config'])
        assert cfgdir in mounts, 'config dir %s not mounted' % cfgdir
        cv = vols[mounts[cfgdir]['name']]
        assert cv['configMap']['name'] == 'tandem-config', 'config volume'
        assert os.path.basename(fl['--config']) in cm['data'], 'config key'
        sidecars = [c for n, c in cs.items() if n != 'tandem-csi']
        # The csi-addons sidecar talks to tandem-csi's csi-addons socket,
        # not to the CSI one.
        addons = [c for c in sidecars if '/k8s-sidecar:' in c['image']]
        if addons:
            assert mode == 'controller', '%s: a csi-addons sidecar in %s mode' % (d['kind'], mode)
            aep = fl.get('--csi-addons-endpoint')
            assert isinstance(aep, str) and aep.startswith('unix:///'), '--csi-addons-endpoint %s' % aep
            assert os.path.dirname(aep[len('unix://'):]) == sockdir, 'csi-addons socket outside %s' % sockdir
            for c in addons:
                sf = flagmap(args_of(c, docs))
                assert sf.get('--csi-addons-address') == aep, '%s: --csi-addons-address %s != %s' % (
                    c['name'], sf.get('--csi-addons-address'), aep)
                cm_ = {m['mountPath']: m['name'] for m in c['volumeMounts']}
                assert cm_.get(sockdir) == sockvol, '%s does not share the socket volume' % c['name']
        else:
            assert '--csi-addons-endpoint' not in fl, '%s: csi-addons endpoint without the sidecar' % d['kind']
        sidecars = [c for c in sidecars if c not in addons]
        for c in sidecars:
            sf = flagmap(args_of(c, docs))
            addr = sf.get('--csi-address')
            assert addr == sock, '%s: --csi-address %s != %s' % (c['name'], addr, sock)
            cm_ = {m['mountPath']: m['name'] for m in c['volumeMounts']}
            assert cm_.get(sockdir) == sockvol, '%s does not share the socket volume' % c['name']
        names = ' '.join(c['image'] for c in sidecars)
        assert 'livenessprobe' in names, 'no livenessprobe'
        port = plug['livenessProbe']['httpGet']['port']
        ports = {p['name']: p['containerPort'] for p in plug['ports']}
        lp = [c for c in sidecars if 'livenessprobe' in c['image']][0]
        assert flagmap(lp['args'])['--http-endpoint'] == ':%d' % ports[port], 'probe port'
        return spec, cs, fl, vols, mounts, sock

    def sidecar(cs, image):
        found = [c for c in cs.values() if '/%s:' % image in c['image']]
        assert len(found) == 1, '%d %s sidecars' % (len(found), image)
        return found[0], flagmap(args_of(found[0], docs))

    dep = one(docs, 'Deployment', 'tandem-csi-controller')
    spec, cs, fl, vols, mounts, sock = check_pod(dep, 'controller')
    assert fl.get('--region') == region, 'controller --region %s, overlay %s' % (fl.get('--region'), region)
    prov, pf = sidecar(cs, 'csi-provisioner')
    assert pf.get('--feature-gates') == 'Topology=true', 'provisioner needs Topology=true'
    assert pf.get('--extra-create-metadata') is True, 'provisioner needs --extra-create-metadata'
    sidecar(cs, 'csi-resizer')
    snap, sf = sidecar(cs, 'csi-snapshotter')
    assert sf.get('--extra-create-metadata') is True, 'snapshotter needs --extra-create-metadata'
    hm, hf = sidecar(cs, 'csi-external-health-monitor-controller')
    assert hf.get('--enable-node-watcher', 'false') == 'false', 'health monitor: node watcher on'
    assert fl.get('--csi-addons-endpoint'), 'controller without --csi-addons-endpoint'
    assert fl.get('--replicator-admin'), 'controller without --replicator-admin'
    print('# %s: controller Deployment (--region %s): provisioner (Topology, extra metadata), '
          'resizer, snapshotter (extra metadata), health monitor, livenessprobe on %s; '
          'csi-addons sidecar on %s' % (region, region, sock, fl['--csi-addons-endpoint']))
    if region == regions_rendered[0]:
        # The controller's tandem-csi arguments, for the start below.
        with open(os.path.join(tmp, 'controller.args'), 'w') as f:
            for a in args_of(cs['tandem-csi'], docs):
                f.write(a + '\n')

    ds = one(docs, 'DaemonSet', 'tandem-csi-node')
    spec, cs, fl, vols, mounts, sock = check_pod(ds, 'node')
    plug = cs['tandem-csi']
    assert plug['securityContext']['privileged'] is True, 'node plugin must be privileged'
    kub = [m for m in plug['volumeMounts'] if m['mountPath'] == '/var/lib/kubelet']
    assert kub and kub[0].get('mountPropagation') == 'Bidirectional', 'kubelet dir Bidirectional'
    assert '/dev' in mounts, '/dev not mounted'
    assert fl['--state-dir'] in mounts, 'state dir not mounted'
    assert fl.get('--topology-from-k8s-node') is True, 'node: --topology-from-k8s-node'
    env = env_of(plug, docs)
    assert env['NODE_NAME'] == '<fieldRef:spec.nodeName>', 'NODE_NAME'
    reg, rf = sidecar(cs, 'csi-node-driver-registrar')
    want = '/var/lib/kubelet/plugins/%s/csi.sock' % driver
    assert rf['--kubelet-registration-path'] == want, 'registration path %s' % rf['--kubelet-registration-path']
    pd = vols[mounts[os.path.dirname(sock)]['name']]
    assert pd['hostPath']['path'] == os.path.dirname(want), 'plugin dir hostPath %s' % pd['hostPath']['path']
    rm = {m['mountPath']: m['name'] for m in reg['volumeMounts']}
    assert vols[rm['/registration']]['hostPath']['path'] == '/var/lib/kubelet/plugins_registry'
    print('# %s: node DaemonSet: privileged, Bidirectional kubelet dir, /dev, registrar at %s, '
          'fallback --region %s' % (region, want, fl.get('--region')))

    scs = find(docs, 'StorageClass')
    assert scs, 'no StorageClass'
    params = []
    for sc in scs:
        assert sc['provisioner'] == driver, 'provisioner %s' % sc['provisioner']
        assert sc['volumeBindingMode'] == 'WaitForFirstConsumer', 'WFFC'
        assert sc.get('allowVolumeExpansion') is True, 'allowVolumeExpansion'
        vals = []
        for t in sc['allowedTopologies']:
            for e in t['matchLabelExpressions']:
                assert e['key'] == rkey, 'allowedTopologies key %s is not the driver key %s' % (e['key'], rkey)
                vals += e['values']
        for v in vals:
            assert v in regions, 'allowedTopologies region %s is not in the region map' % v
        params.append({'name': sc['metadata']['name'], 'parameters': sc.get('parameters', {}),
                       'regions': vals})
    print('# %s: %d StorageClasses: WaitForFirstConsumer, expansion, allowedTopologies on %s' % (
        region, len(scs), rkey))
    return conf, {'key': rkey, 'classes': params}

confs = {}
for region in regions_rendered:
    docs = load(os.path.join(tmp, 'render', region + '.yaml'))
    print('# deploy/regions/%s: %d documents' % (region, len(docs)))
    confs[region], classes = check_overlay(region, docs)
    # The region map and the classes are the base's, the same in every
    # overlay (t0221 checks that); the first overlay's are run below.
    if len(confs) == 1:
        open(os.path.join(tmp, 'tandem.conf'), 'w').write(confs[region])
        json.dump(classes, open(os.path.join(tmp, 'classes.json'), 'w'))
PY
ok "YAML structure and cross-references"

# The ConfigMap's region map loads in tandem-csi.
sock=$tmp/cm.sock
start_bg "$tmp/cm.log" "$csi" --endpoint "unix://$sock" --mode controller \
    --config "$tmp/tandem.conf"
wait_ready "$bgpid" "$tmp/cm.log" "tandem-csi with the ConfigMap's region map" \
    -S "$sock"
stop_ok "$bgpid" "$tmp/cm.log" "tandem-csi with the ConfigMap's region map"
ok "the ConfigMap's region map loads"

# Each StorageClass's parameters and topology are accepted by CreateVolume
# (a plugin on sqlite regions named like the ConfigMap's).
if [ -d tests/node/node_modules/@grpc/grpc-js ] && command -v node >/dev/null; then
    regs=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(" ".join(sorted({r for k in c["classes"] for r in k["regions"]})))' "$tmp/classes.json")
    sqlite_regions "$tmp/sqlite.conf" $regs
    sock=$tmp/sc.sock
    start_bg "$tmp/sc.log" "$csi" --endpoint "unix://$sock" --mode controller \
        --config "$tmp/sqlite.conf"
    pid=$bgpid
    wait_ready "$pid" "$tmp/sc.log" tandem-csi -S "$sock"
    out=$(NODE_PATH=$PWD/tests/node/node_modules node -e '
const grpc = require("@grpc/grpc-js"), pl = require("@grpc/proto-loader");
const path = require("path"), fs = require("fs");
const d = pl.loadSync("csi.proto", {keepCase: true, longs: String,
  includeDirs: [path.resolve("proto"), "/usr/include"]});
const csi = grpc.loadPackageDefinition(d).csi.v1;
const c = new csi.Controller(process.argv[1], grpc.credentials.createInsecure());
const cfg = JSON.parse(fs.readFileSync(process.argv[2]));
(async () => {
  let bad = 0;
  for (const sc of cfg.classes) {
    const seg = (r) => ({segments: {[cfg.key]: r}});
    const req = {name: "pvc-" + sc.name, volume_capabilities: [{mount: {},
      access_mode: {mode: "SINGLE_NODE_WRITER"}}],
      parameters: {...sc.parameters, "csi.storage.k8s.io/pvc/name": "p",
                   "csi.storage.k8s.io/pvc/namespace": "ns"},
      accessibility_requirements: {requisite: sc.regions.map(seg),
                                   preferred: sc.regions.map(seg)}};
    const r = await new Promise((res) => c.CreateVolume(req, (e, v) => res({e, v})));
    console.log(`${sc.name}: ${r.e ? "ERROR " + r.e.details : "ok in " +
      JSON.stringify(r.v.volume.accessible_topology[0].segments)}`);
    if (r.e) bad++;
  }
  process.exit(bad ? 1 : 0);
})();' "unix://$sock" "$tmp/classes.json" 2>&1) || fail "StorageClass parameters refused: $out"
    echo "$out" | sed 's/^/# /'
    stop_ok "$pid" "$tmp/sc.log" tandem-csi
    ok "every StorageClass's parameters and topology accepted by CreateVolume"
else
    skip "CreateVolume with the StorageClass parameters: no node_modules (t0210 installs them)"
fi

# The controller's tandem-csi started with exactly its rendered arguments
# (region a's overlay; paths mapped to scratch, the admin Service address to
# a real replicator of region a on loopback, the admin identity Secret's
# keys from a test PKI).  The csi-addons sidecar's socket answers what the
# sidecar and the csi-addons controller ask: GetIdentity's name (the
# CSIAddonsNode's driver, matched against a VolumeReplicationClass's
# provisioner: the CSIDriver's and the examples'), CONTROLLER_SERVICE (the
# sidecar's leader election) and VOLUME_REPLICATION; and a replication call
# reaches the region's replicator over mutual TLS with that identity.
if [ -d tests/node/node_modules/@grpc/grpc-js ] && command -v node >/dev/null; then
    rep=$B/tandem-replicator
    need_exe "$rep"
    live=$tmp/live
    mkdir -p "$live/csi" "$live/etc" "$live/admin-tls" "$live/run"
    scripts/gen-certs.sh "$live/pki" replicator-a admin >/dev/null || fail "gen-certs.sh"
    cp "$live/pki/ca.pem" "$live/admin-tls/ca.pem"
    cp "$live/pki/admin.pem" "$live/admin-tls/tls.crt"
    cp "$live/pki/admin.key" "$live/admin-tls/tls.key"
    LP=$((20000 + RANDOM % 20000)) AP=$((40000 + RANDOM % 20000))
    cat >"$live/etc/tandem.conf" <<CONF
[tandem]
default_region = a
[region a]
backend = sqlite
db_path = $live/a.db
replicator = 127.0.0.1:$LP
peer = b
[region b]
backend = sqlite
db_path = $live/b.db
replicator = 127.0.0.1:1
peer = a
CONF
    { start_bg "$live/rep.log" "$rep" --config "$live/etc/tandem.conf" --region a \
        --peer-region b --listen "127.0.0.1:$LP" --admin "unix://$live/run/admin.sock" \
        --admin-tcp "127.0.0.1:$AP" --tls-ca "$live/pki/ca.pem" \
        --tls-cert "$live/pki/replicator-a.pem" --tls-key "$live/pki/replicator-a.key" \
        --admin-tls-ca "$live/pki/ca.pem"; } >"$live/rep.out"
    rpid=$bgpid
    wait_ready "$rpid" "$live/rep.log" "tandem-replicator of region a" -S "$live/run/admin.sock"
    admin_host=$(sed -n 's/^--replicator-admin=//p' "$tmp/controller.args")
    [ -n "$admin_host" ] || fail "the controller has no --replicator-admin"
    mapfile -t ARGS < <(sed -e "s|unix:///csi/|unix://$live/csi/|" \
        -e "s|=/etc/tandem/|=$live/etc/|" -e "s|=/etc/tandem-admin-tls/|=$live/admin-tls/|" \
        -e "s|^--replicator-admin=.*|--replicator-admin=127.0.0.1:$AP|" "$tmp/controller.args")
    left=$(printf '%s\n' "${ARGS[@]}" | grep -E '=/(csi|etc)/|unix:///csi' || true)
    [ -z "$left" ] || fail "rendered paths this test does not map: $left"
    start_bg "$live/csi.log" "$csi" "${ARGS[@]}"
    cpid=$bgpid
    wait_ready "$cpid" "$live/csi.log" "tandem-csi with the controller's rendered arguments" \
        -S "$live/csi/csi-addons.sock"
    ok "tandem-csi starts with the controller's rendered arguments (--replicator-admin $admin_host mapped to the replicator's admin port)"
    addons() { # METHOD JSON
        OUT=$(NODE_PATH=$PWD/tests/node/node_modules node tests/node/csi-addons.js call \
            "unix://$live/csi/csi-addons.sock" "$1" "$2" 2>&1)
    }
    driver_name=$(PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=tests/e2e python3 -c '
import sys
from deploy_lib import load, one
print(one(load(sys.argv[1]), "CSIDriver")["metadata"]["name"])' "$tmp/render/${DEPLOY_REGIONS%% *}.yaml")
    addons GetIdentity '{}' || fail "GetIdentity: $OUT"
    name=$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
    vrc=$(python3 -c '
import sys, yaml
for d in yaml.safe_load_all(open("deploy/examples/volumereplicationclass.yaml")):
    if d and d["kind"] == "VolumeReplicationClass":
        print(d["spec"]["provisioner"])' | sort -u)
    [ "$name" = "$driver_name" ] && [ "$vrc" = "$name" ] ||
        fail "GetIdentity name '$name', CSIDriver '$driver_name', example VolumeReplicationClass provisioner '$vrc'"
    addons GetCapabilities '{}' || fail "GetCapabilities: $OUT"
    printf '%s' "$OUT" | grep -q '"type":"CONTROLLER_SERVICE"' &&
        printf '%s' "$OUT" | grep -q '"type":"VOLUME_REPLICATION"' ||
        fail "GetCapabilities without CONTROLLER_SERVICE and VOLUME_REPLICATION: $OUT"
    addons Probe '{}' || fail "Probe: $OUT"
    ok "csi-addons socket: GetIdentity $name (= CSIDriver = example class provisioner), CONTROLLER_SERVICE, VOLUME_REPLICATION, Probe"
    # A replicated volume of region a, then its replication info: the
    # controller asks the replicator's admin port with the admin identity.
    out=$(NODE_PATH=$PWD/tests/node/node_modules node -e '
const grpc = require("@grpc/grpc-js"), pl = require("@grpc/proto-loader");
const path = require("path");
const d = pl.loadSync("csi.proto", {keepCase: true, longs: String,
  includeDirs: [path.resolve("proto"), "/usr/include"]});
const csi = grpc.loadPackageDefinition(d).csi.v1;
const c = new csi.Controller(process.argv[1], grpc.credentials.createInsecure());
const seg = {segments: {"topology.tandem.csi.dev/region": "a"}};
c.CreateVolume({name: "pvc-t0220-addons", capacity_range: {required_bytes: 1 << 24},
  volume_capabilities: [{mount: {}, access_mode: {mode: "SINGLE_NODE_WRITER"}}],
  parameters: {replication: "async"},
  accessibility_requirements: {requisite: [seg], preferred: [seg]}}, (e, v) => {
  if (e) { console.log("ERROR " + e.details); process.exit(1); }
  console.log(v.volume.volume_id);
});' "unix://$live/csi/csi.sock" 2>&1) || fail "CreateVolume (replicated) in region a: $out"
    vol=$out
    addons GetVolumeReplicationInfo "{\"replication_source\":{\"volume\":{\"volume_id\":\"$vol\"}}}" ||
        fail "GetVolumeReplicationInfo through the rendered admin path: $OUT"
    status=$(printf '%s' "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status"))')
    ok "GetVolumeReplicationInfo $vol: answered through the replicator's admin port with the admin identity (status $status, peer region absent)"
    grep -q 'event=rep.admin_denied' "$live/rep.log" &&
        fail "the replicator refused an admin call: $(grep admin_denied "$live/rep.log" | head -1)"
    stop_ok "$cpid" "$live/csi.log" "tandem-csi (controller arguments)"
    stop_ok "$rpid" "$live/rep.log" "tandem-replicator"
else
    skip "tandem-csi with the controller's rendered arguments: no node_modules (t0210 installs them)"
fi
done_testing
