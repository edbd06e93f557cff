#!/bin/bash
# t0221-deploy-kustomize: every overlay deploy/regions/R renders (kubectl
# kustomize, tests/e2e/lib-deploy.sh: a missing renderer fails) into one
# region's whole install, and the objects are right:
#  - every expected kind, each object once, cluster-scoped kinds without a
#    namespace and the others in the install's Namespace;
#  - the region-specific values: the overlay's ConfigMap tandem-region
#    (region R, peer = R's peer in the region map), --region of the
#    controller, node plugin and replicator, --peer-region, the
#    tandem.csi.dev/region label on every object and pod;
#  - the overlays differ only there (the rest is the base, byte for byte
#    once parsed);
#  - every container image pinned (a version tag or a digest, never
#    latest; one tag per image across the install); the sidecars from
#    sig-storage; the snapshotter's release is the one the base names for
#    the snapshot CRDs and snapshot-controller;
#  - RBAC: each sidecar's service account is granted every rule that
#    sidecar needs (and leases where it elects a leader); a sidecar without
#    known needs fails the test until they are written down here;
#  - the VolumeSnapshotClass's driver is the CSIDriver's name (and the
#    StorageClasses' provisioner), deletionPolicy Delete;
#  - StorageClasses: volumeBindingMode WaitForFirstConsumer;
#  - references resolve: ConfigMaps, service accounts, RBAC role refs; a
#    Secret the install needs but does not carry is one the overlay tells
#    the operator to create.
# No binary needed: this reads the render only (t0220 and t0420 run the
# binaries with the rendered flags).
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-deploy.sh"
e2e_scratch t0221

python3 -c 'import yaml' 2>/dev/null ||
    fail "python3-yaml missing (scripts/install-deps.sh installs it)"
