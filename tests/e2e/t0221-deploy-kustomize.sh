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
#    the operator to create;
#  - the csi-addons sidecar (kubernetes-csi-addons k8s-sidecar): once, in
#    the controller Deployment only (tandem-csi serves CSI-Addons in
#    controller mode only), on the socket tandem-csi's
#    --csi-addons-endpoint serves, through the same volume; its pod
#    identity from the downward API; its gRPC port declared; its RBAC
#    (csiaddonsnodes, pods, replicasets, leases, tokenreviews: cluster-wide
#    in its own ClusterRole, namespaced in its own Role); its release is
#    the one the overlays name for the cluster's csi-addons controller;
#  - tandem-csi's --replicator-admin is the admin port of this region's
#    replicator (a Service of the install selecting the replicator's pods,
#    whose target port is the replicator's --admin-tcp), and its
#    --admin-tls-ca/-cert/-key are keys of a Secret volume mounted at that
#    directory, a Secret the overlay tells how to create (not the
#    replicator's own);
#  - deploy/examples (not rendered by the overlays): VolumeReplicationClass,
#    VolumeReplication, VolumeGroupReplicationClass and
#    VolumeGroupReplication parse, have the upstream CRDs' required fields
#    and refer to each other; the classes' provisioner is the CSIDriver's
#    name, mirroringMode journal, schedulingInterval a duration explained as
#    not a shipping schedule, every parameter one tandem-csi accepts
#    (csi/csi_addons.h); the group objects say they need the volumegroup
#    service; RBAC examples refer to ClusterRoles of the install.
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
         'ClusterRole': 7, 'ClusterRoleBinding': 6, 'Role': 2, 'RoleBinding': 2,
         'Deployment': 2, 'DaemonSet': 1, 'Service': 2, 'StorageClass': 2,
         'VolumeSnapshotClass': 1}
