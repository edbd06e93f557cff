// csi-conformance.js: part of tandem-csi's CSI conformance, through an
// independent gRPC implementation (@grpc/grpc-js + @grpc/proto-loader
// loading proto/csi.proto): Identity, CreateVolume/DeleteVolume
// idempotence, error codes of the spec's tables, ListVolumes paging,
// snapshots (create/list/delete, paging), restores and clones,
// ControllerGetVolume.
//
//   node csi-conformance.js UNIX_TARGET PROTO_DIR
//
// Prints one "ok - ..." / "not ok - ..." line per check (the e2e wrapper
// numbers them) and exits 1 if any failed.
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const [target, protoDir] = process.argv.slice(2);
if (!target || !protoDir) {
  console.error('usage: node csi-conformance.js UNIX_TARGET PROTO_DIR');
  process.exit(2);
}
const def = protoLoader.loadSync('csi.proto', {
  keepCase: true, longs: String, enums: String, defaults: true,
  oneofs: true, includeDirs: [path.resolve(protoDir), '/usr/include'],
});
const csi = grpc.loadPackageDefinition(def).csi.v1;
const creds = grpc.credentials.createInsecure();
const identity = new csi.Identity(target, creds);
const controller = new csi.Controller(target, creds);
const node = new csi.Node(target, creds);
const S = grpc.status;

let failed = 0;
const ok = (cond, what) => {
  console.log(`${cond ? 'ok' : 'not ok'} - ${what}`);
  if (!cond) failed++;
};
const call = (client, method, req) => new Promise((resolve) =>
  client[method](req, { deadline: new Date(Date.now() + 10000) },
    (err, res) => resolve({ err, res })));
const code = (r) => (r.err ? r.err.code : S.OK);
const codeName = (c) => Object.keys(S).find((k) => S[k] === c) || String(c);
const expectCode = (r, want, what) =>
  ok(code(r) === want, `${what}: ${codeName(code(r))}` +
     (r.err ? ` (${r.err.details})` : ''));

const mountCap = (mode = 'SINGLE_NODE_WRITER') => ({
  mount: { fs_type: '', mount_flags: [] }, access_mode: { mode },
});
const regionOf = (v) => {
  const t = (v.accessible_topology || [])[0];
  return t ? t.segments['topology.tandem.csi.dev/region'] : undefined;
};