deploy_render "$tmp/render" || fail "$deploy_err"
ok "rendered deploy/regions/{${DEPLOY_REGIONS// /,}} with $DEPLOY_RENDERER"
set -- $DEPLOY_REGIONS
[ $# -ge 2 ] || fail "want an overlay per region, found: $DEPLOY_REGIONS"

PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=tests/e2e python3 - "$tmp/render" $DEPLOY_REGIONS \
    >"$tmp/checks" 2>"$tmp/checks.err" <<'PY'
import copy, json, os, re, sys, traceback
from deploy_lib import load, find, one, containers, env_of, args_of, flagmap

rdir, overlays = sys.argv[1], sys.argv[2:]
failed = 0


def check(desc, fn, *a):
    """Run one check: 'ok - desc' or 'not ok - desc: why'."""
    global failed
    try:
        extra = fn(*a)
        print('ok - %s%s' % (desc, ': ' + extra if extra else ''))
    except AssertionError as e:
        failed += 1
        print('not ok - %s: %s' % (desc, e))
    except Exception as e:
        failed += 1
        print('not ok - %s: %s' % (desc, traceback.format_exc(limit=2).replace('\n', ' | ')))


LABEL = 'tandem.csi.dev/region'
CLUSTER_SCOPED = {'Namespace', 'CSIDriver', 'ClusterRole', 'ClusterRoleBinding',
                  'StorageClass', 'VolumeSnapshotClass'}
# One region's install.  No Secret: the replicator's certificates are the
# operator's (a placeholder would overwrite them at every apply).
KINDS = {'Namespace': 1, 'CSIDriver': 1, 'ConfigMap': 2, 'ServiceAccount': 2,
         'ClusterRole': 5, 'ClusterRoleBinding': 5, 'Role': 1, 'RoleBinding': 1,
         'Deployment': 2, 'DaemonSet': 1, 'Service': 2, 'StorageClass': 2,
         'VolumeSnapshotClass': 1}
WORKLOADS = ('Deployment', 'DaemonSet', 'StatefulSet', 'Job', 'CronJob')
LEASE_VERBS = 'get watch list delete update create'
# What each container needs from the API server: (apiGroup, resource,
# verbs), from the sidecars' own RBAC files for the pinned releases.
NEEDS = {
    'csi-provisioner': [
        ('', 'persistentvolumes', 'get list watch create delete'),
        ('', 'persistentvolumeclaims', 'get list watch update'),
        ('storage.k8s.io', 'storageclasses', 'get list watch'),
        ('storage.k8s.io', 'csinodes', 'get list watch'),
        ('', 'nodes', 'get list watch'),
        ('', 'events', 'list watch create update patch'),
        ('snapshot.storage.k8s.io', 'volumesnapshots', 'get list'),
        ('snapshot.storage.k8s.io', 'volumesnapshotcontents', 'get list')],
    'csi-resizer': [
        ('', 'persistentvolumes', 'get list watch patch'),
        ('', 'persistentvolumeclaims', 'get list watch'),
        ('', 'persistentvolumeclaims/status', 'patch'),
        ('', 'pods', 'list watch'),
        ('', 'events', 'list watch create update patch')],
    'csi-snapshotter': [
        ('', 'events', 'list watch create update patch'),
        ('snapshot.storage.k8s.io', 'volumesnapshotclasses', 'get list watch'),
        ('snapshot.storage.k8s.io', 'volumesnapshots', 'get list watch'),
        ('snapshot.storage.k8s.io', 'volumesnapshotcontents', 'get list watch update patch'),
        ('snapshot.storage.k8s.io', 'volumesnapshotcontents/status', 'update patch')],
    'csi-external-health-monitor-controller': [
        ('', 'persistentvolumes', 'get list watch'),
        ('', 'persistentvolumeclaims', 'get list watch'),
        ('', 'nodes', 'get list watch'),
        ('', 'pods', 'get list watch'),
        ('', 'events', 'create patch')],
    'csi-node-driver-registrar': [],
    'livenessprobe': [],
}


def image_name(img):
    """registry/path/NAME:TAG[@digest] -> NAME"""
    last = img.split('@')[0].rsplit('/', 1)[-1]
    return last.split(':')[0]


def regionmap(docs):
    conf = one(docs, 'ConfigMap', 'tandem-config')['data']['tandem.conf']
    regions, cur = {}, None
    for line in conf.splitlines():
        m = re.match(r'\s*\[region (\S+)\]', line)
        if m:
            cur = regions.setdefault(m.group(1), {})
            continue
        if re.match(r'\s*\[', line):
            cur = None
            continue
        m = re.match(r'\s*(\w+)\s*=\s*(.*?)\s*$', line)
        if m and cur is not None:
            cur[m.group(1)] = m.group(2)
    return regions


def pods(docs):
    return [d for d in docs if d['kind'] in WORKLOADS]


def container(docs, workload, name):
    (c,) = [c for c in containers(one(docs, 'Deployment' if workload != 'tandem-csi-node'
                                      else 'DaemonSet', workload)) if c['name'] == name]
    return flagmap(args_of(c, docs))


# ---- per overlay ----------------------------------------------------------

def kinds_once(docs):
    keys = [(d['kind'], d['metadata'].get('namespace', ''), d['metadata']['name']) for d in docs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    assert not dup, 'objects twice: %s' % dup
    got = {}
    for d in docs:
        got[d['kind']] = got.get(d['kind'], 0) + 1
    assert got == KINDS, 'kinds %s, want %s' % (
        {k: v for k, v in got.items() if KINDS.get(k) != v},
        {k: v for k, v in KINDS.items() if got.get(k) != v})
    return '%d objects, %d kinds' % (len(docs), len(got))


def scopes(docs):
    ns = one(docs, 'Namespace')['metadata']['name']
    for d in docs:
        have = d['metadata'].get('namespace')
        what = '%s %s' % (d['kind'], d['metadata']['name'])
        if d['kind'] in CLUSTER_SCOPED:
            assert have is None, '%s is cluster-scoped but has namespace %s' % (what, have)
        else:
            assert have == ns, '%s in namespace %s, not %s' % (what, have, ns)
    return 'namespaced objects in %s' % ns


def region_values(region, docs):
    rm = regionmap(docs)
    assert region in rm, 'overlay %s is not a region of the region map %s' % (region, sorted(rm))
    data = one(docs, 'ConfigMap', 'tandem-region')['data']
    assert data.get('region') == region, 'tandem-region region=%s' % data.get('region')
    peer = data.get('peer')
    assert peer in rm and peer != region, 'tandem-region peer=%s (regions %s)' % (peer, sorted(rm))
    if 'peer' in rm[region]:
        assert rm[region]['peer'] == peer, 'peer %s, the region map says %s' % (peer, rm[region]['peer'])
    want = {('tandem-csi-controller', 'tandem-csi'): {'--region': region},
            ('tandem-csi-node', 'tandem-csi'): {'--region': region,
                                                '--topology-from-k8s-node': True},
            ('tandem-replicator', 'replicator'): {'--region': region, '--peer-region': peer}}
    for (w, c), flags in want.items():
        fl = container(docs, w, c)
        for k, v in flags.items():
            assert fl.get(k) == v, '%s/%s: %s=%s, want %s' % (w, c, k, fl.get(k), v)
    for d in docs:
        lab = d['metadata'].get('labels', {}).get(LABEL)
        assert lab == region, '%s %s: label %s=%s' % (d['kind'], d['metadata']['name'], LABEL, lab)
    for d in pods(docs):
        lab = d['spec']['template']['metadata'].get('labels', {}).get(LABEL)
        assert lab == region, '%s %s pods: label %s=%s' % (d['kind'], d['metadata']['name'], LABEL, lab)
    return 'region %s, peer %s: controller, node, replicator flags and labels' % (region, peer)


def images(docs):
    tags, base = {}, {}
    n = 0
    for d in pods(docs):
        for c in containers(d):
            img, n = c['image'], n + 1
            where = '%s/%s' % (d['metadata']['name'], c['name'])
            ref = img.split('@')[0]
            last = ref.rsplit('/', 1)[-1]
            tag = last.split(':', 1)[1] if ':' in last else ''
            assert '@sha256:' in img or (tag and tag != 'latest'), '%s: image %s not pinned' % (where, img)
            assert tags.setdefault(ref.rsplit(':', 1)[0], tag) == tag, (
                '%s: %s, elsewhere tag %s' % (where, img, tags[ref.rsplit(':', 1)[0]]))
            name = image_name(img)
            if name in NEEDS:
                assert ref.startswith('registry.k8s.io/sig-storage/'), '%s: %s not from sig-storage' % (where, img)
                assert re.fullmatch(r'v\d+\.\d+\.\d+', tag), '%s: %s: want a vX.Y.Z tag' % (where, img)
                base[name] = tag
    text = open('deploy/base/controller.yaml').read()
    snap = base.get('csi-snapshotter')
    assert snap, 'no csi-snapshotter'
    assert 'snapshot-controller %s' % snap in text, (
        'deploy/base/controller.yaml does not name snapshot-controller %s, the release of '
        'csi-snapshotter:%s' % (snap, snap))
    return '%d containers; %s' % (n, ' '.join('%s:%s' % kv for kv in sorted(base.items())))


def rules_of(docs, sa, ns):
    """[(namespace or None for cluster-wide, rule)] granted to SA ns/sa."""
    out = []
    for b in find(docs, 'ClusterRoleBinding') + find(docs, 'RoleBinding'):
        subj = [s for s in b.get('subjects', []) if s['kind'] == 'ServiceAccount' and
                s['name'] == sa and s.get('namespace', b['metadata'].get('namespace')) == ns]
        if not subj:
            continue
        ref = b['roleRef']
        roles = find(docs, ref['kind'], ref['name'])
        assert roles, '%s %s: roleRef %s %s is not in the install' % (
            b['kind'], b['metadata']['name'], ref['kind'], ref['name'])
        scope = None if b['kind'] == 'ClusterRoleBinding' else b['metadata']['namespace']
        out += [(scope, r) for r in roles[0].get('rules', [])]
    return out


def allowed(rules, group, resource, verb, ns):
    for scope, r in rules:
        if scope is not None and scope != ns:
            continue
        if ((group in r.get('apiGroups', []) or '*' in r.get('apiGroups', [])) and
                (resource in r.get('resources', []) or '*' in r.get('resources', [])) and
                (verb in r.get('verbs', []) or '*' in r.get('verbs', []))):
            return True
    return False


def rbac(docs):
    sas = {(d['metadata']['namespace'], d['metadata']['name']) for d in find(docs, 'ServiceAccount')}
    done = []
    for d in pods(docs):
        spec = d['spec']['template']['spec']
        ns = d['metadata']['namespace']
        sa = spec.get('serviceAccountName')
        if sa:
            assert (ns, sa) in sas, '%s: service account %s is not in the install' % (d['metadata']['name'], sa)
        rules = rules_of(docs, sa, ns) if sa else []
        for c in containers(d):
            name = image_name(c['image'])
            fl = flagmap(args_of(c, docs))
            if name in NEEDS:
                need = [(g, r, v, None) for g, r, vs in NEEDS[name] for v in vs.split()]
            elif c['name'] == 'tandem-csi':
                # --topology-from-k8s-node reads the plugin's own Node.
                need = [('', 'nodes', 'get', None)] if fl.get('--topology-from-k8s-node') else []
            elif d['metadata']['name'] == 'tandem-replicator':
                need = []       # the replicator does not talk to the API server
            else:
                raise AssertionError('%s/%s: no RBAC needs known for image %s: write them in t0221' % (
                    d['metadata']['name'], c['name'], c['image']))
            if fl.get('--leader-election') is True:
                lns = fl.get('--leader-election-namespace', ns)
                need += [('coordination.k8s.io', 'leases', v, lns) for v in LEASE_VERBS.split()]
            missing = ['%s %s/%s%s' % (v, g or 'core', r, ' in ' + n if n else '')
                       for g, r, v, n in need if not allowed(rules, g, r, v, n)]
            assert not missing, '%s/%s (service account %s) may not: %s' % (
                d['metadata']['name'], c['name'], sa, ', '.join(missing))
            if need:
                done.append(c['name'])
    return 'granted to ' + ', '.join(done)


# Each sidecar's own ClusterRole (the base binds one per sidecar, so that
# dropping a sidecar drops exactly its rules): it alone must cover what
# the sidecar needs cluster-wide, whatever the others grant.
OWN_ROLE = {'csi-provisioner': 'tandem-csi-provisioner', 'csi-resizer': 'tandem-csi-resizer',
            'csi-snapshotter': 'tandem-csi-snapshotter',
            'csi-external-health-monitor-controller': 'tandem-csi-health-monitor'}


def own_roles(docs):
    dep = one(docs, 'Deployment', 'tandem-csi-controller')
    sa = dep['spec']['template']['spec']['serviceAccountName']
    ns = dep['metadata']['namespace']
    names = sorted(image_name(c['image']) for c in containers(dep) if NEEDS.get(image_name(c['image'])))
    assert sorted(OWN_ROLE) == names, 'controller sidecars with needs %s, own roles known for %s' % (
        names, sorted(OWN_ROLE))
    for img, role in OWN_ROLE.items():
        cr = one(docs, 'ClusterRole', role)
        bound = [b for b in find(docs, 'ClusterRoleBinding') if b['roleRef']['name'] == role and
                 any(s['kind'] == 'ServiceAccount' and s['name'] == sa and s.get('namespace') == ns
                     for s in b.get('subjects', []))]
        assert bound, 'ClusterRole %s is not bound to %s/%s' % (role, ns, sa)
        rules = [(None, r) for r in cr.get('rules', [])]
        missing = ['%s %s/%s' % (v, g or 'core', r) for g, r, vs in NEEDS[img] for v in vs.split()
                   if not allowed(rules, g, r, v, None)]
        assert not missing, 'ClusterRole %s alone does not let %s: %s' % (role, img, ', '.join(missing))
    return ', '.join('%s=%s' % kv for kv in sorted(OWN_ROLE.items()))


def driver_refs(docs):
    drv = one(docs, 'CSIDriver')['metadata']['name']
    for w in ('tandem-csi-controller', 'tandem-csi-node'):
        dn = container(docs, w, 'tandem-csi').get('--drivername')
        assert dn == drv, '%s: --drivername %s, CSIDriver %s' % (w, dn, drv)
    vsc = one(docs, 'VolumeSnapshotClass')
    assert vsc['apiVersion'] == 'snapshot.storage.k8s.io/v1', 'VolumeSnapshotClass %s' % vsc['apiVersion']
    assert vsc['driver'] == drv, 'VolumeSnapshotClass driver %s, CSIDriver %s' % (vsc['driver'], drv)
    assert vsc['deletionPolicy'] == 'Delete', 'deletionPolicy %s' % vsc['deletionPolicy']
    snap = [c for c in containers(one(docs, 'Deployment', 'tandem-csi-controller'))
            if image_name(c['image']) == 'csi-snapshotter']
    assert len(snap) == 1, '%d csi-snapshotter sidecars in the controller' % len(snap)
    assert flagmap(args_of(snap[0], docs)).get('--extra-create-metadata') is True, \
        'csi-snapshotter without --extra-create-metadata'
    hm = [c for c in containers(one(docs, 'Deployment', 'tandem-csi-controller'))
          if image_name(c['image']) == 'csi-external-health-monitor-controller']
    assert len(hm) == 1, '%d health monitor sidecars in the controller' % len(hm)
    assert flagmap(args_of(hm[0], docs)).get('--enable-node-watcher', 'false') == 'false', \
        'health monitor with the node watcher on'
    return 'driver %s: CSIDriver, --drivername, VolumeSnapshotClass %s (Delete)' % (
        drv, vsc['metadata']['name'])


def storageclasses(docs):
    drv = one(docs, 'CSIDriver')['metadata']['name']
    scs = find(docs, 'StorageClass')
    for sc in scs:
        assert sc.get('volumeBindingMode') == 'WaitForFirstConsumer', '%s: volumeBindingMode %s' % (
            sc['metadata']['name'], sc.get('volumeBindingMode'))
        assert sc['provisioner'] == drv, '%s: provisioner %s' % (sc['metadata']['name'], sc['provisioner'])
    return ', '.join(sc['metadata']['name'] for sc in scs)


def references(region, docs):
    cms = {d['metadata']['name'] for d in find(docs, 'ConfigMap')}
    told = open('deploy/regions/%s/kustomization.yaml' % region).read()
    for d in pods(docs):
        for c in containers(d):
            env_of(c, docs)     # asserts every configMapKeyRef resolves
        for v in d['spec']['template']['spec'].get('volumes', []):
            if 'configMap' in v:
                assert v['configMap']['name'] in cms or v['configMap'].get('optional'), (
                    '%s: ConfigMap %s is not in the install' % (d['metadata']['name'], v['configMap']['name']))
            if 'secret' in v and not v['secret'].get('optional'):
                s = v['secret']['secretName']
                assert find(docs, 'Secret', s) or 'create secret generic %s' % s in told, (
                    '%s: Secret %s: neither in the install nor in the overlay\'s instructions' % (
                        d['metadata']['name'], s))
    return 'ConfigMaps, Secrets'


docs = {}
for r in overlays:
    docs[r] = load(os.path.join(rdir, r + '.yaml'))
    check('%s: every kind expected, each object once' % r, kinds_once, docs[r])
    check('%s: scopes' % r, scopes, docs[r])
    check('%s: region-specific values' % r, region_values, r, docs[r])
    check('%s: every image pinned' % r, images, docs[r])
    check('%s: RBAC for every sidecar' % r, rbac, docs[r])
    check('%s: each sidecar\'s own ClusterRole covers it' % r, own_roles, docs[r])
    check('%s: driver name everywhere, snapshot class, sidecar flags' % r, driver_refs, docs[r])
    check('%s: StorageClasses WaitForFirstConsumer' % r, storageclasses, docs[r])
    check('%s: references resolve' % r, references, r, docs[r])


# ---- across overlays ------------------------------------------------------

def normalized(ds):
    """The overlay with its region-specific values blanked."""
    out = []
    for d in copy.deepcopy(ds):
        d['metadata'].get('labels', {}).pop(LABEL, None)
        if d['kind'] in WORKLOADS:
            d['spec']['selector']['matchLabels'].pop(LABEL, None)
            d['spec']['template']['metadata'].get('labels', {}).pop(LABEL, None)
        if d['kind'] == 'Service':
            d['spec'].get('selector', {}).pop(LABEL, None)
        if d['kind'] == 'ConfigMap' and d['metadata']['name'] == 'tandem-region':
            d['data'] = {k: '<%s>' % k for k in d['data']}
        out.append(d)
    return sorted(out, key=lambda d: (d['kind'], d['metadata']['name']))


def same_but_region(a, b):
    na, nb = normalized(docs[a]), normalized(docs[b])
    diff = [json.dumps(x['metadata']['name']) for x, y in zip(na, nb) if x != y]
    assert len(na) == len(nb) and not diff, 'also differ: %s' % (diff or 'object count')
    return 'only the region label and ConfigMap tandem-region differ'


def same_map(a, b):
    ca = one(docs[a], 'ConfigMap', 'tandem-config')
    cb = one(docs[b], 'ConfigMap', 'tandem-config')
    assert ca['data'] == cb['data'], 'the region maps differ'


for a, b in zip(overlays, overlays[1:]):
    check('overlays %s and %s differ only in the region' % (a, b), same_but_region, a, b)
    check('overlays %s and %s share the region map' % (a, b), same_map, a, b)
def every_region():
    regions = set(regionmap(docs[overlays[0]]))
    assert regions == set(overlays), 'regions %s, overlays %s' % (sorted(regions), overlays)


check('an overlay for every region of the region map', every_region)
sys.exit(1 if failed else 0)
PY
rc=$?
bad=0
while IFS= read -r line; do
    case $line in
    "ok - "*) n=$((n + 1)); echo "ok $n - ${line#ok - }" ;;
    "not ok - "*) n=$((n + 1)); echo "not ok $n - ${line#not ok - }"; bad=1 ;;
    *) echo "# $line" ;;
    esac
done <"$tmp/checks"
if [ $rc -ne 0 ] || [ $bad -ne 0 ]; then
    sed 's/^/# /' "$tmp/checks.err" | tail -20
    fail "overlay checks (exit $rc)"
fi
done_testing