WORKLOADS = ('Deployment', 'DaemonSet', 'StatefulSet', 'Job', 'CronJob')
LEASE_VERBS = 'get watch list delete update create'
# What each container needs from the API server: (apiGroup, resource,
# verbs[, 'ns']), from the sidecars' own RBAC files for the pinned
# releases; 'ns': in the pod's namespace (a Role suffices).
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
    # kubernetes-csi-addons k8s-sidecar (no RBAC file of its own upstream:
    # from its source, sidecar/main.go, sidecar/internal/csiaddonsnode,
    # internal/kubernetes/token, and ceph-csi-operator's ctrlplugin Role).
    # It elects a leader without a --leader-election flag (always, for a
    # driver with CONTROLLER_SERVICE): ALWAYS_ELECTS adds the leases.
    'k8s-sidecar': [
        ('csiaddons.openshift.io', 'csiaddonsnodes', 'get list watch create update delete', 'ns'),
        ('', 'pods', 'get', 'ns'),
        ('apps', 'replicasets', 'get', 'ns'),
        ('authentication.k8s.io', 'tokenreviews', 'create')],
}
ALWAYS_ELECTS = {'k8s-sidecar'}
# Images not from sig-storage: their registry path and where the base
# names the release of the cluster-wide part that goes with them.
OTHER_SIDECARS = {'k8s-sidecar': 'quay.io/csiaddons/'}


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
                home = OTHER_SIDECARS.get(name, 'registry.k8s.io/sig-storage/')
                assert ref.startswith(home), '%s: %s not from %s' % (where, img, home)
                assert re.fullmatch(r'v\d+\.\d+\.\d+', tag), '%s: %s: want a vX.Y.Z tag' % (where, img)
                base[name] = tag
    text = open('deploy/base/controller.yaml').read()
    snap = base.get('csi-snapshotter')
    assert snap, 'no csi-snapshotter'
    assert 'snapshot-controller %s' % snap in text, (
        'deploy/base/controller.yaml does not name snapshot-controller %s, the release of '
        'csi-snapshotter:%s' % (snap, snap))
    # The csi-addons controller (cluster-wide, installed from upstream) must
    # be the sidecar's release: the overlays say which.
    addons = base.get('k8s-sidecar')
    assert addons, 'no csi-addons sidecar (k8s-sidecar)'
    for r in overlays:
        told = open('deploy/regions/%s/kustomization.yaml' % r).read()
        assert re.search(r'kubernetes-csi-addons\s+%s\b' % re.escape(addons), told), (
            'deploy/regions/%s does not name the csi-addons controller release kubernetes-csi-addons %s, '
            'the release of k8s-sidecar:%s' % (r, addons, addons))
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
                need = [(n[0], n[1], v, ns if n[3:] == ('ns',) else None)
                        for n in NEEDS[name] for v in n[2].split()]
            elif c['name'] == 'tandem-csi':
                # --topology-from-k8s-node reads the plugin's own Node.
                need = [('', 'nodes', 'get', None)] if fl.get('--topology-from-k8s-node') else []
            elif d['metadata']['name'] == 'tandem-replicator':
                need = []       # the replicator does not talk to the API server
            else:
                raise AssertionError('%s/%s: no RBAC needs known for image %s: write them in t0221' % (
                    d['metadata']['name'], c['name'], c['image']))
            if fl.get('--leader-election') is True or name in ALWAYS_ELECTS:
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
# Namespaced needs ('ns') are met by the sidecar's own Role of the same
# name in the pod's namespace instead.
OWN_ROLE = {'csi-provisioner': 'tandem-csi-provisioner', 'csi-resizer': 'tandem-csi-resizer',
            'csi-snapshotter': 'tandem-csi-snapshotter',
            'csi-external-health-monitor-controller': 'tandem-csi-health-monitor',
            'k8s-sidecar': 'tandem-csi-addons'}


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
        nsneeds = [n for n in NEEDS[img] if n[3:] == ('ns',)]
        if nsneeds:
            (rl,) = find(docs, 'Role', role) or [None]
            assert rl and rl['metadata']['namespace'] == ns, 'no Role %s in %s for %s' % (role, ns, img)
            assert [b for b in find(docs, 'RoleBinding') if b['roleRef'] == {
                'kind': 'Role', 'name': role, 'apiGroup': 'rbac.authorization.k8s.io'} and
                b['metadata']['namespace'] == ns and
                any(s['kind'] == 'ServiceAccount' and s['name'] == sa for s in b.get('subjects', []))], (
                'Role %s is not bound to %s/%s' % (role, ns, sa))
            rules += [(ns, r) for r in rl.get('rules', [])]
        missing = ['%s %s/%s' % (v, n[0] or 'core', n[1]) for n in NEEDS[img] for v in n[2].split()
                   if not allowed(rules, n[0], n[1], v, ns if n[3:] == ('ns',) else None)]
        assert not missing, 'the own roles %s alone do not let %s: %s' % (role, img, ', '.join(missing))
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


ADDONS_IMAGE = 'k8s-sidecar'


def mounted_dir(c, path):
    """The volume name c mounts at the directory of path (longest match)."""
    best = None
    for m in c.get('volumeMounts', []):
        mp = m['mountPath'].rstrip('/')
        if path == mp or path.startswith(mp + '/'):
            if best is None or len(mp) > len(best[0]):
                best = (mp, m['name'])
    return best


