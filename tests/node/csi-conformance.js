// csi-conformance.js: part of tandem-csi's CSI conformance, through an
// independent gRPC implementation (@grpc/grpc-js + @grpc/proto-loader
// loading proto/csi.proto): Identity, CreateVolume/DeleteVolume
// idempotence, error codes of the spec's tables, ListVolumes paging.
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

  // Snapshots are not served.
  r = await call(controller, 'CreateSnapshot',
    { source_volume_id: 'pvc-node-6', name: 's1' });
  expectCode(r, S.UNIMPLEMENTED, 'CreateSnapshot');

  identity.close(); controller.close(); node.close();
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.log(`not ok - exception ${e.stack}`); process.exit(1); });