(async () => {
  // Identity.
  let r = await call(identity, 'GetPluginInfo', {});
  ok(!r.err && r.res.name === 'tandem.csi.dev' && r.res.vendor_version,
     `GetPluginInfo name=${r.res && r.res.name}`);
  r = await call(identity, 'GetPluginCapabilities', {});
  const caps = r.res ? r.res.capabilities : [];
  ok(caps.some((c) => c.service && c.service.type === 'CONTROLLER_SERVICE') &&
     caps.some((c) => c.service &&
               c.service.type === 'VOLUME_ACCESSIBILITY_CONSTRAINTS') &&
     caps.some((c) => c.volume_expansion &&
               c.volume_expansion.type === 'ONLINE'),
     'GetPluginCapabilities: controller, topology, online expansion');
  r = await call(identity, 'Probe', {});
  ok(!r.err && (!r.res.ready || r.res.ready.value === true), 'Probe ready');

  // CreateVolume: created where the chosen node is (requisite[0] is a).
  const topo = (reg) => ({ segments: { 'topology.tandem.csi.dev/region': reg } });
  const req = {
    name: 'pvc-node-1',
    capacity_range: { required_bytes: String(5 << 20) },
    volume_capabilities: [mountCap()],
    parameters: {
      'csi.storage.k8s.io/pvc/name': 'data',
      'csi.storage.k8s.io/pvc/namespace': 'default',
    },
    accessibility_requirements: {
      requisite: [topo('a'), topo('b')], preferred: [topo('b'), topo('a')],
    },
  };
  r = await call(controller, 'CreateVolume', req);
  const vol = r.res && r.res.volume;
  ok(!r.err && vol && vol.volume_id === 'pvc-node-1' &&
     vol.capacity_bytes === String(8 << 20) && regionOf(vol) === 'b',
     `CreateVolume: id, size rounded to 8 MiB, region b ` +
     `(${r.err ? r.err.details : JSON.stringify(vol)})`);
  r = await call(controller, 'CreateVolume', req);
  ok(!r.err && r.res.volume.volume_id === 'pvc-node-1' &&
     regionOf(r.res.volume) === 'b', 'CreateVolume again: same volume');
  r = await call(controller, 'CreateVolume',
    { ...req, capacity_range: { required_bytes: String(64 << 20) } });
  expectCode(r, S.ALREADY_EXISTS, 'CreateVolume same name, other size');
  r = await call(controller, 'CreateVolume', { ...req, name: '' });
  expectCode(r, S.INVALID_ARGUMENT, 'CreateVolume without name');
  r = await call(controller, 'CreateVolume',
    { ...req, name: 'pvc-node-2', parameters: { bogus: '1' } });
  expectCode(r, S.INVALID_ARGUMENT, 'CreateVolume unknown parameter');
  ok(r.err && /bogus/.test(r.err.details), 'message names the parameter');
  r = await call(controller, 'CreateVolume', {
    ...req, name: 'pvc-node-3',
    volume_capabilities: [mountCap('MULTI_NODE_MULTI_WRITER')],
  });
  expectCode(r, S.INVALID_ARGUMENT, 'CreateVolume multi-node writer');
  r = await call(controller, 'CreateVolume', {
    ...req, name: 'pvc-node-4',
    accessibility_requirements: { requisite: [topo('zz')], preferred: [topo('zz')] },
  });
  expectCode(r, S.RESOURCE_EXHAUSTED, 'CreateVolume in unknown region');
  r = await call(controller, 'CreateVolume', {
    ...req, name: 'pvc-node-5',
    capacity_range: { required_bytes: String(5 << 20), limit_bytes: String(6 << 20) },
  });
  expectCode(r, S.OUT_OF_RANGE, 'CreateVolume rounded size above limit');

  // ValidateVolumeCapabilities.
  r = await call(controller, 'ValidateVolumeCapabilities',
    { volume_id: 'pvc-node-1', volume_capabilities: [mountCap()] });
  ok(!r.err && r.res.confirmed, 'ValidateVolumeCapabilities confirmed');
  r = await call(controller, 'ValidateVolumeCapabilities',
    { volume_id: 'pvc-none', volume_capabilities: [mountCap()] });
  expectCode(r, S.NOT_FOUND, 'ValidateVolumeCapabilities unknown volume');

  // ListVolumes paging.
  r = await call(controller, 'CreateVolume', { ...req, name: 'pvc-node-6' });
  expectCode(r, S.OK, 'CreateVolume second volume');
  r = await call(controller, 'ListVolumes', { max_entries: 1 });
  const first = r.res;
  ok(!r.err && first.entries.length === 1 && first.next_token,
     'ListVolumes page 1 with next_token');
  r = await call(controller, 'ListVolumes',
    { max_entries: 1, starting_token: first ? first.next_token : '' });
  ok(!r.err && r.res.entries.length === 1 &&
     r.res.entries[0].volume.volume_id !== first.entries[0].volume.volume_id,
     'ListVolumes page 2 is another volume');
  r = await call(controller, 'ListVolumes', { starting_token: 'nonsense' });
  expectCode(r, S.ABORTED, 'ListVolumes bad token');

  // Node RPC errors without a data path.
  r = await call(node, 'NodeGetInfo', {});
  ok(!r.err && r.res.node_id === 'n1' &&
     r.res.accessible_topology.segments['topology.tandem.csi.dev/region'] === 'a',
     'NodeGetInfo node id and region');
  r = await call(node, 'NodeStageVolume', {
    volume_id: 'pvc-none', staging_target_path: '/tmp/x',
    volume_capability: mountCap(),
  });
  expectCode(r, S.NOT_FOUND, 'NodeStageVolume unknown volume');
  r = await call(node, 'NodePublishVolume', {
    volume_id: 'pvc-node-1', target_path: '/tmp/t',
    volume_capability: mountCap(),
  });
  expectCode(r, S.FAILED_PRECONDITION, 'NodePublishVolume without staging path');

  // DeleteVolume idempotence.
  for (const id of ['pvc-node-1', 'pvc-node-1', 'pvc-never']) {
    r = await call(controller, 'DeleteVolume', { volume_id: id });
    expectCode(r, S.OK, `DeleteVolume ${id}`);
  }
  r = await call(controller, 'DeleteVolume', { volume_id: '' });
  expectCode(r, S.INVALID_ARGUMENT, 'DeleteVolume without id');
  r = await call(controller, 'ValidateVolumeCapabilities',
    { volume_id: 'pvc-node-1', volume_capabilities: [mountCap()] });
  expectCode(r, S.NOT_FOUND, 'deleted volume is gone');

  // Capabilities: snapshots, clones, volume health announced.
  r = await call(controller, 'ControllerGetCapabilities', {});
  const ccaps = r.res ? r.res.capabilities.map((c) => c.rpc && c.rpc.type) : [];
  for (const c of ['CREATE_DELETE_SNAPSHOT', 'LIST_SNAPSHOTS', 'CLONE_VOLUME',
    'GET_VOLUME', 'VOLUME_CONDITION']) {
    ok(ccaps.includes(c), `ControllerGetCapabilities announces ${c}`);
  }
  r = await call(node, 'NodeGetCapabilities', {});
  const ncaps = r.res ? r.res.capabilities.map((c) => c.rpc && c.rpc.type) : [];
  ok(ncaps.includes('VOLUME_CONDITION') && ncaps.includes('GET_VOLUME_STATS'),
     'NodeGetCapabilities announces VOLUME_CONDITION, GET_VOLUME_STATS');

  // CreateSnapshot: argument errors, unknown source, idempotence by name.
  const snapReq = {
    source_volume_id: 'pvc-node-6', name: 'snapshot-n1',
    parameters: {
      'csi.storage.k8s.io/volumesnapshot/namespace': 'default',
      'csi.storage.k8s.io/volumesnapshot/name': 'snap-data',
      'csi.storage.k8s.io/volumesnapshotcontent/name': 'snapcontent-n1',
    },
  };
  r = await call(controller, 'CreateSnapshot', { ...snapReq, name: '' });
  expectCode(r, S.INVALID_ARGUMENT, 'CreateSnapshot without name');
  r = await call(controller, 'CreateSnapshot', { ...snapReq, source_volume_id: '' });
  expectCode(r, S.INVALID_ARGUMENT, 'CreateSnapshot without source');
  r = await call(controller, 'CreateSnapshot',
    { ...snapReq, source_volume_id: 'pvc-none' });
  expectCode(r, S.NOT_FOUND, 'CreateSnapshot of an unknown volume');
  r = await call(controller, 'CreateSnapshot', snapReq);
  const snap = r.res && r.res.snapshot;
  ok(!r.err && snap && snap.snapshot_id === 'pvc-node-6@snapshot-n1' &&
     snap.source_volume_id === 'pvc-node-6' && snap.ready_to_use === true &&
     snap.size_bytes === String(8 << 20) && snap.creation_time &&
     Number(snap.creation_time.seconds) > 1600000000,
     `CreateSnapshot: id, source, ready, size, time ` +
     `(${r.err ? r.err.details : JSON.stringify(snap)})`);
  r = await call(controller, 'CreateSnapshot', snapReq);
  ok(!r.err && snap && r.res.snapshot.snapshot_id === snap.snapshot_id &&
     r.res.snapshot.creation_time.seconds === snap.creation_time.seconds &&
     r.res.snapshot.creation_time.nanos === snap.creation_time.nanos,
     'CreateSnapshot again: the same snapshot');
  r = await call(controller, 'CreateVolume', { ...req, name: 'pvc-node-7' });
  expectCode(r, S.OK, 'CreateVolume third volume');
  r = await call(controller, 'CreateSnapshot',
    { ...snapReq, source_volume_id: 'pvc-node-7' });
  expectCode(r, S.ALREADY_EXISTS, 'CreateSnapshot same name, other volume');
  r = await call(controller, 'CreateSnapshot',
    { source_volume_id: 'pvc-node-7', name: 'snapshot-n2' });
  expectCode(r, S.OK, 'CreateSnapshot of the third volume');

  // ListSnapshots.
  r = await call(controller, 'ListSnapshots', {});
  ok(!r.err && r.res.entries.length === 2, 'ListSnapshots all: 2');
  r = await call(controller, 'ListSnapshots', { snapshot_id: 'pvc-node-6@snapshot-n1' });
  ok(!r.err && r.res.entries.length === 1 &&
     r.res.entries[0].snapshot.source_volume_id === 'pvc-node-6',
     'ListSnapshots by snapshot id');
  r = await call(controller, 'ListSnapshots', { source_volume_id: 'pvc-node-7' });
  ok(!r.err && r.res.entries.length === 1 &&
     r.res.entries[0].snapshot.snapshot_id === 'pvc-node-7@snapshot-n2',
     'ListSnapshots by source volume');
  r = await call(controller, 'ListSnapshots', { snapshot_id: 'pvc-node-6@none' });
  ok(!r.err && r.res.entries.length === 0, 'ListSnapshots unknown id: empty');
  r = await call(controller, 'ListSnapshots', { max_entries: 1 });
  const sp1 = r.res;
  ok(!r.err && sp1.entries.length === 1 && sp1.next_token,
     'ListSnapshots page 1 with next_token');
  r = await call(controller, 'ListSnapshots',
    { max_entries: 1, starting_token: sp1 ? sp1.next_token : '' });
  ok(!r.err && r.res.entries.length === 1 && !r.res.next_token &&
     r.res.entries[0].snapshot.snapshot_id !== sp1.entries[0].snapshot.snapshot_id,
     'ListSnapshots page 2: the other one, last page');
  r = await call(controller, 'ListSnapshots', { starting_token: 'nonsense' });
  expectCode(r, S.ABORTED, 'ListSnapshots bad token');
  r = await call(controller, 'ListSnapshots', { max_entries: -1 });
  expectCode(r, S.INVALID_ARGUMENT, 'ListSnapshots negative max_entries');

  // Restore and clone through CreateVolume.
  const fromSnap = (id) => ({ snapshot: { snapshot_id: id } });
  const restoreReq = {
    ...req, name: 'pvc-restore-1',
    capacity_range: { required_bytes: String(16 << 20) },
    volume_content_source: fromSnap('pvc-node-6@snapshot-n1'),
  };
  r = await call(controller, 'CreateVolume', restoreReq);
  ok(!r.err && r.res.volume.capacity_bytes === String(16 << 20) &&
     regionOf(r.res.volume) === 'b' && r.res.volume.content_source &&
     r.res.volume.content_source.snapshot.snapshot_id === 'pvc-node-6@snapshot-n1',
     `CreateVolume from a snapshot: larger, source echoed ` +
     `(${r.err ? r.err.details : JSON.stringify(r.res.volume)})`);
  r = await call(controller, 'CreateVolume', restoreReq);
  expectCode(r, S.OK, 'CreateVolume from a snapshot again');
  r = await call(controller, 'CreateVolume',
    { ...restoreReq, volume_content_source: fromSnap('pvc-node-7@snapshot-n2') });
  expectCode(r, S.ALREADY_EXISTS, 'CreateVolume same name, other source');
  r = await call(controller, 'CreateVolume',
    { ...restoreReq, name: 'pvc-restore-2', volume_content_source: fromSnap('pvc-node-6@gone') });
  expectCode(r, S.NOT_FOUND, 'CreateVolume from a missing snapshot');
  r = await call(controller, 'CreateVolume', {
    ...restoreReq, name: 'pvc-restore-3',
    capacity_range: { required_bytes: String(4 << 20), limit_bytes: String(4 << 20) },
  });
  expectCode(r, S.OUT_OF_RANGE, 'CreateVolume from a snapshot, limit below it');
  r = await call(controller, 'CreateVolume', {
    ...restoreReq, name: 'pvc-restore-4',
    accessibility_requirements: { requisite: [topo('a')], preferred: [topo('a')] },
  });
  expectCode(r, S.RESOURCE_EXHAUSTED, 'CreateVolume from a snapshot in another region');
  r = await call(controller, 'CreateVolume', {
    ...req, name: 'pvc-clone-1',
    volume_content_source: { volume: { volume_id: 'pvc-node-6' } },
  });
  ok(!r.err && r.res.volume.content_source &&
     r.res.volume.content_source.volume.volume_id === 'pvc-node-6',
     'CreateVolume from a volume: source echoed');
  r = await call(controller, 'CreateVolume', {
    ...req, name: 'pvc-clone-2',
    volume_content_source: { volume: { volume_id: 'pvc-none' } },
  });
  expectCode(r, S.NOT_FOUND, 'CreateVolume from a missing volume');

  // ControllerGetVolume.
  r = await call(controller, 'ControllerGetVolume', { volume_id: 'pvc-clone-1' });
  ok(!r.err && r.res.volume.volume_id === 'pvc-clone-1' && r.res.status &&
     r.res.status.volume_condition && r.res.status.volume_condition.abnormal === false,
     'ControllerGetVolume: normal condition');
  r = await call(controller, 'ControllerGetVolume', { volume_id: 'pvc-none' });
  expectCode(r, S.NOT_FOUND, 'ControllerGetVolume unknown volume');
  r = await call(controller, 'ControllerGetVolume', { volume_id: '' });
  expectCode(r, S.INVALID_ARGUMENT, 'ControllerGetVolume without id');

  // Node: a volume that does not exist is NOT_FOUND, whatever the path.
  r = await call(node, 'NodeGetVolumeStats', { volume_id: 'pvc-none', volume_path: 'rel/path' });
  expectCode(r, S.NOT_FOUND, 'NodeGetVolumeStats unknown volume, relative path');
  r = await call(node, 'NodeExpandVolume', { volume_id: 'pvc-none', volume_path: 'rel/path' });
  expectCode(r, S.NOT_FOUND, 'NodeExpandVolume unknown volume, relative path');

  // DeleteSnapshot.
  for (const id of ['pvc-node-6@snapshot-n1', 'pvc-node-6@snapshot-n1',
    'pvc-never@x', 'not-a-snapshot-id']) {
    r = await call(controller, 'DeleteSnapshot', { snapshot_id: id });
    expectCode(r, S.OK, `DeleteSnapshot ${id}`);
  }
  r = await call(controller, 'DeleteSnapshot', { snapshot_id: '' });
  expectCode(r, S.INVALID_ARGUMENT, 'DeleteSnapshot without id');
  r = await call(controller, 'ListSnapshots', { source_volume_id: 'pvc-node-6' });
  ok(!r.err && r.res.entries.length === 0, 'deleted snapshot is gone');

  identity.close(); controller.close(); node.close();
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.log(`not ok - exception ${e.stack}`); process.exit(1); });