def addons_sidecar(region, docs):
    dep = one(docs, 'Deployment', 'tandem-csi-controller')
    ns = dep['metadata']['namespace']
    spec = dep['spec']['template']['spec']
    vols = {v['name']: v for v in spec['volumes']}
    cs = containers(dep)
    side = [c for c in cs if image_name(c['image']) == ADDONS_IMAGE]
    assert len(side) == 1, '%d csi-addons sidecars in the controller' % len(side)
    side = side[0]
    node = one(docs, 'DaemonSet', 'tandem-csi-node')
    assert not [c for c in containers(node) if image_name(c['image']) == ADDONS_IMAGE], (
        'a csi-addons sidecar in the node DaemonSet: tandem-csi serves CSI-Addons in controller mode only')
    nfl = container(docs, 'tandem-csi-node', 'tandem-csi')
    assert '--csi-addons-endpoint' not in nfl, 'node plugin with --csi-addons-endpoint (refused in node mode)'
    (plug,) = [c for c in cs if c['name'] == 'tandem-csi']
    pfl = flagmap(args_of(plug, docs))
    ep = pfl.get('--csi-addons-endpoint')
    assert isinstance(ep, str) and ep.startswith('unix:///'), 'tandem-csi --csi-addons-endpoint %s' % ep
    assert ep != pfl.get('--endpoint'), 'the csi-addons endpoint is the CSI endpoint'
    sfl = flagmap(args_of(side, docs))
    assert sfl.get('--csi-addons-address') == ep, 'sidecar --csi-addons-address %s, tandem-csi serves %s' % (
        sfl.get('--csi-addons-address'), ep)
    sock = ep[len('unix://'):]
    mp, mv = mounted_dir(plug, sock) or (None, None)
    sp, sv = mounted_dir(side, sock) or (None, None)
    assert mv and mv == sv and mp == sp, 'socket %s: tandem-csi mounts %s at %s, the sidecar %s at %s' % (
        sock, mv, mp, sv, sp)
    assert 'emptyDir' in vols[mv], 'socket volume %s is not an emptyDir' % mv
    env = env_of(side, docs)
    want = {'--pod': '<fieldRef:metadata.name>', '--namespace': '<fieldRef:metadata.namespace>',
            '--pod-uid': '<fieldRef:metadata.uid>', '--node-id': '<fieldRef:spec.nodeName>'}
    for k, v in want.items():
        got = sfl.get(k)
        got = env.get(got[2:-1], got) if isinstance(got, str) and got.startswith('$(') else got
        assert got == v, 'sidecar %s = %s, want %s (downward API)' % (k, got, v)
    port = sfl.get('--controller-port')
    assert isinstance(port, str) and port.isdigit(), 'sidecar --controller-port %s' % port
    assert int(port) in [p['containerPort'] for p in side.get('ports', [])], (
        'sidecar port %s not declared' % port)
    assert '--leader-election' not in sfl, 'k8s-sidecar has no --leader-election flag'
    return '%s shared through %s; port %s; pod identity from the downward API; not in the node DaemonSet' % (
        ep, mv, port)


