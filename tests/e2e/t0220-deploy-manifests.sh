#!/bin/bash
# t0220-deploy-manifests: the CSI manifests in deploy/csi/ parse and agree
# with the binary: driver name, socket paths shared by plugin and sidecars,
# kubelet registration path, every tandem-csi flag accepted by
# `tandem-csi --help`, the sidecar flags WaitForFirstConsumer needs, the
# StorageClass's topology key and parameters (a real tandem-csi accepts
# them in CreateVolume), and the ConfigMap's region map loads.
# Full YAML checks need python3-yaml; without it only the flag and
# structure checks by grep run (and say so).
set -u
. "$(dirname "$0")/lib.sh"

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
files=(deploy/csi/*.yaml)
[ ${#files[@]} -ge 6 ] || fail "expected the CSI manifests in deploy/csi/"
[ -f deploy/Dockerfile ] || fail "deploy/Dockerfile missing"
grep -q "tandem-csi" deploy/Dockerfile || fail "Dockerfile does not install tandem-csi"

# Every --flag given to tandem-csi in the manifests is in --help (grep
# level: the args lines after the tandem-csi command).
flags=$(awk '/command: \[.*"\/usr\/local\/bin\/tandem-csi"\]/ {on=1; next}
             on && /^ *args:/ {next}
             on && /^ *- --/ {sub(/^ *- /, ""); sub(/=.*/, ""); print; next}
             on {on=0}' "${files[@]}" | sort -u)
[ -n "$flags" ] || fail "no tandem-csi args found in the manifests"
for f in $flags; do
    grep -q -- "^ *$f\b" "$tmp/help" || fail "manifest flag $f is not accepted by tandem-csi --help"
done
ok "tandem-csi flags in the manifests are all in --help: $(echo $flags)"

if ! python3 -c 'import yaml' 2>/dev/null; then
    grep -q 'kind: CSIDriver' deploy/csi/*.yaml || fail "no CSIDriver"
    grep -q 'volumeBindingMode: WaitForFirstConsumer' deploy/csi/*.yaml || fail "no WFFC"
    skip "the YAML checks: python3-yaml missing (scripts/install-deps.sh installs it)"
    done_testing
    exit 0
fi

python3 - "$tmp" "${files[@]}" <<'PY' || fail "manifest checks (see above)"
import json, os, re, sys, yaml
tmp, files = sys.argv[1], sys.argv[2:]
docs = []
for f in files:
    for d in yaml.safe_load_all(open(f)):
        if d is None:
            continue
        for k in ('apiVersion', 'kind', 'metadata'):
            assert k in d, '%s: a document without %s' % (f, k)
        assert d['metadata'].get('name'), '%s: %s without a name' % (f, d['kind'])
        docs.append(d)
print('# %d documents in %d files parse' % (len(docs), len(files)))
help_text = open(os.path.join(tmp, 'help')).read()
m = re.search(r'--drivername NAME.*\(default ([^)]+)\)', help_text)
assert m, 'no default driver name in --help'
driver = m.group(1)

def kind(k):
    return [d for d in docs if d['kind'] == k]

(drv,) = kind('CSIDriver')
assert drv['metadata']['name'] == driver, 'CSIDriver %s != %s' % (drv['metadata']['name'], driver)
assert drv['spec']['attachRequired'] is False, 'attachRequired must be false'
print('# CSIDriver %s, attachRequired false' % driver)

def flagmap(args):
    out = {}
    for a in args:
        if a.startswith('--'):
            k, _, v = a.partition('=')
            out[k] = v if _ else True
    return out

def expand(v, env):
    return re.sub(r'\$\((\w+)\)', lambda m: env.get(m.group(1), m.group(0)), v)

(cm,) = [d for d in kind('ConfigMap') if d['metadata']['name'] == 'tandem-config']
conf = cm['data']['tandem.conf']
open(os.path.join(tmp, 'tandem.conf'), 'w').write(conf)
rkey = re.search(r'topology_region_key\s*=\s*(\S+)', conf)
rkey = rkey.group(1) if rkey else 'topology.tandem.csi.dev/region'
regions = re.findall(r'^\[region (\S+)\]', conf, re.M)

def check_pod(d, mode):
    spec = d['spec']['template']['spec']
    vols = {v['name']: v for v in spec['volumes']}
    cs = {c['name']: c for c in spec['containers']}
    plug = cs['tandem-csi']
    fl = flagmap(plug['args'])
    assert fl.get('--mode') == mode, '%s: --mode %s' % (d['kind'], fl.get('--mode'))
    assert fl.get('--drivername', driver) == driver, 'drivername differs'
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
    for c in sidecars:
        env = {e['name']: e.get('value', '') for e in c.get('env', [])}
        sf = flagmap([expand(a, env) for a in c.get('args', [])])
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

(dep,) = kind('Deployment')
spec, cs, fl, vols, mounts, sock = check_pod(dep, 'controller')
prov = [c for c in cs.values() if 'csi-provisioner' in c['image']][0]
pf = flagmap(prov['args'])
assert pf.get('--feature-gates') == 'Topology=true', 'provisioner needs Topology=true'
assert pf.get('--extra-create-metadata') is True, 'provisioner needs --extra-create-metadata'
assert any('csi-resizer' in c['image'] for c in cs.values()), 'no external-resizer'
assert not any('snapshotter' in c['image'] for c in cs.values()), 'no snapshots to serve'
assert fl.get('--region') in regions, 'controller --region %s not in the region map' % fl.get('--region')
print('# controller Deployment: provisioner (Topology, extra metadata), resizer, livenessprobe on %s' % sock)

(ds,) = kind('DaemonSet')
spec, cs, fl, vols, mounts, sock = check_pod(ds, 'node')
plug = cs['tandem-csi']
assert plug['securityContext']['privileged'] is True, 'node plugin must be privileged'
kub = [m for m in plug['volumeMounts'] if m['mountPath'] == '/var/lib/kubelet']
assert kub and kub[0].get('mountPropagation') == 'Bidirectional', 'kubelet dir Bidirectional'
assert '/dev' in mounts, '/dev not mounted'
assert fl['--state-dir'] in mounts, 'state dir not mounted'
assert fl.get('--topology-from-k8s-node') is True, 'node: --topology-from-k8s-node'
env = {e['name']: e for e in plug['env']}
assert env['NODE_NAME']['valueFrom']['fieldRef']['fieldPath'] == 'spec.nodeName', 'NODE_NAME'
reg = [c for c in cs.values() if 'node-driver-registrar' in c['image']][0]
rf = flagmap(reg['args'])
want = '/var/lib/kubelet/plugins/%s/csi.sock' % driver
assert rf['--kubelet-registration-path'] == want, 'registration path %s' % rf['--kubelet-registration-path']
pd = vols[mounts[os.path.dirname(sock)]['name']]
assert pd['hostPath']['path'] == os.path.dirname(want), 'plugin dir hostPath %s' % pd['hostPath']['path']
rm = {m['mountPath']: m['name'] for m in reg['volumeMounts']}
assert vols[rm['/registration']]['hostPath']['path'] == '/var/lib/kubelet/plugins_registry'
print('# node DaemonSet: privileged, Bidirectional kubelet dir, /dev, registrar at %s' % want)

scs = kind('StorageClass')
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
json.dump({'key': rkey, 'classes': params}, open(os.path.join(tmp, 'classes.json'), 'w'))
print('# %d StorageClasses: WaitForFirstConsumer, expansion, allowedTopologies on %s' % (len(scs), rkey))
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
done_testing