def admin_path(region, docs):
    """tandem-csi --replicator-admin is this region's replicator admin port."""
    dep = one(docs, 'Deployment', 'tandem-csi-controller')
    ns = dep['metadata']['namespace']
    spec = dep['spec']['template']['spec']
    vols = {v['name']: v for v in spec['volumes']}
    (plug,) = [c for c in containers(dep) if c['name'] == 'tandem-csi']
    fl = flagmap(args_of(plug, docs))
    addr = fl.get('--replicator-admin')
    assert isinstance(addr, str), 'tandem-csi without --replicator-admin'
    assert not addr.startswith('unix:'), (
        '--replicator-admin %s: a unix socket of another pod cannot be reached' % addr)
    host, _, port = addr.rpartition(':')
    parts = host.split('.')
    assert len(parts) >= 2 and parts[2:3] in (['svc'], []), '--replicator-admin host %s: want SERVICE.NAMESPACE.svc' % host
    svc = one(docs, 'Service', parts[0])
    assert svc['metadata']['namespace'] == parts[1], 'Service %s is in %s, not %s' % (
        parts[0], svc['metadata']['namespace'], parts[1])
    (sp,) = [p for p in svc['spec']['ports'] if str(p['port']) == port] or [None]
    assert sp, 'Service %s has no port %s' % (parts[0], port)
    rep = one(docs, 'Deployment', 'tandem-replicator')
    labels = rep['spec']['template']['metadata'].get('labels', {})
    sel = svc['spec'].get('selector', {})
    assert sel and all(labels.get(k) == v for k, v in sel.items()), (
        'Service %s selects %s, not the replicator pods %s' % (parts[0], sel, labels))
    (rc,) = [c for c in containers(rep) if c['name'] == 'replicator']
    ports = {p.get('name'): p['containerPort'] for p in rc.get('ports', [])}
    tp = sp.get('targetPort', sp['port'])
    tp = ports.get(tp, tp) if isinstance(tp, str) else tp
    rfl = flagmap(args_of(rc, docs))
    atcp = rfl.get('--admin-tcp')
    assert isinstance(atcp, str) and atcp.rpartition(':')[2] == str(tp), (
        'Service %s:%s targets %s, the replicator --admin-tcp is %s' % (parts[0], port, tp, atcp))
    assert rfl.get('--admin-tls-ca'), 'the replicator does not verify admin identities (--admin-tls-ca)'
    # The admin identity: every --admin-tls-* a key of one Secret volume.
    told = open('deploy/regions/%s/kustomization.yaml' % region).read()
    secrets = set()
    for k in ('--admin-tls-ca', '--admin-tls-cert', '--admin-tls-key'):
        f = fl.get(k)
        assert isinstance(f, str) and f.startswith('/'), 'tandem-csi %s = %s' % (k, f)
        mp, mv = mounted_dir(plug, f) or (None, None)
        assert mv, 'tandem-csi %s %s: its directory is not mounted' % (k, f)
        v = vols[mv]
        assert 'secret' in v, '%s %s: volume %s is not a Secret' % (k, f, mv)
        assert not v['secret'].get('optional'), 'the admin identity Secret is optional'
        items = {it['path']: it['key'] for it in v['secret'].get('items', [])}
        rel = f[len(mp) + 1:]
        assert rel in items, '%s %s: Secret %s does not project %s (items %s)' % (
            k, f, v['secret']['secretName'], rel, sorted(items))
        secrets.add(v['secret']['secretName'])
    assert len(secrets) == 1, 'the admin identity comes from several Secrets %s' % sorted(secrets)
    (sec,) = secrets
    rvols = [v for v in rep['spec']['template']['spec']['volumes'] if 'secret' in v]
    assert sec not in [v['secret']['secretName'] for v in rvols], (
        'tandem-csi uses the replicator\'s own Secret %s: a region identity is refused on the admin port' % sec)
    assert 'create secret generic %s' % sec in told, (
        'deploy/regions/%s does not say how to create Secret %s' % (region, sec))
    return '%s -> Service %s port %s -> replicator --admin-tcp %s; admin identity from Secret %s' % (
        addr, parts[0], port, atcp, sec)


def go_duration(v):
    return re.fullmatch(r'(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+', str(v)) is not None


def tandem_params():
    """The VolumeReplicationClass parameters tandem-csi knows (csi_addons.h)."""
    h = open('csi/csi_addons.h').read()
    keys = set(re.findall(r'#define CSI_ADDONS_\w+ "(\w+)"', h))
    assert {'mirroringMode', 'schedulingInterval'} <= keys, 'csi_addons.h parameters: %s' % sorted(keys)
    return keys


def examples(docs):
    drv = one(docs, 'CSIDriver')['metadata']['name']
    regions = set(regionmap(docs))
    known = tandem_params()
    ex, texts = [], {}
    for f in sorted(os.listdir('deploy/examples')):
        if f.endswith('.yaml'):
            path = os.path.join('deploy/examples', f)
            texts[f] = open(path).read()
            ex += [(f, d) for d in load(path)]
    kinds = {}
    for f, d in ex:
        kinds.setdefault(d['kind'], []).append((f, d))
    want = ['VolumeReplicationClass', 'VolumeReplication', 'VolumeGroupReplicationClass',
            'VolumeGroupReplication']
    assert all(kinds.get(k) for k in want), 'examples lack %s' % [k for k in want if not kinds.get(k)]
    rendered = {d['kind'] for d in docs}
    assert not rendered & set(want), 'the overlays render %s: examples only' % sorted(rendered & set(want))
    states = {'primary', 'secondary', 'resync'}
    vrc = {}
    for kind in ('VolumeReplicationClass', 'VolumeGroupReplicationClass'):
        for f, d in kinds[kind]:
            what = '%s: %s %s' % (f, kind, d['metadata']['name'])
            assert d['apiVersion'] == 'replication.storage.openshift.io/v1alpha1', '%s: %s' % (what, d['apiVersion'])
            assert 'namespace' not in d['metadata'], '%s is cluster-scoped' % what
            sp = d['spec']
            assert sp.get('provisioner') == drv, '%s: provisioner %s, CSIDriver %s' % (what, sp.get('provisioner'), drv)
            par = {k: str(v) for k, v in sp.get('parameters', {}).items()}
            assert par.get('mirroringMode') == 'journal', '%s: mirroringMode %s' % (what, par.get('mirroringMode'))
            assert go_duration(par.get('schedulingInterval')), '%s: schedulingInterval %s' % (
                what, par.get('schedulingInterval'))
            bad = [k for k in par if k not in known and not k.startswith('replication.storage.openshift.io/')]
            assert not bad, '%s: parameters tandem-csi refuses: %s (known %s)' % (what, bad, sorted(known))
            if 'peerRegion' in par:
                assert par['peerRegion'] in regions, '%s: peerRegion %s' % (what, par['peerRegion'])
            vrc.setdefault(kind, set()).add(d['metadata']['name'])
    txt = texts[kinds['VolumeReplicationClass'][0][0]]
    m = re.search(r'((?:\s*#[^\n]*\n)+)\s*schedulingInterval:', txt)
    assert m and 'continuously' in m.group(1), (
        'the VolumeReplicationClass example does not say (in a comment above schedulingInterval) '
        'that journal mode ships continuously')
    for f, d in kinds['VolumeReplication']:
        what = '%s: VolumeReplication %s' % (f, d['metadata']['name'])
        assert d['metadata'].get('namespace'), '%s: no namespace (it must be the PVC\'s)' % what
        sp = d['spec']
        assert sp.get('volumeReplicationClass') in vrc['VolumeReplicationClass'], (
            '%s: volumeReplicationClass %s is not an example class' % (what, sp.get('volumeReplicationClass')))
        assert sp.get('replicationState') in states, '%s: replicationState %s' % (what, sp.get('replicationState'))
        ds = sp.get('dataSource', {})
        assert ds.get('kind') == 'PersistentVolumeClaim' and ds.get('name') and ds.get('apiGroup', '') == '', (
            '%s: dataSource %s' % (what, ds))
        assert isinstance(sp.get('autoResync', False), bool), '%s: autoResync' % what
    for f, d in kinds['VolumeGroupReplication']:
        what = '%s: VolumeGroupReplication %s' % (f, d['metadata']['name'])
        assert d['metadata'].get('namespace'), '%s: no namespace' % what
        sp = d['spec']
        assert sp.get('volumeGroupReplicationClassName') in vrc['VolumeGroupReplicationClass'], (
            '%s: volumeGroupReplicationClassName %s' % (what, sp.get('volumeGroupReplicationClassName')))
        assert sp.get('volumeReplicationClassName') in vrc['VolumeReplicationClass'], (
            '%s: volumeReplicationClassName %s' % (what, sp.get('volumeReplicationClassName')))
        assert sp.get('replicationState') in states, '%s: replicationState %s' % (what, sp.get('replicationState'))
        sel = sp.get('source', {}).get('selector', {})
        assert sel.get('matchLabels') or sel.get('matchExpressions'), '%s: source.selector' % what
    for kind in ('VolumeGroupReplicationClass', 'VolumeGroupReplication'):
        for f, d in kinds[kind]:
            assert 'volumegroup service' in texts[f], (
                '%s: does not say that group replication needs the volumegroup service' % f)
    crs = {d['metadata']['name'] for d in find(docs, 'ClusterRole')}
    for f, d in kinds.get('RoleBinding', []) + kinds.get('ClusterRoleBinding', []):
        ref = d['roleRef']
        assert ref['kind'] != 'ClusterRole' or ref['name'] in crs, '%s: ClusterRole %s is not in the install' % (
            f, ref['name'])
    return '%d objects in %d files: %s' % (len(ex), len(texts), ', '.join(
        '%s %d' % (k, len(v)) for k, v in sorted(kinds.items())))


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
    check('%s: csi-addons sidecar on tandem-csi\'s csi-addons socket' % r, addons_sidecar, r, docs[r])
    check('%s: tandem-csi reaches the replicator admin port with the admin identity' % r,
          admin_path, r, docs[r])


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
check('deploy/examples: replication classes and objects', examples, docs[overlays[0]])
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
